"""Samplers: turn a noise predictor into images by running the reverse process.

Three samplers, one interface: ``DDPMSampler`` (ancestral, Algorithm 2 of Ho et al. 2020), ``DDIMSampler``
(Song et al. 2021; eta = 0 deterministic) and ``DPMSolverPPSampler`` (DPM-Solver++(2M), Lu et al. 2022: a
deterministic second-order multistep solver of the ODE that DDIM with eta = 0 solves to first order).
They use the formulas of ``ddpmlib.diffusion`` and hold no network. The interface (as in widely used
diffusion libraries):

    sampler.set_timesteps(n)                         # choose n of the T training steps
    for t in sampler.timesteps:                      # descending tensor indices, T-1 first
        eps = model(x, t, y)
        x, x0_pred = sampler.step(eps, t, x, generator)

``sample_iter()`` below is that loop, plus labels and classifier-free guidance, as a generator that yields
``SampleState(t, x, pred_x0)``: first ``(None, x_T, None)``, then one item after every step; ``sample()``
runs it to the end. ``SamplingOptions`` holds the user's choices (sampler, steps, guidance, eta, variance,
seed) and checks them; ``make_sampler`` builds the sampler they describe.

Strided sampling (n < T) uses the sub-sequence tau = (tau_n > ... > tau_1) of tensor indices chosen
by ``set_timesteps`` and the respaced process whose cumulative products are alpha_bar_{tau_i}
(Nichol & Dhariwal 2021, Sec. 4; Song et al. 2021, Sec. 4.2). Every step uses the pair
(alpha_bar_t, alpha_bar_prev) of the current step t and the next one in the sequence (or 1 after
the last), so full and strided sampling share one formula.

Guidance convention (classifier-free guidance, Ho & Salimans 2022, Eq. 6):

    eps_guided = (1 + w) * eps(x_t, t, y) - w * eps(x_t, t, null)

w = 0 is the plain conditional model. Other code writes eps_u + s * (eps_c - eps_u) with a scale s;
the two agree when s = 1 + w (so s = 1 means no guidance there, w = 0 here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .diffusion import (
    PREDICTION_TYPES,
    half_log_snr,
    marginal_coefficients,
    posterior_mean,
    posterior_variance,
    x0_eps_from_model_output,
)
from .schedules import NoiseSchedule

SAMPLERS = ("ddpm", "ddim", "dpmpp")
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp": "DPM-Solver++(2M)"}


class StepOutput(NamedTuple):
    prev_sample: torch.Tensor  # x_{t_prev}
    pred_x0: torch.Tensor  # the model's estimate of x_0 at this step


class Sampler:
    """Common part of DDPM, DDIM and DPM-Solver++: timestep selection and conversion of model outputs."""

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "eps", clip_x0: bool = True):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_x0 = clip_x0  # clamp predicted x_0 to the data range [-1, 1]
        self._ab = schedule.float64["alpha_bars"].tolist()  # alpha_bar per tensor index, Python floats
        self.set_timesteps(schedule.T)

    def set_timesteps(self, num_steps: int, t_start: int | None = None) -> None:
        """Use ``num_steps`` timesteps, evenly spaced from ``t_start`` (default T-1, pure noise) down to 0.

        The first step is always t_start and the last is always 0 (paper t = 1), so no step of the
        chain is dropped at either end. ``t_start < T-1`` starts from a partly noised image (SDEdit).
        """
        T = self.schedule.T
        t_start = T - 1 if t_start is None else t_start
        if isinstance(t_start, bool) or not isinstance(t_start, (int, np.integer)) or not 0 <= t_start <= T - 1:
            raise ValueError(f"t_start must be an integer in [0, {T - 1}], got {t_start!r}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
            raise ValueError(f"the number of sampling steps must be an integer, got {num_steps!r}")
        if not 1 <= num_steps <= t_start + 1:
            raise ValueError(
                f"the number of sampling steps must be between 1 and {t_start + 1} "
                f"(the model was trained with T={T} steps), got {num_steps}"
            )
        if num_steps == 1:
            steps = np.array([t_start])
        else:
            steps = np.round(np.linspace(t_start, 0, num_steps)).astype(np.int64)
        self.timesteps = torch.from_numpy(steps)
        self.num_steps = int(num_steps)
        prev = list(steps[1:]) + [-1]
        self._prev = {int(t): int(p) for t, p in zip(steps, prev)}

    def _alpha_bars(self, t: int) -> tuple[float, float, int]:
        """(alpha_bar_t, alpha_bar_prev, prev) for step t, as Python floats (computed in float64)."""
        t = int(t)
        if t not in self._prev:
            raise ValueError(f"timestep {t} is not one of this sampler's timesteps; call set_timesteps first")
        prev = self._prev[t]
        return self._ab[t], (self._ab[prev] if prev >= 0 else 1.0), prev

    def _x0_eps(self, model_output: torch.Tensor, t: int, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted x_0 and eps from the model output (``ddpmlib.diffusion.x0_eps_from_model_output``),
        x_0 clipped to [-1, 1] if ``clip_x0`` (eps then recomputed from it)."""
        return x0_eps_from_model_output(model_output, x_t, self._ab[int(t)], self.prediction_type, self.clip_x0)

    @staticmethod
    def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class DDPMSampler(Sampler):
    """Ancestral sampling, Algorithm 2 of Ho et al. (2020):
    x_{t-1} = mu_tilde_t(x_t, x0_pred) + sigma_t z, z ~ N(0, I), and no noise at the last step.

    ``variance="beta"`` uses sigma_t^2 = beta_t and ``variance="beta_tilde"`` (default) uses the
    posterior variance beta_tilde_t (Sec. 3.2); for strided steps both use the respaced betas
    beta_t' = 1 - alpha_bar_t / alpha_bar_prev.
    """

    def __init__(self, schedule: NoiseSchedule, variance: str = "beta_tilde", **kwargs):
        if variance not in ("beta", "beta_tilde"):
            raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
        self.variance = variance
        super().__init__(schedule, **kwargs)

    def step(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        # 1. alpha_bar of this step and the next (the respaced beta_t = 1 - alpha_bar_t / alpha_bar_prev)
        ab_t, ab_prev, prev = self._alpha_bars(t)
        # 2. predicted x_0 (Eq. 15), clipped to [-1, 1]
        x0, _ = self._x0_eps(model_output, t, x_t)
        # 3. posterior mean mu_tilde_t(x_t, x_0) (Eq. 7)
        mean = posterior_mean(x0, x_t, ab_t, ab_prev)
        if prev < 0:  # the last step returns the mean (Algorithm 2: z = 0 when t = 1)
            return StepOutput(mean, x0)
        # 4. add noise with variance sigma_t^2: beta_t or beta_tilde_t (Eq. 7)
        var = 1 - ab_t / ab_prev if self.variance == "beta" else posterior_variance(ab_t, ab_prev)
        return StepOutput(mean + math.sqrt(var) * self._noise(x_t, generator), x0)


class DDIMSampler(Sampler):
    """DDIM, Song et al. (2021), Eq. 12:
    x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps_pred + sigma z,
    sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev) (Eq. 16).

    eta = 0 is deterministic; eta = 1 over all T steps is DDPM with sigma_t^2 = beta_tilde_t.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, **kwargs):
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must be between 0 and 1, got {eta!r}")
        self.eta = float(eta)
        super().__init__(schedule, **kwargs)

    def step(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        # 1. alpha_bar of this step and the next
        ab_t, ab_prev, prev = self._alpha_bars(t)
        # 2. predicted x_0 and the eps consistent with it
        x0, eps = self._x0_eps(model_output, t, x_t)
        # 3. sigma_t(eta), Eq. 16
        var = self.eta**2 * posterior_variance(ab_t, ab_prev)
        # 4. Eq. 12: point back towards x_t, plus fresh noise
        prev_sample = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - var)) * eps
        if prev >= 0 and self.eta > 0:
            prev_sample = prev_sample + math.sqrt(var) * self._noise(x_t, generator)
        return StepOutput(prev_sample, x0)


class DPMSolverPPSampler(Sampler):
    """DPM-Solver++(2M), Lu et al. (2022), "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
    Probabilistic Models" (arXiv:2211.01095), Algorithm 2: a deterministic multistep second-order solver of
    the diffusion ODE in data-prediction form.

    Notation of the paper: alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t) (Eq. 4 of Ho et al.),
    the half-log-SNR lambda_t = log(alpha_t / sigma_t), x_theta(x_t, t) the predicted x_0 (clipped to [-1, 1]
    like the other samplers: the paper's "thresholding"). The exact solution from t to the next time s < t is

        x_s = sigma_s / sigma_t x_t + sigma_s int_{lambda_t}^{lambda_s} e^lambda x_theta(x_lambda, lambda) dlambda

    and with h = lambda_s - lambda_t the solver's update is

        x_s = sigma_s / sigma_t x_t - alpha_s (e^{-h} - 1) D,

    where D = x_theta(x_t, t) gives the first-order solver (the same update as DDIM with eta = 0), and
    Algorithm 2 uses the previous step's prediction as well, with r = h_prev / h:

        D = (1 + 1 / (2 r)) x_theta(x_t, t) - 1 / (2 r) x_theta(x_{t_prev}, t_prev).

    First order on the first step (there is no previous prediction yet) and on the last two:

    * the last step, from tensor index 0 (paper t = 1) to x_0: there alpha_bar_prev = 1, so sigma_s = 0,
      lambda_s = +inf, e^{-h} = 0 and the update is x_0 = alpha_s D = x_theta(x_t, t) (the second-order
      correction would need r = h_prev / h = 0);
    * the step into tensor index 0: lambda grows like -1/2 log(t) as t -> 0, so with timesteps evenly spaced
      in t this last interval is much longer in lambda than the one before (lambda 1.0 -> 4.6 after 0.2-long
      steps, for 10 steps of the linear schedule) and the multistep extrapolation, weighted 1 + 1/(2r) with
      r << 1, overshoots. The reference implementations fall back to first order at the end for the same
      reason (``lower_order_final`` in Lu et al.'s code and in diffusers). A bounded number of first-order
      steps keeps the global order 2 (``tests/test_samplers.py`` checks the error ratios).

    The sampler keeps the previous prediction x_theta and step h as state: ``set_timesteps`` and a step at
    the first timestep reset it, and steps must come in the order of ``timesteps``. Deterministic:
    ``generator`` is unused. Guidance works as for the other samplers, on the model output.
    """

    def set_timesteps(self, num_steps: int, t_start: int | None = None) -> None:
        super().set_timesteps(num_steps, t_start)
        self._reset()

    def _reset(self) -> None:
        self._x0_prev: torch.Tensor | None = None  # x_theta at the previous step
        self._h_prev = 0.0  # lambda_{t_prev} -> lambda_t of the previous step
        self._next = 0  # index into self.timesteps of the step expected next

    def step(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        # 1. alpha_bar of this step and the next; alpha, sigma and lambda of both
        ab_t, ab_prev, prev = self._alpha_bars(t)
        timesteps = self.timesteps.tolist()
        if int(t) == timesteps[0]:
            self._reset()  # a new trajectory starts
        elif self._next >= len(timesteps) or int(t) != timesteps[self._next]:
            raise ValueError(
                f"DPM-Solver++ is a multistep method: call step for the timesteps in order, starting at "
                f"{timesteps[0]} (got {int(t)}); set_timesteps resets it"
            )
        self._next = timesteps.index(int(t)) + 1
        alpha_t, sigma_t = marginal_coefficients(ab_t)
        alpha_s, sigma_s = marginal_coefficients(ab_prev)
        # 2. the data prediction x_theta(x_t, t), clipped to [-1, 1]
        x0, _ = self._x0_eps(model_output, t, x_t)
        if prev < 0:  # 3a. last step: sigma_s = 0, e^{-h} = 0, so x_0 = alpha_s D with D = x_theta (first order)
            self._x0_prev = None
            return StepOutput(alpha_s * x0, x0)
        h = half_log_snr(ab_prev) - half_log_snr(ab_t)
        # 3b. D: first order on the first step and on the step into the last timestep, else Algorithm 2's
        # multistep combination
        if self._x0_prev is None or prev == timesteps[-1]:
            d = x0
        else:
            r = self._h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self._x0_prev
        # 4. x_s = sigma_s / sigma_t x_t - alpha_s (e^{-h} - 1) D
        prev_sample = (sigma_s / sigma_t) * x_t - (alpha_s * math.expm1(-h)) * d
        self._x0_prev, self._h_prev = x0, h
        return StepOutput(prev_sample, x0)


VARIANCES = ("beta_tilde", "beta")  # DDPM's sigma_t^2 (Ho et al. 2020, Sec. 3.2)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample, checked on construction (a clear ``ValueError`` for anything invalid).

    * ``sampler``         "ddpm" (Algorithm 2), "ddim" or "dpmpp" (DPM-Solver++(2M)); see ``SAMPLER_NAMES``
    * ``steps``           number of denoising steps (at most T, which ``make_sampler`` checks against the schedule)
    * ``guidance_scale``  w >= 0 of classifier-free guidance: (1 + w) eps(x, y) - w eps(x, null); 0 = none
    * ``eta``             DDIM only: 0 deterministic ... 1 as much noise as DDPM
    * ``variance``        DDPM only: sigma_t^2 = "beta_tilde" (the default when None) or "beta"
    * ``seed``            seed of the generator that draws x_T and the noise (None: 0, or the caller's generator)

    An option that does not apply to the chosen sampler (``eta`` other than 0 for DDPM or DPM-Solver++,
    ``variance`` for DDIM or DPM-Solver++) is an error, not silently ignored.
    """

    sampler: str = "ddim"
    steps: int = 50
    guidance_scale: float = 0.0
    eta: float = 0.0
    variance: str | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not _is_int(self.steps) or self.steps < 1:
            raise ValueError(f"the number of sampling steps must be a positive integer, got {self.steps!r}")
        if not _is_number(self.guidance_scale) or not 0 <= self.guidance_scale < math.inf:
            raise ValueError(f"guidance_scale must be a number >= 0 (0: no guidance), got {self.guidance_scale!r}")
        if not _is_number(self.eta) or not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be a number between 0 and 1, got {self.eta!r}")
        if self.eta != 0 and self.sampler != "ddim":
            raise ValueError(
                f"eta applies to the DDIM sampler only; {SAMPLER_NAMES[self.sampler]} got eta={self.eta!r}"
            )
        if self.variance is not None:
            if self.variance not in VARIANCES:
                raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {self.variance!r}")
            if self.sampler != "ddpm":
                raise ValueError(
                    f"variance applies to the DDPM sampler only; {SAMPLER_NAMES[self.sampler]} "
                    f"got variance={self.variance!r}"
                )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be an integer between 0 and 2**63 - 1, got {self.seed!r}")
        # plain Python types from here on (numpy scalars from sliders and argparse work too)
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "guidance_scale", float(self.guidance_scale))
        object.__setattr__(self, "eta", float(self.eta))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    @classmethod
    def resolve(cls, options: SamplingOptions | None = None, **keywords) -> SamplingOptions:
        """``options``, or the options the keywords describe (the fields above; None means the default).
        Giving both is an error, so that no keyword is silently overridden."""
        given = {k: v for k, v in keywords.items() if v is not None}
        if options is None:
            return cls(**given)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a SamplingOptions, got {type(options).__name__}")
        if given:
            raise ValueError(
                f"give the sampling options either as options=SamplingOptions(...) or as keywords, not both "
                f"(got options and {', '.join(given)})"
            )
        return options


def make_sampler(
    name: str | SamplingOptions,
    schedule: NoiseSchedule,
    num_steps: int | None = None,
    *,
    eta: float | None = None,
    variance: str | None = None,
    prediction_type: str = "eps",
    clip_x0: bool = True,
) -> Sampler:
    """The sampler that ``SamplingOptions`` describe, with its timesteps set:

        make_sampler("ddim", schedule, 50, eta=0.5)                       # name, steps (default T), options
        make_sampler(SamplingOptions("dpmpp", steps=10), schedule)        # or the options themselves

    ``guidance_scale`` and ``seed`` of the options belong to the sampling loop (``sample_iter``), not to the
    sampler. Options that do not apply to the sampler raise ``ValueError`` (see ``SamplingOptions``).
    """
    if isinstance(name, SamplingOptions):
        if num_steps is not None or eta is not None or variance is not None:
            raise ValueError("give make_sampler either SamplingOptions or num_steps/eta/variance, not both")
        options = name
    else:
        steps = schedule.T if num_steps is None else num_steps
        options = SamplingOptions(sampler=name, steps=steps, eta=0.0 if eta is None else eta, variance=variance)
    kwargs = dict(prediction_type=prediction_type, clip_x0=clip_x0)
    if options.sampler == "ddpm":
        sampler = DDPMSampler(schedule, variance=options.variance or "beta_tilde", **kwargs)
    elif options.sampler == "ddim":
        sampler = DDIMSampler(schedule, eta=options.eta, **kwargs)
    else:
        sampler = DPMSolverPPSampler(schedule, **kwargs)
    sampler.set_timesteps(options.steps)
    return sampler


def guided_model_output(
    model: Callable,
    x: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    guidance_scale: float,
    null_label: int | Sequence[int],
    uncond_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 + w) eps(x, t, y) - w eps(x, t, null) with w = ``guidance_scale``; one batched forward pass.

    ``null_label``: the null value, or one per column for labels (B, K) of several labels. ``uncond_labels``
    replaces the all-null labels of the second term: (digit, null position) guides on the position alone."""
    if labels is None or guidance_scale == 0:
        return model(x, t, labels)
    null = null_like(labels, null_label) if uncond_labels is None else uncond_labels
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
    cond, uncond = out.chunk(2)
    return (1 + guidance_scale) * cond - guidance_scale * uncond


def null_like(labels: torch.Tensor, null_label: int | Sequence[int]) -> torch.Tensor:
    """Labels of the same shape with every entry replaced by its null value (one per column for (B, K))."""
    null = torch.as_tensor(null_label, dtype=labels.dtype, device=labels.device)
    if labels.ndim == 2 and null.ndim == 0:
        raise ValueError(f"labels of shape {tuple(labels.shape)} need one null value per column")
    return null.expand(labels.shape).clone()


class SampleState(NamedTuple):
    """One item of ``sample_iter``: the state of the reverse process."""

    t: int | None  # the timestep (tensor index) just taken; None for the starting sample
    x: torch.Tensor  # the sample after that step, x_{t_prev} (x_0 after the last); x_T / x_start at the start
    pred_x0: torch.Tensor | None  # the model's estimate of x_0 at step t; None at the start


@torch.no_grad()
def sample_iter(
    model: Callable,
    sampler: Sampler,
    shape: tuple[int, ...],
    labels: torch.Tensor | None = None,
    guidance_scale: float = 0.0,
    *,
    generator: torch.Generator | None = None,
    x_start: torch.Tensor | None = None,
    null_label: int | Sequence[int] | None = None,
    uncond_labels: torch.Tensor | None = None,
    yield_start: bool = True,
) -> Iterator[SampleState]:
    """Run the reverse process, yielding ``SampleState(t, x, pred_x0)`` named tuples:

    1. first (unless ``yield_start=False``) the starting sample: ``(None, x_T, None)``, where x_T is the noise
       drawn from ``generator`` (or ``x_start``), so a caller can show it without drawing it again;
    2. then one item after every step t of ``sampler.timesteps``: ``(t, x_prev, pred_x0)``. The ``x`` of
       the last item is the result x_0 (not clamped).

    ``x_start`` replaces the initial noise x_T (for example a noised drawing, with
    ``sampler.set_timesteps(n, t_start)``). ``labels`` (B,) of ints, or (B, K) for a model with several
    labels (``UNetConfig.extra_labels``); None means unconditional. With guidance, ``uncond_labels`` (same
    shape) replaces the null labels of the unconditional term (``guided_model_output``).
    Nothing is kept between items: a caller that keeps only the last one holds one step in memory.
    """
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        if labels.ndim not in (1, 2) or labels.shape[0] != shape[0]:
            raise ValueError(f"labels must have shape ({shape[0]},) or ({shape[0]}, K), got {tuple(labels.shape)}")
    if null_label is None:
        null_label = getattr(model, "null_labels" if labels is not None and labels.ndim == 2 else "null_label", None)
    if uncond_labels is not None:
        uncond_labels = torch.as_tensor(uncond_labels, dtype=torch.long, device=device)
        if labels is None or uncond_labels.shape != labels.shape:
            raise ValueError("uncond_labels must have the shape of labels")
    if guidance_scale and null_label is None:
        raise ValueError("guidance needs a model with a null label")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if x_start is None:
        x = torch.randn(shape, generator=generator, device=device)
    else:
        x = x_start.to(device)
    if yield_start:
        yield SampleState(None, x, None)
    for t in sampler.timesteps.tolist():
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        out = guided_model_output(model, x, tt, labels, guidance_scale, null_label, uncond_labels)
        x, x0 = sampler.step(out, t, x, generator=generator)
        del out  # not held while the caller looks at this step
        yield SampleState(t, x, x0)


def sample(
    model: Callable,
    sampler: Sampler,
    shape: tuple[int, ...],
    labels: torch.Tensor | None = None,
    guidance_scale: float = 0.0,
    *,
    generator: torch.Generator | None = None,
    x_start: torch.Tensor | None = None,
    callback: Callable | None = None,
) -> torch.Tensor:
    """Run ``sample_iter`` to the end and return x_0 (B, C, H, W) in [-1, 1] (clamped).

    ``callback(i, t, x_t, pred_x0)``, if given, is called after every step i (0-based), for example to
    record the denoising trajectory.
    """
    x = None
    steps = sample_iter(
        model, sampler, shape, labels, guidance_scale, generator=generator, x_start=x_start, yield_start=False
    )
    for i, (t, x, x0) in enumerate(steps):
        if callback is not None:
            callback(i, t, x, x0)
    return x.clamp(-1, 1)
