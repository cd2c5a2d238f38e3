"""How a run ends: a signal saves its state, says how to resume and exits with 128 + the signal number; a finished
run is not resumed into a new event file; the data order is part of the checkpoint; TensorBoard's HPARAMS tab gets
every run's settings and status beside its metrics."""

import os
import signal
import subprocess
import sys
import time
import warnings

import lightning as L
import pytest
import torch
from conftest import ROOT, TINY, compose_train, make_synthetic_mnist, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

import ddpm.commands.train as train_command
from ddpm.commands.train import objective, train
from ddpm.errors import ConfigError, Stopped
from ddpm.training.checkpoint import CheckpointError, load_checkpoint

# 128 training images in batches of 16: 8 batches an epoch.
RUN = [*TINY, "data.check_md5=false", "callbacks.sample_grid=null", "data.train_size=128", "data.batch_size=16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_mnist(tmp_path_factory.mktemp("data"))


def files(folder) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def weights(path) -> dict:
    checkpoint = load_checkpoint(path)
    return {**{f"ema.{k}": v for k, v in checkpoint["state_dict"].items()},
            **{f"raw.{k}": v for k, v in checkpoint["current_model_state"].items()}}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


class SignalAt(L.Callback):
    """Sends this process `signum` at the end of optimizer step `step`, as `kill` from outside would."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


EIGHT = [*RUN, "trainer.max_steps=8", "trainer.val_check_interval=4"]


@pytest.fixture(scope="module")
def eight_steps(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("eight") / "run"
    train(compose_train(run, [*EIGHT, f"data.root={data}"]))
    return weights(run / "checkpoints" / "last.ckpt")


def signal_at(step: int, signum: int) -> list[str]:
    return ["+callbacks.signal._target_=test_run_end.SignalAt", f"+callbacks.signal.step={step}",
            f"+callbacks.signal.signum={int(signum)}"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_it_came_in_and_resume_ends_bitwise_as_an_uninterrupted_run(
    data, eight_steps, tmp_path, caplog, signum
):
    run = tmp_path / "run"
    with pytest.raises(Stopped) as stopped:
        train(compose_train(run, [*EIGHT, f"data.root={data}", *signal_at(3, signum)]))
    assert stopped.value.exit_status == 128 + signum and str(stopped.value) == (
        f"stopped at step 3 of 8: resume with resume={run}")
    assert [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()] == [str(stopped.value)]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3  # mid-epoch: 8 batches an epoch
    assert hparams_of(run)[1] == api_pb2.STATUS_FAILURE  # in TensorBoard's HPARAMS tab too
    train(compose_train(run, [*EIGHT, f"data.root={data}", f"resume={run}"]))
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)


def test_a_signal_with_the_last_step_lets_the_run_finish_and_still_stops(data, eight_steps, tmp_path):
    """A sweep given a signal as one of its runs ends must not start the next."""
    run = tmp_path / "run"
    with pytest.raises(Stopped, match=r"^stopped as the run finished at step 8 of 8: its checkpoints are complete$"):
        train(compose_train(run, [*EIGHT, f"data.root={data}", *signal_at(8, signal.SIGTERM)]))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert_bitwise_equal(weights(run / "checkpoints" / "last.ckpt"), eight_steps)


def test_resume_of_a_finished_run_is_refused_before_anything_is_written(data, tmp_path):
    run = tmp_path / "run"
    options = [*RUN, f"data.root={data}", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    train(compose_train(run, options))
    before = files(run)
    with pytest.raises(CheckpointError) as refused:
        train(compose_train(run, [*options, f"resume={run}"]))
    assert str(refused.value) == (
        f"resume={run}: the run is finished at step 2 of 2: raise trainer.max_steps=4 (or any number above 2) to "
        f"train further, or sample from {run / 'checkpoints' / 'last.ckpt'}"
    )
    assert files(run) == before
    # The same checkpoint with a raised trainer.max_steps continues.
    train(compose_train(run, [*options, f"resume={run}", "trainer.max_steps=3"]))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_a_metric_not_logged_by_a_run_that_logged_none_lists_no_empty_choice(data, tmp_path, monkeypatch):
    cfg = compose_train(tmp_path / "run", [*RUN, f"data.root={data}"])
    monkeypatch.setattr(train_command, "train", lambda cfg: {})
    with pytest.raises(ConfigError, match=r"^optimized_metric=val/loss was not logged: the run logged no metric \("):
        objective(cfg)
    monkeypatch.setattr(train_command, "train", lambda cfg: {"train/loss": 1.0, "val/loss": 0.5})
    cfg.optimized_metric = "metrics/fid"
    with pytest.raises(ConfigError, match=r"was not logged: use one of train/loss, val/loss$"):
        objective(cfg)


def test_mid_epoch_resume_restores_the_data_order_from_the_checkpoint(data, tmp_path):
    """The loader's place in the epoch is saved with Lightning's loop state and restored from there: Lightning no
    longer warns that the loader is not resumable, the resumed run ends with the uninterrupted one's weights, bit for
    bit, and a checkpoint whose saved place is moved resumes on other batches."""
    options = [*RUN, f"data.root={data}", "trainer.max_steps=12", "trainer.val_check_interval=6",
               "callbacks.periodic_checkpoint.every_n_train_steps=5", "callbacks.periodic_checkpoint.save_top_k=-1",
               "callbacks.periodic_checkpoint.filename='at_{step:03d}'",
               "+callbacks.periodic_checkpoint.auto_insert_metric_name=false"]
    train(compose_train(tmp_path / "whole", options))
    start = tmp_path / "whole" / "checkpoints" / "at_005.ckpt"
    checkpoint = torch.load(start, weights_only=True)
    assert checkpoint["global_step"] == 5
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batch": 5}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(compose_train(tmp_path / "resumed", [*options, f"ckpt_path={start}"]))
    assert not [w for w in caught if "not resumable" in str(w.message)]
    final = [run / "checkpoints" / "last.ckpt" for run in (tmp_path / "whole", tmp_path / "resumed")]
    assert load_checkpoint(final[1])["global_step"] == 12
    assert_bitwise_equal(weights(final[0]), weights(final[1]))

    checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] = [{"epoch": 0, "batch": 0}]
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    train(compose_train(tmp_path / "moved", [*options, f"ckpt_path={moved}"]))
    other = weights(tmp_path / "moved" / "checkpoints" / "last.ckpt")
    assert any(not torch.equal(other[k], v) for k, v in weights(final[0]).items())


def hparams_of(run) -> tuple[dict, int, EventAccumulator]:
    """The session-start hyperparameters and session-end status that TensorBoard's HPARAMS tab reads from a run."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    return values, end.status, events


def test_every_run_logs_its_settings_and_status_for_the_hparams_tab(data, tmp_path):
    sweep, final = tmp_path / "sweep", {}
    for schedule in ("linear", "cosine"):
        options = [*RUN, f"data.root={data}", f"schedule={schedule}", "trainer.max_steps=2",
                   "trainer.val_check_interval=2"]
        final[schedule] = train(compose_train(sweep / schedule, options))
    linear, linear_status, linear_events = hparams_of(sweep / "linear")
    cosine, cosine_status, cosine_events = hparams_of(sweep / "cosine")
    assert linear_status == cosine_status == api_pb2.STATUS_SUCCESS
    assert linear["schedule"] == "linear" and cosine["schedule"] == "cosine"
    assert linear["schedule.beta_end"] == pytest.approx(0.02) and cosine["schedule.s"] == pytest.approx(0.008)
    for values in (linear, cosine):
        assert values["schedule.timesteps"] == 100 and values["model"] == "tiny" and values["model.channels"] == 12
        assert values["module.prediction"] == "eps" and values["module.min_snr_gamma"] == "null"
        assert values["module.lr"] == pytest.approx(1e-3) and values["module.cosine_decay"] is False
        assert values["trainer.max_steps"] == 2 and values["data.batch_size"] == 16 and values["seed"] == 0
        assert values["callbacks.ema.decay"] == pytest.approx(0.999)
    # The tab takes a session's metrics from the scalars of its run, at their last step: the final ones.
    for schedule, events in (("linear", linear_events), ("cosine", cosine_events)):
        for name in ("val/loss", "val_at_logsnr/+0"):
            assert events.Scalars(name)[-1].value == pytest.approx(final[schedule][name])


def start_train(output, *args: str) -> subprocess.Popen:
    """`python train.py args...` in the background, its output into the file `output` (a pipe that nobody reads
    while the test waits could fill up and stall it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    with open(output, "w") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, text=True,
                                stdout=out, stderr=subprocess.STDOUT)


STEPS = 300
SIGNAL_RUN = [*RUN, f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS // 2}",
              "callbacks.periodic_checkpoint.every_n_train_steps=5", "callbacks.milestone_checkpoint=null"]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_script("train.py", *SIGNAL_RUN, f"data.root={data}", f"hydra.run.dir={run}")
    return run


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_the_step_exits_128_plus_it_and_resume_ends_bitwise_as_an_uninterrupted_run(
    data, uninterrupted, tmp_path, signum, status
):
    run = tmp_path / "run"
    output = tmp_path / "output.txt"
    proc = start_train(output, *SIGNAL_RUN, f"data.root={data}", f"hydra.run.dir={run}")
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    proc.wait(timeout=600)
    out = output.read_text()
    assert proc.returncode == status, out[-3000:]
    step = load_checkpoint(last)["global_step"]
    assert 5 <= step < STEPS
    lines = [line for line in out.splitlines() if "stopped at step" in line]
    assert len(lines) == 1 and lines[0].endswith(f"stopped at step {step} of {STEPS}: resume with resume={run}")

    run_script("train.py", f"resume={run}")
    assert load_checkpoint(last)["global_step"] == STEPS
    assert_bitwise_equal(weights(last), weights(uninterrupted / "checkpoints" / "last.ckpt"))

    before = files(run)
    refused = run_script("train.py", f"resume={run}", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: resume={run}: the run is finished at step {STEPS} of {STEPS}: raise trainer.max_steps={2 * STEPS} "
        f"(or any number above {STEPS}) to train further, or sample from {last}"
    ]
    assert files(run) == before
