"""The Gaussian diffusion process: forward noising, the posterior, and prediction conversions.

Every formula is written once, as a function of the cumulative product alpha_bar (and, for the
posterior, of alpha_bar_prev, the value at the step the reverse process moves to):

    marginal_coefficients  sqrt(alpha_bar), sqrt(1 - alpha_bar): q(x_t | x_0) (Eq. 4)
    x0_from_eps, eps_from_x0, x0_from_v, v_from_x0_eps   Eq. 4 solved for one unknown (Eq. 15), and v
    x0_eps_from_model_output   a network output of any prediction type -> (x_0, eps), optionally clipped
    posterior_mean, posterior_variance   q(x_{t-1} | x_t, x_0) (Eqs. 6-7)

``alpha_bar`` is either a Python float (the samplers, which move between any two timesteps of a
strided sequence) or a float64 tensor that broadcasts against the images, e.g. (B, 1, 1, 1). The
coefficients are computed in float64 and then cast to the images' dtype, so a float32 image gets
exactly the float32 constants that ``NoiseSchedule`` stores.

The ``schedule``-indexed functions below them (``q_sample``, ``predict_x0_from_eps``, ...,
``q_posterior_mean_variance``) take a ``NoiseSchedule`` and tensor indices ``t`` (B,) in 0..T-1,
which are paper steps t+1 (see ``ddpmlib.schedules`` for the convention), look up alpha_bar and call
the formulas above. Equation numbers refer to Ho et al. (2020), "Denoising Diffusion Probabilistic
Models", unless stated otherwise.
"""

from __future__ import annotations

import math

import torch

from .schedules import NoiseSchedule, extract

PREDICTION_TYPES = ("eps", "x0", "v")

Coefficient = float | torch.Tensor  # a per-step value: a Python float or a float64 tensor like (B, 1, 1, 1)


# ---------------------------------------------------------------------------------------------------
# the formulas, as functions of alpha_bar


def _sqrt(a: Coefficient) -> Coefficient:
    return math.sqrt(a) if isinstance(a, (int, float)) else a.sqrt()


def _like(c: Coefficient, x: torch.Tensor) -> Coefficient:
    """A float64 coefficient cast to the dtype and device of ``x`` (Python floats stay as they are)."""
    return c if isinstance(c, (int, float)) else c.to(x.dtype).to(x.device)


def marginal_coefficients(alpha_bar: Coefficient) -> tuple[Coefficient, Coefficient]:
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)): q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    (Eq. 4). DPM-Solver (Lu et al. 2022) calls them alpha_t and sigma_t."""
    return _sqrt(alpha_bar), _sqrt(1 - alpha_bar)


def half_log_snr(alpha_bar: float) -> float:
    """lambda_t = log(alpha_t / sigma_t) = 1/2 log(alpha_bar_t / (1 - alpha_bar_t)), the half-log-SNR of
    DPM-Solver (Lu et al. 2022, Sec. 3.1); +inf at alpha_bar = 1 (clean data)."""
    return math.inf if alpha_bar >= 1.0 else 0.5 * math.log(alpha_bar / (1.0 - alpha_bar))


def x0_from_eps(xt: torch.Tensor, eps: torch.Tensor, alpha_bar: Coefficient) -> torch.Tensor:
    """Eq. 4 solved for x_0 (the x_0 of Eq. 15): x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    sqrt_ab, sqrt_1m_ab = marginal_coefficients(alpha_bar)
    return (xt - _like(sqrt_1m_ab, xt) * eps) / _like(sqrt_ab, xt)


def eps_from_x0(xt: torch.Tensor, x0: torch.Tensor, alpha_bar: Coefficient) -> torch.Tensor:
    """Eq. 4 solved for the noise: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    sqrt_ab, sqrt_1m_ab = marginal_coefficients(alpha_bar)
    return (xt - _like(sqrt_ab, xt) * x0) / _like(sqrt_1m_ab, xt)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: Coefficient) -> torch.Tensor:
    """The "velocity" of Salimans & Ho (2022), Sec. 4: v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
    sqrt_ab, sqrt_1m_ab = marginal_coefficients(alpha_bar)
    return _like(sqrt_ab, x0) * eps - _like(sqrt_1m_ab, x0) * x0


def x0_from_v(xt: torch.Tensor, v: torch.Tensor, alpha_bar: Coefficient) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v (Salimans & Ho 2022; Eq. 4 and the definition of v)."""
    sqrt_ab, sqrt_1m_ab = marginal_coefficients(alpha_bar)
    return _like(sqrt_ab, xt) * xt - _like(sqrt_1m_ab, xt) * v


def x0_eps_from_model_output(
    model_output: torch.Tensor,
    xt: torch.Tensor,
    alpha_bar: Coefficient,
    prediction_type: str = "eps",
    clip_x0: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network output of ``prediction_type`` ("eps", "x0" or "v") into (x_0, eps) predictions.

    With ``clip_x0`` the predicted x_0 is clamped to the data range [-1, 1] and eps is recomputed from
    it (Eq. 4), so that the pair stays consistent: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
    """
    eps = None
    if prediction_type == "eps":
        x0, eps = x0_from_eps(xt, model_output, alpha_bar), model_output
    elif prediction_type == "x0":
        x0 = model_output
    elif prediction_type == "v":
        x0 = x0_from_v(xt, model_output, alpha_bar)
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
    if clip_x0:
        x0, eps = x0.clamp(-1.0, 1.0), None
    if eps is None:
        eps = eps_from_x0(xt, x0, alpha_bar)
    return x0, eps


def posterior_mean(
    x0: torch.Tensor, xt: torch.Tensor, alpha_bar: Coefficient, alpha_bar_prev: Coefficient
) -> torch.Tensor:
    """The mean of q(x_prev | x_t, x_0) (Eq. 7), with beta_t = 1 - alpha_bar_t / alpha_bar_prev, alpha_t = 1 - beta_t:

        mu_tilde_t = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x_0
                     + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t

    For consecutive steps this is Eq. 7 itself; for a strided pair it is the same formula for the respaced
    process (Nichol & Dhariwal 2021, Sec. 4)."""
    beta = 1 - alpha_bar / alpha_bar_prev
    alpha = 1 - beta
    coef_x0 = _sqrt(alpha_bar_prev) * beta / (1 - alpha_bar)
    coef_xt = _sqrt(alpha) * (1 - alpha_bar_prev) / (1 - alpha_bar)
    return _like(coef_x0, x0) * x0 + _like(coef_xt, xt) * xt


def posterior_variance(alpha_bar: Coefficient, alpha_bar_prev: Coefficient) -> Coefficient:
    """beta_tilde_t = beta_t (1 - alpha_bar_prev) / (1 - alpha_bar_t), the variance of q(x_prev | x_t, x_0) (Eq. 7)."""
    return (1 - alpha_bar / alpha_bar_prev) * (1 - alpha_bar_prev) / (1 - alpha_bar)


# ---------------------------------------------------------------------------------------------------
# the same, at tensor indices t of a NoiseSchedule


def _at(schedule: NoiseSchedule, name: str, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``schedule.float64[name]`` at tensor indices t, shaped (B, 1, ...) to broadcast against ``shape``
    (on the CPU when t is on an MPS device, which has no float64)."""
    return extract(schedule.float64[name], t.cpu() if t.device.type == "mps" else t, shape)


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) in closed form (Eq. 4, reparameterised):
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,  eps ~ N(0, I)."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    sqrt_ab, sqrt_1m_ab = marginal_coefficients(_at(schedule, "alpha_bars", t, x0.shape))
    return _like(sqrt_ab, x0) * x0 + _like(sqrt_1m_ab, x0) * noise


def q_step(
    schedule: NoiseSchedule, x_prev: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One forward step x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (Eq. 2)."""
    noise = torch.randn(x_prev.shape, generator=generator, device=x_prev.device, dtype=x_prev.dtype)
    betas = extract(schedule.betas, t, x_prev.shape)
    return (1.0 - betas).sqrt() * x_prev + betas.sqrt() * noise


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)
    (Eqs. 6-7), mean from ``posterior_mean``; the variances are ``NoiseSchedule``'s tables."""
    ab, ab_prev = _at(schedule, "alpha_bars", t, xt.shape), _at(schedule, "alpha_bars_prev", t, xt.shape)
    mean = posterior_mean(x0, xt, ab, ab_prev)
    var = extract(schedule.posterior_variance, t, xt.shape)
    log_var = extract(schedule.posterior_log_variance_clipped, t, xt.shape)
    return mean, var, log_var


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``x0_from_eps`` at tensor indices t: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return x0_from_eps(xt, eps, _at(schedule, "alpha_bars", t, xt.shape))


def predict_eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """``eps_from_x0`` at tensor indices t: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    return eps_from_x0(xt, x0, _at(schedule, "alpha_bars", t, xt.shape))


def v_target(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``v_from_x0_eps`` at tensor indices t: v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
    return v_from_x0_eps(x0, eps, _at(schedule, "alpha_bars", t, x0.shape))


def predict_x0_from_v(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x0_from_v`` at tensor indices t: x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    return x0_from_v(xt, v, _at(schedule, "alpha_bars", t, xt.shape))


def model_output_to_x0_eps(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    prediction_type: str = "eps",
    clip_x0: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x0_eps_from_model_output`` at tensor indices t: a network output of ``prediction_type``
    ("eps", "x0" or "v") as (x_0, eps) predictions, x_0 clamped to [-1, 1] if ``clip_x0``."""
    ab = _at(schedule, "alpha_bars", t, xt.shape)
    return x0_eps_from_model_output(model_output, xt, ab, prediction_type, clip_x0)


def training_target(
    schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prediction_type: str = "eps"
) -> torch.Tensor:
    """What the network learns to output: eps (L_simple, Eq. 14), x_0, or v."""
    if prediction_type == "eps":
        return eps
    if prediction_type == "x0":
        return x0
    if prediction_type == "v":
        return v_target(schedule, x0, eps, t)
    raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
