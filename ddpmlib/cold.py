"""Cold diffusion with Gaussian blur instead of Gaussian noise (notebook 11).

Bansal et al. (2022), "Cold Diffusion: Inverting Arbitrary Image Transforms Without Noise" (arXiv:2208.09392):
replace the noising of Ho et al. (2020) by any degradation D(x_0, s), train a restoration network
R(x_s, s) ~ x_0 to undo it, and sample by degrading and restoring in turn. Here D is Gaussian blur.

Levels and the timestep convention
----------------------------------
The degradation has levels s = 0, ..., T: ``D(x, 0) = x`` (the identity) and ``D(x, T)`` the fully blurred
image. As everywhere in ddpmlib (``ddpmlib.schedules``), the network and the samplers use the **tensor index**
t = 0, ..., T-1, which is paper step t+1: tensor index t holds x_{t+1} = D(x_0, t + 1), the restorer is called
as ``R(D(x_0, t + 1), t, y)``, training draws t ~ U{0, ..., T-1} (levels 1..T), sampling starts at t = T-1
(level T) and its last step, t = 0, moves to level 0.

The degradation (Bansal et al., Sec. 4.1 "Deblurring")
------------------------------------------------------
The paper blurs MNIST with a fixed 11x11 Gaussian kernel applied s times, with circular padding (the
``padding_mode="circular"`` of its code). Convolving Gaussians adds their variances, so s applications of a
kernel of std sigma_step are one Gaussian of std sigma_step sqrt(s). We compute that Gaussian directly for
every level: D(x, s) = G_{sigma_s} * x with circular boundary conditions, separable in height and width,
each written as a circulant matrix K (n x n, K[i, j] = k[(i - j) mod n], k the Gaussian summed over its
periodic copies), so that D(x, s) = K_H x K_W^T per channel. Because every row and column of K sums to 1,
the blur keeps the mean of every channel exactly, and as sigma grows D(x, s) tends to the constant image
of the channel means. ``blur_sigmas`` gives sigma_s (pixels) for s = 0..T, sigma_0 = 0:

* ``"sqrt"``: sigma_s^2 linear in s from sigma_min^2 (s = 1) to sigma_max^2 (s = T), so sigma grows like
  sqrt(s): the paper's repeated fixed kernel (exactly so when sigma_min = sigma_max / sqrt(T));
* ``"geometric"``: log sigma_s linear in s, from sigma_min to sigma_max (more steps at fine scales, as in
  the blur schedules of Rissanen et al. 2023, "Generative Modelling with Inverse Heat Dissipation").

Training and sampling
---------------------
``restoration_loss`` is the paper's objective (Eq. 1 there): || R(D(x_0, s), s) - x_0 || with the L1 norm
(the paper's choice) or the squared L2 norm (``train.loss``), plus the classifier-free null-label dropout of
ddpmlib's Gaussian training. ``python -m ddpmlib.train`` uses it when ``diffusion.process`` is ``"blur"``.

``ColdSampler`` holds the two samplers of the paper, with the interface of ``ddpmlib.samplers``:

* ``"naive"``, Algorithm 1:    x_{s-1} = D(x0_hat, s - 1)
* ``"improved"``, Algorithm 2 (TACoS):  x_{s-1} = x_s - D(x0_hat, s) + D(x0_hat, s - 1)

where x0_hat = R(x_s, s). Both return x_0 exactly when R is exact; Algorithm 2 also forgives a restorer
whose errors change little from one level to the next (Sec. 3.3 of the paper).

Generation: the fully blurred image is almost a constant, so ``fit_start_distribution`` fits a
distribution to D(x_0, T) of training images (per class): a Gaussian mixture over the per-channel means
(the paper's Sec. 5.2, whose last level is exactly constant) or a full Gaussian over the blurred images.
A deterministic sampler maps one start to one image, so the paper adds a little Gaussian noise to x_T
(``start_noise``) to break the symmetry. With the schedule of ``configs/mnist_cold.json`` (geometric,
sigma 0.5 -> 10 px, T = 50) D(x_0, T) keeps a faint low-frequency trace of the digit (a few percent), which
the restorer reads: the full Gaussian start works and the constant start does not (notebook 11).

``load_cold`` loads a blur checkpoint (safetensors + config.json, ``ddpmlib.checkpoint``) as a
``ColdPipeline``. This module imports ``ddpmlib.train``; ``ddpmlib.train`` imports it only inside functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_weights, read_config, read_tensors
from .config import ConfigError, DiffusionConfig, TrainConfig, checkpoint_configs
from .pipeline import pick_device
from .samplers import SampleState, StepOutput, guided_model_output
from .train import sample_timesteps
from .unet import UNet

BLUR_SCHEDULES = ("sqrt", "geometric")
COLD_SAMPLERS = ("naive", "improved")
START_KINDS = ("channel_mean", "gaussian")


# ---------------------------------------------------------------------------------------------------
# the degradation D(x, s)


def blur_sigmas(T: int, sigma_min: float, sigma_max: float, schedule: str = "sqrt") -> torch.Tensor:
    """sigma_s in pixels for levels s = 0..T, float64 (T + 1,): sigma_0 = 0 (the identity), sigma_1 = sigma_min,
    sigma_T = sigma_max; ``"sqrt"``: sigma_s^2 linear in s, ``"geometric"``: log sigma_s linear in s."""
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min} and {sigma_max}")
    u = torch.linspace(0, 1, T, dtype=torch.float64) if T > 1 else torch.ones(1, dtype=torch.float64)
    if schedule == "sqrt":
        sig = (sigma_min**2 + (sigma_max**2 - sigma_min**2) * u).sqrt()
    elif schedule == "geometric":
        sig = torch.exp(math.log(sigma_min) + (math.log(sigma_max) - math.log(sigma_min)) * u)
    else:
        raise ValueError(f"unknown blur schedule {schedule!r}; choose one of {BLUR_SCHEDULES}")
    return torch.cat([torch.zeros(1, dtype=torch.float64), sig])


def periodic_gaussian_kernel(sigma: float, n: int) -> torch.Tensor:
    """k[d], d = 0..n-1: the Gaussian of std ``sigma`` at offset d, summed over its periodic copies d + m n
    (circular padding with a kernel of any width), normalised to sum 1; float64 (n,). sigma = 0: a delta."""
    k = torch.zeros(n, dtype=torch.float64)
    if sigma == 0:
        k[0] = 1.0
        return k
    reps = math.ceil(8 * sigma / n) + 1  # copies beyond 8 sigma add nothing in float64
    d = torch.arange(n, dtype=torch.float64)
    for m in range(-reps, reps + 1):
        k += torch.exp(-((d + m * n) ** 2) / (2 * sigma**2))
    return k / k.sum()


def blur_matrix(sigma: float, n: int) -> torch.Tensor:
    """The circulant n x n matrix K[i, j] = k[(i - j) mod n] of ``periodic_gaussian_kernel``: K @ v is the circular
    convolution of v with the Gaussian. Symmetric, rows and columns sum to 1; the identity for sigma = 0."""
    k = periodic_gaussian_kernel(sigma, n)
    i = torch.arange(n)
    return k[(i[:, None] - i[None, :]) % n]


class BlurSchedule:
    """The degradation D(x, s) = G_{sigma_s} * x for levels s = 0..T (see the module docstring).

    ``sigmas`` (float64, (T + 1,)) are in pixels; the circulant matrices are built once per image size, device
    and dtype (computed in float64 on the CPU, then cast)."""

    def __init__(self, T: int, sigma_min: float = 0.5, sigma_max: float = 10.0, schedule: str = "geometric"):
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an integer >= 1, got {T!r}")
        self.T = T
        self.schedule = schedule
        self.sigmas = blur_sigmas(T, sigma_min, sigma_max, schedule)
        self._matrices: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_config(cls, diffusion: DiffusionConfig) -> BlurSchedule:
        return cls(diffusion.T, diffusion.blur_sigma_min, diffusion.blur_sigma_max, diffusion.blur_schedule)

    def __repr__(self) -> str:
        s = self.sigmas
        return f"BlurSchedule(T={self.T}, {self.schedule}, sigma_1={s[1]:.3g}, sigma_T={s[-1]:.3g} px)"

    def matrices(self, n: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """(T + 1, n, n): the blur matrix of every level for images n pixels wide (or high)."""
        key = (n, str(torch.device(device or "cpu")), dtype)
        if key not in self._matrices:
            mats = torch.stack([blur_matrix(float(s), n) for s in self.sigmas])
            self._matrices[key] = mats.to(dtype).to(device)
        return self._matrices[key]

    def degrade(self, x: torch.Tensor, s: int | torch.Tensor) -> torch.Tensor:
        """D(x, s): ``x`` (B, C, H, W), ``s`` a level 0..T for the whole batch or one per example (B,)."""
        B, _, H, W = x.shape
        s = torch.as_tensor(s, device=x.device, dtype=torch.long)
        if s.ndim == 0:
            s = s.expand(B)  # one code path for both, so that equal inputs give equal bits
        if s.shape != (B,) or int(s.min()) < 0 or int(s.max()) > self.T:
            raise ValueError(f"levels must be integers in 0..{self.T}, one per example or one in all")
        kh = self.matrices(H, x.device, x.dtype)[s][:, None]  # (B, 1, H, H)
        kw = self.matrices(W, x.device, x.dtype)[s][:, None]  # (B, 1, W, W)
        return kh @ x @ kw.transpose(-1, -2)  # (B, C, H, W): K_H x K_W^T for every channel


# ---------------------------------------------------------------------------------------------------
# training: R(D(x_0, s), s, y) ~ x_0


def restoration_loss(
    model: Callable,
    blur: BlurSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor | None,
    generator: torch.Generator,
    *,
    p_uncond: float = 0.1,
    loss: str = "l1",
    null_label: int | None = None,
    timestep_sampling: str = "uniform",
    shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """One Monte-Carlo estimate of the cold-diffusion objective (Bansal et al., Eq. 1) for a batch:
    mean over the batch of |R(D(x_0, s), s, y) - x_0| (``loss="l1"``) or its square (``"mse"``), per pixel.

    All randomness from ``generator``, in this order: the tensor indices t (level s = t + 1), then the
    null-label dropout. ``shard=(r, W)`` as in ``ddpmlib.train.diffusion_loss``: both are drawn for the
    global batch of W * B images and slice r is used."""
    B = x0.shape[0]
    rank, world = shard
    mine = slice(rank * B, (rank + 1) * B)
    t = sample_timesteps(world * B, blur.T, generator, timestep_sampling)[mine].to(x0.device)
    if labels is not None and p_uncond > 0:
        drop = (torch.rand(world * B, generator=generator)[mine] < p_uncond).to(x0.device)
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    with torch.autocast(x0.device.type, enabled=False):  # the blur in float32 even under bf16 autocast
        xt = blur.degrade(x0.float(), t + 1)
    out = model(xt, t, labels).float()
    if loss == "l1":
        per_example = F.l1_loss(out, x0.float(), reduction="none").flatten(1).mean(1)
    elif loss == "mse":
        per_example = F.mse_loss(out, x0.float(), reduction="none").flatten(1).mean(1)
    else:
        raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")
    return per_example.mean()


def restoration_loss_options(cfg: TrainConfig, diffusion: DiffusionConfig, null_label: int) -> dict:
    """The keyword arguments of ``restoration_loss`` that a run's config sets (``ddpmlib.train.loss_options``)."""
    if cfg.loss_weighting != "none":
        raise ConfigError(
            f"train.loss_weighting={cfg.loss_weighting!r} weighs noise levels by their SNR, which blur does not "
            f"have: use loss_weighting 'none' with diffusion.process='blur'"
        )
    return dict(
        blur=BlurSchedule.from_config(diffusion),
        p_uncond=cfg.p_uncond,
        loss=cfg.loss,
        null_label=null_label,
        timestep_sampling=cfg.timestep_sampling,
    )


# ---------------------------------------------------------------------------------------------------
# sampling: Algorithms 1 and 2 of Bansal et al.


class ColdSampler:
    """The samplers of Bansal et al. (2022), holding no network, with the interface of ``ddpmlib.samplers``:

        sampler.set_timesteps(n)                      # n of the T levels, evenly spaced
        for t in sampler.timesteps:                   # tensor indices, T-1 first: x is at level s = t + 1
            x0_hat = restorer(x, t, y)
            x, x0_hat = sampler.step(x0_hat, t, x)

    ``method="naive"`` is Algorithm 1, ``"improved"`` Algorithm 2 (TACoS). With n < T a step moves from
    level s to the next level s' of the sequence (0 after the last) with the same formulas, s - 1 -> s'.
    ``clip_x0`` clamps x0_hat to the data range [-1, 1] first, as ddpmlib's other samplers do.
    """

    def __init__(self, blur: BlurSchedule, method: str = "improved", clip_x0: bool = True):
        if method not in COLD_SAMPLERS:
            raise ValueError(f"unknown cold sampler {method!r}; choose one of {COLD_SAMPLERS}")
        self.blur = blur
        self.method = method
        self.clip_x0 = clip_x0
        self.set_timesteps(blur.T)

    def set_timesteps(self, num_steps: int) -> None:
        """Use ``num_steps`` levels, evenly spaced from T down to 1 (tensor indices T-1 ... 0); both ends kept."""
        T = self.blur.T
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= T:
            raise ValueError(f"the number of sampling steps must be an integer between 1 and T={T}, got {num_steps!r}")
        steps = np.array([T - 1]) if num_steps == 1 else np.round(np.linspace(T - 1, 0, num_steps)).astype(np.int64)
        self.timesteps = torch.from_numpy(steps)
        self.num_steps = int(num_steps)
        # level of the sample after step t: the next step's level, 0 after the last
        self._next_level = {int(t): int(p) + 1 for t, p in zip(steps, steps[1:])} | {int(steps[-1]): 0}

    def step(self, x0_pred: torch.Tensor, t: int, x_t: torch.Tensor, generator=None) -> StepOutput:
        """One step from level s = t + 1 to the next level; ``generator`` is unused (the samplers are deterministic)."""
        t = int(t)
        if t not in self._next_level:
            raise ValueError(f"timestep {t} is not one of this sampler's timesteps; call set_timesteps first")
        s, s_next = t + 1, self._next_level[t]
        # 1. the restorer's estimate of x_0, clipped to the data range
        x0 = x0_pred.clamp(-1, 1) if self.clip_x0 else x0_pred
        # 2. Algorithm 1: degrade the estimate to the next level
        if self.method == "naive":
            return StepOutput(self.blur.degrade(x0, s_next), x0)
        # 3. Algorithm 2: x_s - D(x0_hat, s) + D(x0_hat, s'): move x_s by the change that x0_hat predicts
        return StepOutput(x_t - self.blur.degrade(x0, s) + self.blur.degrade(x0, s_next), x0)


@torch.no_grad()
def sample_iter(
    restorer: Callable,
    sampler: ColdSampler,
    x_start: torch.Tensor,
    labels: torch.Tensor | None = None,
    guidance_scale: float = 0.0,
    *,
    start_noise: float = 0.0,
    generator: torch.Generator | None = None,
    null_label: int | None = None,
    yield_start: bool = True,
) -> Iterator[SampleState]:
    """Run a cold sampler from ``x_start`` (the fully blurred image, level T), yielding
    ``SampleState(t, x, pred_x0)`` as ``ddpmlib.samplers.sample_iter`` does: first the start (unless
    ``yield_start=False``), then one item after every step; the last ``x`` is the result (not clamped).

    ``restorer(x, t, y)`` predicts x_0 (a ``UNet`` trained by ``restoration_loss``, or any function, e.g. one
    that knows the answer). ``start_noise`` > 0 adds N(0, start_noise^2) noise, drawn from ``generator``, to
    the start (Bansal et al., Sec. 5.2). Guidance: x0_hat = (1 + w) R(x, t, y) - w R(x, t, null), w =
    ``guidance_scale``, the convention of ``ddpmlib.samplers``."""
    x = x_start
    if start_noise > 0:
        x = x + start_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if null_label is None:
        null_label = getattr(restorer, "null_label", None)
    if guidance_scale and (labels is None or null_label is None):
        raise ValueError("guidance needs labels and a restorer with a null label")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long, device=x.device)
    if yield_start:
        yield SampleState(None, x, None)
    for t in sampler.timesteps.tolist():
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0 = guided_model_output(restorer, x, tt, labels, guidance_scale, null_label)
        x, x0 = sampler.step(x0, t, x)
        yield SampleState(t, x, x0)


def sample(restorer: Callable, sampler: ColdSampler, x_start: torch.Tensor, labels=None, **kwargs) -> torch.Tensor:
    """Run ``sample_iter`` to the end; the result (B, C, H, W), clamped to [-1, 1]."""
    x = None
    for state in sample_iter(restorer, sampler, x_start, labels, yield_start=False, **kwargs):
        x = state.x
    return x.clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------
# where sampling starts: a distribution fitted to D(x_0, T)


def _gmm_fit(z: torch.Tensor, k: int, generator: torch.Generator, iters: int = 100):
    """A Gaussian mixture with ``k`` full-covariance components fitted to z (N, d) by EM (float64);
    returns (weights (k,), means (k, d), covariances (k, d, d))."""
    N, d = z.shape
    jitter = 1e-8 * torch.eye(d, dtype=z.dtype) * (1 + z.var(0).mean())
    if k == 1 or N <= k:
        cov = torch.cov(z.T).reshape(d, d) if N > 1 else torch.zeros(d, d, dtype=z.dtype)
        return torch.ones(1, dtype=z.dtype), z.mean(0, keepdim=True), (cov + jitter)[None]
    means = z[torch.randperm(N, generator=generator)[:k]].clone()
    covs = (torch.cov(z.T).reshape(d, d) + jitter).expand(k, d, d).clone()
    weights = torch.full((k,), 1.0 / k, dtype=z.dtype)
    for _ in range(iters):
        # E-step: responsibilities from the log-densities of every component
        logp = (
            torch.stack([torch.distributions.MultivariateNormal(means[j], covs[j]).log_prob(z) for j in range(k)], 1)
            + weights.log()
        )
        resp = torch.softmax(logp, 1)  # (N, k)
        # M-step: weighted means and covariances
        nk = resp.sum(0) + 1e-12
        weights = nk / N
        means = (resp.T @ z) / nk[:, None]
        for j in range(k):
            c = z - means[j]
            covs[j] = (resp[:, j, None] * c).T @ c / nk[j] + jitter
    return weights, means, covs


@dataclass
class StartDistribution:
    """A distribution of fully blurred images x_T, one per class (index ``num_classes`` = all classes pooled).

    ``kind="channel_mean"``: a Gaussian mixture over the per-channel means, x_T the constant image of a drawn
    mean (Bansal et al., Sec. 5.2); ``kind="gaussian"``: one Gaussian over the whole blurred image (mean image
    and covariance), which also keeps the faint low-frequency structure that D(x_0, T) has left."""

    kind: str
    shape: tuple[int, int, int]  # (C, H, W)
    components: list  # per class: (weights (k,), means (k, d), scale factors (k, d, d)) with cov = L L^T

    def sample(self, labels: torch.Tensor | None, n: int | None = None, generator: torch.Generator | None = None):
        """One start per label (class c's fit; None or the null label: the pooled fit), (B, C, H, W) float32."""
        if labels is None:
            labels = torch.full((n,), len(self.components) - 1)
        labels = torch.as_tensor(labels).cpu().clamp(max=len(self.components) - 1)
        C, H, W = self.shape
        out = torch.empty(len(labels), C, H, W, dtype=torch.float64)
        u = torch.rand(len(labels), generator=generator, dtype=torch.float64)  # chooses the mixture component
        for i, c in enumerate(labels.tolist()):
            weights, means, scales = self.components[c]
            j = min(int(torch.searchsorted(weights.cumsum(0), u[i : i + 1]).item()), len(weights) - 1)
            z = torch.randn(means.shape[1], generator=generator, dtype=torch.float64)
            v = means[j] + scales[j] @ z
            out[i] = v.view(C, 1, 1).expand(C, H, W) if self.kind == "channel_mean" else v.view(C, H, W)
        return out.float()


def _scale(cov: torch.Tensor) -> torch.Tensor:
    """L with L L^T = cov for a positive semi-definite cov (via the eigendecomposition, negative rounding dropped)."""
    vals, vecs = torch.linalg.eigh(cov)
    return vecs * vals.clamp(min=0).sqrt()


def fit_start_distribution(
    x_T: torch.Tensor,
    labels: torch.Tensor | None = None,
    kind: str = "channel_mean",
    n_components: int = 1,
    num_classes: int | None = None,
    seed: int = 0,
) -> StartDistribution:
    """Fit the distribution of fully blurred images ``x_T`` = D(x_0, T) (N, C, H, W), per class if ``labels``.

    ``kind``: ``"channel_mean"`` (a mixture of ``n_components`` Gaussians over the C channel means, fitted by
    EM; Bansal et al., Sec. 5.2) or ``"gaussian"`` (mean and covariance of the whole image)."""
    if kind not in START_KINDS:
        raise ValueError(f"unknown start distribution {kind!r}; choose one of {START_KINDS}")
    x = x_T.detach().cpu().double()
    z = x.mean((2, 3)) if kind == "channel_mean" else x.flatten(1)  # (N, d)
    g = torch.Generator().manual_seed(seed)
    groups = []
    if labels is not None:
        labels = torch.as_tensor(labels).cpu()
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        groups = [z[labels == c] for c in range(num_classes)]
        if any(len(grp) < 2 for grp in groups):
            raise ValueError("every class needs at least two blurred images to fit its start distribution")
    groups.append(z)  # the pooled fit, for unconditional sampling
    k = n_components if kind == "channel_mean" else 1
    components = []
    for grp in groups:
        weights, means, covs = _gmm_fit(grp, k, g)
        components.append((weights, means, torch.stack([_scale(c) for c in covs])))
    return StartDistribution(kind, tuple(x_T.shape[1:]), components)


# ---------------------------------------------------------------------------------------------------
# a trained blur model


@dataclass
class ColdPipeline:
    """A restoration network R(x_s, t, y) ~ x_0 with its blur schedule: ``load_cold(path)``."""

    model: UNet
    blur: BlurSchedule
    config: dict

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def T(self) -> int:
        return self.blur.T

    @property
    def num_classes(self) -> int:
        return self.model.config.num_classes

    @torch.no_grad()
    def fit_start(self, images: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> StartDistribution:
        """``fit_start_distribution`` of D(images, T), blurred in batches on this pipeline's device."""
        blurred = torch.cat([self.blur.degrade(b.to(self.device).float(), self.T).cpu() for b in images.split(2000)])
        return fit_start_distribution(blurred, labels, num_classes=self.num_classes, **kwargs)

    def generate(
        self,
        labels,
        start: StartDistribution | torch.Tensor,
        *,
        method: str = "improved",
        steps: int | None = None,
        start_noise: float = 0.0,
        guidance_scale: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One image per label (B, C, H, W) in [-1, 1]. ``start``: a ``StartDistribution`` to draw x_T from, or
        x_T itself. ``steps`` (default T) levels of ``ColdSampler(method)``; ``seed`` or ``generator`` draws
        x_T and the start noise (a CPU generator: the draws are the same on every device)."""
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        elif seed is not None:
            raise ValueError("give either a seed or a generator, not both")
        labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels, dtype=torch.long)
        if isinstance(start, StartDistribution):
            x_T = start.sample(labels, generator=generator)
        else:
            x_T = start
        if start_noise > 0:  # drawn on the CPU, so that a seed gives the same images on every device
            x_T = x_T + start_noise * torch.randn(x_T.shape, generator=generator)
        sampler = ColdSampler(self.blur, method)
        sampler.set_timesteps(self.T if steps is None else steps)
        return sample(self.model, sampler, x_T.to(self.device), labels.to(self.device), guidance_scale=guidance_scale)


def load_cold(path: str | os.PathLike, device=None, use_ema: bool = True) -> ColdPipeline:
    """Load a checkpoint directory written by ``python -m ddpmlib.train`` with ``diffusion.process="blur"``."""
    config = read_config(path)
    try:
        model_cfg, diffusion = checkpoint_configs(config)
    except ConfigError as e:
        raise CheckpointError(f"the config in {path} does not describe a valid model: {e}") from None
    if diffusion.process != "blur":
        raise CheckpointError(
            f"{path} holds a {diffusion.process!r} diffusion model, not a blur (cold diffusion) model: "
            f"load it with ddpmlib.pipeline.load_pipeline"
        )
    tensors = read_tensors(os.path.join(path, "model.safetensors"))
    model = UNet(model_cfg)
    prefix = "ema" if use_ema or not any(k.startswith("model.") for k in tensors) else "model"
    load_weights(model, tensors, prefix, str(path))
    return ColdPipeline(model.to(pick_device(device)).eval(), BlurSchedule.from_config(diffusion), config)


def sample_grid(ema: UNet, blur: BlurSchedule, images: torch.Tensor, labels: torch.Tensor, n_per_class: int = 8):
    """One row per class (improved sampler, Gaussian start fitted to the first 2,000 training images, fixed
    seed): what a blur model draws now, for the sample grids of ``python -m ddpmlib.train``."""
    was_training = ema.training
    pipe = ColdPipeline(ema.eval(), blur, {})
    start = pipe.fit_start(images[:2000], labels[:2000], kind="gaussian")
    y = torch.arange(ema.config.num_classes).repeat_interleave(n_per_class)
    x = pipe.generate(y, start, seed=0)
    ema.train(was_training)
    return x


def generate_samples(
    pipe: ColdPipeline,
    start: StartDistribution,
    num_samples: int,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **generate_kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """N samples (CPU, in [-1, 1]) with balanced labels (``ddpmlib.evaluate.balanced_labels``), as
    ``ddpmlib.evaluate.generate_samples`` draws them for a Gaussian model; one generator seeded by ``seed``
    feeds all batches. Keywords: those of ``ColdPipeline.generate`` (``method``, ``steps``, ``start_noise``, ...)."""
    from .evaluate import balanced_labels

    labels = balanced_labels(num_samples, pipe.num_classes)
    g = torch.Generator().manual_seed(seed)
    out = [pipe.generate(y, start, generator=g, **generate_kwargs).cpu() for y in labels.split(batch_size)]
    return torch.cat(out), labels
