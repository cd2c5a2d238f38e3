"""Callbacks that belong to diffusion training rather than to Lightning in general."""

import logging
import signal
import threading
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint, WeightAveraging
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from ddpm.data.images import grid, save_grid
from ddpm.errors import ConfigError, Stopped, argument
from ddpm.sampling.generate import generate
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.samplers import Sampler
from ddpm.sampling.setting import stored_setting
from ddpm.validation import boolean, integer, number, text

log = logging.getLogger(__name__)


def grid_labels(rows: int = 10, per_row: int = 10) -> torch.Tensor:
    """Row k holds digit k."""
    return torch.arange(rows).repeat_interleave(per_row)


class EMAValidationCallback(L.Callback):
    """Work at the end of validation with the weights validation ran with: the EMA weights when
    EMAWeightAveraging is on. Lightning calls callbacks in list order and the EMA callback swaps the training
    weights back in its own on_validation_epoch_end, so subclasses must come before it; `setup` checks that.
    Runs on rank 0 only, and not during the sanity check."""

    def setup(self, trainer, pl_module, stage):
        averaging = [i for i, c in enumerate(trainer.callbacks) if isinstance(c, WeightAveraging)]
        if averaging and trainer.callbacks.index(self) > averaging[0]:
            raise ConfigError(f"{type(self).__name__} must come before the EMA callback in callbacks, or it sees the "
                              f"raw weights")

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.is_global_zero:
            self.on_ema_validation_end(trainer, pl_module)

    def on_ema_validation_end(self, trainer, pl_module):
        raise NotImplementedError


class SampleGrid(EMAValidationCallback):
    """A 10x10 grid (row k = digit k, the same noise every time) at every validation, logged to TensorBoard and
    saved as `dirpath/step_XXXXXX.png`. Its setting is the recipe's (conf/sampling/, chosen by the experiment yaml),
    and every checkpoint carries it as "sampling", for sample.py and ddpm-evaluate to draw with what the grids showed.
    `sampler` is a config (the callback is built with _recursive_: false) so that the checkpoint can hold it."""

    def __init__(self, sampler: dict, dirpath: str, guidance: float = 2.0, seed: int = 0, clip_x0: bool = True,
                 guidance_interval: list[float] | None = None):
        self.sampler: Sampler = instantiate(sampler)
        self.dirpath = Path(text("callbacks.sample_grid.dirpath", dirpath))
        self.guidance = number("callbacks.sample_grid.guidance", guidance, low=0, hint=" (0: no guidance)")
        self.seed = integer("callbacks.sample_grid.seed", seed, low=0, high=2**32 - 1)
        self.clip_x0 = boolean("callbacks.sample_grid.clip_x0", clip_x0)
        self.guidance_interval = check_interval("callbacks.sample_grid.guidance_interval", guidance_interval)
        self.setting = stored_setting(sampler, self.guidance, self.guidance_interval)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["sampling"] = self.setting

    def on_ema_validation_end(self, trainer, pl_module):
        labels = grid_labels() if pl_module.conditional else None
        images = generate(pl_module, self.sampler, 100, labels, self.guidance, self.seed, self.clip_x0,
                          guidance_interval=self.guidance_interval).images
        save_grid(images, self.dirpath / f"step_{trainer.global_step:06d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid(images), trainer.global_step)


class MilestoneCheckpoints(L.Callback):
    """Keeps the weights at fractions of the run, `dirpath/milestone_step_XXXXXX.ckpt` (EMA weights as state_dict,
    like every checkpoint here), so that quality can be measured against training length; last.ckpt holds the end.
    ModelCheckpoint(every_n_train_steps=...) would need the step count, which depends on trainer.max_steps."""

    def __init__(self, dirpath: str, fractions: tuple[float, ...] = (0.25, 0.5, 0.75)):
        if not all(0 < f < 1 for f in fractions):
            raise ConfigError(f"callbacks.milestone_checkpoint.fractions={list(fractions)}: each must lie in (0, 1)")
        self.dirpath = Path(dirpath)
        self.fractions = tuple(fractions)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if trainer.max_steps <= 0 or step not in {round(f * trainer.max_steps) for f in self.fractions}:
            return
        path = self.dirpath / f"milestone_step_{step:06d}.ckpt"
        if not path.exists():  # with gradient accumulation this hook runs several times per step
            trainer.save_checkpoint(path, weights_only=False)  # full, so that a run can also resume from it


class EMAUpdate:
    """One step of the weight average, as AveragedModel calls it: `average, current, n` with n the updates so far.

    A constant `decay` forgets the start of training at a fixed rate: with decay 0.999 the first thousand steps of
    a short run, random weights included, still weigh in at its end. The power function of Karras et al. 2024
    ("Analyzing and improving the training dynamics of diffusion models", eq. 3) instead uses
    beta_t = (1 - 1/t)^(gamma + 1) at update t, an average whose length is a fixed fraction of the run so far
    (its relative width sigma_rel, eq. 4, e.g. gamma 6.94 -> 0.10), for a run of any length. A class rather than a
    closure, so that the callback pickles (trainer=ddp_spawn sends it to its workers)."""

    def __init__(self, decay: float = 0.999, power: float | None = None):
        self.decay, self.power = decay, power

    def beta(self, updates: int) -> float:
        if self.power is None:
            return self.decay
        return (1 - 1 / (updates + 1)) ** (self.power + 1)  # t = updates + 1: the first update after the copy is t=2

    @torch.no_grad()
    def __call__(self, average: torch.Tensor, current: torch.Tensor, updates) -> torch.Tensor:
        beta = self.beta(int(updates))
        return beta * average + (1 - beta) * current


def power_sigma_rel(power: float) -> float:
    """The relative width of a power-function average (Karras et al. 2024, eq. 4)."""
    return (power + 1) ** 0.5 * (power + 2) ** -1 * (power + 3) ** -0.5


class EMAWeightAveraging(LightningEMA):
    """Lightning's EMA callback with the power-function average beside the constant decay (EMAUpdate) and a
    picklable update. `power` (gamma) set: the power function, and `decay` is not used. Same class name as before,
    so its state in checkpoints keeps its key."""

    def __init__(self, decay: float = 0.999, power: float | None = None, **kwargs):
        super().__init__(decay=decay, **kwargs)
        self.decay, self.power = decay, power
        # Lightning's own average is a closure over `decay` (not picklable, no power function): replaced here.
        self._kwargs["avg_fn"] = EMAUpdate(decay, power)
        if power is not None:
            log.info(f"EMA: power function, gamma {power:g} (sigma_rel {power_sigma_rel(power):.3f})")


class StopCheckpoint(Checkpoint):
    """SIGTERM or SIGINT during training: the step under way is finished, `run_dir/checkpoints/last.ckpt` is saved
    (through the trainer's checkpoint IO, which writes atomically), one line says how to resume, and `Stopped` is
    raised, so that the command exits with 128 + the signal number instead of 0. A second signal (Ctrl-C twice)
    stops at once, with its own line: the step under way is not saved, and a checkpoint being written is left out
    whole (its temporary file removed), so the last one saved is what resume= continues from; a third one kills.

    Lightning's own handling is not enough: its SIGTERM handler makes the loops raise SIGTERMException, a SystemExit
    with status 0, also in the middle of a validation, when the EMA callback has swapped the averaged weights in; and
    SIGINT raises KeyboardInterrupt wherever it lands. So this callback takes both signals over once Lightning has set
    its handlers (Lightning restores the ones it found when fit ends) and stops only between two optimizer steps, where
    the periodic checkpoint is saved too, the state tests/test_faults.py resumes bitwise. A Checkpoint, so that
    Lightning calls it after the other callbacks, the EMA update of the step included."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self.dirpath = self.run_dir / "checkpoints"  # where every Checkpoint callback keeps its files
        self.received: int | None = None

    def setup(self, trainer, pl_module, stage):
        self.received = None

    def _listen(self) -> None:
        if threading.current_thread() is threading.main_thread():  # the only thread that may set handlers
            for signum in self.SIGNALS:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            return
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        message = (f"stopped at once by a second {signal.Signals(signum).name}, without saving the step under way: "
                   f"resume with {argument('resume', self.run_dir)} from its last checkpoint")
        if rank_zero_only.rank == 0:
            log.warning(message)
        raise Stopped(message, signum)

    def on_sanity_check_start(self, trainer, pl_module):
        self._listen()

    def on_train_start(self, trainer, pl_module):
        self._listen()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning's handler has SIGTERM until this one takes over: its flag covers one that came in between.
        received = self.received or (signal.SIGTERM if trainer.received_sigterm else 0)
        if trainer.world_size > 1:  # all ranks stop after the same step, also when only rank 0 got the signal
            received = int(trainer.strategy.reduce(torch.tensor(received, device=pl_module.device), reduce_op="max"))
        accumulating = (batch_idx + 1) % trainer.accumulate_grad_batches != 0
        if not received or accumulating or 0 < trainer.max_steps <= trainer.global_step:
            return  # no signal, in the middle of a step, or the last step: that run ends as planned
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)  # what resume=<run folder> reads
        self._stop(trainer, f"stopped at step {trainer.global_step} of {trainer.max_steps}: resume with "
                            f"{argument('resume', self.run_dir)}", received)

    def stop_if_signalled(self, trainer) -> None:
        """After fit: a signal that came with the last step or after it (in the final validation) let the run
        finish, and the process still stops as asked, so that a -m sweep does not go on to its next job."""
        if self.received:
            self._stop(trainer, f"stopped as the run finished at step {trainer.global_step} of {trainer.max_steps}: "
                                f"its checkpoints are complete", self.received)

    @staticmethod
    def _stop(trainer, message: str, signum: int) -> None:
        if trainer.is_global_zero:
            log.warning(message)
        raise Stopped(message, signum)


class HparamsSummary(L.Callback):
    """The run's settings (`params`: flat, plain values) in TensorBoard's HPARAMS tab: a session-start summary when
    training starts, a session-end one (success, or failure when it stopped or failed) when it ends. The tab takes
    a session's metrics from the scalars of its run (val/loss, val_at_logsnr/*, metrics/fid, ...), at their last
    step, so a running run shows its latest values. No experiment summary: TensorBoard reads one run's only and would
    hide the settings other runs of a sweep have (a cosine schedule's s beside a linear one's beta_end); without it,
    it gathers them from every run's session start."""

    def __init__(self, params: dict):
        self.params = params

    def on_train_start(self, trainer, pl_module):
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for name, value in self.params.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value = value
            else:
                start.hparams[name].string_value = "null" if value is None else str(value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        self._write(trainer, metadata.SESSION_START_INFO_TAG, data)

    def on_train_end(self, trainer, pl_module):
        self._end(trainer, api_pb2.STATUS_SUCCESS)

    def on_exception(self, trainer, pl_module, exception):
        self._end(trainer, api_pb2.STATUS_FAILURE)

    def _end(self, trainer, status) -> None:
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        self._write(trainer, metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))

    @staticmethod
    def _write(trainer, tag: str, data) -> None:
        if not trainer.is_global_zero:
            return
        value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # At the run's step, as Lightning logs its scalars: TensorBoard drops a tag's events that a later
                # one of the same tag steps back behind.
                logger.experiment.file_writer.add_summary(Summary(value=[value]), trainer.global_step)
