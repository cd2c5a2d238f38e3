"""Callbacks that belong to diffusion training rather than to Lightning in general."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim.swa_utils import get_ema_avg_fn

from ddpm.data.images import grid, save_grid
from ddpm.errors import ConfigError
from ddpm.sampling.generate import generate
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.samplers import Sampler
from ddpm.validation import boolean, integer, number, text


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
    saved as `dirpath/step_XXXXXX.png`."""

    def __init__(self, sampler: Sampler, dirpath: str, guidance: float = 2.0, seed: int = 0, clip_x0: bool = True,
                 guidance_interval: list[float] | None = None):
        self.sampler = sampler
        self.dirpath = Path(text("callbacks.sample_grid.dirpath", dirpath))
        self.guidance = number("callbacks.sample_grid.guidance", guidance, low=0, hint=" (0: no guidance)")
        self.seed = integer("callbacks.sample_grid.seed", seed, low=0, high=2**32 - 1)
        self.clip_x0 = boolean("callbacks.sample_grid.clip_x0", clip_x0)
        self.guidance_interval = check_interval("callbacks.sample_grid.guidance_interval", guidance_interval)

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


class EMAWeightAveraging(LightningEMA):
    """Lightning's EMA callback, picklable: trainer=ddp_spawn pickles the trainer with its callbacks for its workers,
    and Lightning's keeps its average function as a closure over `decay`, rebuilt here after unpickling. Same class
    name, so its state in checkpoints keeps its key."""

    def __init__(self, decay: float = 0.999, **kwargs):
        super().__init__(decay=decay, **kwargs)
        self.decay = decay

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_kwargs"] = {k: v for k, v in self._kwargs.items() if k != "avg_fn"}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)
