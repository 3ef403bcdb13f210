"""Run configuration: the model, diffusion and training settings, read from JSON and checked up front.

A run is described by one JSON file with three sections (``configs/mnist_cpu.json``), and an optional
fourth that names the training data (MNIST when left out)::

    {"model": UNetConfig, "diffusion": DiffusionConfig, "train": TrainConfig, "data": DataConfig}

``load_config_file`` reads it, ``apply_overrides`` applies ``--set section.key=value`` items, and
``build_configs`` turns the dict into the three dataclasses (``data_config`` reads the data section).
Every value is checked against the type of its dataclass field and its allowed range before training
starts, so a bad setting gives one line that names the key and what it may be
(``train.batch_size must be an integer >= 1, got 0``) instead of a traceback from deep inside torch.

The diffusion section owns T and the noise schedule. The model repeats them (``model.num_timesteps``,
``model.schedule``) because the "scalar" time embedding of the U-Net is built from beta_t and
alpha_bar_t; when the model section leaves them out they are copied from the diffusion section, and
when it names them they must agree.
"""

from __future__ import annotations

import copy
import json
import math
import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .diffusion import PREDICTION_TYPES
from .paths import REPO_ROOT, shipped_configs  # configs/ and checkpoints/ live here
from .schedules import SCHEDULES
from .unet import UNetConfig

DEFAULT_CONFIG = shipped_configs() / "mnist_cpu.json"
SECTIONS = ("model", "diffusion", "train", "data")
CHECKPOINT_KEYS = ("format_version", "step")  # written next to the sections in a checkpoint's config.json


class ConfigError(ValueError):
    """A setting has the wrong type, is out of range, is unknown, or disagrees with another one."""


def setting(default=MISSING, *, factory=MISSING, ge=None, gt=None, le=None, lt=None, choices=None):
    """A dataclass field with its allowed range (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <) or ``choices``."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices).items() if v is not None}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DiffusionConfig:
    schedule: str = setting("linear", choices=SCHEDULES)
    T: int = setting(1000, ge=1)
    prediction_type: str = setting("eps", choices=PREDICTION_TYPES)
    # "gaussian": the noising of Ho et al. (2020); "blur": cold diffusion with Gaussian blur (Bansal et al. 2022,
    # ddpmlib.cold), whose network restores x_0 (prediction_type "x0"; the noise schedule is not used)
    process: str = setting("gaussian", choices=("gaussian", "blur"))
    # blur only: std in pixels of the Gaussian blur at level 1 (sigma_min) and T (sigma_max), in between
    # "geometric" (log sigma linear in the level) or "sqrt" (sigma^2 linear: the paper's fixed kernel applied
    # repeatedly); the defaults are configs/mnist_cold.json's, chosen in notebook 11
    blur_schedule: str = setting("geometric", choices=("sqrt", "geometric"))
    blur_sigma_min: float = setting(0.5, gt=0)
    blur_sigma_max: float = setting(10.0, gt=0)

    def __post_init__(self):
        check_dataclass(self, "diffusion")
        if self.blur_sigma_min > self.blur_sigma_max:
            raise ConfigError(
                f"diffusion.blur_sigma_min={self.blur_sigma_min:g} must not exceed "
                f"diffusion.blur_sigma_max={self.blur_sigma_max:g}"
            )
        if self.process == "blur" and self.prediction_type != "x0":
            raise ConfigError(
                f"diffusion.process='blur' trains a network that restores x_0: set diffusion.prediction_type to "
                f"'x0', got {self.prediction_type!r}"
            )


@dataclass
class TrainConfig:
    seed: int = setting(0, ge=0)
    batch_size: int = setting(64, ge=1)  # per process; under torchrun the global batch is batch_size * world size
    max_steps: int = setting(10_000, ge=1)  # the learning-rate schedule runs over this many steps
    max_minutes: float | None = setting(None, gt=0)  # stop early (with a checkpoint) after this much wall time
    lr: float = setting(2e-3, gt=0)
    lr_schedule: str = setting("cosine", choices=("cosine", "constant"))  # cosine: to lr_min_ratio * lr
    lr_min_ratio: float = setting(0.05, ge=0, le=1)
    warmup_steps: int = setting(200, ge=0)
    weight_decay: float = setting(0.0, ge=0)
    grad_clip: float = setting(1.0, ge=0)  # 0: no clipping
    ema_decay: float = setting(0.999, ge=0, lt=1)
    ema_warmup: bool = True  # decay_s = min(ema_decay, (1 + s) / (10 + s)): EMA useful from the start
    p_uncond: float = setting(0.1, ge=0, le=1)  # probability of the null label (classifier-free guidance)
    loss: str = setting("mse", choices=("mse", "l1"))  # "mse" (L_simple) or "l1"
    loss_weighting: str = setting("none", choices=("none", "min_snr"))  # min_snr: Hang et al. 2023
    min_snr_gamma: float = setting(5.0, gt=0)
    timestep_sampling: str = setting("uniform", choices=("uniform", "stratified"))  # stratified: one t per stratum
    max_loss: float = setting(1e4, gt=0)  # stop when the loss exceeds this: it diverged (a fresh network gives ~1)
    precision: str = setting("auto", choices=("auto", "fp32", "bf16"))  # bf16: autocast
    channels_last: str = setting("auto", choices=("auto", "on", "off"))  # auto: see train.use_channels_last
    log_every: int = setting(50, ge=1)
    sample_every: int = setting(1000, ge=0)  # 0: no sample grids
    checkpoint_every: int = setting(1000, ge=1)
    snapshot_minutes: list[float] = setting(factory=list, gt=0)  # EMA snapshots at these wall-clock minutes
    num_threads: int | None = setting(None, ge=1)

    def __post_init__(self):
        check_dataclass(self, "train")


DATASETS = ("mnist", "shifted_mnist", "cifar10")


@dataclass
class DataConfig:
    """The training data. ``mnist`` (default), ``shifted_mnist`` (notebook 10: digits in one of 4 quadrants,
    with a (digit, position) label pair; ``ddpmlib.shifted``) or ``cifar10`` (notebook 12, RGB)."""

    dataset: str = setting("mnist", choices=DATASETS)
    classes: list[int] | None = setting(None, ge=0)  # keep only these class ids (their original ids); null: all
    hflip: bool = False  # flip each training image left-right with probability 1/2 (CIFAR; not for digits)
    # shifted_mnist only: (digit, position) pairs never labelled together in training, and how they are held out:
    # "exclude" = those digits are never placed there; "unlabel" = placed there, but without a position label
    holdout: list[list[int]] = setting(factory=lambda: [[7, 2], [7, 3]], ge=0)
    holdout_rule: str = setting("exclude", choices=("exclude", "unlabel"))
    p_unlabel_position: float = setting(0.5, ge=0, le=1)  # share of images whose position label is left out
    seed: int = setting(0, ge=0)  # the random placement of the shifted digits

    def __post_init__(self):
        check_dataclass(self, "data")
        for pair in self.holdout:
            if len(pair) != 2:
                raise ConfigError(f"data.holdout must be a list of [digit, position] pairs, got {pair!r}")


# Allowed ranges of the U-Net's settings (UNetConfig itself checks how they fit together). Fields that
# are not listed here are still checked against their declared type.
MODEL_RANGES = {
    "image_channels": dict(ge=1),
    "image_size": dict(ge=1),
    "base_channels": dict(ge=1),
    "channel_mults": dict(ge=1),
    "num_res_blocks": dict(ge=1),
    "attention_resolutions": dict(ge=1),
    "num_heads": dict(ge=1),
    "dropout": dict(ge=0, lt=1),
    "groups": dict(ge=1),
    "num_classes": dict(ge=1),
    "extra_labels": dict(ge=1),
    "time_embedding": dict(choices=("sinusoidal", "scalar")),
    "num_timesteps": dict(ge=1),
    "schedule": dict(choices=SCHEDULES),
}


# --- checking one value against a type and a range ----------------------------------------------------


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if hint is dict or origin is dict:
        return "a JSON object"
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return str(hint)


def _convert(value, hint):
    """``value`` as ``hint`` (ints accepted for floats, lists for tuples), or raise TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _convert(value, a)
            except TypeError:
                pass
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e3 in JSON is a float
            return int(value)
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
        raise TypeError
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise TypeError
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        items = [_convert(v, args[0]) for v in value] if args else list(value)
        return origin(items)
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError
    return value  # a type this checker does not know: left to the dataclass


def _range_text(ge=None, gt=None, le=None, lt=None, choices=None) -> str:
    if choices is not None:
        return "one of " + ", ".join(repr(c) for c in choices)
    if (ge is not None or gt is not None) and (le is not None or lt is not None):
        lo = f"[{ge}" if ge is not None else f"({gt}"
        hi = f"{le}]" if le is not None else f"{lt})"
        return f"in {lo}, {hi}"
    parts = [f"{op} {v}" for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
    return " and ".join(parts)


def _in_range(x, ge=None, gt=None, le=None, lt=None, choices=None) -> bool:
    if choices is not None:
        return x in choices
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return True
    return (ge is None or x >= ge) and (gt is None or x > gt) and (le is None or x <= le) and (lt is None or x < lt)


def check_value(key: str, value, hint, rng: dict | None = None):
    """``value`` converted to ``hint``; ConfigError naming ``key`` and the allowed type and range if it is not."""
    rng = rng or {}
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [hint]
    if "choices" in rng:
        wanted = _range_text(**rng)
    else:
        wanted = " or ".join(_describe(a) for a in inner) + (f" {_range_text(**rng)}" if rng else "")
    if optional:
        wanted += " or null"
    try:
        converted = _convert(value, hint)
    except TypeError:
        raise ConfigError(f"{key} must be {wanted}, got {value!r}") from None
    items = converted if isinstance(converted, (list, tuple)) else [converted]
    finite = all(math.isfinite(v) for v in items if isinstance(v, float))
    if converted is not None and (not all(_in_range(v, **rng) for v in items) or (rng and not finite)):
        raise ConfigError(f"{key} must be {wanted}, got {value!r}")
    return converted


def check_dataclass(obj, section: str) -> None:
    """Check (and convert in place) every field of a config dataclass against its type and metadata range."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        setattr(obj, f.name, check_value(f"{section}.{f.name}", getattr(obj, f.name), hints[f.name], dict(f.metadata)))


# --- building the configs from a dict --------------------------------------------------------------------


def _check_keys(section: str, values, cls) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"the {section} section must be a JSON object, got {values!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting {section}.{unknown[0]}; the {section} settings are: {', '.join(known)}")


def model_config(section: dict) -> UNetConfig:
    """``UNetConfig(**section)`` with every value checked first; ConfigError names the bad key."""
    _check_keys("model", section, UNetConfig)
    hints = typing.get_type_hints(UNetConfig)
    checked = {k: check_value(f"model.{k}", v, hints[k], MODEL_RANGES.get(k)) for k, v in section.items()}
    try:
        return UNetConfig(**checked)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from None


def _section(cls, name: str, values: dict):
    _check_keys(name, values, cls)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: {e}") from None


def check_agreement(model: UNetConfig, diffusion: DiffusionConfig) -> None:
    """The T and schedule named by the model (for its scalar time features) and by the diffusion must agree."""
    if model.num_timesteps != diffusion.T:
        raise ConfigError(
            f"model.num_timesteps={model.num_timesteps} but diffusion.T={diffusion.T}: both name T and must "
            f"agree (leave model.num_timesteps out to take diffusion.T)"
        )
    if model.schedule != diffusion.schedule:
        raise ConfigError(
            f"model.schedule={model.schedule!r} but diffusion.schedule={diffusion.schedule!r}: both name the "
            f"noise schedule and must agree (leave model.schedule out to take diffusion.schedule)"
        )


def build_configs(raw: dict) -> tuple[UNetConfig, DiffusionConfig, TrainConfig]:
    """The three config dataclasses of a run, every setting checked. Raises ConfigError.

    ``model.num_timesteps`` and ``model.schedule`` default to the diffusion section's T and schedule.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a JSON object with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS) - set(CHECKPOINT_KEYS))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}")
    diffusion = _section(DiffusionConfig, "diffusion", raw.get("diffusion", {}))
    model_section = dict(raw.get("model", {}))
    if isinstance(model_section, dict):
        model_section.setdefault("num_timesteps", diffusion.T)
        model_section.setdefault("schedule", diffusion.schedule)
    model = model_config(model_section)
    check_agreement(model, diffusion)
    train = _section(TrainConfig, "train", raw.get("train", {}))
    data_config(raw)  # checked here too, so that a bad data section fails as early as the others
    return model, diffusion, train


def data_config(raw: dict) -> DataConfig:
    """The data section of a run config (MNIST when there is none), checked. Raises ConfigError."""
    return _section(DataConfig, "data", raw.get("data", {}) if isinstance(raw, dict) else {})


def check_data_agreement(model: UNetConfig, data: DataConfig) -> None:
    """The model must fit the images and labels of its dataset (checked before the dataset is loaded)."""
    shape = {"mnist": (1, 28), "shifted_mnist": (1, None), "cifar10": (3, 32)}[data.dataset]
    if model.image_channels != shape[0] or shape[1] is not None and model.image_size != shape[1]:
        want = f"image_channels={shape[0]}" + (f", image_size={shape[1]}" if shape[1] else "")
        raise ConfigError(f"data.dataset={data.dataset!r} needs model.{want}")
    if data.dataset == "shifted_mnist":
        if tuple(model.extra_labels) != (4,):
            raise ConfigError(
                "data.dataset='shifted_mnist' labels every image with (digit, position): set model.extra_labels=[4]"
            )
        if model.image_size % 2:
            raise ConfigError(
                f"shifted_mnist puts digits in quadrants: model.image_size must be even, not {model.image_size}"
            )
        for digit, position in data.holdout:
            if digit >= model.num_classes or position >= 4:
                raise ConfigError(f"data.holdout pair [{digit}, {position}]: digits are 0..9 and positions 0..3")
    elif model.extra_labels:
        raise ConfigError(f"data.dataset={data.dataset!r} has one label per image: leave model.extra_labels empty")
    if data.classes is not None and any(c >= model.num_classes for c in data.classes):
        raise ConfigError(f"data.classes={data.classes} names a class >= model.num_classes={model.num_classes}")


def checkpoint_configs(raw: dict) -> tuple[UNetConfig, DiffusionConfig]:
    """The model and diffusion configs of a saved checkpoint (its train section is not needed to sample).

    T and schedule must agree when the network uses them (the scalar time embedding); checkpoints of
    sinusoidal-embedding networks written before this check may carry an unused, different
    ``model.num_timesteps`` and still load.
    """
    if not isinstance(raw, dict) or "model" not in raw or "diffusion" not in raw:
        raise ConfigError("the config needs 'model' and 'diffusion' sections")
    diffusion = _section(DiffusionConfig, "diffusion", raw["diffusion"])
    model = model_config(raw["model"])
    if model.time_embedding == "scalar":
        check_agreement(model, diffusion)
    return model, diffusion


def config_dict(
    model: UNetConfig, diffusion: DiffusionConfig, train: TrainConfig, data: DataConfig | None = None
) -> dict:
    """The JSON form of a run's configs, as stored in a checkpoint's config.json."""
    d = {"model": model.to_dict(), "diffusion": asdict(diffusion), "train": asdict(train)}
    if data is not None:
        d["data"] = asdict(data)
    return d


# --- files and --set overrides ---------------------------------------------------------------------------


def resolve_repo_path(path: str | os.PathLike) -> Path:
    """``path`` as given if it exists, else relative to the repository (so ``configs/mnist_cpu.json`` works
    from any working directory; in an installed wheel ``configs/NAME`` is the config shipped as package data)."""
    path = Path(path).expanduser()
    if path.exists() or path.is_absolute():
        return path
    if (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    if path.parts[:1] == ("configs",) and shipped_configs().joinpath(*path.parts[1:]).exists():
        return shipped_configs().joinpath(*path.parts[1:])
    return path


def load_config_file(path: str | os.PathLike | None) -> dict:
    """The raw dict of a JSON config file (``None``: an empty config, all defaults). Raises ConfigError."""
    if path is None:
        return {}
    path = resolve_repo_path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object with sections {', '.join(SECTIONS)}")
    return raw


SECTION_CLASSES = {"model": UNetConfig, "diffusion": DiffusionConfig, "train": TrainConfig, "data": DataConfig}


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``["train.lr=1e-3", "model.channel_mults=[1,2,2]"]`` -> nested updates; values parsed as JSON
    (a value that is not JSON is taken as a string). Unknown sections and keys raise ConfigError."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects section.key=value (e.g. train.lr=1e-3), got {item!r}")
        if section not in SECTION_CLASSES:
            raise ConfigError(f"--set {item}: unknown section {section!r}; the sections are {', '.join(SECTIONS)}")
        _check_keys(section, {name: None}, SECTION_CLASSES[section])
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        config.setdefault(section, {})[name] = parsed
    return config
