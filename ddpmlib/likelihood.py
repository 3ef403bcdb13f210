"""The variational bound of a DDPM in bits per dimension (Ho et al. 2020, Sec. 3, Eq. 5).

    L = E_q[ L_T + sum_{t=2}^T L_{t-1} + L_0 ] >= -log p_theta(x_0)                      (Eq. 5)
    L_T     = KL(q(x_T | x_0) || p(x_T))                        the prior term, no parameters
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))   for t = 2..T, Gaussian vs Gaussian
    L_0     = -log p_theta(x_0 | x_1)                            the discretized Gaussian decoder (Sec. 3.3)

Indexing: with ddpmlib's convention (tensor index t = paper step t + 1, see ``ddpmlib.schedules``) the
term computed at tensor index t is exactly the paper's L_t: index 0 is the decoder L_0, index t >= 1
is the KL L_t between the posterior and the model at paper step t + 1.

Everything here follows the paper's reference code (diffusion_utils_2.py: ``normal_kl``,
``discretized_gaussian_log_likelihood``, ``calc_bpd_loop``), except that the standard normal CDF is
computed exactly (``torch.special.ndtr``) instead of with the tanh approximation. Notebook 03 derives
every formula in this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .diffusion import marginal_coefficients, model_output_to_x0_eps, q_posterior_mean_variance, q_sample
from .schedules import NoiseSchedule, extract

VARIANCES = ("beta_tilde", "beta")


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats, elementwise (diagonal Gaussians: sum over dims).

    KL = 1/2 [ log(s2^2 / s1^2) + (s1^2 + (m1 - m2)^2) / s2^2 - 1 ]            (notebook 03, Eq. KL)
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, bins: int = 256
) -> torch.Tensor:
    """log p(x) of 8-bit data x in [-1, 1] under N(mean, e^log_var) integrated over x's bin (Eq. 13).

    The values 0..255 scaled to [-1, 1] sit 2/255 apart; bin k is [x_k - 1/255, x_k + 1/255], except
    that the first bin extends to -inf and the last to +inf, so the probabilities of the ``bins``
    values sum to exactly one:

        p(x) = Phi((x + 1/255 - mean) / s) - Phi((x - 1/255 - mean) / s),   s = e^(log_var / 2)

    Elementwise, in nats. The paper's code clamps the probability at 1e-12; here every bin is computed
    in log space on the side of the mean where the CDF is accurate, so far tails stay exact.
    """
    half_width = 1.0 / (bins - 1)
    inv_std = torch.exp(-0.5 * log_var)
    centered = x - mean
    upper = inv_std * (centered + half_width)  # standardised upper edge of x's bin
    lower = inv_std * (centered - half_width)  # standardised lower edge
    log_cdf_upper = torch.special.log_ndtr(upper)  # first bin: P(z <= upper)
    log_sf_lower = torch.special.log_ndtr(-lower)  # last bin: P(z > lower)
    # middle bins: log(Phi(b) - Phi(a)) with a < b the bin's edges on the side of the mean where the CDF
    # is small (right of the mean, by symmetry Phi(-lower) - Phi(-upper)), so nothing cancels in the tails
    right = lower > 0
    a = torch.where(right, -upper, lower)
    b = torch.where(right, -lower, upper)
    log_b = torch.special.log_ndtr(b)
    log_mid = log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))
    first, last = -1.0 + 0.5 * half_width, 1.0 - 0.5 * half_width
    return torch.where(x < first, log_cdf_upper, torch.where(x > last, log_sf_lower, log_mid))


def model_log_variance(schedule: NoiseSchedule, variance: str = "beta_tilde") -> torch.Tensor:
    """log sigma_t^2 (T,), float64, for the two fixed choices of Sec. 3.2: sigma_t^2 = beta_tilde_t or beta_t.

    At paper step t = 1 (index 0) beta_tilde_1 = 0, so both choices use beta_tilde_2 there, as the paper's
    code does ("fixedsmall" uses the clipped log-variance, "fixedlarge" replaces beta_1 by beta_tilde_2).
    That sigma_1 is the standard deviation of the decoder p_theta(x_0 | x_1) of L_0.
    """
    if variance == "beta_tilde":
        return schedule.float64["posterior_log_variance_clipped"]
    if variance == "beta":
        post = schedule.float64["posterior_variance"]
        betas = schedule.float64["betas"]
        first = post[1:2] if schedule.T > 1 else betas[:1]
        return torch.log(torch.cat([first, betas[1:]]))
    raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")


def loss_weight(schedule: NoiseSchedule, variance: str = "beta_tilde") -> torch.Tensor:
    """The weight of ||eps - eps_theta||^2 in L_{t-1} (Eq. 12), (T,) float64, by tensor index:

        lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))

    so that L_{t-1} = E[lambda_t ||eps - eps_theta(x_t, t)||^2] + const when the model's mean is the
    posterior mean with the predicted eps plugged in. Dropping lambda_t (setting it to 1) gives L_simple
    (Eq. 14). Index 0 (paper t = 1) belongs to L_0, which is not a KL; its value uses sigma_1 of
    ``model_log_variance`` and is only reported for completeness.
    """
    s = schedule.float64
    sigma2 = torch.exp(model_log_variance(schedule, variance))
    return s["betas"] ** 2 / (2 * sigma2 * s["alphas"] * (1 - s["alpha_bars"]))


def nats_to_bits_per_dim(nats: torch.Tensor, num_dims: int) -> torch.Tensor:
    """Convert a negative log-likelihood in nats per image into bits per dimension: nats / (D ln 2)."""
    return nats / (num_dims * math.log(2.0))


def _sum_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def prior_term(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in nats per image (B,), with q(x_T | x_0) from Eq. 4."""
    x0 = x0.double()
    mean_coef, std = marginal_coefficients(schedule.float64["alpha_bars"][-1])
    mean = mean_coef * x0
    log_var = (2 * torch.log(std)).expand_as(x0)
    return _sum_dims(normal_kl(mean, log_var, torch.zeros_like(x0), torch.zeros_like(x0)))


def model_mean_log_variance(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    variance: str = "beta_tilde",
    prediction_type: str = "eps",
    clip_x0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, log-variance and predicted x_0 of p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I).

    mu_theta(x_t, t) = mu_tilde_t(x_t, x0_pred) (Eqs. 7 and 11 with x0_pred from Eq. 15); with
    ``clip_x0`` the predicted x_0 is clamped to [-1, 1] first, as in the samplers and the paper's code.
    The formulas are ``ddpmlib.diffusion``'s, the ones the samplers use.
    """
    x0_pred, _ = model_output_to_x0_eps(schedule, model_output, xt, t, prediction_type, clip_x0)
    mean, _, _ = q_posterior_mean_variance(schedule, x0_pred, xt, t)
    log_var = extract(model_log_variance(schedule, variance).to(xt.dtype), t, xt.shape)
    return mean, log_var.expand_as(xt), x0_pred


def vb_term(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    variance: str = "beta_tilde",
    prediction_type: str = "eps",
    clip_x0: bool = True,
) -> torch.Tensor:
    """The term L_t of the bound at tensor indices t (B,), in nats per image (B,):

    * t >= 1: L_t = KL(q(x_t | x_{t+1}, x_0) || p_theta(x_t | x_{t+1}))  (paper notation, Eq. 5), with
      ``xt`` the noised image at tensor index t, i.e. paper step t + 1;
    * t == 0: L_0 = -log p_theta(x_0 | x_1), the discretized Gaussian decoder (Eq. 13).

    One sample of x_t per image: averaged over x_t ~ q(x_t | x_0) this is an unbiased estimate of the
    expectation in Eq. 5.
    """
    x0, xt, model_output = x0.double(), xt.double(), model_output.double()
    true_mean, _, _ = q_posterior_mean_variance(schedule, x0, xt, t)
    true_log_var = extract(schedule.float64["posterior_log_variance_clipped"], t, xt.shape)
    mean, log_var, _ = model_mean_log_variance(schedule, model_output, xt, t, variance, prediction_type, clip_x0)
    kl = _sum_dims(normal_kl(true_mean, true_log_var.expand_as(xt), mean, log_var))
    nll = -_sum_dims(discretized_gaussian_log_likelihood(x0, mean, log_var))
    return torch.where(t == 0, nll, kl)


class Bound(NamedTuple):
    """The variational bound of each image, in bits per dimension."""

    total: torch.Tensor  # (B,) L_T + sum_t L_t, an upper bound on -log2 p_theta(x_0) / D
    prior: torch.Tensor  # (B,) L_T
    terms: torch.Tensor  # (B, T) terms[:, t] = L_t by tensor index t: terms[:, 0] = L_0, the decoder
    mse: torch.Tensor  # (B, T) mean squared error of the eps prediction at every t (the L_simple terms)


@torch.no_grad()
def variational_bound(
    model: Callable,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    variance: str = "beta_tilde",
    prediction_type: str = "eps",
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Bound:
    """The full bound (Eq. 5) of ``model`` for images ``x0`` (N, C, H, W) in [-1, 1], in bits per dimension.

    For every batch of images and every one of the T timesteps (a loop of T model calls per batch, as
    ``calc_bpd_loop`` in the paper's code) draw x_t ~ q(x_t | x_0) with noise from ``generator``
    (a CPU generator gives the same numbers on every device), evaluate the model and the term L_t of
    ``vb_term``; add the prior term L_T. ``labels`` (N,) makes it the bound on -log p(x_0 | y);
    None uses the model's null label, i.e. the unconditional model.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else x0.device
    n, T = x0.shape[0], schedule.T
    num_dims = x0[0].numel()
    terms = torch.zeros(n, T, dtype=torch.float64)
    mse = torch.zeros(n, T, dtype=torch.float64)
    bar = tqdm(total=n * T, disable=not progress, desc="bound", unit="img", unit_scale=True)
    for start in range(0, n, batch_size):
        xb = x0[start : start + batch_size].to(device)
        yb = None if labels is None else labels[start : start + batch_size].to(device)
        B = xb.shape[0]
        for t_index in range(T):
            t = torch.full((B,), t_index, device=device, dtype=torch.long)
            noise_device = generator.device if generator is not None else device
            noise = torch.randn(xb.shape, generator=generator, device=noise_device).to(device)
            xt = q_sample(schedule, xb, t, noise)
            out = model(xt, t, yb)
            term = vb_term(schedule, out, xb, xt, t, variance, prediction_type, clip_x0)
            terms[start : start + B, t_index] = term.cpu()
            _, eps_pred = model_output_to_x0_eps(schedule, out, xt, t, prediction_type)
            mse[start : start + B, t_index] = (eps_pred - noise).pow(2).flatten(1).mean(1).double().cpu()
            bar.update(B)
    bar.close()
    prior = prior_term(schedule, x0.cpu())
    prior_bpd = nats_to_bits_per_dim(prior, num_dims)
    terms_bpd = nats_to_bits_per_dim(terms, num_dims)
    return Bound(terms_bpd.sum(1) + prior_bpd, prior_bpd, terms_bpd, mse)
