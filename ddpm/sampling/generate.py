"""Drawing many samples from a trained module in batches, reproducibly.

Every (seed, batch) draws from a stream of its own: `numpy.random.SeedSequence(seed).spawn` gives independent,
non-overlapping children, the first for the initial noise of all n images (so image i starts from the same noise
whatever the batch size) and one per batch for the stochastic samplers' steps. Seeds s and s + 1 share nothing.
"""

import math

import numpy as np
import torch

from ddpm.progress import Progress
from ddpm.sampling.samplers import Sampler, SampleResult

NOISE_STREAM = 0  # child 0: the initial noise; child 1 + k: the steps of batch k


def stream(seed: int, child: int) -> torch.Generator:
    """A CPU generator seeded from child `child` of SeedSequence(seed)."""
    state = np.random.SeedSequence(seed).spawn(child + 1)[child].generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def fixed_noise(n: int, seed: int, shape=(1, 28, 28)) -> torch.Tensor:
    return torch.randn((n, *shape), generator=stream(seed, NOISE_STREAM))


def cycling_labels(n: int, digit: int | None = None) -> torch.Tensor:
    """The requested digit n times, or 0-9 cycling."""
    return torch.full((n,), digit) if digit is not None else torch.arange(n) % 10


def digit_grid(module, sampler: Sampler, guidance: float, seed: int, guidance_interval=None,
               clip_x0: bool = True) -> torch.Tensor:
    """The 100 images of a 10x10 picture (row k = digit k for a conditional module) from the same noise for a
    seed: what a training run draws at every validation and a compare report draws for each arm."""
    labels = torch.arange(10).repeat_interleave(10) if module.conditional else None
    return generate(module, sampler, 100, labels, guidance, seed, clip_x0, guidance_interval=guidance_interval).images


def generate(
    module,
    sampler: Sampler,
    n: int,
    labels: torch.Tensor | None,
    guidance: float = 0.0,
    seed: int = 0,
    clip_x0: bool = True,
    batch_size: int = 500,
    trajectory_frames: int = 0,
    progress: str | None = None,
    guidance_interval: tuple[float, float] | None = None,
) -> SampleResult:
    """n images in [-1, 1] (and, if asked, the trajectory of every image) on the module's device, with the
    sampler's current step count. Guidance applies only given labels (ddpm.sampling.guidance). `progress` names the
    sampling in its progress lines (None: silent)."""
    device = module.device
    steps = None
    if progress:  # the steps of every batch as one piece of work
        batches = math.ceil(n / batch_size)
        steps = Progress(batches * len(sampler.timesteps(module.diffusion.schedule)), progress).wrap
    noise = fixed_noise(n, seed)
    images, trajectories, nfe = [], [], 0
    for k, start in enumerate(range(0, n, batch_size)):
        stop = min(start + batch_size, n)
        result = sampler.sample(
            module.net,
            module.diffusion,
            noise[start:stop].to(device),
            labels[start:stop].to(device) if labels is not None else None,
            guidance=guidance,
            clip_x0=clip_x0,
            generator=stream(seed, 1 + k),
            trajectory_frames=trajectory_frames,
            progress=steps,
            guidance_interval=guidance_interval,
        )
        images.append(result.images)
        trajectories.append(result.trajectory)
        nfe = result.nfe  # per image, the same in every batch
    trajectory = [(t, torch.cat([traj[i][1] for traj in trajectories])) for i, (t, _) in enumerate(trajectories[0])]
    return SampleResult(torch.cat(images), trajectory, nfe)
