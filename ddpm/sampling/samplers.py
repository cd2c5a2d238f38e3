"""Reverse-process samplers. Each one picks the timesteps it visits and how to step from x_t to x_{t_prev};
the loop, classifier-free guidance (ddpm.sampling.guidance.Guided) and x0 clipping are shared. A step gets the
network as a callable `denoise(x, t) -> (x0, eps)`, so a solver may evaluate it more than once per step (Heun).

A sampler is built from conf/sampler/<name>.yaml with its own default step count (`steps`);
`set_timesteps(n, schedule)` chooses the count of the runs to come once the run's schedule is known, as diffusers'
`set_timesteps`: n = None keeps the default, n = T is every timestep (for DDPM, the original process). Most samplers
need only the schedule's T (evenly spaced timesteps); Heun places its steps by the schedule's noise levels. The
coefficients come from GaussianDiffusion.
"""

import math
from dataclasses import dataclass, field

import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import NoiseSchedule
from ddpm.errors import ConfigError
from ddpm.sampling.guidance import Guided
from ddpm.validation import integer, number, one_of


@dataclass
class SampleResult:
    images: torch.Tensor  # x_0 in [-1, 1]
    trajectory: list = field(default_factory=list)  # (t, x_t) pairs, first = pure noise, last = x_0
    nfe: int = 0  # network evaluations per image (a guided step costs two)


class Sampler:
    steps: int | None  # the step count of the runs to come: the config's default until set_timesteps changes it
    # How the timesteps are placed where not evenly spaced; part of a compare score's cache key, so that a score
    # measured at other timesteps under the same sampler name is not reused.
    spacing: str = ""

    def timesteps(self, schedule: NoiseSchedule) -> list[int]:
        """The timesteps of `schedule` visited, in decreasing order."""
        return evenly_spaced(schedule.timesteps, self.steps)

    def set_timesteps(self, steps: int | None, schedule: NoiseSchedule) -> list[int]:
        """Sample with `steps` steps from now on (None: keep the sampler's own default); the timesteps of `schedule`
        it visits. Refuses a count outside 1..T in one line."""
        if steps is not None:
            self.steps = check_steps(steps)
        return self.timesteps(schedule)

    def evaluations(self, timesteps: list[int]) -> list[int]:
        """The timesteps at which a run over `timesteps` calls the network, in order: one call per step unless the
        solver evaluates more (what Guided.planned_nfe counts)."""
        return list(timesteps)

    def step(self, diffusion, denoise, x, t, t_prev, generator):
        """x at timestep t_prev (-1: the clean data) from x at t. `denoise(x, t)` is the network behind guidance and
        the diffusion's conversion: the (x0, eps) it predicts at (x, t), one network evaluation per call."""
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
        guidance_interval: tuple[float, float] | None = None,
    ) -> SampleResult:
        """Run the reverse process from `noise`. Randomness comes only from `generator` (CPU), so a seed fixes
        the result. `progress` wraps the step iterator (e.g. tqdm). Guidance w applies with labels only, and with
        `guidance_interval` = [lo, hi] only at the steps whose log-SNR lies in it (ddpm.sampling.guidance)."""
        guided = Guided(model, labels, guidance, guidance_interval, diffusion.log_snr)
        steps = self.timesteps(diffusion.schedule)
        frames = torch.linspace(0, len(steps) - 1, trajectory_frames - 1) if trajectory_frames > 1 else torch.zeros(0)
        record = set(frames.round().long().tolist())
        self.reset()
        x = noise
        trajectory = [(diffusion.timesteps, x.cpu())] if record else []
        pairs = list(zip(steps, steps[1:] + [-1]))
        denoise = denoiser(guided, diffusion, clip_x0)
        for i, (t_now, t_prev) in enumerate(progress(pairs) if progress else pairs):
            x = self.step(diffusion, denoise, x, t_now, t_prev, generator)
            if i in record:
                trajectory.append((max(t_prev, 0), x.cpu()))
        return SampleResult(x.clamp(-1, 1) if clip_x0 else x, trajectory, guided.nfe)


def denoiser(guided: Guided, diffusion: GaussianDiffusion, clip_x0: bool):
    """The (guided) network as the steps call it: (x0, eps) at (x, t) for a batch at one timestep t, x0 clamped to
    [-1, 1] when clip_x0 (and eps consistent with it)."""

    def denoise(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch_t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return diffusion.split_prediction(guided(x, t), x, batch_t, clip=clip_x0)

    return denoise


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same images on every device.
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def evenly_spaced(T: int, steps: int | None) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (all T when steps is None or T)."""
    if steps is None or steps == T:
        return list(range(T - 1, -1, -1))
    check_within(steps, T)
    return torch.linspace(T - 1, 0, steps).round().long().tolist()


def check_within(steps: int, T: int) -> None:
    """Refuses in one line a step count above the schedule's T."""
    if steps > T:
        raise ConfigError(f"steps={steps} exceeds the schedule's {T} timesteps: use steps <= {T}")


def karras_timesteps(schedule: NoiseSchedule, steps: int, rho: float = 7.0) -> list[int]:
    """`steps` timesteps of `schedule` from T-1 down to 0 at the noise levels of Karras et al. 2022, eq. 5:
    sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0 .. N-1, with
    sigma = sqrt((1 - alpha_bar) / alpha_bar) and sigma_max, sigma_min the schedule's own at t = T-1 and t = 0.
    rho = 7 (their choice) shortens the steps towards sigma_min, where the images take shape.

    Each level goes to the timestep whose sigma is nearest in log sigma: the network was trained on the schedule's
    integer timesteps only, and the steps use the float64 alpha_bar of those. Where levels lie closer than the
    schedule's timesteps (near sigma_max on the cosine schedule, whose last step alone jumps from sigma 640 to
    20,000), several would share one timestep; they go to the next free ones instead, so that the run still has
    `steps` distinct steps (steps = T: every timestep)."""
    T = schedule.timesteps
    check_within(steps, T)
    if steps == 1:
        return [T - 1]  # sigma_max alone: eq. 5 needs N >= 2
    log_sigma = 0.5 * (torch.log1p(-schedule.alphas_cumprod) - torch.log(schedule.alphas_cumprod))
    sigma_max, sigma_min = log_sigma[-1].exp(), log_sigma[0].exp()
    i = torch.arange(steps, dtype=torch.float64)
    levels = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    nearest = (log_sigma[None, :] - levels.log()[:, None]).abs().argmin(1).tolist()
    # Below the step before and above the steps still to come: each timestep once, from T-1 down to 0.
    timesteps = [T - 1]
    for k, t in enumerate(nearest[1:], start=1):
        timesteps.append(max(min(t, timesteps[-1] - 1), steps - 1 - k))
    return timesteps


def check_steps(steps, optional: bool = False, null: str = "all of them") -> int | None:
    """A step count: 1 or more (the schedule's T is known only when sampling starts; evenly_spaced refuses steps > T
    then), or None when optional, which means `null`."""
    allowed = "an integer from 1 to the schedule's timesteps" + (f", or null for {null}" if optional else "")
    return integer("steps", steps, low=1, optional=optional, allowed=allowed)


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) over all T steps, or over `steps` evenly spaced ones with
    the respaced process's posterior (Nichol & Dhariwal 2021). `variance` picks the reverse variance:
    'posterior' (beta~_t, the lower bound) or 'beta' (beta_t, the upper bound)."""

    def __init__(self, steps: int | None = None, variance: str = "posterior"):
        self.steps = check_steps(steps, optional=True)
        self.variance = one_of("sampler.variance", variance, ("posterior", "beta"))

    def step(self, diffusion, denoise, x, t, t_prev, generator):
        x0, _ = denoise(x, t)
        batch = lambda value: torch.full((x.shape[0],), value, dtype=torch.long)  # noqa: E731
        mean, posterior_variance, beta = diffusion.q_posterior(x0, x, batch(t), batch(t_prev))
        if t_prev < 0:
            return mean
        variance = posterior_variance if self.variance == "posterior" else beta
        return mean + variance.sqrt() * _randn_like(x, generator)

    def __repr__(self) -> str:
        return f"DDPMSampler(steps={self.steps}, variance={self.variance!r})"


class DDIMSampler(Sampler):
    """Song et al. 2021: a non-Markovian reverse process over any `steps` <= T timesteps, evenly spaced from T-1
    down to 0. eta = 0 is deterministic; eta = 1 is DDPM with the posterior variance."""

    def __init__(self, steps: int = 50, eta: float = 0.0):
        self.steps = check_steps(steps)
        # Above 1, sigma would exceed the noise level of the step's target and the formula stops being DDIM's.
        self.eta = number("sampler.eta", eta, 0, 1, hint=" (0: deterministic, 1: DDPM-like)")

    def step(self, diffusion, denoise, x, t, t_prev, generator):
        x0, eps = denoise(x, t)
        ab, ab_prev = diffusion.alpha_bar(t), diffusion.alpha_bar(t_prev)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x_prev = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * _randn_like(x, generator)
        return x_prev

    def __repr__(self) -> str:
        return f"DDIMSampler(steps={self.steps}, eta={self.eta})"


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the diffusion ODE in the
    data (x0) prediction, stepping in lambda = log(alpha / sigma), over the same evenly spaced timesteps as DDIM.
    Deterministic; 10-20 steps compete with DDIM's 50. The first step is first order (no history yet), and so
    are the last two ("lower order final"): the step into t = 0, where lambda grows fastest and extrapolating
    from the previous step overshoots, and the one to the clean sample (lambda = infinity). order=1 is
    DPM-Solver++1, which is DDIM at eta = 0 written in lambda."""

    def __init__(self, steps: int = 20, order: int = 2):
        self.steps = check_steps(steps)
        self.order = one_of("sampler.order", order, (1, 2))
        self.reset()

    def reset(self):
        self._previous = None  # (x0 prediction, step size h) of the step before

    def step(self, diffusion, denoise, x, t, t_prev, generator):
        x0, _ = denoise(x, t)
        if t_prev < 0:
            return x0
        ab, ab_prev = diffusion.alpha_bar(t), diffusion.alpha_bar(t_prev)
        alpha_prev, sigma, sigma_prev = ab_prev**0.5, (1 - ab) ** 0.5, (1 - ab_prev) ** 0.5
        h = 0.5 * (math.log(ab_prev / (1 - ab_prev)) - math.log(ab / (1 - ab)))
        denoised = x0
        if self.order == 2 and self._previous is not None and t_prev > 0:
            # D0 + D1 / 2 with D1 = (x0 - x0_before) / r: the x0 prediction extrapolated linearly in lambda from the
            # step before to the middle of this one (the "midpoint" form of Algorithm 2).
            x0_before, h_before = self._previous
            r = h_before / h
            denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_before
        self._previous = (x0, h)
        return self.update(x, denoised, alpha_prev, sigma, sigma_prev, h, generator)

    def update(self, x, denoised, alpha_prev, sigma, sigma_prev, h, generator):
        """The ODE's linear part integrated exactly with the data prediction held at `denoised` over the step
        (Lu et al. 2022, eq. 9 with x_theta constant): x' = (sigma' / sigma) x - alpha' (e^-h - 1) denoised."""
        return (sigma_prev / sigma) * x - alpha_prev * math.expm1(-h) * denoised

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps}" + (", order=1)" if self.order == 1 else ")")


class SDEDPMSolverSampler(DPMSolverSampler):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, the SDE solvers of their appendix; diffusers'
    algorithm_type="sde-dpmsolver++"): the same multistep data prediction as DPM-Solver++(2M), but a solver of the
    reverse SDE instead of the ODE, so every step but the last adds fresh noise. Stochastic: it forgets the errors
    of earlier steps, which tends to help at 20-50 steps and more. order=1 (SDE-DPM-Solver++1) is DDPM's
    posterior step, i.e. DDIM at eta = 1, written in lambda."""

    def update(self, x, denoised, alpha_prev, sigma, sigma_prev, h, generator):
        # The reverse SDE in lambda solved with its linear part exact (Lu et al. 2022, the SDE counterpart of eq. 9):
        #     x' = (sigma' / sigma) e^-h x + 2 alpha' int e^-2(lambda' - lambda) x_theta dlambda
        #          + sigma' sqrt(1 - e^-2h) z
        # with z ~ N(0, I). x_theta held at `denoised` makes the integral alpha' (1 - e^-2h) denoised: twice the ODE's
        # pull towards the data prediction, balanced by the noise the Brownian term accumulates over the step. As
        # e^-2h = (alpha sigma')^2 / (sigma alpha')^2, that noise's variance sigma'^2 (1 - e^-2h) is the posterior's
        # beta~ of the step (hence order 1 = DDPM).
        decay = -math.expm1(-2 * h)  # 1 - e^-2h, without cancellation at small h
        drift = (sigma_prev / sigma * math.exp(-h)) * x + (alpha_prev * decay) * denoised
        return drift + sigma_prev * math.sqrt(decay) * _randn_like(x, generator)


class HeunSampler(Sampler):
    """Heun's second-order method (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
    Models", Algorithm 1; deterministic): an Euler step of the probability-flow ODE, then the trapezoidal
    correction with the derivative at the step's end, except on the last step, into sigma = 0, where that
    derivative is undefined. Two network evaluations per step but the last: 2 steps - 1 in all. The Euler predictor
    is DDIM's step at eta = 0.

    The steps are the paper's too: N noise levels spaced by eq. 5 with rho = 7 from the schedule's sigma_max down to
    its sigma_min, then sigma_N = 0 (karras_timesteps). Evenly spaced timesteps, as DDIM's, fail on the cosine
    schedule, whose first step then falls from sigma = 20,000 to 11: for Gaussian data of std sigma_d, a step from
    sigma_a to sigma_b << sigma_a multiplies x^ - mean by a factor off by about (sigma_a / sigma_b) (sigma_d /
    sigma_b)^2 / 2 relative, 2.0 there (sigma_d = 0.5), since the trapezoid's end-point term is sigma_a / (2 sigma_b)
    times the result. Eq. 5 keeps sigma_a / sigma_b small where sigma_b nears the data's scale.

    The paper's ODE is written for x^ = x / s with s = sqrt(alpha_bar) and noise level
    sigma = sqrt((1 - alpha_bar) / alpha_bar) (their Table 1, VP: the project's x is s x^): eq. 1 with sigma(t) = t
    and the score (D(x^; sigma) - x^) / sigma^2 of eq. 3 is dx^/dsigma = (x^ - D) / sigma, the eps prediction."""

    spacing = "rho7"

    def __init__(self, steps: int = 18):
        self.steps = check_steps(steps)

    def timesteps(self, schedule: NoiseSchedule) -> list[int]:
        return karras_timesteps(schedule, self.steps)

    def evaluations(self, timesteps: list[int]) -> list[int]:
        # Every step evaluates at its start; all but the last again at their end (the correction, lines 6-7).
        pairs = zip(timesteps, timesteps[1:] + [-1])
        return [u for t, t_prev in pairs for u in ((t, t_prev) if t_prev >= 0 else (t,))]

    def step(self, diffusion, denoise, x, t, t_prev, generator):
        x0, eps = denoise(x, t)  # line 4: d_i = (x^_i - D(x^_i; sigma_i)) / sigma_i = eps
        if t_prev < 0:
            # Line 5 to sigma = 0: x^ + (0 - sigma) eps = D, the denoised sample; no correction (line 6).
            return x0
        ab, ab_prev = diffusion.alpha_bar(t), diffusion.alpha_bar(t_prev)
        s, s_prev = ab**0.5, ab_prev**0.5
        dsigma = ((1 - ab_prev) / ab_prev) ** 0.5 - ((1 - ab) / ab) ** 0.5  # sigma_{i+1} - sigma_i < 0
        x_hat = x / s
        euler = x_hat + dsigma * eps  # line 5: the Euler step, DDIM's at eta = 0
        _, eps_end = denoise(s_prev * euler, t_prev)  # line 7: d'_i at (x^_{i+1}, sigma_{i+1})
        return s_prev * (x_hat + dsigma * (0.5 * eps + 0.5 * eps_end))  # line 8: the trapezoidal rule

    def __repr__(self) -> str:
        return f"HeunSampler(steps={self.steps})"
