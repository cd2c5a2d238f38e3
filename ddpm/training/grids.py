"""The sample grid drawn at every validation, with the EMA weights validation ran with."""

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger

from ddpm.data.images import grid, save_grid
from ddpm.errors import ConfigError
from ddpm.sampling.generate import digit_grid
from ddpm.sampling.guidance import check_interval
from ddpm.sampling.samplers import Sampler
from ddpm.sampling.setting import stored_setting
from ddpm.validation import boolean, integer, number, text


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
        images = digit_grid(pl_module, self.sampler, self.guidance, self.seed, self.guidance_interval, self.clip_x0)
        save_grid(images, self.dirpath / f"step_{trainer.global_step:06d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid(images), trainer.global_step)
