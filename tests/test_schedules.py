import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.schedules import CosineSchedule, LinearSchedule, NoiseSchedule, SigmoidSchedule

CONF = Path(__file__).resolve().parents[1] / "conf" / "schedule"


def test_linear_matches_ho_et_al():
    s = LinearSchedule(1000)
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    for t in (0, 1, 499, 998, 999):
        assert s.betas[t].item() == pytest.approx(1e-4 + (0.02 - 1e-4) * t / 999, rel=1e-12)
    # alpha_bar_t = prod_{s<=t} (1 - beta_s)
    assert s.alphas_cumprod[9].item() == pytest.approx(math.prod(1 - (1e-4 + (0.02 - 1e-4) * k / 999) for k in range(10)), rel=1e-12)


def test_linear_rescales_ends_by_1000_over_T():
    s = LinearSchedule(250)
    assert s.betas[0].item() == pytest.approx(4e-4)
    assert s.betas[-1].item() == pytest.approx(0.08)
    # The rescaling keeps the endpoint signal level close to T=1000's.
    assert s.alphas_cumprod[-1].item() == pytest.approx(LinearSchedule(1000).alphas_cumprod[-1].item(), rel=0.5)


def cosine_alpha_bar(t, T, s=0.008):
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_matches_nichol_dhariwal(T):
    s = CosineSchedule(T)
    for t in (0, 1, T // 2, T - 2):
        expected = min(1 - cosine_alpha_bar(t + 1, T) / cosine_alpha_bar(t, T), 0.999)
        assert s.betas[t].item() == pytest.approx(expected, rel=1e-10)
    assert s.betas[-1].item() == pytest.approx(0.999)  # alpha_bar(T) = 0: clipped
    # Away from the clip, alpha_bar itself follows the cosine.
    assert s.alphas_cumprod[T // 2 - 1].item() == pytest.approx(cosine_alpha_bar(T // 2, T), rel=1e-9)


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000), SigmoidSchedule(1000), LinearSchedule(40), CosineSchedule(2)])
def test_alpha_bar_strictly_decreasing_in_unit_interval(schedule):
    ab = schedule.alphas_cumprod
    assert ab.dtype == torch.float64 and len(ab) == schedule.timesteps
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 < ab[-1] and ab[0] < 1
    assert bool(torch.isfinite(schedule.log_snr()).all())


def test_cosine_keeps_more_signal_than_linear_midway():
    # The point of Nichol & Dhariwal's schedule: linear destroys information too fast.
    assert CosineSchedule(1000).log_snr()[500] > LinearSchedule(1000).log_snr()[500] + 1


@pytest.mark.parametrize("yaml", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_schedule_yaml_instantiates(yaml):
    cfg = OmegaConf.load(yaml)
    cfg.timesteps = 37
    schedule = instantiate(cfg)
    assert isinstance(schedule, NoiseSchedule) and schedule.timesteps == 37 and schedule.betas.shape == (37,)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LinearSchedule(1), "timesteps=1"),
        (lambda: CosineSchedule(0), "timesteps=0"),
        (lambda: LinearSchedule(1000, beta_start=0.02, beta_end=1e-4), "beta_start"),
        (lambda: LinearSchedule(1000, beta_start=0.0), "beta_start"),
        (lambda: LinearSchedule(10, beta_end=0.2), "use more timesteps"),
        (lambda: CosineSchedule(1000, s=0.0), "s > 0"),
        (lambda: SigmoidSchedule(1000, tau=0), "tau"),
    ],
)
def test_invalid_parameters_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
