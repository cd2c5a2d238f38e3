"""The weight average of training: the constant decay and the power function of Karras et al. 2024, against their
closed forms."""

import pickle

import pytest
import torch

from ddpm.training.ema import EMAUpdate, EMAWeightAveraging, power_sigma_rel


def _average(update: EMAUpdate, values: list[float]) -> float:
    # As AveragedModel does: the first value is copied, then update(average, current, updates so far).
    average = torch.tensor(values[0], dtype=torch.float64)
    for n, value in enumerate(values[1:], start=1):
        average = update(average, torch.tensor(value, dtype=torch.float64), torch.tensor(n))
    return average.item()


@pytest.mark.parametrize("power", [0.5, 6.94, 16.97])
def test_the_power_function_weights_update_t_as_the_paper_says(power):
    """Update t (1-based, the copy is t = 1) enters with weight (1 - beta_t) * prod_{s > t} beta_s, which with
    beta_t = (1 - 1/t)^(gamma + 1) telescopes to (1 - beta_t) * (t / T)^(gamma + 1) (Karras et al. 2024, eq. 3)."""
    T = 40
    values = [float(v) for v in torch.randn(T, generator=torch.Generator().manual_seed(0), dtype=torch.float64)]
    beta = [0.0] + [(1 - 1 / t) ** (power + 1) for t in range(2, T + 1)]
    weights = [(1 - beta[t - 1]) * (t / T) ** (power + 1) for t in range(1, T + 1)]
    assert sum(weights) == pytest.approx(1.0)
    expected = sum(w * v for w, v in zip(weights, values))
    assert _average(EMAUpdate(power=power), values) == pytest.approx(expected, rel=1e-12)


def test_the_power_function_forgets_the_start_as_the_run_grows():
    """A fixed fraction of the run, not a fixed number of steps: the weight of the first tenth of a run is the same
    for 100 and 10,000 updates, while the constant decay's share of it vanishes on the long run."""
    def first_tenth(update, T):
        indicator = [1.0 if t < T // 10 else 0.0 for t in range(T)]
        return _average(update, indicator)

    power = EMAUpdate(power=6.94)
    assert first_tenth(power, 100) == pytest.approx(first_tenth(power, 10_000), abs=2e-6)
    constant = EMAUpdate(decay=0.995)
    assert first_tenth(constant, 10_000) < 1e-15 < first_tenth(constant, 100)


def test_the_constant_decay_is_lightnings():
    values = [3.0, 1.0, 4.0, 1.0, 5.0]
    expected = values[0]
    for v in values[1:]:
        expected = 0.9 * expected + 0.1 * v
    assert _average(EMAUpdate(decay=0.9), values) == pytest.approx(expected, rel=1e-12)
    assert _average(EMAUpdate(decay=0.9, power=None), values) == _average(EMAUpdate(decay=0.9), values)


def test_sigma_rel_matches_the_papers_pairs():
    # Karras et al. 2024, section 3.1: gamma 16.97 <-> sigma_rel 0.05, gamma 6.94 <-> 0.10.
    assert power_sigma_rel(16.97) == pytest.approx(0.05, abs=5e-4)
    assert power_sigma_rel(6.94) == pytest.approx(0.10, abs=5e-4)


@pytest.mark.parametrize("power", [None, 6.94])
def test_the_callback_pickles_with_its_average(power):
    """trainer=ddp_spawn pickles the callbacks for its workers: the average must come back with its settings."""
    callback = pickle.loads(pickle.dumps(EMAWeightAveraging(decay=0.99, power=power)))
    update = callback._kwargs["avg_fn"]
    assert (update.decay, update.power) == (0.99, power)
    assert update.beta(9) == (0.99 if power is None else pytest.approx(0.9 ** (power + 1)))
