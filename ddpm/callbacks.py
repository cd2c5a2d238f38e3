"""Callbacks that belong to diffusion training rather than to Lightning in general."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger

from ddpm.images import grid, save_grid
from ddpm.samplers import Sampler
from ddpm.errors import ConfigError


def fixed_noise(n: int, seed: int, shape=(1, 28, 28)) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def grid_labels(rows: int = 10, per_row: int = 10) -> torch.Tensor:
    """Row k holds digit k."""
    return torch.arange(rows).repeat_interleave(per_row)


class SampleGrid(L.Callback):
    """At the end of every validation, sample a 10x10 grid (row k = digit k, the same noise every time) with the
    weights validation ran with (the EMA weights when EMAWeightAveraging is on), log it to TensorBoard and save
    it as `dirpath/step_XXXXXX.png`.

    It must run before the EMA callback swaps the training weights back, so it has to come first in the
    callback list; `setup` checks that."""

    def __init__(self, sampler: Sampler, dirpath: str, guidance: float = 2.0, seed: int = 0, clip_x0: bool = True):
        self.sampler = sampler
        self.dirpath = Path(dirpath)
        self.guidance = guidance
        self.seed = seed
        self.clip_x0 = clip_x0
        self.last_path: Path | None = None

    def setup(self, trainer, pl_module, stage):
        averaging = [i for i, c in enumerate(trainer.callbacks) if isinstance(c, WeightAveraging)]
        if averaging and trainer.callbacks.index(self) > averaging[0]:
            raise ConfigError("SampleGrid must come before the EMA callback in callbacks, or its grids use the raw weights")

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        labels = grid_labels().to(pl_module.device) if pl_module.conditional else None
        noise = fixed_noise(100, self.seed).to(pl_module.device)
        result = self.sampler.sample(
            pl_module.net,
            pl_module.diffusion,
            noise,
            labels,
            guidance=self.guidance if pl_module.conditional else 0.0,
            clip_x0=self.clip_x0,
            generator=torch.Generator().manual_seed(self.seed + 1),
        )
        self.last_path = save_grid(result.images, self.dirpath / f"step_{trainer.global_step:06d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid(result.images), trainer.global_step)
