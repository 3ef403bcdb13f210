"""The Gaussian diffusion process: forward noising, the posterior, and prediction conversions.

Every function takes a ``NoiseSchedule`` and tensor indices ``t`` (B,) in 0..T-1, which are
paper steps t+1 (see ``ddpmlib.schedules`` for the convention). Equation numbers refer to
Ho et al. (2020), "Denoising Diffusion Probabilistic Models", unless stated otherwise.
"""

from __future__ import annotations

import torch

from .schedules import NoiseSchedule, extract

PREDICTION_TYPES = ("eps", "x0", "v")


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
    return (
        extract(schedule.sqrt_alpha_bars, t, x0.shape) * x0
        + extract(schedule.sqrt_one_minus_alpha_bars, t, x0.shape) * noise
    )


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
    (Eqs. 6-7): mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                             + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t."""
    mean = (
        extract(schedule.posterior_mean_coef1, t, xt.shape) * x0
        + extract(schedule.posterior_mean_coef2, t, xt.shape) * xt
    )
    var = extract(schedule.posterior_variance, t, xt.shape)
    log_var = extract(schedule.posterior_log_variance_clipped, t, xt.shape)
    return mean, var, log_var


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert Eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return (
        extract(schedule.sqrt_recip_alpha_bars, t, xt.shape) * xt
        - extract(schedule.sqrt_recipm1_alpha_bars, t, xt.shape) * eps
    )


def predict_eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Invert Eq. 4 for the noise: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    return (xt - extract(schedule.sqrt_alpha_bars, t, xt.shape) * x0) / extract(
        schedule.sqrt_one_minus_alpha_bars, t, xt.shape
    )


def v_target(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The "velocity" of Salimans & Ho (2022), Sec. 4: v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
    return (
        extract(schedule.sqrt_alpha_bars, t, x0.shape) * eps
        - extract(schedule.sqrt_one_minus_alpha_bars, t, x0.shape) * x0
    )


def predict_x0_from_v(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v (Salimans & Ho 2022)."""
    return (
        extract(schedule.sqrt_alpha_bars, t, xt.shape) * xt
        - extract(schedule.sqrt_one_minus_alpha_bars, t, xt.shape) * v
    )


def model_output_to_x0_eps(
    schedule: NoiseSchedule, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, prediction_type: str = "eps"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network output of ``prediction_type`` ("eps", "x0" or "v") into (x_0, eps) predictions."""
    if prediction_type == "eps":
        eps = model_output
        x0 = predict_x0_from_eps(schedule, xt, t, eps)
    elif prediction_type == "x0":
        x0 = model_output
        eps = predict_eps_from_x0(schedule, xt, t, x0)
    elif prediction_type == "v":
        x0 = predict_x0_from_v(schedule, xt, t, model_output)
        eps = predict_eps_from_x0(schedule, xt, t, x0)
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
    return x0, eps


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
