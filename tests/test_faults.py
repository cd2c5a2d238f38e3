"""Faults: resuming reproduces the uninterrupted run, numerical blow-ups stop cleanly, checkpoints are written
atomically and read without unpickling objects, and bad configs are refused before anything is written."""

import contextlib
import errno
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torchvision
from conftest import ROOT, TINY, compose_train, make_synthetic_mnist, run_script
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_run_end import EIGHT, assert_bitwise_equal, files, signal_at, start_train, weights
from test_run_end import RUN as PLAIN_RUN

import ddpm.files
from ddpm.cli.app import ExitWhenStopped, prepare_argv
from ddpm.cli.runtime import exit_on_user_error, run_folder_lock, user_error
from ddpm.commands.sample import sample
from ddpm.commands.train import last_good_checkpoint, train
from ddpm.errors import (
    CheckpointError,
    ConfigError,
    FolderInUseError,
    MNISTFileError,
    NonFiniteError,
    Stopped,
    WriteError,
)
from ddpm.evaluation.cache import ScoreCache
from ddpm.evaluation.results import RESULT_COLUMNS, write_csv
from ddpm.files import written
from ddpm.training.checkpoint import load_checkpoint

STEPS = 20
RUN = [
    *TINY,
    "data.check_md5=false",
    "callbacks.sample_grid=null",
    "data.train_size=128",
    "data.batch_size=16",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=1",
    "module.warmup_steps=5",
    # keep every periodic checkpoint, to resume from one of the middle
    "callbacks.periodic_checkpoint.every_n_train_steps=7",
    "callbacks.periodic_checkpoint.save_top_k=-1",
    "callbacks.periodic_checkpoint.filename='at_{step:03d}'",
    "+callbacks.periodic_checkpoint.auto_insert_metric_name=false",
]


def train_losses(run) -> dict[int, float]:
    """train/loss by step, from all event files of the run's TensorBoard folder."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return {e.step: e.value for e in events.Scalars("train/loss")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("uninterrupted")
    train(compose_train(run, [*RUN, f"data.root={data}"]))
    return run


def test_same_seed_same_losses_and_weights(uninterrupted, data, tmp_path):
    train(compose_train(tmp_path, [*RUN, f"data.root={data}"]))
    first, second = train_losses(uninterrupted), train_losses(tmp_path)
    assert len(first) == STEPS and first == second  # bitwise: the same floats
    a, b = (load_checkpoint(run / "checkpoints" / "last.ckpt") for run in (uninterrupted, tmp_path))
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key])


def test_resumed_run_continues_the_uninterrupted_one(uninterrupted, data, tmp_path):
    """Resumed from the step-7 checkpoint (mid-epoch: 8 batches per epoch), it must see the same batches, noise and
    timesteps, learning rate and EMA as the run that never stopped."""
    start = uninterrupted / "checkpoints" / "at_007.ckpt"
    assert load_checkpoint(start)["global_step"] == 7
    train(compose_train(tmp_path, [*RUN, f"data.root={data}", f"ckpt_path={start}"]))
    expected, resumed = train_losses(uninterrupted), train_losses(tmp_path)
    assert sorted(resumed) == list(range(7, STEPS))  # logged at the step count before each update
    assert resumed == pytest.approx({step: expected[step] for step in resumed}, rel=1e-5, abs=1e-6)
    a, b = (load_checkpoint(run / "checkpoints" / "last.ckpt") for run in (uninterrupted, tmp_path))
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["averaging_state"]["n_averaged"] == b["averaging_state"]["n_averaged"] == STEPS  # one EMA, never restarted
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    for key in ("state_dict", "current_model_state"):  # EMA and raw weights
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def learning_rates(run) -> dict[int, float]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return {e.step: e.value for e in events.Scalars("lr-AdamW")}


def test_resume_with_more_steps_stretches_the_cosine_decay_without_a_jump(data, tmp_path):
    """A cosine-decay run stopped at step 7 of 20 and resumed with trainer.max_steps=30: the learning rate goes on
    from where it was and decays to 0 at step 30, instead of jumping up to the value of a 30-step schedule."""
    cosine = [*RUN, f"data.root={data}", "module.cosine_decay=true"]
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    train(compose_train(first, cosine))
    start = first / "checkpoints" / "at_007.ckpt"
    train(compose_train(resumed, [*cosine, f"ckpt_path={start}", "trainer.max_steps=30"]))
    before, after = learning_rates(first), learning_rates(resumed)
    lr, warmup = 1e-3, 5
    at_7 = lr * 0.5 * (1 + math.cos(math.pi * (7 - warmup) / (STEPS - warmup)))
    assert before[7] == pytest.approx(at_7, rel=1e-6) and after[7] == pytest.approx(at_7, rel=1e-6)
    # A 30-step schedule from the start would be at this value now: the jump the resumed run must not make.
    assert after[8] < before[7] < lr * 0.5 * (1 + math.cos(math.pi * (8 - warmup) / (30 - warmup)))
    expected = {s: at_7 * 0.5 * (1 + math.cos(math.pi * (s - 7) / (30 - 7))) for s in range(7, 30)}
    assert after == pytest.approx(expected, rel=1e-5, abs=1e-9)
    # The decay the first run had ended at step 20 with learning rate 0: more steps there would not train.
    ended = r"ended its cosine learning-rate decay .* at step 20, with learning rate"
    with pytest.raises(CheckpointError, match=ended):
        train(compose_train(tmp_path / "refused", [*cosine, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
                                                  "trainer.max_steps=30"]))
    assert not (tmp_path / "refused").exists()


def test_resume_on_another_number_of_processes_is_refused(uninterrupted, data, tmp_path):
    """A checkpoint of a two-process DDP run (one generator state per rank) resumed by one process."""
    checkpoint = torch.load(uninterrupted / "checkpoints" / "last.ckpt", weights_only=True)
    cpu = checkpoint["rng_states"]["cpu"]
    checkpoint["rng_states"]["cpu"] = torch.stack([cpu, cpu])
    ddp = tmp_path / "ddp.ckpt"
    torch.save(checkpoint, ddp)
    with pytest.raises(CheckpointError, match=r"trained by 2 process\(es\) and this run has 1 .*trainer\.devices=2"):
        train(compose_train(tmp_path / "run", [*RUN, f"data.root={data}", f"ckpt_path={ddp}"]))
    assert not (tmp_path / "run").exists()


def test_bad_checkpoint_is_refused_before_mnist_is_downloaded(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="does not exist"):
        train(compose_train(tmp_path / "run", [*RUN, f"data.root={empty}", "data.download=true",
                                               "ckpt_path=/nonexistent.ckpt"]))
    assert not list(empty.iterdir()) and not (tmp_path / "run").exists()


def test_resume_with_another_model_config_is_refused(uninterrupted, data, tmp_path):
    start = uninterrupted / "checkpoints" / "last.ckpt"
    cfg = compose_train(tmp_path / "run", [*RUN, f"data.root={data}", f"ckpt_path={start}", "model.channels=16"])
    another = r"trained with another config \(model\.channels: checkpoint 12, this run 16\)"
    with pytest.raises(CheckpointError, match=another):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(data, tmp_path):
    # An absurd learning rate: the first update makes the weights ~1e28, the next loss overflows.
    cfg = compose_train(tmp_path, [*RUN, f"data.root={data}", "module.lr=1e30", "module.warmup_steps=1",
                                   "callbacks.periodic_checkpoint.every_n_train_steps=1"])
    stopped = r"training stopped at step 1: the loss is (inf|nan);.*at_001\.ckpt \(step 1\) is kept"
    with pytest.raises(NonFiniteError, match=stopped):
        train(cfg)
    kept = load_checkpoint(tmp_path / "checkpoints" / "at_001.ckpt")
    assert kept["global_step"] == 1
    assert all(torch.isfinite(w).all() for w in kept["current_model_state"].values())


@pytest.mark.slow
def test_kill_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    """A process that keeps rewriting one 16 MB checkpoint is killed at once: the file must load whole."""
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(f"""
        import sys, torch
        from ddpm.training.checkpoint import AtomicCheckpointIO
        io = AtomicCheckpointIO()
        for step in range(1000):
            io.save_checkpoint({{"global_step": step, "w": torch.full((4_000_000,), float(step))}}, {str(path)!r})
            if step == 0:
                print("saved", flush=True)
    """)
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saved"
        subprocess.run(["sleep", "0.3"])
        proc.kill()
        proc.wait()
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["w"].shape == (4_000_000,) and bool((checkpoint["w"] == checkpoint["global_step"]).all())


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do with os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_malicious_checkpoint_is_refused_without_running_it(uninterrupted, data, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(uninterrupted / "checkpoints" / "last.ckpt", weights_only=True)
    torch.save({**checkpoint, "payload": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors and plain data"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refused"):
        train(compose_train(tmp_path / "run", [*RUN, f"data.root={data}", f"ckpt_path={evil}"]))
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["schedule.timesteps=1"], ConfigError, "schedule.timesteps=1 is invalid: use an integer >= 2"),
        (["schedule.beta_start=0.03"], ConfigError, "schedule.beta_start=0.03 is invalid: use a number in (0, 0.02)"),
        (["schedule=cosine", "schedule.s=0"], ConfigError, "schedule.s=0 is invalid: use a number > 0"),
        (["data.batch_size=200"], ConfigError, "data.batch_size=200 is larger than the 128 training images"),
        (["ckpt_path=/nonexistent.ckpt"], CheckpointError, "checkpoint /nonexistent.ckpt does not exist"),
        (["resume=/nonexistent"], CheckpointError, "resume=/nonexistent has no checkpoints/last.ckpt"),
        (["data.root=/nonexistent", "data.download=false"], MNISTFileError, "train-images-idx3-ubyte.gz is missing"),
        (["callbacks.sample_metrics.every_n_validations=1", "callbacks.sample_metrics.classifier=/nonexistent/cnn.pt"],
         ConfigError, "callbacks.sample_metrics.classifier=/nonexistent/cnn.pt does not exist: train it first"),
    ],
)
def test_bad_config_is_refused_before_anything_is_written(data, tmp_path, overrides, error, message):
    with pytest.raises(Exception) as raised:
        train(compose_train(tmp_path / "run", [*RUN, f"data.root={data}", *overrides]))
    cause = user_error(raised.value)
    assert isinstance(cause, error) and message in str(cause)
    assert not (tmp_path / "run").exists()


# A mistyped key: one line naming the command, the key and the closest settings, before Hydra composes anything.
MISTYPED = [
    ("sample", ["ckpt=x.ckpt", "guidence=1"], "sample has no setting 'guidence'; did you mean 'guidance'?"),
    ("sample", ["nn=5"], "sample has no setting 'nn'; did you mean 'n'?"),
    ("sample", ["sampler.stepz=5"], "sample has no setting 'sampler.stepz'; did you mean 'sampler.steps'?"),
    ("train", ["modul.lr=1"], "train has no setting 'modul.lr'; did you mean 'module.lr'?"),
    ("train", ["trainer.max_step=2"],
     "train has no setting 'trainer.max_step'; did you mean 'trainer.max_steps' or 'trainer.max_epochs'?"),
    ("train", ["schedule=cosine", "schedule.ss=2"], "train has no setting 'schedule.ss'; did you mean 'schedule.s'?"),
    ("train", ["schedule.tua=2"], "train has no setting 'schedule.tua'; schedule has _target_, timesteps, beta_start, "
                                  "beta_end (+schedule.tua=... adds a new one)"),
    ("train", ["seed.x=1"], "train has no setting 'seed.x'; seed is a value, not a group of settings"),
    ("compare", ["runs=x", "grid.stepz=1"], "compare has no setting 'grid.stepz'; did you mean 'grid.steps'?"),
    ("evaluate", ["ckpt=x", "classifer=y"], "evaluate has no setting 'classifer'; did you mean 'classifier'"),
]


@pytest.mark.parametrize("command, args, message", MISTYPED)
def test_a_mistyped_key_is_one_line_naming_the_closest_settings(command, args, message):
    with pytest.raises(ConfigError) as refused:
        prepare_argv([f"{command}.py", *args], command)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("args", [
    ["+zzz=1"],  # a key that is really new
    ["++module.lr=1"],
    ["hydra.run.dir=/tmp/x", "hydra.job.chdir=false", "hydra.verbose=true"],  # Hydra's own settings
    ["debug=tiny", "callbacks.sample_grid.guidance=1"],  # a key that a group option brings
    ["-m", "schedule=linear,cosine", "schedule.s=0.01"],  # a key of one option of a swept group
    ["module.net.channels=8"],  # through an interpolation (module.net is ${model})
    ["experiment=quickstart", "trainer.max_steps=1", "module.lr=1e-3,1e-4"],
    ["trainer.devices=[0]"],
])
def test_keys_that_exist_or_are_added_pass(args):
    assert prepare_argv(["train.py", *args], "train")[1:] == [a for a in ["-m"] if a in args] + [
        a for a in args if a != "-m"]


def test_a_value_hydra_cannot_read_is_one_line_with_the_quoted_form():
    with pytest.raises(ConfigError, match=r"^resume=/tmp/rün x is not a key=value that Hydra can read: quote a value "
                                          r"that holds spaces, non-ASCII letters or special characters, e\.g\. "
                                          r"'resume=\"/tmp/rün x\"'$"):
        prepare_argv(["train.py", "resume=/tmp/rün x"])


def failing_writes(monkeypatch, name_prefix: str, error: int = errno.ENOSPC) -> None:
    """A disk that fills up: every write through ddpm.files to a file whose name starts with `name_prefix` puts
    half its bytes down, then fails as the filesystem would."""
    class Full:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(error, os.strerror(error))

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def full_open(path, *args, **kwargs):
        file = open(path, *args, **kwargs)
        return Full(file) if Path(path).name.startswith(name_prefix) else file

    monkeypatch.setattr(ddpm.files, "open", full_open, raising=False)


@pytest.fixture(scope="module")
def eight_steps(data, tmp_path_factory) -> dict:
    """The weights of 8 steps without a stop, what every resumed run below must end with."""
    run = tmp_path_factory.mktemp("eight") / "run"
    train(compose_train(run, [*EIGHT, f"data.root={data}"]))
    return weights(run / "checkpoints" / "last.ckpt")


def test_a_full_disk_stops_training_in_one_line_and_resume_ends_bitwise(data, eight_steps, tmp_path, monkeypatch):
    """The milestone checkpoint at step 6 of 8 does not fit: the run stops naming it, the cause and resume=; the
    last.ckpt of step 4 is whole, no .partial is left, and the resumed run ends as the uninterrupted one, bitwise."""
    run, eight = tmp_path / "run", [*EIGHT, f"data.root={data}"]
    failing_writes(monkeypatch, "milestone_step_000006")
    with pytest.raises(WriteError) as stopped:
        train(compose_train(run, eight))
    milestone, last = run / "checkpoints" / "milestone_step_000006.ckpt", run / "checkpoints" / "last.ckpt"
    assert str(stopped.value) == (f"cannot write {milestone}: no space left on the device (ENOSPC): training stopped "
                                  f"at step 6; {last} (step 4) is whole: make room, then resume with resume={run}")
    assert not milestone.exists() and not list(run.rglob("*.partial"))
    assert load_checkpoint(last)["global_step"] == 4
    monkeypatch.undo()
    train(compose_train(run, [*eight, f"resume={run}"]))
    assert_bitwise_equal(weights(last), eight_steps)


@pytest.mark.parametrize("error, cause", [(errno.ENOSPC, "no space left on the device (ENOSPC)"),
                                          (errno.EDQUOT, "the disk quota is exceeded (EDQUOT)"),
                                          (errno.EIO, "an input/output error of the device (EIO)")])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch, error, cause):
    path = tmp_path / "samples.pt"
    with written(path) as f:
        f.write(b"old")
    failing_writes(monkeypatch, "samples.pt", error)
    with pytest.raises(WriteError, match=rf"^cannot write {path}: {re.escape(cause)}$"):
        with written(path) as f:
            f.write(b"new content")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["samples.pt"]


def test_sample_on_a_full_disk_is_one_line_and_keeps_the_earlier_samples(uninterrupted, tmp_path, monkeypatch):
    out, ckpt = tmp_path / "out", uninterrupted / "checkpoints" / "last.ckpt"
    args = [f"ckpt={ckpt}", "n=4", "sampler=ddim", "steps=2"]
    sample(compose_train(out, args, config_name="sample"))
    before = torch.load(out / "samples.pt", weights_only=True)
    failing_writes(monkeypatch, "samples.pt")
    with pytest.raises(WriteError, match=rf"^cannot write {out / 'samples.pt'}: no space left on the device"):
        sample(compose_train(out, [*args, "seed=1"], config_name="sample"))
    after = torch.load(out / "samples.pt", weights_only=True)
    assert torch.equal(after["images"], before["images"]) and not list(out.rglob("*.partial"))


def test_compare_tables_and_cache_on_a_full_disk_keep_their_earlier_content(tmp_path, monkeypatch):
    rows = [{"run": "a", "fid": 1.0}]
    write_csv(tmp_path / "results.csv", rows, RESULT_COLUMNS)
    cfg = OmegaConf.create({"classifier": None, "n": 10, "seed": 0, "batch_size": 5})
    cache = ScoreCache(tmp_path, cfg)
    cache.put(tmp_path / "last.ckpt", "point", {"fid": 1.0})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    failing_writes(monkeypatch, "")
    with pytest.raises(WriteError, match="results.csv: no space left"):
        write_csv(tmp_path / "results.csv", rows * 2, RESULT_COLUMNS)
    with pytest.raises(WriteError, match="scores.json: no space left"):
        cache.put(tmp_path / "last.ckpt", "another point", {"fid": 2.0})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@contextlib.contextmanager
def small_filesystem(folder: Path, size: int):
    """A tmpfs of `size` bytes at `folder`; the test is skipped where it may not mount one."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the fast tier injects the same fault)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_a_run_on_a_filesystem_that_fills_up_stops_in_one_line_and_resumes_bitwise(data, tmp_path):
    """The run's folder on a tmpfs with room for the checkpoints of step 4 and half of one more: train.py stops at
    the next checkpoint with one error line and exit status 2; the filesystem grown, resume= ends bitwise as a run
    that never stopped."""
    eight = [*EIGHT, f"data.root={data}"]
    straight = tmp_path / "straight"
    run_script("train.py", *eight, f"hydra.run.dir={straight}")
    checkpoint = (straight / "checkpoints" / "last.ckpt").stat().st_size
    with small_filesystem(tmp_path / "small", int(4.5 * checkpoint) + 256 * 1024) as small:
        run, last = small / "run", small / "run" / "checkpoints" / "last.ckpt"
        proc = run_script("train.py", *eight, f"hydra.run.dir={run}", check=False)
        errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
        assert re.fullmatch(rf"error: cannot write {run}/checkpoints/\S+\.ckpt: no space left on the device "
                            rf"\(ENOSPC\): training stopped at step 6; {last} \(step 4\) is whole: make room, then "
                            rf"resume with resume={run}", errors[0]) and proc.stderr.strip().endswith(errors[0])
        assert load_checkpoint(last)["global_step"] == 4 and not list(run.rglob("*.partial"))
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        run_script("train.py", f"resume={run}")
        assert_bitwise_equal(weights(last), weights(straight / "checkpoints" / "last.ckpt"))


def held_by_this_process(run: Path):
    """The run folder's lock, held as a training that is still going holds it."""
    return run_folder_lock(run, lambda holder: f"held by {holder}")


def test_a_second_training_into_a_folder_in_use_is_refused_naming_the_process(data, tmp_path):
    run = tmp_path / "run"
    options = [*RUN, f"data.root={data}", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    train(compose_train(run, options))
    before = files(run)
    with held_by_this_process(run):
        with pytest.raises(FolderInUseError) as refused:
            train(compose_train(run, [*options, "seed=4"]))
        assert str(refused.value) == (f"run folder {run} is in use by process {os.getpid()}, which trains into it: "
                                      f"choose another with hydra.run.dir=...")
        with pytest.raises(FolderInUseError) as refused:
            train(compose_train(run, [*options, f"resume={run}", "trainer.max_steps=4"]))
        assert str(refused.value) == (f"resume={run}: the run is still going in process {os.getpid()}: let it end, "
                                      f"or stop it (a SIGTERM saves its step), then resume")
        assert files(run) == {**before, run / ".lock": files(run)[run / ".lock"]}  # the first run's, untouched
    assert files(run) == before  # the lock goes with its holder


def test_a_new_training_into_the_folder_of_another_run_is_refused(data, tmp_path):
    run = tmp_path / "run"
    options = [*RUN, f"data.root={data}", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    train(compose_train(run, options))
    before = files(run)
    with pytest.raises(FolderInUseError, match=rf"^run folder {run} holds the checkpoints of another run \(last\.ckpt, "
                                               rf"\.\.\.\): continue it with resume={run}, or choose another folder"):
        train(compose_train(run, [*options, "seed=4"]))
    assert files(run) == before


def test_the_lock_of_a_crashed_run_is_taken_over(data, tmp_path):
    """A run killed with -9 leaves its lock file, whose flock the kernel dropped: the next run takes it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("999999 crashed-host\n")
    train(compose_train(run, [*RUN, f"data.root={data}", "trainer.max_steps=2", "trainer.val_check_interval=2"]))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 and not (run / ".lock").exists()


def test_a_stopped_job_raises_on_for_hydra_and_its_callback_exits_128_plus_the_signal(tmp_path):
    """Under Hydra the task's Stopped goes on to Hydra (which records the job as failed, and a sweeper tells its
    trial so); ExitWhenStopped, called by Hydra after the job, then exits; outside Hydra it exits at once."""
    def task():
        raise Stopped("stopped at step 3 of 8", signal.SIGTERM)

    compose_train(tmp_path, [])  # sets HydraConfig, as Hydra does for a job
    with pytest.raises(Stopped):
        exit_on_user_error(task)()
    with pytest.raises(SystemExit) as exited:
        ExitWhenStopped().on_job_end(config=None, job_return=None)
    assert exited.value.code == 143
    ExitWhenStopped().on_job_end(config=None, job_return=None)  # a job that was not stopped: nothing
    HydraConfig.instance().cfg = None
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(task)()
    assert exited.value.code == 143


class RecordJobs(Callback):
    """A Hydra callback that appends each job's number and status, as Hydra recorded it, to a file."""

    def __init__(self, path: str):
        self.path = path

    def on_job_end(self, config, job_return, **kwargs) -> None:
        with open(self.path, "a") as f:
            f.write(f"{config.hydra.job.num} {job_return.status.name}\n")


def with_tests_importable() -> dict:
    """The environment of a command whose config names classes of these tests (callbacks of a run or of Hydra)."""
    paths = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.mark.slow
def test_a_signalled_sweep_job_is_recorded_as_failed_and_the_sweep_exits_143(data, tmp_path):
    """Job 0 of a two-job sweep gets SIGTERM at step 3: Hydra records it as FAILED, job 1 never starts, the sweep
    exits with 143 without a traceback, and the job's folder resumes."""
    sweep, record = tmp_path / "sweep", tmp_path / "jobs.txt"
    args = ["-m", "schedule=linear,cosine", "debug=tiny", "data.check_md5=false", "callbacks.sample_grid=null",
            "data.train_size=128", "data.batch_size=16", "trainer.max_steps=8", "trainer.val_check_interval=4",
            f"data.root={data}", f"hydra.sweep.dir={sweep}", "+callbacks.signal._target_=test_run_end.SignalAt",
            "+callbacks.signal.step=3", f"+callbacks.signal.signum={int(signal.SIGTERM)}",
            "+hydra.callbacks.record._target_=test_faults.RecordJobs", f"+hydra.callbacks.record.path={record}"]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=with_tests_importable(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert record.read_text() == "0 FAILED\n" and "Traceback" not in proc.stderr
    (job,) = [p for p in sweep.iterdir() if p.is_dir()]
    assert job.name.startswith("0_") and f"stopped at step 3 of 8: resume with resume={job}" in proc.stdout
    assert load_checkpoint(job / "checkpoints" / "last.ckpt")["global_step"] == 3 and not (job / ".lock").exists()


DDP_STEPS = 100
DDP_RUN = ["trainer=ddp", "trainer.devices=2", *PLAIN_RUN, f"trainer.max_steps={DDP_STEPS}",
           f"trainer.val_check_interval={DDP_STEPS // 2}", "callbacks.periodic_checkpoint.every_n_train_steps=5",
           "callbacks.milestone_checkpoint=null"]


def wait_for(path: Path, procs: list, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "the run ended before the signal"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_under_ddp_saves_once_exits_143_on_every_rank_and_resumes_bitwise(data, tmp_path):
    """Two CPU ranks started as torchrun or SLURM start them (each its own process, so that each one's exit status
    can be read); SIGTERM reaches rank 0 only: the per-step reduce stops both after the same step, rank 0 saves and
    says so once, both exit with 143, and the run resumed on two processes ends bitwise as one never stopped."""
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    straight = tmp_path / "straight"
    run_script("train.py", *DDP_RUN, f"data.root={data}", f"hydra.run.dir={straight}")
    port = str(29500 + os.getpid() % 1000)
    procs, outputs = [], []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "WORLD_SIZE": "2", "NODE_RANK": "0", "LOCAL_RANK": str(rank)}
        outputs.append(open(tmp_path / f"rank{rank}.txt", "w+"))
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "train.py"), *DDP_RUN, f"data.root={data}",
                                       f"hydra.run.dir={run}"], cwd=ROOT, env=env, stdout=outputs[-1],
                                      stderr=subprocess.STDOUT))
    try:
        wait_for(last, procs)
        procs[0].send_signal(signal.SIGTERM)
        statuses = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    text = [out.seek(0) or out.read() for out in outputs]
    assert statuses == [143, 143], text[0][-3000:] + text[1][-3000:]
    step = load_checkpoint(last)["global_step"]
    assert 5 <= step < DDP_STEPS
    stops = [line for t in text for line in t.splitlines() if "stopped at step" in line and "WARNING" in line]
    assert len(stops) == 1 and stops[0].endswith(f"stopped at step {step} of {DDP_STEPS}: resume with resume={run}")
    run_script("train.py", f"resume={run}")
    assert load_checkpoint(last)["global_step"] == DDP_STEPS
    assert_bitwise_equal(weights(last), weights(straight / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_train_py_into_a_run_still_going_is_refused_in_one_line_and_changes_nothing(data, tmp_path):
    """A second training into the folder, and resume= of it, while the first trains: one line each naming the first
    one's process, exit status 2; its overrides, config and event file stay its own. Stopped, it lets the lock go."""
    run = tmp_path / "run"
    long_run = [*PLAIN_RUN, "trainer.max_steps=100000", "trainer.val_check_interval=50000",
                "callbacks.periodic_checkpoint.every_n_train_steps=5", f"data.root={data}"]
    first = start_train(tmp_path / "first.txt", *long_run, f"hydra.run.dir={run}")
    try:
        wait_for(run / "checkpoints" / "last.ckpt", [first])
        saved = {name: (run / ".hydra" / name).read_text() for name in ("overrides.yaml", "config.yaml")}
        refusals = {
            f"error: run folder {run} is in use by process {first.pid}, which trains into it: choose another with "
            f"hydra.run.dir=...": run_script("train.py", *long_run, "seed=4", f"hydra.run.dir={run}", check=False),
            f"error: resume={run}: the run is still going in process {first.pid}: let it end, or stop it (a SIGTERM "
            f"saves its step), then resume": run_script("train.py", f"resume={run}", check=False),
        }
        for message, proc in refusals.items():
            assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1:] == [message], proc.stderr[-2000:]
            assert not [line for line in proc.stderr.splitlines() if line.startswith("error:") and line != message]
        assert {name: (run / ".hydra" / name).read_text() for name in saved} == saved
        assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=600) == 143
    finally:
        first.kill()
    assert not (run / ".lock").exists()


class AtStep(L.Callback):
    """Does `action` (a dotted name of this module) with `path` at the end of optimizer step `step`."""

    def __init__(self, step: int, action: str, path: str = ""):
        self.step, self.action, self.path = step, action, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            getattr(sys.modules[__name__], self.action)(self.path)


def ctrl_c_twice(_: str) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)


def delete(path: str) -> None:
    shutil.rmtree(path)


def at_step(step: int, action: str, path: Path | str = "") -> list[str]:
    return ["+callbacks.at_step._target_=test_faults.AtStep", f"+callbacks.at_step.step={step}",
            f"+callbacks.at_step.action={action}", f"+callbacks.at_step.path='{path}'"]


def test_ctrl_c_twice_stops_at_once_in_one_line_and_resume_ends_bitwise(data, eight_steps, tmp_path, caplog):
    """The second Ctrl-C stops within the step, without saving it: last.ckpt of step 4 (the validation's) stays."""
    run, eight = tmp_path / "run", [*EIGHT, f"data.root={data}"]
    with pytest.raises(Stopped) as stopped:
        train(compose_train(run, [*eight, *at_step(5, "ctrl_c_twice")]))
    message = (f"stopped at once by a second SIGINT, without saving the step under way: resume with resume={run} "
               f"from its last checkpoint")
    assert str(stopped.value) == message and stopped.value.exit_status == 130
    assert [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()] == [message]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4 and not list(run.rglob("*.partial"))
    train(compose_train(run, [*eight, f"resume={run}"]))
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)


def test_a_checkpoint_folder_deleted_under_the_run_is_made_again_with_a_line(data, eight_steps, tmp_path, caplog):
    run = tmp_path / "run"
    train(compose_train(run, [*EIGHT, f"data.root={data}", *at_step(5, "delete", run / "checkpoints")]))
    lines = [r.getMessage() for r in caplog.records if "was deleted" in r.getMessage()]
    assert lines == [f"{run / 'checkpoints'} was deleted while the run went on: made again for "
                     f"milestone_step_000006.ckpt (step 6); the checkpoints it held are lost"]
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)


def test_a_data_folder_that_vanishes_mid_run_changes_nothing_and_resume_names_the_missing_file(
    data, eight_steps, tmp_path, monkeypatch
):
    """The training and validation images are in memory from the start: the run ends as it would have. Resumed
    later without them, it is refused in one line before anything is written."""
    copy, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(data, copy)
    options = [*EIGHT, f"data.root={copy}"]
    train(compose_train(run, [*options, *at_step(2, "delete", copy)]))
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)
    before = files(run)
    with pytest.raises(MNISTFileError, match=r"train-images-idx3-ubyte\.gz is missing"):
        train(compose_train(run, [*options, f"resume={run}", "trainer.max_steps=10", "data.download=false"]))
    def offline(*args, **kwargs):  # torchvision's message on a machine without network, three lines
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example/mnist/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(MNISTFileError, match=r"the download failed \(RuntimeError: Error downloading "
                                             r"train-images-idx3-ubyte\.gz: Tried https://example/mnist/, got: "
                                             r"<urlopen error \[Errno -2\] Name or service not known>\): put the four"):
        train(compose_train(run, [*options, f"resume={run}", "trainer.max_steps=10", "data.download=true"]))
    assert files(run) == before


def test_the_last_checkpoint_is_found_by_its_step_not_by_a_clock_set_back(uninterrupted, tmp_path):
    """The checkpoint named after a failed step is the latest by step, whatever the files' times say."""
    for name in ("at_007.ckpt", "last.ckpt"):
        shutil.copy(uninterrupted / "checkpoints" / name, tmp_path / name)
    os.utime(tmp_path / "last.ckpt", (0, 0))  # written when the clock said 1970
    trainer = SimpleNamespace(checkpoint_callbacks=[SimpleNamespace(dirpath=str(tmp_path))])
    assert last_good_checkpoint(trainer).startswith(f"{tmp_path / 'last.ckpt'} (step {STEPS}) is kept")


def test_a_run_in_a_folder_with_spaces_and_non_ascii_letters_resumes_from_the_line_it_printed(
    data, eight_steps, tmp_path
):
    run, eight = tmp_path / "rün 1", [*EIGHT, f"data.root={data}"]
    with pytest.raises(Stopped) as stopped:
        train(compose_train(run, [*eight, *signal_at(3, signal.SIGTERM)]))
    typed = str(stopped.value).split("resume with ")[1]
    assert typed == f"'resume=\"{run}\"'"
    argv = prepare_argv(["train.py", *shlex.split(typed)])  # as the shell passes it on
    assert argv[-1] == f'hydra.run.dir="{run}"'
    train(compose_train(run, argv[1:-1]))
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)


@pytest.mark.slow
def test_a_full_temporary_folder_does_not_stop_a_run(data, tmp_path):
    """TMPDIR (and matplotlib's cache) on a filesystem with no byte left: train.py, grids included, needs none."""
    with small_filesystem(tmp_path / "tmp", 16 * 1024) as full:
        subprocess.run(["dd", "if=/dev/zero", f"of={full / 'fill'}", "bs=1k", "count=64"], capture_output=True)
        env = {**os.environ, "TMPDIR": str(full), "MPLCONFIGDIR": str(full / "matplotlib")}
        args = ["debug=tiny", "data.check_md5=false", "data.train_size=128", "data.batch_size=16",
                "trainer.max_steps=2", "trainer.val_check_interval=2", "callbacks.sample_grid.sampler.steps=2",
                f"data.root={data}", f"hydra.run.dir={tmp_path / 'run'}"]
        proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "run" / "grids" / "step_000002.png").is_file()


def test_a_stop_crosses_a_process_boundary_with_its_signal():
    """submitit and Ray send a job's exception back pickled: a stop must arrive as a stop by the same signal (it
    once arrived as a TypeError, since Exception's reduce rebuilds from the message alone)."""
    import pickle

    from ddpm.errors import Stopped

    stop = pickle.loads(pickle.dumps(Stopped("stopped at step 16 of 60: resume with resume=run", signal.SIGTERM)))
    assert isinstance(stop, Stopped) and str(stop) == "stopped at step 16 of 60: resume with resume=run"
    assert stop.signum == signal.SIGTERM and stop.exit_status == 143
