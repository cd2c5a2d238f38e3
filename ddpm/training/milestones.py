"""Checkpoints at fixed fractions of a run, for quality against training length."""

from pathlib import Path

import lightning as L

from ddpm.errors import ConfigError


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
