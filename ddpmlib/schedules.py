"""Noise schedules and the per-timestep quantities derived from them.

Timestep convention (used everywhere in ddpmlib)
------------------------------------------------
The paper numbers diffusion steps t = 1, ..., T; x_0 is data and x_T is (almost) pure noise.
ddpmlib stores per-step quantities in tensors of length T and indexes them with the
**tensor index** ``t = 0, ..., T-1``, which is **paper step t + 1**. So

* ``betas[t]`` is beta_{t+1};  ``alpha_bars[t]`` is alpha_bar_{t+1} = prod_{s<=t+1} alpha_s;
* ``alpha_bars_prev[t]`` is alpha_bar_t (paper), with ``alpha_bars_prev[0] = 1`` (alpha_bar_0 = 1);
* the network is called with the tensor index, training draws ``t ~ U{0, ..., T-1}``
  (every one of the T paper steps, Algorithm 1), and sampling starts at ``t = T-1``
  (paper t = T) and ends with ``t = 0`` (paper t = 1), whose output is x_0.

Schedules are pure functions of T that return ``betas`` as float64 tensors.
``NoiseSchedule`` derives everything else from them once, in float64, then casts.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine", "sigmoid", "quadratic")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear schedule of Ho et al. (2020), Sec. 4: beta_1 = 1e-4 ... beta_T = 0.02 for T = 1000.

    For other T the end points are scaled by 1000 / T (Nichol & Dhariwal 2021, Sec. 3.2) so that
    alpha_bar_T stays close to zero and the schedule describes the same continuous process; for very
    small T (< 50) the scaled betas are clipped at 0.999.
    """
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64).clamp(max=0.999)


def quadratic_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Quadratic schedule: sqrt(beta_t) linear in t, same end points as ``linear_betas``."""
    scale = 1000.0 / T
    betas = torch.linspace(math.sqrt(scale * beta_start), math.sqrt(scale * beta_end), T, dtype=torch.float64) ** 2
    return betas.clamp(max=0.999)


def _betas_from_alpha_bar(alpha_bar_fn, T: int, max_beta: float) -> torch.Tensor:
    """beta_t = 1 - alpha_bar(t/T) / alpha_bar((t-1)/T), clipped at ``max_beta`` (Nichol & Dhariwal, Eq. 17)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = alpha_bar_fn(steps)
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(0.0, max_beta)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), Eq. 17:
    alpha_bar(t) = f(t) / f(0),  f(t) = cos(((t/T + s) / (1 + s)) * pi / 2)^2."""

    def alpha_bar(u):
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return f / f[0]

    return _betas_from_alpha_bar(alpha_bar, T, max_beta)


def sigmoid_betas(
    T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> torch.Tensor:
    """Sigmoid schedule of Jabri et al. (2022), "Scalable adaptive computation", Alg. 1:
    alpha_bar(u) = (sigmoid(end/tau) - sigmoid((u (end - start) + start) / tau)) /
                   (sigmoid(end/tau) - sigmoid(start/tau)),  u = t/T in [0, 1]."""
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))

    def alpha_bar(u):
        return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    return _betas_from_alpha_bar(alpha_bar, T, max_beta)


def make_betas(name: str, T: int) -> torch.Tensor:
    """Betas (float64, length T) of the schedule called ``name`` (one of ``SCHEDULES``)."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"the number of diffusion steps T must be a positive integer, got {T!r}")
    fns = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas, "quadratic": quadratic_betas}
    if name not in fns:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return fns[name](T)


def extract(a: torch.Tensor, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Pick ``a[t]`` for a batch of tensor indices ``t`` (B,) and reshape to (B, 1, 1, ...) to
    broadcast against a tensor of ``shape`` (B, C, H, W)."""
    out = a.to(t.device)[t]
    return out.reshape(t.shape[0], *([1] * (len(shape) - 1)))


class NoiseSchedule:
    """All per-timestep constants of a DDPM, indexed by tensor index t = 0..T-1 (paper t+1).

    Attribute names follow the paper (Ho et al. 2020):

    * ``betas``                beta_t, the forward-process variances (Eq. 2)
    * ``alphas``               alpha_t = 1 - beta_t
    * ``alpha_bars``           alpha_bar_t = prod_{s<=t} alpha_s (Eq. 4)
    * ``alpha_bars_prev``      alpha_bar_{t-1}, with alpha_bar_0 = 1
    * ``sqrt_alpha_bars``, ``sqrt_one_minus_alpha_bars``   the coefficients of Eq. 4
    * ``posterior_variance``   beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (Eq. 7)
    * ``posterior_log_variance_clipped``  log beta_tilde_t, with beta_tilde_1 = 0 replaced by
      beta_tilde_2 so the log is finite (as in the paper's code)
    * ``posterior_mean_coef1``, ``posterior_mean_coef2``   mu_tilde_t = coef1 x_0 + coef2 x_t (Eq. 7)
    * ``snr``                  alpha_bar_t / (1 - alpha_bar_t), the signal-to-noise ratio

    Everything is computed in float64 and stored as float32 (``dtype``).
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom", dtype: torch.dtype = torch.float32):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError("betas must be a non-empty 1-D tensor")
        if not ((betas > 0).all() and (betas < 1).all()):
            raise ValueError("every beta_t must lie in (0, 1)")
        self.name = name
        self.T = len(betas)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_variance = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
        log_var = (
            torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])) if self.T > 1 else torch.log(betas)
        )
        values = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "alpha_bars_prev": alpha_bars_prev,
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": (1.0 - alpha_bars).sqrt(),
            "sqrt_recip_alpha_bars": (1.0 / alpha_bars).sqrt(),
            "sqrt_recipm1_alpha_bars": (1.0 / alpha_bars - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": log_var,
            "posterior_mean_coef1": betas * alpha_bars_prev.sqrt() / (1.0 - alpha_bars),
            "posterior_mean_coef2": (1.0 - alpha_bars_prev) * alphas.sqrt() / (1.0 - alpha_bars),
            "snr": alpha_bars / (1.0 - alpha_bars),
        }
        self.float64 = values  # kept for tests and notebooks that want full precision
        for key, value in values.items():
            setattr(self, key, value.to(dtype))

    @classmethod
    def from_name(cls, name: str = "linear", T: int = 1000) -> NoiseSchedule:
        """The schedule ``name`` (linear, cosine, sigmoid, quadratic) with T steps."""
        return cls(make_betas(name, T), name=name)

    def __repr__(self) -> str:
        return f"NoiseSchedule(name={self.name!r}, T={self.T})"
