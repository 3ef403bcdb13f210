"""A trained model together with its noise schedule: the three-line way to sample.

    from ddpmlib.pipeline import load_pipeline
    pipe = load_pipeline("checkpoints/mnist")                       # the shipped model
    images = pipe.generate(labels=range(10), sampler="ddim", steps=50, guidance_scale=2.0, seed=0)

``images`` is a (B, 1, 28, 28) tensor in [-1, 1]; ``ddpmlib.plotting.save_grid`` writes it as a PNG.
The keywords are the fields of ``ddpmlib.samplers.SamplingOptions``; ``pipe.generate(labels,
options=SamplingOptions("dpmpp", steps=10))`` is the same with the options as one object.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch

from .checkpoint import CheckpointError, load_weights, read_config, read_tensors
from .config import ConfigError, checkpoint_configs
from .diffusion import model_output_to_x0_eps
from .paths import shipped_checkpoints
from .samplers import SampleState, SamplingOptions, make_sampler, sample_iter
from .schedules import NoiseSchedule
from .unet import UNet

# ``checkpoints/mnist`` in the repository (package data in a wheel): the shipped model (configs/mnist_long.json, GPU)
SHIPPED_CHECKPOINT = os.path.join(shipped_checkpoints(), "mnist")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, then Apple MPS, then the CPU."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class EpsPrediction(torch.nn.Module):
    """eps_theta(x_t, t, y) from a network trained to predict eps, x_0 or v.

    The paper's formulas (Algorithm 2, the bound of Eq. 12) are written in terms of the predicted noise.
    A network trained on another target gives the same information, and this wrapper converts its output:
    for v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022) it first recovers
    x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v, then eps from Eq. 4. Same call signature and
    ``config`` / ``null_label`` as ``UNet``.
    """

    def __init__(self, model: UNet, schedule: NoiseSchedule, prediction_type: str):
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.config = model.config
        self.null_label = model.null_label
        self.null_labels = getattr(model, "null_labels", (model.null_label,))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model(x, t, y)
        if self.prediction_type == "eps":
            return out
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return model_output_to_x0_eps(self.schedule, out, x, t, self.prediction_type)[1]


class DDPMPipeline:
    def __init__(self, model: UNet, schedule: NoiseSchedule, prediction_type: str = "eps", config: dict | None = None):
        self.model = model.eval()
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.config = config or {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def eps_model(self) -> torch.nn.Module:
        """The network as eps_theta(x_t, t, y), whatever its training target (see ``EpsPrediction``)."""
        if self.prediction_type == "eps":
            return self.model
        return EpsPrediction(self.model, self.schedule, self.prediction_type).eval()

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def num_classes(self) -> int:
        return self.model.config.num_classes

    @property
    def null_labels(self) -> tuple[int, ...]:
        """The null value of each label the model takes: (num_classes,) or (num_classes, *extra_labels)."""
        return getattr(self.model, "null_labels", (self.num_classes,))

    def _check(self, labels) -> torch.Tensor:
        """Labels (B,) of class indices, or (B, K) rows (class, position, ...) for a model with several labels."""
        labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels, dtype=torch.long)
        nulls = self.null_labels
        if len(nulls) == 1:
            if labels.ndim != 1 or len(labels) == 0:
                raise ValueError("labels must be a non-empty list of class indices")
        elif labels.ndim != 2 or len(labels) == 0 or labels.shape[1] != len(nulls):
            raise ValueError(
                f"this model takes {len(nulls)} labels per image: give a non-empty list of rows "
                f"[class, label 1{', ...' if len(nulls) > 2 else ''}] (for example [[7, 3]])"
            )
        columns = labels[:, None] if labels.ndim == 1 else labels
        for k, null in enumerate(nulls):
            bad = columns[:, k][(columns[:, k] < 0) | (columns[:, k] > null)]
            if len(bad) and k == 0:
                raise ValueError(
                    f"class {int(bad[0])} is out of range: this model knows classes 0..{null - 1} "
                    f"(and {null} for 'no class')"
                )
            if len(bad):
                raise ValueError(
                    f"label {k} (column {k}) is {int(bad[0])}, out of range: it takes 0..{null - 1} "
                    f"(and {null} for 'none')"
                )
        return labels

    def generate_iter(
        self,
        labels: Iterable[int],
        *,
        options: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        x_start: torch.Tensor | None = None,
        t_start: int | None = None,
        yield_start: bool = False,
        uncond_labels=None,
        **option_keywords,
    ) -> Iterator[SampleState]:
        """Sample one image per label, yielding ``SampleState(t, x, pred_x0)`` after every step; the last
        ``x`` is the result. With ``yield_start=True`` the first item is the start ``(None, x_T, None)``, as
        in ``ddpmlib.samplers.sample_iter`` (here off by default, so that callers written for one item per
        step keep working).

        The sampling options are either ``options=SamplingOptions(...)`` or its fields as keywords
        (``sampler="ddim", steps=50, guidance_scale=0.0, eta=0.0, variance=None, seed=None``), not both.
        ``generator`` (instead of ``seed``) draws x_T and the noise; ``x_start`` replaces x_T, and with
        ``t_start`` sampling starts from that timestep (a partly noised image, SDEdit). ``labels`` are (B,)
        class indices, or (B, K) rows for a model with several labels; with guidance, ``uncond_labels`` (same
        shape) replaces the null labels of the unconditional term, to guide on some labels only.
        """
        options = SamplingOptions.resolve(options, **option_keywords)
        labels = self._check(labels)
        s = make_sampler(options, self.schedule, prediction_type=self.prediction_type)
        s.set_timesteps(options.steps, t_start)  # again, from t_start
        if generator is None:
            generator = torch.Generator(self.device)
            generator.manual_seed(0 if options.seed is None else options.seed)
        elif options.seed is not None:
            raise ValueError("give either a seed or a generator, not both")
        cfg = self.model.config
        shape = (len(labels), cfg.image_channels, cfg.image_size, cfg.image_size)
        yield from sample_iter(
            self.model,
            s,
            shape,
            labels.to(self.device),
            options.guidance_scale,
            generator=generator,
            x_start=x_start,
            uncond_labels=None if uncond_labels is None else self._check(uncond_labels).to(self.device),
            yield_start=yield_start,
        )

    def generate(self, labels: Iterable[int], **kwargs) -> torch.Tensor:
        """Samples (B, C, H, W) in [-1, 1] for the given labels; keyword arguments as in ``generate_iter``.
        Only the current step is kept in memory, not the whole trajectory."""
        x = None
        for state in self.generate_iter(labels, **kwargs):
            x = state.x  # the previous step's tensors are released here
        return x.clamp(-1, 1)


def build_pipeline(
    config: dict, tensors: dict[str, torch.Tensor], source: str = "checkpoint", use_ema: bool = True, device=None
) -> DDPMPipeline:
    try:
        model_cfg, diffusion = checkpoint_configs(config)  # every setting checked (ddpmlib.config)
    except ConfigError as e:
        raise CheckpointError(f"the config in {source} does not describe a valid model: {e}") from None
    if diffusion.process != "gaussian":
        raise CheckpointError(
            f"{source} is a cold-diffusion model (diffusion.process={diffusion.process!r}): load it with "
            f"ddpmlib.cold.load_cold, not as a Gaussian DDPM"
        )
    schedule = NoiseSchedule.from_name(diffusion.schedule, diffusion.T)
    model = UNet(model_cfg)
    prefix = "ema" if use_ema or not any(k.startswith("model.") for k in tensors) else "model"
    load_weights(model, tensors, prefix, source)
    dev = pick_device(device)
    # channels_last: 10-20% faster sampling on CPUs and on CUDA (measured in scripts/bench.py)
    model.to(dev, memory_format=torch.channels_last if dev.type in ("cpu", "cuda") else torch.contiguous_format)
    return DDPMPipeline(model, schedule, diffusion.prediction_type, config)


def load_pipeline(path: str | os.PathLike = SHIPPED_CHECKPOINT, device=None, use_ema: bool = True) -> DDPMPipeline:
    """Load a checkpoint directory (default: the shipped model) for sampling, on ``device`` (default: auto)."""
    config = read_config(path)
    tensors = read_tensors(os.path.join(path, "model.safetensors"))
    return build_pipeline(config, tensors, str(path), use_ema, device)
