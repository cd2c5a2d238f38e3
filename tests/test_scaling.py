"""README "Scaling out" as a user runs it: local parallel jobs (submitit), an Optuna search that continues its SQLite
study (tests/test_search.py tests the sweeper's failures and shared studies), DDP inside a sweep (ddp_spawn), and the
-m refusals, which must leave nothing behind."""

from pathlib import Path

import optuna
import pytest
import torch
from conftest import FAST, run_script
from omegaconf import OmegaConf

from ddpm.cli.app import check_group_choices
from ddpm.errors import ConfigError


def job_folders(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_submitit_local_runs_the_jobs_at_the_same_time(tmp_path, real_mnist):
    sweep = tmp_path / "sweep"
    steps = [a for a in FAST if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=20",
                                                                           "trainer.val_check_interval=10"]
    run_script("train.py", "-m", "hydra/launcher=submitit_local", "schedule=linear,cosine", *steps,
               f"data.root={real_mnist}", f"hydra.sweep.dir={sweep}")
    jobs = job_folders(sweep)
    assert [("schedule-linear" in p.name, "schedule-cosine" in p.name) for p in jobs] == [(True, False), (False, True)]
    spans = []
    for job in jobs:
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 20
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        # Each job ran with the launcher's one thread (hydra.launcher.cpus_per_task), logged by ddpm.cli.sweep.
        assert "1 CPU thread(s) for this job" in (job / "train.log").read_text()
        # From the config written just before fit to the last checkpoint: the job's training.
        spans.append(((job / ".hydra" / "config.yaml").stat().st_mtime,
                      (job / "checkpoints" / "last.ckpt").stat().st_mtime))
    (start0, end0), (start1, end1) = spans
    assert start0 < end1 and start1 < end0, f"the jobs ran one after the other: {spans}"


def study_trials(db: Path, name: str = "quickstart"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def search(tmp_path_factory, real_mnist):
    """Two trials of hparams_search=optuna, stored in <paths.log_dir>/hparams_search/quickstart.db."""
    logs = tmp_path_factory.mktemp("logs")
    # FAST fixes no searched value (data.batch_size is one): a fixed value would leave the search
    args = ["-m", "hparams_search=optuna", *FAST, f"data.root={real_mnist}", f"paths.log_dir={logs}"]
    run_script("train.py", *args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={logs / 'first'}")
    return logs, args


@pytest.mark.slow
def test_optuna_search_writes_best_parameters_and_value(search):
    logs, _ = search
    results = OmegaConf.load(logs / "first" / "optimization_results.yaml")
    trials = study_trials(logs / "hparams_search" / "quickstart.db")
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    searched = {"module.lr", "callbacks.ema.decay", "module.warmup_steps", "module.min_snr_gamma", "data.batch_size"}
    assert set(results.best_params) == searched
    assert results.best_value == min(t.value for t in trials)
    # the value is the trial's val/loss, which starts near E[eps^2] = 1 for an untrained model
    assert 0 < results.best_value < 1.5
    assert len(job_folders(logs / "first")) == 2


@pytest.mark.slow
def test_optuna_search_continues_its_study(search):
    logs, args = search
    run_script("train.py", *args, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={logs / 'again'}")
    trials = study_trials(logs / "hparams_search" / "quickstart.db")
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3  # 2 kept + 1 new, not 2 + 3
    assert len(job_folders(logs / "again")) == 1
    # the resumed sampler is seeded past the first run's draws, so it does not replay trial 0
    assert trials[2].params != trials[0].params


@pytest.mark.slow
def test_optuna_refuses_a_study_of_another_search_space(search):
    logs, args = search
    other = ["optimized_metric=val_by_t/0.00-0.10", "hydra.sweeper.direction=maximize"]
    proc = run_script("train.py", *args, *other, f"hydra.sweep.dir={logs / 'other'}", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: hydra.sweeper.study_name=quickstart") and "another space" in last
    assert not (logs / "other").exists()


@pytest.mark.slow
def test_ddp_spawn_inside_a_sweep(tmp_path, real_mnist):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "schedule=linear,cosine", "trainer=ddp_spawn", "trainer.devices=2", *FAST,
                      f"data.root={real_mnist}", f"hydra.sweep.dir={sweep}")
    log = proc.stdout + proc.stderr
    assert log.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # both jobs trained on two processes
    for job in job_folders(sweep):
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 4
        assert ckpt["rng_states"]["cpu"].shape[0] == 2  # one generator state per rank


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    # Lightning's auto strategy on two devices is DDP through its script launcher: refused, as trainer=ddp is.
    (["trainer.devices=2"], "error: trainer.strategy=auto (DDP on 2 devices) cannot run under -m"),
    (["trainer=ddp", "trainer.devices=2"], "use trainer=ddp_spawn, or hydra/launcher=submitit_slurm"),
    # only the second job is wrong, and it is found before the first one trains
    (["data.batch_size=32,1000"], "error: data.batch_size=1000 is larger than the 256 training images per process"),
    (["hydra/launcher=submitit_slurm", "trainer.devices=2", "hydra.launcher.tasks_per_node=1"],
     "do not match hydra.launcher.tasks_per_node=1"),
    (["hydra/launcher=slurm"],
     "error: hydra/launcher=slurm is unknown: use one of basic, ray, submitit_local, submitit_slurm"),
    (["hparams_search=hyperopt"], "error: hparams_search=hyperopt is unknown: use one of optuna"),
    (["optimized_metric=metrics/fid"], "set callbacks.sample_metrics.every_n_validations=1"),
])
def test_multirun_refusals_write_nothing(tmp_path, real_mnist, args, message):
    sweep = tmp_path / "sweep"
    fast = [a for a in FAST if a.split("=")[0] not in {a.split("=")[0] for a in args}]
    proc = run_script("train.py", "-m", "schedule=linear,cosine", *fast, *args, f"data.root={real_mnist}",
                      f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert message in lines[-1] and sum(line.startswith("error:") for line in lines) == 1
    assert not sweep.exists()


def test_a_missing_plugin_names_its_extra(monkeypatch):
    monkeypatch.setattr("ddpm.cli.app.installed", lambda module: module != "hydra_plugins.hydra_submitit_launcher")
    check_group_choices(["hydra/launcher=ray"])
    with pytest.raises(ConfigError, match=r"hydra/launcher=submitit_local needs a Hydra plugin: pip install -e "
                                          r"'\.\[slurm\]'"):
        check_group_choices(["hydra/launcher=submitit_local"])
