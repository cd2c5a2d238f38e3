"""Heun's error on Gaussian data with its exact denoiser, at its rho-spaced steps and at DDIM's evenly spaced ones
(the table in docs/sampling.md):

    python scripts/heun_oracle.py

Data N(0.3, 0.5^2) per pixel, 1024 x 64 values from seed 0 in float64, clip_x0 off: the relative error of the samples'
std, which is the sampler's discretisation error (its sampling error is 0.3%, 1/362).
"""

import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.sampling.samplers import HeunSampler, evenly_spaced

MU, S = 0.3, 0.5


def exact_denoiser(schedule):
    """E[eps | x_t] for N(MU, S^2) data."""
    ab = schedule.alphas_cumprod

    def model(x, t, labels=None):
        a = ab[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * MU) * (1 - a).sqrt() / (a * S**2 + 1 - a)

    return model


def std_error(schedule, steps: int, even: bool) -> float:
    sampler = HeunSampler(steps)
    if even:  # Heun before 2026-12-05: DDIM's timesteps
        sampler.timesteps = lambda schedule: evenly_spaced(schedule.timesteps, steps)
    noise = torch.randn(1024, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = GaussianDiffusion(schedule).double()
    images = sampler.sample(exact_denoiser(schedule), d, noise, clip_x0=False).images
    return images.std().item() / S - 1


if __name__ == "__main__":
    print("| schedule, steps | evenly spaced timesteps (before) | rho-spaced (now) |")
    print("| --- | --- | --- |")
    for schedule in (CosineSchedule(1000), LinearSchedule(1000)):
        for steps in (18, 25, 50):
            before, now = (std_error(schedule, steps, even) for even in (True, False))
            name = type(schedule).__name__.removesuffix("Schedule").lower()
            print(f"| {name}, {steps} | {100 * before:+.1f}% | {100 * now:+.1f}% |")
