"""The design study of notebook 09: which choices matter for a small class-conditional MNIST DDPM?

One factor is varied at a time around the shipped recipe (``configs/mnist_cpu.json``); every setting is
trained with several seeds for the same budget of training images, then evaluated the same way (same
sampler, steps, sample count and sampling seed): conditional accuracy, Frechet distance against the
real-vs-real baseline, and the held-out accuracy of a real-vs-generated discriminator.

    python scripts/study.py --out results/study_256k --seeds 0 1 2 --budget-images 256000   # the CLI
    rows = read_results("results/study/study.csv"); summarise(rows)                          # the analysis

This module holds the grid, the config of one run, one run (train + evaluate) and the summary
statistics (mean over seeds with a standard error and a t interval, differences with Welch's interval);
``scripts/study.py`` runs the grid.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO / "configs" / "mnist_cpu.json"


@dataclass(frozen=True)
class Setting:
    name: str  # unique, used in the CSV and for file names
    factor: str  # the factor this setting varies ("baseline" for the shipped recipe)
    value: str  # the factor's value, as shown in tables
    overrides: dict  # {"section.key": value} applied to the base config


def _s(name, factor, value, **overrides) -> Setting:
    return Setting(name, factor, value, {k.replace("__", "."): v for k, v in overrides.items()})


# One factor at a time around the shipped recipe (T=1000, batch 64, 16 base channels, kernel 3, no dropout,
# sinusoidal time embedding, MSE on the v target, GroupNorm, self-attention at the 7x7 bottleneck).
STUDY_GRID: tuple[Setting, ...] = (
    _s("baseline", "baseline", "shipped recipe"),
    _s("T250", "T", "250", diffusion__T=250, model__num_timesteps=250),
    _s("T500", "T", "500", diffusion__T=500, model__num_timesteps=500),
    _s("batch32", "batch size", "32", train__batch_size=32),
    _s("batch128", "batch size", "128", train__batch_size=128),
    _s("ch8", "base channels", "8", model__base_channels=8),
    _s("ch32", "base channels", "32", model__base_channels=32),
    _s("emb2", "embedding width", "2 x channels", model__emb_mult=2),
    _s("emb8", "embedding width", "8 x channels", model__emb_mult=8),
    _s("kernel5", "kernel size", "5", model__kernel_size=5),
    _s("dropout0.1", "dropout", "0.1", model__dropout=0.1),
    _s("dropout0.3", "dropout", "0.3", model__dropout=0.3),
    _s("scalar_time", "time embedding", "scalar (t/T, beta_t, alpha_bar_t)", model__time_embedding="scalar"),
    _s("l1", "loss", "L1", train__loss="l1"),
    _s("eps", "target", "eps", diffusion__prediction_type="eps"),
    _s("batchnorm", "normalisation", "BatchNorm", model__norm="batch"),
    _s("attn_none", "attention", "none", model__attention_resolutions=[], model__mid_attention=False),
    _s("self_14", "attention", "self @ 14x14", model__attention_resolutions=[14], model__mid_attention=False),
    _s("cbam_7", "attention", "CBAM @ bottleneck", model__attention_type="cbam"),
    _s(
        "cbam_14",
        "attention",
        "CBAM @ 14x14",
        model__attention_type="cbam",
        model__attention_resolutions=[14],
        model__mid_attention=False,
    ),
)
BASELINE_VALUES = {
    "T": "1000",
    "batch size": "64",
    "base channels": "16",
    "embedding width": "4 x channels",
    "kernel size": "3",
    "dropout": "0",
    "time embedding": "sinusoidal",
    "loss": "MSE",
    "target": "v",
    "normalisation": "GroupNorm",
    "attention": "self @ bottleneck",
}
EVAL_SEED = 1234  # the sampling seed of every run: runs differ only by their training


def setting_by_name(name: str) -> Setting:
    for s in STUDY_GRID:
        if s.name == name:
            return s
    raise ValueError(f"unknown study setting {name!r}; known: {', '.join(s.name for s in STUDY_GRID)}")


def study_config(
    setting: Setting, seed: int, budget_images: int, base: dict | None = None, extra_overrides: dict | None = None
) -> dict:
    """The full training config of one run: the base recipe, the setting's overrides, the seed, and
    ``max_steps = budget_images // batch_size`` so that every run sees the same number of images.
    ``extra_overrides`` (e.g. ``{"train.precision": "fp32"}``) apply to every setting of a study."""
    raw = copy.deepcopy(base if base is not None else json.loads(BASE_CONFIG.read_text()))
    for key, value in {**(extra_overrides or {}), **setting.overrides}.items():
        section, name = key.split(".", 1)
        raw.setdefault(section, {})[name] = value
    train = raw.setdefault("train", {})
    batch = int(train.get("batch_size", 64))
    train.update(
        seed=int(seed),
        max_steps=max(1, budget_images // batch),
        max_minutes=None,
        sample_every=0,
        snapshot_minutes=[],
        log_every=50,
    )
    train["checkpoint_every"] = train["max_steps"]  # one checkpoint, at the end
    train["warmup_steps"] = min(int(train.get("warmup_steps", 200)), max(1, train["max_steps"] // 10))
    return raw


def hardware() -> str:
    """The device a run used, e.g. 'NVIDIA H200' or 'CPU: Intel Xeon ... x2 threads'."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {name} x{torch.get_num_threads()} threads"


def final_loss(log_csv: Path, last: int = 5) -> float:
    """Mean of the last ``last`` logged losses of a run."""
    with open(log_csv) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    tail = losses[-last:]
    return sum(tail) / len(tail) if tail else float("nan")


def run_setting(
    setting: Setting,
    seed: int,
    budget_images: int,
    out_dir: str | os.PathLike,
    data: tuple[torch.Tensor, torch.Tensor],
    device: str | None = None,
    num_samples: int = 1000,
    sampler: str = "ddim",
    steps: int = 20,
    eta: float = 0.5,
    data_root: str | None = None,
    grid_path: str | os.PathLike | None = None,
    extra_overrides: dict | None = None,
) -> dict:
    """Train one (setting, seed) and evaluate it; returns one row of the results table."""
    from .evaluate import balanced_labels, evaluate_discriminator, evaluate_samples, grid_by_class, load_reference
    from .pipeline import load_pipeline
    from .train import train
    from .unet import UNet, UNetConfig, count_parameters

    raw = study_config(setting, seed, budget_images, extra_overrides=extra_overrides)
    out_dir = Path(out_dir)
    t0 = time.time()
    ckpt = train(raw, out_dir, data=data, device=device, progress=False)
    wall = time.time() - t0
    pipe = load_pipeline(ckpt, device=device)
    ref = load_reference(root=data_root, device=pipe.device)
    labels = balanced_labels(num_samples, pipe.num_classes)
    chunks = []
    for i in range(0, num_samples, 500):
        kwargs = dict(sampler=sampler, steps=steps, seed=EVAL_SEED + i)
        if sampler == "ddim":
            kwargs["eta"] = eta
        chunks.append(pipe.generate(labels[i : i + 500], **kwargs).cpu())
    images = torch.cat(chunks)
    metrics = evaluate_samples(images, labels, ref, full_baseline=False)
    disc = evaluate_discriminator(images, ref, seed=seed)
    if grid_path is not None:
        from .plotting import save_grid

        grid, nrow = grid_by_class(images, labels, per_row=8)
        save_grid(grid, grid_path, nrow=nrow)
    acc = metrics["accuracy"]
    from .evaluate import wilson_interval

    acc_lo, acc_hi = wilson_interval(acc["correct"], acc["total"])
    fd = metrics["frechet_distance"]
    train_cfg = raw["train"]
    return {
        "setting": setting.name,
        "factor": setting.factor,
        "value": setting.value,
        "seed": seed,
        "overrides": json.dumps(setting.overrides, sort_keys=True),
        "train_steps": train_cfg["max_steps"],
        "batch_size": train_cfg["batch_size"],
        "images_seen": train_cfg["max_steps"] * train_cfg["batch_size"],
        "T": raw["diffusion"]["T"],
        "params": count_parameters(UNet(UNetConfig(**raw["model"]))),
        "wall_s": round(wall, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
        "precision": raw["train"].get("precision", "auto"),
        "sampler": f"{sampler} {steps}" + (f" eta {eta}" if sampler == "ddim" else ""),
        "num_samples": num_samples,
        "accuracy": round(acc["overall"], 4),
        "accuracy_low": round(acc_lo, 4),
        "accuracy_high": round(acc_hi, 4),
        "fd": round(fd["generated"], 4),
        "fd_baseline": round(fd["baseline"][str(num_samples)], 4),
        "fd_ratio": round(fd["ratio_to_baseline"], 3),
        "disc_accuracy": round(disc["accuracy"], 4),
        "disc_low": round(disc["interval"][0], 4),
        "disc_high": round(disc["interval"][1], 4),
        "memorisation_ratio": round(metrics["memorisation"]["ratio_of_medians"], 3),
        "final_loss": round(final_loss(out_dir / "log.csv"), 5),
    }


# ---------------------------------------------------------------------------------------------------
# reading and summarising the results

NUMERIC = ("accuracy", "fd_ratio", "disc_accuracy", "final_loss", "wall_s", "fd", "memorisation_ratio")

# two-sided 95% quantiles of Student's t with df = n - 1 degrees of freedom (n seeds)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def read_results(path: str | os.PathLike) -> list[dict]:
    """The rows of a study CSV, with the numeric columns as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"] = int(r["seed"])
        for k in NUMERIC + ("accuracy_low", "accuracy_high", "disc_low", "disc_high", "fd_baseline"):
            if k in r and r[k] != "":
                r[k] = float(r[k])
    return rows


def mean_and_interval(values: list[float]) -> dict:
    """Mean over seeds, its standard error s / sqrt(n), and a 95% t interval mean +- t_{n-1} * se."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "se": float("nan"), "low": float("nan"), "high": float("nan"), "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    se = sd / math.sqrt(n)
    half = _T95.get(n - 1, 1.96) * se
    return {"mean": mean, "se": se, "low": mean - half, "high": mean + half, "n": n}


def summarise(rows: list[dict], metrics: tuple[str, ...] = ("accuracy", "fd_ratio", "disc_accuracy")) -> list[dict]:
    """One entry per setting, in grid order: factor, value, seeds and ``mean_and_interval`` per metric."""
    order = {s.name: i for i, s in enumerate(STUDY_GRID)}
    by_setting: dict[str, list[dict]] = {}
    for r in rows:
        by_setting.setdefault(r["setting"], []).append(r)
    out = []
    for name in sorted(by_setting, key=lambda n: order.get(n, len(order))):
        rs = by_setting[name]
        entry = {
            "setting": name,
            "factor": rs[0]["factor"],
            "value": rs[0]["value"],
            "seeds": sorted(r["seed"] for r in rs),
        }
        for m in metrics:
            entry[m] = mean_and_interval([float(r[m]) for r in rs])
        out.append(entry)
    return out


def welch_interval(values: list[float], base_values: list[float], level: float = 0.95) -> dict:
    """Difference of two means, ``mean(values) - mean(base_values)``, with Welch's t interval.

    The standard error is sqrt(se_1^2 + se_2^2) and the quantile that of a t distribution with the
    Welch-Satterthwaite degrees of freedom nu = (se_1^2 + se_2^2)^2 / (se_1^4 / (n_1 - 1) + se_2^4 / (n_2 - 1)):
    the honest interval for two settings with a few seeds each and unequal spreads (notebook 09, section 2.2).
    For a multiplicative effect pass logarithms and exponentiate the three numbers."""
    from scipy import stats

    a, b = mean_and_interval(list(values)), mean_and_interval(list(base_values))
    if a["n"] < 2 or b["n"] < 2:
        raise ValueError(f"Welch's interval needs at least 2 values per side; got {a['n']} and {b['n']}")
    v1, v2 = a["se"] ** 2, b["se"] ** 2
    diff = a["mean"] - b["mean"]
    if v1 + v2 == 0:  # no spread at all: the difference is exact
        return {"effect": diff, "low": diff, "high": diff, "df": float("inf")}
    df = (v1 + v2) ** 2 / (v1**2 / (a["n"] - 1) + v2**2 / (b["n"] - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(v1 + v2)
    return {"effect": diff, "low": diff - half, "high": diff + half, "df": df}


def effects(summary: list[dict], metric: str = "fd_ratio") -> list[dict]:
    """Each setting's difference from the baseline in ``metric`` (mean over seeds), with a 95% interval
    from the two standard errors (normal approximation, z = 1.96), largest absolute effect first.

    With 3 seeds per setting the normal approximation is too narrow; notebook 09 shows Welch's t interval
    beside it, which is the one to read."""
    base = next((e for e in summary if e["setting"] == "baseline"), None)
    if base is None:
        raise ValueError("the summary has no baseline setting")
    b = base[metric]
    out = []
    for e in summary:
        if e["setting"] == "baseline":
            continue
        m = e[metric]
        diff = m["mean"] - b["mean"]
        se = math.sqrt(m["se"] ** 2 + b["se"] ** 2)
        out.append(
            {
                "setting": e["setting"],
                "factor": e["factor"],
                "value": e["value"],
                "effect": diff,
                "low": diff - 1.96 * se,
                "high": diff + 1.96 * se,
            }
        )
    return sorted(out, key=lambda d: -abs(d["effect"]))
