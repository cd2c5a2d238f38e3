"""The weight average of training: Lightning's EMA callback with a constant decay or the power function."""

import logging

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA

log = logging.getLogger(__name__)


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
