"""Reverse-process samplers. Each one picks the timesteps it visits and how to step from x_t to x_{t_prev};
the loop, classifier-free guidance and x0 clipping are shared.

Guidance follows Ho & Salimans 2022: out = cond + w * (cond - uncond); w = 0 is plain conditional sampling.
The conditional and unconditional predictions come from one batched forward pass.
"""

from dataclasses import dataclass, field

import torch

from ddpm.diffusion import GaussianDiffusion, extract
from ddpm.errors import ConfigError


@dataclass
class SampleResult:
    images: torch.Tensor  # x_0 in [-1, 1]
    trajectory: list = field(default_factory=list)  # (t, x_t) pairs, first = pure noise, last = x_0


def guided_output(model, x: torch.Tensor, t: torch.Tensor, labels, guidance: float) -> torch.Tensor:
    if labels is None or guidance == 0:
        return model(x, t, labels)
    null = torch.full_like(labels, model.null_label)
    cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return cond + guidance * (cond - uncond)


class Sampler:
    def timesteps(self, T: int) -> list[int]:
        """The timesteps visited, in decreasing order."""
        raise NotImplementedError

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        raise NotImplementedError

    def reset(self):
        """Forget state carried between steps (multistep solvers)."""

    @torch.inference_mode()
    def sample(
        self,
        model,
        diffusion: GaussianDiffusion,
        noise: torch.Tensor,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
        clip_x0: bool = True,
        generator: torch.Generator | None = None,
        trajectory_frames: int = 0,
        progress=None,
    ) -> SampleResult:
        """Run the reverse process from `noise`. Randomness comes only from `generator` (CPU), so a seed fixes
        the result. `progress` wraps the step iterator (e.g. tqdm)."""
        if guidance < 0:
            raise ConfigError(f"guidance={guidance} is negative: use 0 (no guidance) or a positive scale such as 2")
        steps = self.timesteps(diffusion.timesteps)
        record = set(torch.linspace(0, len(steps) - 1, trajectory_frames - 1).round().long().tolist()) if trajectory_frames > 1 else set()
        self.reset()
        x = noise
        trajectory = [(diffusion.timesteps, x.cpu())] if record else []
        pairs = list(zip(steps, steps[1:] + [-1]))
        for i, (t_now, t_prev) in enumerate(progress(pairs) if progress else pairs):
            t = torch.full((x.shape[0],), t_now, device=x.device, dtype=torch.long)
            out = guided_output(model, x, t, labels, guidance)
            x0, eps = diffusion.split_prediction(out, x, t)
            if clip_x0:
                x0 = x0.clamp(-1, 1)
                eps = (x - extract(diffusion.sqrt_alphas_cumprod, t, x.ndim) * x0) / extract(
                    diffusion.sqrt_one_minus_alphas_cumprod, t, x.ndim
                )
            x = self.step(diffusion, x, x0, eps, t_now, t_prev, generator)
            if i in record:
                trajectory.append((max(t_prev, 0), x.cpu()))
        return SampleResult(x.clamp(-1, 1) if clip_x0 else x, trajectory)


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same images on every device.
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


class DDPMSampler(Sampler):
    """Ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2). `variance` picks the reverse variance:
    'posterior' (beta~_t, the lower bound) or 'beta' (beta_t, the upper bound)."""

    def __init__(self, variance: str = "posterior"):
        if variance not in ("posterior", "beta"):
            raise ConfigError(f"unknown DDPM variance {variance!r}: use 'posterior' or 'beta'")
        self.variance = variance

    def timesteps(self, T: int) -> list[int]:
        return list(range(T - 1, -1, -1))

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        mean, variance, _ = diffusion.q_posterior(x0, x, tt)
        if t == 0:
            return mean
        if self.variance == "beta":
            variance = extract(diffusion.betas, tt, x.ndim)
        return mean + variance.sqrt() * _randn_like(x, generator)

    def __repr__(self) -> str:
        return f"DDPMSampler(variance={self.variance!r})"


class DDIMSampler(Sampler):
    """Song et al. 2021: a non-Markovian reverse process over any `steps` <= T timesteps, evenly spaced from T-1
    down to 0. eta = 0 is deterministic; eta = 1 over all T steps is DDPM with the posterior variance."""

    def __init__(self, steps: int = 50, eta: float = 0.0):
        if int(steps) != steps or steps < 1:
            raise ConfigError(f"steps={steps} is invalid: use an integer between 1 and the schedule's timesteps")
        if eta < 0:
            raise ConfigError(f"eta={eta} is negative: use 0 (deterministic) to 1 (DDPM-like)")
        self.steps = int(steps)
        self.eta = eta

    def timesteps(self, T: int) -> list[int]:
        if self.steps > T:
            raise ConfigError(f"steps={self.steps} exceeds the schedule's {T} timesteps: use steps <= {T}")
        return torch.linspace(T - 1, 0, self.steps).round().long().tolist()

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        ab = diffusion.alphas_cumprod[t]
        ab_prev = diffusion.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones_like(ab)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        if self.eta > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * _randn_like(x, generator)
        return x_prev

    def __repr__(self) -> str:
        return f"DDIMSampler(steps={self.steps}, eta={self.eta})"
