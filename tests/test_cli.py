"""The command lines of the README, run as subprocesses: a two-schedule sweep, sampling, DDP on two CPU processes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, run_script

# Exit statuses and output of the commands as processes, a sweep, DDP, kill -9: all of it the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, real_mnist):
    out = tmp_path_factory.mktemp("sweep")
    # model.channel_mults is tiny's own value: a list in the folder names, without changing the model
    run_script("train.py", "-m", "schedule=linear,cosine", "model.channel_mults=[1,2,2]", *FAST,
               f"data.root={real_mnist}", f"hydra.sweep.dir={out}")
    return out


def test_two_schedule_sweep_gives_two_run_folders(sweep):
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name[:2] for p in runs] == ["0_", "1_"]
    assert all("debug-tiny" in p.name and "data.root" not in p.name for p in runs)
    # A list value without "[", "," or "]", so that the path passes back as ckpt=PATH (the sample tests do that)
    assert all("+model.channel_mults-1_2_2+" in p.name and not set("[],=") & set(p.name) for p in runs)
    assert ["schedule-linear" in p.name for p in runs] == [True, False]
    assert ["schedule-cosine" in p.name for p in runs] == [False, True]
    for run_dir in runs:
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        assert (run_dir / "grids" / "step_000004.png").is_file()
        log = (run_dir / "train.log").read_text()  # Lightning's messages reach the run's log file
        assert "Total params" in log and "`Trainer.fit` stopped: `max_steps=4` reached." in log
        schedule = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["schedule"]
        assert ("Cosine" in schedule["_target_"]) == ("cosine" in run_dir.name)


def ckpt_of(sweep, schedule="linear"):
    return next(p for p in sweep.iterdir() if f"schedule-{schedule}" in p.name) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_writes_grid_and_is_deterministic(sweep, tmp_path, sampler):
    outputs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        run_script("sample.py", f"ckpt={ckpt_of(sweep)}", "n=20", f"sampler={sampler}", "steps=10", "seed=3",
                   f"hydra.run.dir={out}")
        assert (out / "samples.png").is_file()
        outputs.append(torch.load(out / "samples.pt", weights_only=True))
    a, b = outputs
    assert a["images"].shape == (20, 1, 28, 28) and a["images"].min() >= 0 and a["images"].max() <= 1
    assert a["labels"].tolist() == [i % 10 for i in range(20)]
    assert torch.equal(a["images"], b["images"])


def test_sample_one_digit_with_trajectory(sweep, tmp_path):
    run_script("sample.py", f"ckpt={ckpt_of(sweep, 'cosine')}", "n=5", "digit=7", "steps=5", "trajectory=true",
               f"hydra.run.dir={tmp_path}")
    samples = torch.load(tmp_path / "samples.pt", weights_only=True)
    assert samples["labels"].tolist() == [7] * 5
    assert (tmp_path / "trajectory.png").is_file() and (tmp_path / "trajectory.gif").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["n=0"], "error: n=0"),
        (["digit=12"], "error: digit=12 is not a class label"),
        (["steps=101"], "error: steps=101 exceeds the schedule's 100 timesteps"),
        (["guidance=-1"], "error: guidance=-1"),
    ],
)
def test_sample_bad_input_is_one_line(sweep, tmp_path, args, message):
    proc = run_script("sample.py", f"ckpt={ckpt_of(sweep)}", *args, f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert_refused(proc, message)
    assert not (tmp_path / "out").exists()  # not even the empty run folder


def assert_refused(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr[-2000:]


@pytest.fixture(scope="module")
def unconditional_ckpt(tmp_path_factory, sweep):
    """The sweep's checkpoint turned unconditional: the class embedding dropped, num_classes=0."""
    checkpoint = torch.load(ckpt_of(sweep), weights_only=True)
    checkpoint["hyper_parameters"]["net"]["num_classes"] = 0
    for key in ("state_dict", "current_model_state"):
        checkpoint[key] = {k: v for k, v in checkpoint[key].items() if "class_emb" not in k}
    path = tmp_path_factory.mktemp("uncond") / "uncond.ckpt"
    torch.save(checkpoint, path)
    return path


def test_sample_bad_checkpoints_are_one_line(sweep, unconditional_ckpt, tmp_path):
    truncated, text, mismatched = tmp_path / "truncated.ckpt", tmp_path / "notes.txt", tmp_path / "mismatched.ckpt"
    truncated.write_bytes(ckpt_of(sweep).read_bytes()[:5000])
    text.write_text("not a checkpoint\n")
    checkpoint = torch.load(ckpt_of(sweep), weights_only=True)
    checkpoint["hyper_parameters"]["net"]["channels"] = 16
    torch.save(checkpoint, mismatched)
    cases = [
        ([f"ckpt={truncated}"], "it is truncated or not a PyTorch file"),
        ([f"ckpt={text}"], "it is truncated or not a PyTorch file"),
        ([f"ckpt={mismatched}"], "does not match its own model config"),
        ([f"ckpt={unconditional_ckpt}", "digit=3"], "digit=3 needs class-conditional sampling"),
        ([f"ckpt={ckpt_of(sweep)}", "unconditional=true", "digit=3"], "digit=3 needs class-conditional sampling"),
        ([f"ckpt={ckpt_of(sweep)}", "sampler=euler"], "sampler=euler is unknown: use one of ddim, ddpm"),
        ([f"ckpt={ckpt_of(sweep)}", f"hydra.run.dir={text}/run"], f"output folder {text}/run cannot be written"),
    ]
    for args, message in cases:
        assert_refused(run_script("sample.py", f"hydra.run.dir={tmp_path / 'out'}", *args, check=False), message)
        assert not (tmp_path / "out").exists()


def test_unconditional_sampling_with_the_default_guidance(sweep, unconditional_ckpt, tmp_path):
    """unconditional=true, or a model.num_classes=0 model, samples with w = 0 whatever guidance says."""
    for name, args in (("flag", [f"ckpt={ckpt_of(sweep)}", "unconditional=true"]),
                       ("uncond", [f"ckpt={unconditional_ckpt}"])):
        run_script("sample.py", *args, "n=16", f"hydra.run.dir={tmp_path / name}")
        samples = torch.load(tmp_path / name / "samples.pt", weights_only=True)
        assert samples["images"].shape == (16, 1, 28, 28) and samples["labels"].tolist() == [-1] * 16
        assert "guidance 0.0, seed 0" in (tmp_path / name / "sample.log").read_text()
    run_script("sample.py", f"ckpt={ckpt_of(sweep)}", "unconditional=true", "guidance=0", "n=16",
        f"hydra.run.dir={tmp_path / 'w0'}")
    with_default, with_zero = (torch.load(tmp_path / d / "samples.pt", weights_only=True)["images"]
                               for d in ("flag", "w0"))
    assert torch.equal(with_default, with_zero)


def test_missing_checkpoint(tmp_path):
    proc = run_script("sample.py", f"ckpt={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert_refused(proc, "does not exist")
    assert not (tmp_path / "out").exists()


def test_train_unknown_group_option_is_one_line(tmp_path):
    assert_refused(run_script("train.py", "schedule=cosin", f"hydra.run.dir={tmp_path / 'out'}", check=False),
                   "schedule=cosin is unknown: use one of cosine, linear, sigmoid")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script, args, message", [
    ("train.py", ["sed=1"], "error: train has no setting 'sed'; did you mean 'seed'?"),
    ("train.py", ["trainer.max_step=2"], "error: train has no setting 'trainer.max_step'; did you mean "
                                         "'trainer.max_steps' or 'trainer.max_epochs'?"),
    ("train.py", ["callbacks.ema.decy=0.9"], "error: train has no setting 'callbacks.ema.decy'; did you mean "
                                             "'callbacks.ema.decay'?"),
    ("sample.py", ["ckpt=x.ckpt", "guidence=1"], "error: sample has no setting 'guidence'; did you mean 'guidance'?"),
    ("sample.py", ["ckpt=x.ckpt", "sampler.stepz=5"],
     "error: sample has no setting 'sampler.stepz'; did you mean 'sampler.steps'?"),
    ("sample.py", ["ckpt=x.ckpt", "sampelr.steps=5"],
     "error: sample has no setting 'sampelr.steps'; did you mean 'sampler.steps'?"),
])
def test_a_mistyped_key_at_any_depth_is_one_line_and_writes_nothing(tmp_path, script, args, message):
    proc = run_script(script, *args, f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [message], proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_sweep_jobs_sharing_a_folder_are_refused_before_the_first_trains(tmp_path):
    proc = run_script("train.py", "-m", "schedule=linear,cosine", "debug=tiny", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      "hydra.sweep.subdir=fixed", check=False)
    assert proc.returncode == 2 and [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: hydra.sweep.subdir=fixed puts jobs 0 and 1 of the sweep into one folder (fixed): make it differ "
        "between jobs, e.g. keep ${hydra.job.num} in it"], proc.stderr[-2000:]
    assert not (tmp_path / "sweep").exists()


def test_train_bad_checkpoint_is_one_line_before_any_download(tmp_path):
    """Lightning's device lines, printed while the trainer is built, go to stdout; stderr holds the error alone."""
    empty = tmp_path / "data"
    empty.mkdir()
    proc = run_script("train.py", "model=tiny", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"data.root={empty}",
               f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert_refused(proc, f"checkpoint {tmp_path / 'nope.ckpt'} does not exist")
    assert not (tmp_path / "out").exists() and not list(empty.iterdir())


def event_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)


def logged_steps(event_file: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_file), size_guidance={"scalars": 0}).Reload()
    return [e.step for e in events.Scalars("train/loss")]


def test_killed_run_resumes_in_its_own_folder(tmp_path, real_mnist):
    """kill -9 in the middle of a run, then `train.py resume=<run folder>` with nothing else on the command line."""
    out = tmp_path / "run"
    args = [*FAST, "trainer.max_steps=24", "trainer.val_check_interval=12", "trainer.log_every_n_steps=1",
            "callbacks.periodic_checkpoint.every_n_train_steps=4", "callbacks.sample_grid=null",
            f"data.root={real_mnist}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={out}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 300
        while not (last.exists() and torch.load(last, weights_only=True)["global_step"] >= 8):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.2)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    resumed_from = torch.load(last, weights_only=True)["global_step"]
    assert 8 <= resumed_from < 24 and len(event_files(out)) == 1
    assert (out / ".lock").is_file()  # its lock file stays; the lock itself went with the process

    run_script("train.py", f"resume={out}")
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == 24
    assert int(final["averaging_state"]["n_averaged"]) == 24  # the EMA went on, it did not start again
    assert final["lr_schedulers"][0]["last_epoch"] == 24
    files = event_files(out)  # the same TensorBoard run, one more event file
    assert len(files) == 2 and logged_steps(files[1]) == list(range(resumed_from, 24))
    assert not list(out.rglob("*.partial")) and not (out / ".lock").exists()


def test_ddp_on_two_cpu_processes_and_resumed(tmp_path, real_mnist, sweep):
    """Rank 0 alone writes checkpoints; the run resumes into two processes, ends with the weights of a run that was
    never stopped, and its loss goes the way the single-process run's does."""
    out = tmp_path / "ddp"
    proc = run_script("train.py", "trainer=ddp", "trainer.devices=2", *FAST, f"data.root={real_mnist}",
                      f"hydra.run.dir={out}")
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    rows = ckpt["rng_states"]["cpu"]  # one generator state per rank: the ranks draw different t and noise
    assert rows.shape[0] == 2 and not torch.equal(rows[0], rows[1])
    assert (out / "grids" / "step_000004.png").is_file()
    milestones = [f"milestone_step_{step:06d}.ckpt" for step in (1, 2, 3)]  # 1/4, 1/2, 3/4 of 4 steps
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt", *milestones, "step_000004.ckpt"]

    proc = run_script("train.py", f"resume={out}", "trainer.max_steps=8", "trainer.val_check_interval=4")
    log = proc.stdout + proc.stderr
    assert "Restored all states from the checkpoint" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    resumed = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 8 and int(resumed["averaging_state"]["n_averaged"]) == 8
    assert not torch.equal(resumed["rng_states"]["cpu"][0], resumed["rng_states"]["cpu"][1])
    # Each rank continued its own generator: the same weights as 8 steps without a stop.
    straight = tmp_path / "ddp_straight"
    eight = [a for a in FAST if not a.startswith("trainer.max_steps=")] + ["trainer.max_steps=8"]
    run_script("train.py", "trainer=ddp", "trainer.devices=2", *eight, f"data.root={real_mnist}",
               f"hydra.run.dir={straight}")
    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in expected.items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert [n for n in names if not n.startswith("milestone_")] == ["last.ckpt", "step_000008.ckpt"]
    assert "milestone_step_000006.ckpt" in names  # 3/4 of the resumed run's 8 steps
    single = torch.load(ckpt_of(sweep), weights_only=True)  # the same config on one process, 4 steps
    val = lambda c: next(float(s["best_model_score"]) for k, s in c["callbacks"].items() if "val/loss" in k)  # noqa: E731
    assert val(resumed) < val(ckpt) and val(ckpt) == pytest.approx(val(single), rel=0.05)
