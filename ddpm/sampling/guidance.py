"""Classifier-free guidance (Ho & Salimans 2022), its one rule and its interval, behind one model wrapper that every
sampler calls, as k-diffusion's CFGDenoiser is: out = cond + w (cond - uncond).

The rule: guidance mixes a class-conditional prediction with the unconditional one, so sampling without labels (an
unconditional model, or unconditional=true) has nothing to guide and uses w = 0 whatever `guidance` says.

The interval (Kynkaanniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and Distribution
Quality"): w applies only at the steps whose log-SNR, log(alpha_bar / (1 - alpha_bar)) of the run's own schedule,
lies in [lo, hi], so that one setting means the same noise levels under every schedule. Elsewhere the step is
unguided and costs one forward pass (the conditional one), not two.
"""

import math
from collections.abc import Sequence

import torch

from ddpm.validation import number, refuse, show


def guidance_scale(guidance: float, conditional: bool) -> float:
    """The w a request samples with: `guidance`, or 0 when there are no labels to guide towards."""
    return float(guidance) if conditional else 0.0


def check_interval(key: str, value) -> tuple[float, float] | None:
    """A guidance interval [lo, hi] of log-SNR values with lo <= hi (an end may be -inf or inf: open on that side),
    or None (null: every step)."""
    if value is None:
        return None
    allowed = "[lo, hi] with lo <= hi, log-SNR values, e.g. [-2, 4], or null for every step"
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise refuse(key, value, allowed)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in value):
        raise refuse(key, value, allowed)
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise refuse(key, value, allowed)
    return lo, hi


def show_interval(interval: tuple[float, float] | None) -> str:
    """The interval as a results table and a cache key write it: "" for null (every step), else "[lo,hi]"."""
    return "" if interval is None else show([f"{v:g}" for v in interval])


class Guided:
    """The network as a sampler sees it: the (guided) model output at (x, t) for a batch at one timestep t, with the
    guidance rule and interval applied, and the forward passes counted per image (`nfe`: a guided step costs two,
    an unguided one one).

    net(x, t, labels) is the denoising network (with `null_label`, the label of its unconditional half); `log_snr`
    maps a timestep to its log-SNR (GaussianDiffusion.log_snr), needed only with an interval."""

    def __init__(self, net, labels: torch.Tensor | None = None, guidance: float = 0.0,
                 interval: tuple[float, float] | None = None, log_snr=None):
        number("guidance", guidance, low=0, hint=" (0: no guidance; larger: more legible, less varied digits)")
        self.net, self.labels = net, labels
        self.scale = guidance_scale(guidance, labels is not None)
        self.interval = check_interval("guidance_interval", interval)
        self.log_snr = log_snr
        self.nfe = 0

    def guided_at(self, t: int) -> bool:
        if self.scale == 0:
            return False
        if self.interval is None:
            return True
        lo, hi = self.interval
        return lo <= self.log_snr(t) <= hi

    def planned_nfe(self, timesteps: list[int]) -> int:
        """The forward passes per image that a run over `timesteps` costs: what `nfe` counts as the run goes."""
        return sum(2 if self.guided_at(t) else 1 for t in timesteps)

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        batch_t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if not self.guided_at(t):
            self.nfe += 1
            return self.net(x, batch_t, self.labels)
        self.nfe += 2
        # Both halves in one batched forward pass.
        null = torch.full_like(self.labels, self.net.null_label)
        both = self.net(torch.cat([x, x]), torch.cat([batch_t, batch_t]), torch.cat([self.labels, null]))
        cond, uncond = both.chunk(2)
        return cond + self.scale * (cond - uncond)
