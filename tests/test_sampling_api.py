"""DDPM's step count at T, the one read of the schedule's coefficients, and the one scaling between pixels and
[-1, 1]. (Every sampler's step-count API, a default from conf/sampler/ and set_timesteps(n, schedule) when sampling
starts: tests/test_sampler_contract.py.)"""

import torch

from ddpm.data.images import to_pixels, to_unit_range
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.evaluation.scores import quantize
from ddpm.sampling.samplers import DDPMSampler


def test_ddpm_at_T_steps_is_the_original_process_without_a_special_case():
    d = GaussianDiffusion(LinearSchedule(40))
    model = lambda x, t, labels: 0.2 * x  # noqa: E731
    noise = torch.randn(2, 1, 4, 4)
    at_t = DDPMSampler(steps=5)
    assert at_t.set_timesteps(40, d.schedule) == list(range(39, -1, -1))
    run = lambda sampler: sampler.sample(model, d, noise, generator=torch.Generator().manual_seed(0)).images  # noqa: E731
    assert torch.equal(run(at_t), run(DDPMSampler()))


def test_alpha_bar_is_the_float64_schedule_with_the_clean_end():
    schedule = CosineSchedule(50)
    d = GaussianDiffusion(schedule)
    assert d.alpha_bar(-1) == 1.0 and d.alpha_bar(7) == schedule.alphas_cumprod[7].item()
    values = d.alpha_bar(torch.tensor([3, -1, 49]))
    assert values.dtype == torch.float64
    assert values.tolist() == [schedule.alphas_cumprod[3].item(), 1.0, schedule.alphas_cumprod[49].item()]
    assert d.log_snr(10) == schedule.log_snr()[10].item()


def test_pixels_and_the_model_range_are_one_scaling_pair():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    images = to_unit_range(pixels)
    assert images.min() == -1 and images.max() == 1 and images.dtype == torch.float32
    assert torch.equal(quantize(to_pixels(images)), pixels)  # every 8-bit level comes back
