"""The samplers' step-count API (a default from conf/sampler/, set_timesteps(n, T) when sampling starts), the one
read of the schedule's coefficients, and the one scaling between pixels and [-1, 1]."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.data.images import to_pixels, to_unit_range
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.errors import ConfigError
from ddpm.evaluation.scores import quantize
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, SDEDPMSolverSampler

CONF = Path(__file__).resolve().parents[1] / "conf" / "sampler"


@pytest.mark.parametrize("name, default", [("ddim", 50), ("ddpm", None), ("ddpm_beta", None), ("dpmpp", 20),
                                           ("sde_dpmpp", 25)])
def test_each_sampler_config_has_its_own_default_and_set_timesteps_overrides_it(name, default):
    sampler = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert sampler.steps == default
    assert len(sampler.set_timesteps(None, 1000)) == (default or 1000) and sampler.steps == default
    timesteps = sampler.set_timesteps(7, 1000)
    assert sampler.steps == 7 and timesteps == sampler.timesteps(1000) and len(timesteps) == 7
    assert timesteps[0] == 999 and timesteps[-1] == 0
    with pytest.raises(ConfigError, match="steps=1001 exceeds the schedule's 1000 timesteps: use steps <= 1000"):
        sampler.set_timesteps(1001, 1000)
    with pytest.raises(ConfigError, match="steps=0 is invalid: use an integer from 1 to the schedule's timesteps"):
        sampler.set_timesteps(0, 1000)


def test_ddpm_at_T_steps_is_the_original_process_without_a_special_case():
    d = GaussianDiffusion(LinearSchedule(40))
    model = lambda x, t, labels: 0.2 * x  # noqa: E731
    noise = torch.randn(2, 1, 4, 4)
    at_t = DDPMSampler(steps=5)
    assert at_t.set_timesteps(40, 40) == list(range(39, -1, -1))
    run = lambda sampler: sampler.sample(model, d, noise, generator=torch.Generator().manual_seed(0)).images  # noqa: E731
    assert torch.equal(run(at_t), run(DDPMSampler()))


@pytest.mark.parametrize("sampler", [DDIMSampler(10), DPMSolverSampler(10), SDEDPMSolverSampler(10)], ids=repr)
def test_set_timesteps_changes_what_sample_visits(sampler):
    calls = []
    model = lambda x, t, labels: calls.append(int(t[0])) or torch.zeros_like(x)  # noqa: E731
    sampler.set_timesteps(4, 100)
    sampler.sample(model, GaussianDiffusion(CosineSchedule(100)), torch.randn(1, 1, 4, 4),
                   generator=torch.Generator().manual_seed(0))
    assert calls == [99, 66, 33, 0]


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
