"""Training: Algorithm 1 of Ho et al. (2020), with EMA, classifier-free label dropout and resume.

    python -m ddpmlib.train --config configs/mnist_cpu.json --out runs/mnist_cpu [--resume]
    python -m ddpmlib.train --config configs/mnist_cpu.json --set train.max_steps=500 train.lr=1e-3

Algorithm 1, repeated until converged:
    x_0 ~ data, t ~ Uniform{1..T} (tensor index 0..T-1), eps ~ N(0, I)
    gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2   (Eq. 14)
With probability ``p_uncond`` a label is replaced by the null label, so the same network learns the
unconditional model needed for classifier-free guidance (Ho & Salimans 2022, Alg. 1).

Reproducibility: every random draw of step s (batch order, t, eps, label dropout, dropout masks) comes
from generators seeded by (seed, s), so a run that is killed and resumed from its last checkpoint ends
with exactly the weights of an uninterrupted run (on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_optimizer, load_weights, read_config, read_tensors, save_checkpoint
from .diffusion import PREDICTION_TYPES, q_sample, training_target
from .pipeline import DDPMPipeline, pick_device
from .schedules import SCHEDULES, NoiseSchedule
from .unet import UNet, UNetConfig, count_parameters


@dataclass
class DiffusionConfig:
    schedule: str = "linear"
    T: int = 1000
    prediction_type: str = "eps"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}; choose one of {PREDICTION_TYPES}")


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 64
    max_steps: int = 10_000  # the learning-rate schedule runs over this many steps
    max_minutes: float | None = None  # stop early (with a checkpoint) after this much wall time
    lr: float = 2e-3
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio * lr at max_steps) or "constant"
    lr_min_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay_s = min(ema_decay, (1 + s) / (10 + s)): EMA useful from the start
    p_uncond: float = 0.1  # probability of the null label (classifier-free guidance)
    loss: str = "mse"  # "mse" (L_simple) or "l1"
    loss_weighting: str = "none"  # "none" (L_simple) or "min_snr" (Hang et al. 2023)
    min_snr_gamma: float = 5.0
    timestep_sampling: str = "uniform"  # "uniform" (Algorithm 1) or "stratified" (one t per stratum of T)
    precision: str = "auto"  # "auto", "fp32" or "bf16" (autocast)
    channels_last: str = "auto"  # "auto" (CUDA; CPU in fp32 only, see use_channels_last), "on", "off"
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    snapshot_minutes: list[float] = field(default_factory=list)  # EMA snapshots at these wall-clock minutes
    num_threads: int | None = None


def load_config_file(path: str | os.PathLike | None) -> dict:
    if path is None:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"config file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"config file {path} is not valid JSON: {e}") from None


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``["train.lr=1e-3", "model.channel_mults=[1,2,2]"]`` -> nested updates; values parsed as JSON."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SystemExit(f"--set expects section.key=value (e.g. train.lr=1e-3), got {item!r}")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        config.setdefault(section, {})[name] = parsed
    return config


def build_configs(raw: dict) -> tuple[UNetConfig, DiffusionConfig, TrainConfig]:
    unknown = set(raw) - {"model", "diffusion", "train", "format_version", "step"}
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; expected model, diffusion, train")
    out = []
    for cls, key in ((UNetConfig, "model"), (DiffusionConfig, "diffusion"), (TrainConfig, "train")):
        section = raw.get(key, {})
        names = {f.name for f in fields(cls)}
        bad = set(section) - names
        if bad:
            raise ValueError(f"unknown {key} settings {sorted(bad)}; known: {sorted(names)}")
        out.append(cls(**section))
    return tuple(out)


def native_bf16_cpu() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_channels_last(setting: str, device: torch.device, amp: torch.dtype | None) -> bool:
    """``train.channels_last``: "on", "off", or "auto" = on for CUDA, and on the CPU only in fp32.

    Measured with ``scripts/bench.py --threads 1`` (training images/s, other jobs on the second core) on a
    2-core AVX-512 BF16 CPU: fp32 92-94, fp32 channels_last 93-104, bf16 autocast 133-158, but bf16 with
    channels_last only 72-79, so on the CPU channels_last goes with fp32 and never with bf16 autocast.
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return device.type == "cuda" or (device.type == "cpu" and amp is None)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and native_bf16_cpu():
        return torch.bfloat16
    return None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr_min_ratio * lr at max_steps (or constant)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for every parameter (one fused call); buffers such as
    BatchNorm's running statistics are copied, since they are averages already."""
    ema_params = [e for e in ema.parameters()]
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the batch of ``step``: epoch e shuffles the data with a generator seeded by (seed, e)."""
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if batch_size > n:
        return perm[torch.arange(batch_size) % n]
    return perm[i * batch_size : (i + 1) * batch_size]


def sample_timesteps(B: int, T: int, generator: torch.Generator, method: str = "uniform") -> torch.Tensor:
    """Tensor-index timesteps for a batch, (B,) in 0..T-1.

    ``uniform`` draws each t independently, as in Algorithm 1. ``stratified`` cuts 0..T-1 into B equal
    strata and draws one t in each: every t still has probability 1/T, so the loss is unbiased, but the
    batch always covers all noise levels and its mean varies less (the low-discrepancy sampler of
    Kingma et al. 2021, App. I).
    """
    if method == "uniform":
        return torch.randint(0, T, (B,), generator=generator)
    if method == "stratified":
        u = torch.rand(B, generator=generator, dtype=torch.float64)
        t = ((torch.arange(B, dtype=torch.float64) + u) * T / B).long().clamp_(0, T - 1)
        return t[torch.randperm(B, generator=generator)]
    raise ValueError(f"timestep_sampling must be 'uniform' or 'stratified', got {method!r}")


def loss_weights(schedule: NoiseSchedule, t: torch.Tensor, weighting: str, prediction_type: str, gamma: float = 5.0):
    """Per-example weights for the loss at tensor-index timesteps ``t``, (B,).

    ``none`` gives L_simple (Ho et al. 2020, Eq. 14): every t weighs the same. ``min_snr`` is Min-SNR-gamma
    (Hang et al. 2023, Eq. 9): in x_0 terms the weight is min(SNR_t, gamma), which caps the weight of the
    nearly noise-free steps; for an eps target that is min(SNR_t, gamma) / SNR_t, for a v target
    min(SNR_t, gamma) / (SNR_t + 1).
    """
    if weighting == "none":
        return None
    if weighting != "min_snr":
        raise ValueError(f"loss_weighting must be 'none' or 'min_snr', got {weighting!r}")
    snr = schedule.snr.to(t.device)[t]
    capped = snr.clamp(max=gamma)
    if prediction_type == "eps":
        return capped / snr
    if prediction_type == "v":
        return capped / (snr + 1)
    return capped  # x0


def diffusion_loss(
    model,
    schedule,
    x0,
    labels,
    generator,
    p_uncond=0.1,
    loss="mse",
    prediction_type="eps",
    null_label=None,
    weighting="none",
    timestep_sampling="uniform",
    min_snr_gamma=5.0,
):
    """One Monte-Carlo estimate of L_simple (Eq. 14) for a batch; all randomness from ``generator``.

    ``weighting`` and ``timestep_sampling`` select the variants of ``loss_weights`` and ``sample_timesteps``.
    """
    B = x0.shape[0]
    t = sample_timesteps(B, schedule.T, generator, timestep_sampling).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    if labels is not None and p_uncond > 0:
        drop = torch.rand(B, generator=generator).to(x0.device) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    xt = q_sample(schedule, x0, t, eps)
    out = model(xt, t, labels)
    target = training_target(schedule, x0, eps, t, prediction_type)
    if loss == "mse":
        per_example = F.mse_loss(out.float(), target, reduction="none").flatten(1).mean(1)
    elif loss == "l1":
        per_example = F.l1_loss(out.float(), target, reduction="none").flatten(1).mean(1)
    else:
        raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")
    w = loss_weights(schedule, t, weighting, prediction_type, min_snr_gamma)
    return per_example.mean() if w is None else (w * per_example).mean()


def sample_grid(ema: UNet, schedule: NoiseSchedule, prediction_type: str, n_per_class: int = 8, steps: int = 20):
    """One row per class (DDIM, fixed seed): what the model draws now."""
    was_training = ema.training
    pipe = DDPMPipeline(ema, schedule, prediction_type)
    labels = torch.arange(ema.config.num_classes).repeat_interleave(n_per_class)
    x = pipe.generate(labels, sampler="ddim", steps=steps, seed=0)
    ema.train(was_training)
    return x


def train(
    raw_config: dict,
    out_dir: str | os.PathLike,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    data_root: str | None = None,
    resume: bool = False,
    device: str | None = None,
    stop_step: int | None = None,
    progress: bool = True,
) -> Path:
    """Train and return the checkpoint directory ``out_dir/checkpoint``.

    ``data`` (images in [-1, 1], labels) replaces MNIST, for tests; ``stop_step`` stops early as if
    the process had been killed right after that step's checkpoint.
    """
    out_dir = Path(out_dir)
    model_cfg, diff_cfg, cfg = build_configs(raw_config)
    raw_config = {"model": model_cfg.to_dict(), "diffusion": asdict(diff_cfg), "train": asdict(cfg)}
    ckpt_dir = out_dir / "checkpoint"
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = pick_device(device)
    amp = autocast_dtype(cfg.precision, dev)
    channels_last = use_channels_last(cfg.channels_last, dev, amp)

    if data is None:
        from .data import load_mnist

        data = load_mnist(train=True, root=data_root)
    images, labels = data
    images = images.to(dev)
    labels = labels.to(dev)
    schedule = NoiseSchedule.from_name(diff_cfg.schedule, diff_cfg.T)

    torch.manual_seed(cfg.seed)  # the initial weights depend only on the seed
    model = UNet(model_cfg).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if resume:
        if not (ckpt_dir / "config.json").is_file():
            print(f"--resume: no checkpoint in {ckpt_dir} yet, starting from scratch", file=sys.stderr)
        else:
            saved = read_config(ckpt_dir)
            if saved["model"] != raw_config["model"] or saved["diffusion"] != raw_config["diffusion"]:
                raise CheckpointError(
                    f"--resume: the checkpoint in {ckpt_dir} was trained with another model or diffusion config"
                )
            tensors = read_tensors(ckpt_dir / "model.safetensors")
            load_weights(model, tensors, "model", str(ckpt_dir))
            load_weights(ema, tensors, "ema", str(ckpt_dir))
            load_optimizer(opt, ckpt_dir)
            start = int(saved["step"])
            print(f"resumed from {ckpt_dir} at step {start}", file=sys.stderr)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.csv"
    if start == 0 or not log_path.exists():
        log_path.write_text("step,loss,lr,images_per_s,elapsed_s\n")
    else:  # drop log lines written after the checkpoint we resume from
        lines = log_path.read_text().splitlines(keepends=True)
        log_path.write_text("".join(lines[:1] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= start]))
    print(
        f"device={dev} precision={'bf16' if amp else 'fp32'} channels_last={channels_last} "
        f"params={count_parameters(model) / 1e6:.2f}M images={len(images)} steps {start}->{cfg.max_steps}",
        file=sys.stderr,
    )

    def save(step):
        save_checkpoint(ckpt_dir, raw_config, ema, model, opt, step)

    snapshots = sorted(cfg.snapshot_minutes)
    t0 = time.time()
    last_log_t, last_log_step, running = t0, start, []
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, disable=not progress, desc="train")
    model.train()
    step = start
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        torch.manual_seed(cfg.seed * 1_000_033 + step)  # dropout masks
        idx = batch_indices(step, len(images), cfg.batch_size, cfg.seed).to(dev)
        x0, y = images[idx], labels[idx]
        if channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = diffusion_loss(
                model,
                schedule,
                x0,
                y,
                g,
                cfg.p_uncond,
                cfg.loss,
                diff_cfg.prediction_type,
                model_cfg.num_classes,
                cfg.loss_weighting,
                cfg.timestep_sampling,
                cfg.min_snr_gamma,
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {step}; stopping without writing a checkpoint "
                f"(the last good one is in {ckpt_dir}). Try a lower train.lr or train.precision=fp32."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay
        ema_update(ema, model, decay)
        running.append(loss.item())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            now = time.time()
            ips = (done - last_log_step) * cfg.batch_size / max(now - last_log_t, 1e-9)
            mean_loss = sum(running) / len(running)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow(
                    [done, f"{mean_loss:.5f}", f"{lr_at(step, cfg):.6g}", f"{ips:.1f}", f"{now - t0:.1f}"]
                )
            bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")
            last_log_t, last_log_step, running = now, done, []
        if cfg.sample_every and done % cfg.sample_every == 0:
            from .plotting import save_grid

            save_grid(
                sample_grid(ema, schedule, diff_cfg.prediction_type),
                out_dir / "samples" / f"step_{done:06d}.png",
                nrow=8,
            )
        minutes = (time.time() - t0) / 60
        while snapshots and minutes >= snapshots[0]:
            save_checkpoint(out_dir / "snapshots" / f"min{snapshots.pop(0):05.1f}", raw_config, ema, step=done)
        if done % cfg.checkpoint_every == 0:
            save(done)
        if stop_step is not None and done >= stop_step:
            return ckpt_dir
        if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
            print(f"stopping after {minutes:.1f} minutes (train.max_minutes)", file=sys.stderr)
            break
    save(step + 1 if cfg.max_steps > start else start)
    return ckpt_dir


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Write an inference-only copy of a checkpoint: EMA weights in ``dtype`` plus config.json."""
    config = read_config(checkpoint)
    tensors = read_tensors(Path(checkpoint) / "model.safetensors")
    ema = UNet(UNetConfig(**config["model"]))
    load_weights(ema, tensors, "ema", str(checkpoint))
    config = {k: v for k, v in config.items() if k not in ("format_version", "step")}
    return save_checkpoint(out, config, ema, step=read_config(checkpoint)["step"], dtype=dtype)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train a class-conditional DDPM on MNIST (Algorithm 1).")
    p.add_argument("--config", default="configs/mnist_cpu.json", help="JSON file with model/diffusion/train sections")
    p.add_argument("--out", default="runs/mnist", help="output directory (checkpoint/, samples/, log.csv)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="override config values")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument(
        "--export", default=None, metavar="DIR", help="afterwards, write fp16 EMA weights for inference here"
    )
    args = p.parse_args(argv)
    raw = apply_overrides(load_config_file(args.config), args.set)
    try:
        ckpt = train(raw, args.out, data_root=args.data_root, resume=args.resume, device=args.device)
    except (ValueError, CheckpointError, FloatingPointError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"checkpoint: {ckpt}")
    if args.export:
        print(f"exported: {export(ckpt, args.export)}")


if __name__ == "__main__":
    main()
