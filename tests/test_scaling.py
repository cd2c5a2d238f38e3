"""docs/scaling.md as a user runs it: local parallel jobs (submitit), an Optuna search that continues its SQLite
study (tests/test_search.py tests the sweeper's failures and shared studies), DDP inside a sweep (ddp_spawn), two
"nodes" on this machine, a sweep on a local Ray cluster, the -m refusals, which must leave nothing behind, and every
command of docs/scaling.md composed. The SLURM cluster: tests/test_slurm.py."""


import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from conftest import CONF, FAST, ROOT, TINY, compose_train, run_script
from ddp_replay import REPLAYABLE, TWO_RANKS, check_two_ranks, largest_difference, replay
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ddpm.cli.app import check_group_choices
from ddpm.commands.train import train
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_this_machine_equal_one_process_on_the_global_batch(tmp_path, real_mnist):
    """Two "nodes" of one process each, started as on two machines (torchrun --nnodes 2, one per node, gloo over
    localhost), each with a run folder of its own: rank 0 alone writes, and the weights are those of one process
    that trains on both nodes' batches (tests/ddp_replay.py)."""
    port = free_port()
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2", *TWO_RANKS,
            f"data.root={real_mnist}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}",
                               str(ROOT / "train.py"), *args, f"hydra.run.dir={tmp_path / f'node{rank}'}"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]
    first, second = tmp_path / "node0", tmp_path / "node1"
    assert (first / "grids" / "step_000008.png").is_file() and list((first / "tensorboard").iterdir())
    # the second node's folder holds no checkpoint, grid, event file or config
    assert not [p for p in second.rglob("*") if p.is_file() and p.suffix != ".log"]
    check_two_ranks(first, "two nodes")


def test_the_replay_is_the_run_it_replays(tmp_path, shared_synthetic_mnist):
    """The oracle of the multi-process tests, checked on one process: from step 2 of a run, the replay's 4 steps
    give that run's weights at step 6, bit for bit."""
    out = tmp_path / "run"
    cfg = compose_train(out, [*TINY, "trainer.val_check_interval=6", *REPLAYABLE,
                              f"data.root={shared_synthetic_mnist}", "data.check_md5=false"])
    train(cfg)
    start = torch.load(out / "checkpoints" / "milestone_step_000002.ckpt", weights_only=True)
    end = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert largest_difference(end["state_dict"], replay(out, start, world=1, steps=4)) == 0
    assert largest_difference(end["state_dict"], replay(out, start, world=1, steps=3)) > 1e-5


@pytest.fixture
def ray_cluster(tmp_path):
    """A local Ray cluster as `ray start --head` starts one on a cluster's first machine; its address."""
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the ray extra (.ci/run): ray is missing")
        pytest.skip("ray is not installed: pip install -e '.[ray]'")
    port = free_port()
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={address}"],
                             capture_output=True).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, f"ray start failed: {head.stdout.read()}"
            time.sleep(1)
        yield address
    finally:
        head.terminate()  # --block: the head stops its processes when it stops
        head.wait(timeout=60)


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster(tmp_path, real_mnist, ray_cluster):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_cluster}",
                      "schedule=linear,cosine", *FAST, f"data.root={real_mnist}", f"hydra.sweep.dir={sweep}")
    log = proc.stdout + proc.stderr
    port = ray_cluster.rsplit(":", 1)[1]
    assert re.search(rf"2 job\(s\) on 2 CPU\(s\) of the cluster at [\d.]+:{port}", log), log[-3000:]
    assert log.count("(_run_job pid=") > 0  # the jobs' output came back from Ray's workers
    jobs = job_folders(sweep)
    assert [("schedule-linear" in p.name, "schedule-cosine" in p.name) for p in jobs] == [(True, False), (False, True)]
    for job in jobs:
        assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


@pytest.mark.parametrize("trainer, shape", [
    ([], (1, 1, 0)),  # accelerator auto: no GPU asked for; trainer=gpu asks
    (["trainer=cpu"], (1, 1, 0)),
    (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], (1, 2, 0)),
    (["trainer=gpu"], (1, 1, 1)),  # devices auto: the GPU SLURM gives the job
    (["trainer=gpu", "trainer.devices=4", "trainer.num_nodes=2"], (2, 4, 4)),
    (["trainer=gpu", "trainer.devices=[0,1]"], (1, 2, 2)),
])
def test_the_slurm_job_takes_its_shape_from_the_trainer(trainer, shape):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm", *trainer], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == shape
