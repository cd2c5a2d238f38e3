import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule, NoiseSchedule, SigmoidSchedule
from ddpm.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf" / "schedule"


def test_linear_matches_ho_et_al():
    s = LinearSchedule(1000)
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    for t in (0, 1, 499, 998, 999):
        assert s.betas[t].item() == pytest.approx(1e-4 + (0.02 - 1e-4) * t / 999, rel=1e-12)
    # alpha_bar_t = prod_{s<=t} (1 - beta_s)
    expected = math.prod(1 - (1e-4 + (0.02 - 1e-4) * k / 999) for k in range(10))
    assert s.alphas_cumprod[9].item() == pytest.approx(expected, rel=1e-12)


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


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000), SigmoidSchedule(1000),
                                      LinearSchedule(40), CosineSchedule(2)])
def test_alpha_bar_strictly_decreasing_in_unit_interval(schedule):
    ab = schedule.alphas_cumprod
    assert ab.dtype == torch.float64 and len(ab) == schedule.timesteps
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 < ab[-1] and ab[0] < 1
    assert bool(torch.isfinite(schedule.log_snr()).all())


def test_cosine_keeps_more_signal_than_linear_midway():
    # The point of Nichol & Dhariwal's schedule: linear destroys information too fast.
    assert CosineSchedule(1000).log_snr()[500] > LinearSchedule(1000).log_snr()[500] + 1


def paper_beta(schedule: NoiseSchedule, t: int) -> float:
    """beta_t by the formulas of the papers (the oracles of the tests above), for a schedule of any of the three
    families with the parameters it holds."""
    T = schedule.timesteps
    if isinstance(schedule, LinearSchedule):
        return schedule.beta_start + (schedule.beta_end - schedule.beta_start) * t / (T - 1)
    if isinstance(schedule, CosineSchedule):
        ratio = cosine_alpha_bar(t + 1, T, schedule.s) / cosine_alpha_bar(t, T, schedule.s)
    else:
        bar = lambda u: sigmoid_alpha_bar(u, schedule.start, schedule.end, schedule.tau)  # noqa: E731
        ratio = bar((t + 1) / T) / bar(t / T)
    return min(1 - ratio, schedule.max_beta)


@pytest.mark.parametrize("yaml", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_schedule_yaml_builds_its_papers_schedule(yaml):
    """conf/schedule/<name>.yaml, as `schedule=<name>` instantiates it: the paper's schedule at T = 1000, and every
    value of the yaml reaches it (changing one changes the betas)."""
    cfg = OmegaConf.load(yaml)
    schedule = instantiate(cfg)
    assert isinstance(schedule, NoiseSchedule) and schedule.timesteps == 1000 and schedule.betas.shape == (1000,)
    for t in (0, 1, 250, 500, 998, 999):
        assert schedule.betas[t].item() == pytest.approx(paper_beta(schedule, t), rel=1e-9, abs=1e-15), t
    for key in set(cfg) - {"_target_", "timesteps"}:
        changed = OmegaConf.merge(cfg, {key: cfg[key] * 0.99 if key == "max_beta" else cfg[key] * 1.1})
        assert not torch.equal(instantiate(changed).betas, schedule.betas), key
    assert instantiate(OmegaConf.merge(cfg, {"timesteps": 37})).betas.shape == (37,)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LinearSchedule(1), "schedule.timesteps=1 is invalid: use an integer >= 2"),
        (lambda: CosineSchedule(0), "schedule.timesteps=0 is invalid"),
        (lambda: CosineSchedule(10.5), "schedule.timesteps=10.5 is invalid"),
        (lambda: CosineSchedule("many"), "schedule.timesteps=many is invalid"),
        (lambda: LinearSchedule(1000, beta_start=0.02, beta_end=1e-4),
         "schedule.beta_start=0.02 is invalid: use a number in (0, 0.0001)"),
        (lambda: LinearSchedule(1000, beta_start=0.0), "schedule.beta_start=0.0 is invalid"),
        (lambda: LinearSchedule(1000, beta_end=1.0), "schedule.beta_end=1.0 is invalid: use a number in (0, 1)"),
        (lambda: LinearSchedule(10, beta_end=0.2),
         "schedule.beta_end=0.2 is invalid: use a value below 0.01 with schedule.timesteps=10"),
        (lambda: CosineSchedule(1000, s=0.0), "schedule.s=0.0 is invalid: use a number > 0"),
        (lambda: CosineSchedule(1000, s=-0.5), "schedule.s=-0.5 is invalid"),
        (lambda: CosineSchedule(1000, max_beta=1), "schedule.max_beta=1 is invalid: use a number in (0, 1)"),
        (lambda: SigmoidSchedule(1000, tau=0), "schedule.tau=0 is invalid: use a number > 0"),
        (lambda: SigmoidSchedule(1000, start=3, end=3), "schedule.start=3 is invalid: use a number < 3"),
        (lambda: SigmoidSchedule(1000, end=float("inf")), "schedule.end=inf is invalid: use a finite number"),
    ],
)
def test_invalid_parameters_are_refused(make, message):
    with pytest.raises(ConfigError) as raised:
        make()
    assert str(raised.value).startswith(message)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def sigmoid_alpha_bar(u: float, start=-3.0, end=3.0, tau=1.0) -> float:
    """Jabri et al. 2022 / Chen 2023 ("On the importance of noise scheduling", Algorithm 1), in plain floats."""
    v_start, v_end = sigmoid(start / tau), sigmoid(end / tau)
    return (v_end - sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)


@pytest.mark.parametrize("T, start, end, tau", [(1000, -3.0, 3.0, 1.0), (100, -3.0, 3.0, 1.0), (1000, 0.0, 3.0, 0.3)])
def test_sigmoid_matches_reference_values(T, start, end, tau):
    s = SigmoidSchedule(T, start=start, end=end, tau=tau)
    for t in (0, 1, T // 4, T // 2, T - 2):
        ratio = sigmoid_alpha_bar((t + 1) / T, start, end, tau) / sigmoid_alpha_bar(t / T, start, end, tau)
        expected = min(1 - ratio, 0.999)
        assert s.betas[t].item() == pytest.approx(expected, rel=1e-9)
    assert s.betas[-1].item() == pytest.approx(0.999)  # alpha_bar(1) = 0: clipped
    # alpha_bar_t is the product of the capped betas, which equals alpha_bar((t + 1) / T) while no beta is capped.
    assert s.alphas_cumprod[T // 4 - 1].item() == pytest.approx(sigmoid_alpha_bar(0.25, start, end, tau), rel=1e-9)


def test_sigmoid_default_is_symmetric_about_the_middle():
    """With start = -end, alpha_bar(1/2) = (sigmoid(3) - 1/2) / (sigmoid(3) - sigmoid(-3)) = 1/2 exactly, and
    alpha_bar(1/4) = (sigmoid(3) - sigmoid(-1.5)) / (sigmoid(3) - sigmoid(-3)) = 0.85085..."""
    s = SigmoidSchedule(1000)
    assert s.alphas_cumprod[499].item() == pytest.approx(0.5, rel=1e-12)
    assert s.alphas_cumprod[249].item() == pytest.approx(0.850854, rel=1e-5)
    assert s.alphas_cumprod[749].item() == pytest.approx(1 - 0.850854, rel=1e-5)
