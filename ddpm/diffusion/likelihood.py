"""The variational bound on -log p(x_0) of Ho et al. 2020 (eq. 5), in bits per dimension:

    L = KL(q(x_T | x_0) || N(0, I))                                    prior
      + sum_{t >= 1} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))     one Gaussian KL per step, x_t ~ q(x_t | x_0)
      + -log p(x_0 | x_1)                                              the discretised Gaussian decoder (sec. 3.3)

Timesteps are 0-based here as everywhere in the code: term t = 0 is the decoder. The reverse process has the
network's mean and a fixed variance, beta~_t (`posterior`) or beta_t (`beta`); the decoder uses beta~ of step 1
in both cases (beta~_0 is 0), as improved-diffusion does. The bound does not depend on how the schedule spaces
the noise levels only through the model, so it compares models trained with different schedules.

The sum over T steps is estimated without running all of them. Nearly all of it sits in a few steps at both
ends (for the quickstart model the decoder and the first ten steps, and the last step, where a capped beta of
0.999 leaves a KL of about a bit per dimension), so those `head` first and `tail` last terms are computed
exactly and only the flat middle is sampled: with t uniform on the M middle steps, M * L_t is an unbiased
estimate of their sum (`draws` of them per image, averaged). Sampling t uniformly over all T steps instead
(head = tail = 0) is unbiased too, but its standard error was 6 bits/dim at n = 200 against a bound of about 1.
`exact=True` sums all T terms. The images are independent, so the standard error is the spread of the per-image
bounds over sqrt(n).
"""

import math

import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.progress import Progress

VARIANCES = ("posterior", "beta")
BIN = 2 / 255  # the width of one 8-bit level in [-1, 1]


def normal_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)), elementwise."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def _log_normal_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(Phi(upper) - Phi(lower)) for lower < upper, accurate in both tails: a bin above 0 is mirrored below it,
    where log Phi has no cancellation."""
    flip = lower > 0
    low, high = torch.where(flip, -upper, lower), torch.where(flip, -lower, upper)
    log_high, log_low = torch.special.log_ndtr(high), torch.special.log_ndtr(low)
    return log_high + torch.log1p(-torch.exp(log_low - log_high))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit pixels x in [-1, 1] under N(mean, std^2) integrated over each pixel's bin; the bins of
    -1 and +1 extend to -inf and +inf, so the 256 probabilities of a pixel sum to 1."""
    lower = torch.where(x < -1 + BIN / 2, torch.full_like(x, -math.inf), (x - BIN / 2 - mean) / std)
    upper = torch.where(x > 1 - BIN / 2, torch.full_like(x, math.inf), (x + BIN / 2 - mean) / std)
    return _log_normal_mass(lower, upper)


def prior_kl(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """KL(q(x_T | x_0) || N(0, I)) per image, in nats."""
    alpha_bar = diffusion.schedule.alphas_cumprod[-1].item()
    mean, var = math.sqrt(alpha_bar) * x0, torch.full_like(x0, 1 - alpha_bar)
    return normal_kl(mean, var, torch.zeros_like(x0), torch.ones_like(x0)).flatten(1).sum(1)


def decoder_std(diffusion: GaussianDiffusion) -> float:
    """sqrt(beta~_1): the decoder's standard deviation (beta~_0 is 0)."""
    schedule = diffusion.schedule
    ab = schedule.alphas_cumprod
    return math.sqrt((schedule.betas[1] * (1 - ab[0]) / (1 - ab[1])).item())


def step_terms(net, diffusion: GaussianDiffusion, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, labels=None,
               variance: str = "posterior") -> torch.Tensor:
    """L_t per image in nats (x0 and noise float64, one timestep per image): the decoder's negative
    log-likelihood where t = 0, the KL of the reverse step elsewhere. The network runs in float32; everything
    after it in float64, since the KLs of the nearly clean steps divide by variances of about 1e-4."""
    a, s = diffusion.coefficients(t, x0)
    x_t = a * x0 + s * noise
    x0_model, _ = diffusion.split_prediction(net(x_t.float(), t, labels).double(), x_t, t)
    mean_model, _, _ = diffusion.q_posterior(x0_model, x_t, t)
    mean_true, var_true, beta = diffusion.q_posterior(x0, x_t, t)
    var_model = var_true if variance == "posterior" else beta
    first = t.to(x0.device) == 0
    # The t = 0 rows have var_true = 0; their KL is replaced by the decoder term below, so any positive value will do.
    var_true, var_model = var_true.clamp(min=1e-30), var_model.clamp(min=1e-30)
    kl = normal_kl(mean_true, var_true, mean_model, var_model).flatten(1).sum(1)
    std = torch.tensor(decoder_std(diffusion), dtype=x0.dtype, device=x0.device)
    decoder = -discretized_gaussian_log_likelihood(x0, mean_model, std).flatten(1).sum(1)
    return torch.where(first, decoder, kl)


@torch.inference_mode()
def bits_per_dim(net, diffusion: GaussianDiffusion, images: torch.Tensor, labels: torch.Tensor | None = None,
                 draws: int = 1, exact: bool = False, variance: str = "posterior", batch_size: int = 250,
                 seed: int = 0, device: torch.device | str = "cpu", head: int = 20, tail: int = 5,
                 progress: str | None = None) -> dict:
    """The bound for uint8 images (N x 1 x 28 x 28) in bits per dimension: {"bits_per_dim", "stderr", "n",
    "per_image"}. labels=None scores a conditional network with its null label, i.e. the unconditional model
    that classifier-free guidance trains along. `progress` names the work in its progress lines (None: silent)."""
    if variance not in VARIANCES:
        raise ValueError(f"variance={variance!r}: use one of {', '.join(VARIANCES)}")
    T = diffusion.timesteps
    generator = torch.Generator().manual_seed(seed)
    dims = images[0].numel()
    per_image = []
    batches = range(0, len(images), batch_size)
    for start in Progress(len(batches), progress, unit="batch").wrap(batches) if progress else batches:
        x0 = (images[start : start + batch_size].double() / 127.5 - 1).to(device)
        batch_labels = labels[start : start + batch_size].to(device) if labels is not None else None
        total = prior_kl(diffusion, x0)

        def term(step_of_each: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(device)
            return step_terms(net, diffusion, x0, step_of_each.to(device), noise, batch_labels, variance)

        exact_steps = list(range(T)) if exact or head + tail >= T else [*range(head), *range(T - tail, T)]
        for step in exact_steps:
            total = total + term(torch.full((len(x0),), step, dtype=torch.long))
        middle = T - len(exact_steps)
        for _ in range(draws if middle else 0):
            total = total + middle * term(head + torch.randint(0, middle, (len(x0),), generator=generator)) / draws
        per_image.append(total.cpu() / (dims * math.log(2)))
    per_image = torch.cat(per_image)
    stderr = per_image.std().item() / math.sqrt(len(per_image)) if len(per_image) > 1 else math.nan
    return {"bits_per_dim": per_image.mean().item(), "stderr": stderr, "n": len(per_image), "per_image": per_image}
