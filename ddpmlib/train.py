"""Training: Algorithm 1 of Ho et al. (2020), with EMA, classifier-free label dropout, resume and torchrun.

    python -m ddpmlib.train --config configs/mnist_cpu.json --out runs/mnist_cpu [--resume | --overwrite]
    python -m ddpmlib.train --config configs/mnist_cpu.json --set train.max_steps=500 train.lr=1e-3
    torchrun --nproc_per_node=4 -m ddpmlib.train --config configs/mnist_gpu.json --out runs/mnist_gpu

Algorithm 1, repeated until converged:
    x_0 ~ data, t ~ Uniform{1..T} (tensor index 0..T-1), eps ~ N(0, I)
    gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2   (Eq. 14)
With probability ``p_uncond`` a label is replaced by the null label, so the same network learns the
unconditional model needed for classifier-free guidance (Ho & Salimans 2022, Alg. 1).

The loop, in the style of nanoGPT's train.py: ``setup`` builds a ``Run`` (configs, data, model, EMA,
optimizer, resumed state), ``train_step`` does one step of Algorithm 1, ``log_step`` writes log.csv,
``save`` writes the checkpoint, and ``train`` strings them together.

Reproducibility: every random draw of step s (batch order, t, eps, label dropout, dropout masks) comes
from generators seeded by (seed, s) (see the *_SEED constants below), so a run that is killed and
resumed from its last checkpoint ends with exactly the weights of an uninterrupted run (on the CPU).

Several processes (``torchrun``): each process (rank r of W) computes the loss on its slice of the
step's global batch of W * batch_size images, and DistributedDataParallel averages the gradients
(NCCL on GPUs, gloo on CPUs). The global batch, t, eps and label dropout are drawn exactly as one
process with batch W * batch_size would draw them, so W processes with batch B follow the same
trajectory as one process with batch W * B (up to the rounding of the gradient sum; dropout masks
are drawn per rank). Rank 0 alone writes log.csv, checkpoints and sample grids; every rank holds the
same weights and EMA weights, because every rank applies the same averaged gradient.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import (
    CheckpointError,
    load_optimizer,
    load_weights,
    read_config,
    read_tensors,
    recover,
    save_checkpoint,
)
from .config import (
    DEFAULT_CONFIG,
    ConfigError,
    DataConfig,
    DiffusionConfig,
    TrainConfig,
    apply_overrides,
    build_configs,
    check_data_agreement,
    checkpoint_configs,
    config_dict,
    data_config,
    load_config_file,
)
from .diffusion import q_sample, training_target
from .pipeline import DDPMPipeline, pick_device
from .schedules import NoiseSchedule
from .unet import UNet, UNetConfig, count_parameters

# notebook 05 and scripts/bench.py import the config helpers from here
__all__ = ["DiffusionConfig", "TrainConfig", "apply_overrides", "build_configs", "load_config_file", "train"]

# --- seeds of the per-step random generators ---------------------------------------------------------------
# Step s of a run draws from generators seeded by ``seed * MULTIPLIER + s``. Each stream has its own prime
# multiplier, so no two streams share a generator state: within a stream, ``seed * 1_000_003 + s`` is
# different for every (seed, s) with s < 1_000_003 steps, and the three multipliers keep the streams of
# one step apart. Because the seeds depend only on (seed, s), a resumed run redraws what the
# uninterrupted run drew.
EPOCH_ORDER_SEED = 100_003  # the shuffle of epoch e (``batch_indices``): seed * 100_003 + e
NOISE_SEED = 1_000_003  # t, eps and label dropout of step s (``diffusion_loss``): seed * 1_000_003 + s
DROPOUT_SEED = 1_000_033  # dropout masks of step s (torch's global generator): seed * 1_000_033 + s
FLIP_SEED = 1_000_037  # data.hflip: which images of step s are mirrored: seed * 1_000_037 + s
RANK_SEED_SHIFT = 32  # rank r adds r << 32 to its dropout seed: ranks draw different masks, rank 0 as alone

RUN_ENTRIES = ("checkpoint", "log.csv", "samples", "snapshots")  # what a run writes into --out
LOG_HEADER = "step,loss,lr,images_per_s,elapsed_s\n"


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
    g = torch.Generator().manual_seed(seed * EPOCH_ORDER_SEED + epoch)
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
    *,
    p_uncond=0.1,
    loss="mse",
    prediction_type="eps",
    null_label=None,
    weighting="none",
    timestep_sampling="uniform",
    min_snr_gamma=5.0,
    shard=(0, 1),
):
    """One Monte-Carlo estimate of L_simple (Eq. 14) for a batch; all randomness from ``generator``.

    ``labels`` are (B,), or (B, K) for a model with several labels; ``null_label`` is then one null value per
    column, and each label is replaced by its null value independently with probability ``p_uncond``.
    ``weighting`` and ``timestep_sampling`` select the variants of ``loss_weights`` and ``sample_timesteps``;
    ``loss_options`` gives these keyword arguments from a run's config. ``shard=(r, W)``: ``x0`` is slice r
    of a global batch of W * B images; t, eps and the label dropout are drawn for the global batch (so
    every rank draws the same) and slice r is used, as DistributedDataParallel training needs.
    """
    B = x0.shape[0]
    rank, world = shard
    mine = slice(rank * B, (rank + 1) * B)  # this rank's part of the global batch of world * B
    t = sample_timesteps(world * B, schedule.T, generator, timestep_sampling)[mine].to(x0.device)
    eps = torch.randn((world * B, *x0.shape[1:]), generator=generator)[mine].to(x0.device)
    if labels is not None and p_uncond > 0 and labels.ndim == 1:
        drop = (torch.rand(world * B, generator=generator)[mine] < p_uncond).to(x0.device)
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    elif labels is not None and p_uncond > 0:  # several labels (B, K): each is left out on its own
        drop = (torch.rand(world * B, labels.shape[1], generator=generator)[mine] < p_uncond).to(x0.device)
        labels = torch.where(drop, torch.as_tensor(null_label, device=labels.device).expand_as(labels), labels)
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


def loss_options(cfg: TrainConfig, diffusion: DiffusionConfig, null_label: int | tuple[int, ...]) -> dict:
    """The keyword arguments of ``diffusion_loss`` that a run's config sets (for diffusion.process="blur":
    of ``ddpmlib.cold.restoration_loss``)."""
    if diffusion.process == "blur":
        from .cold import restoration_loss_options  # imported here: ddpmlib.cold imports this module

        return restoration_loss_options(cfg, diffusion, null_label)
    return dict(
        p_uncond=cfg.p_uncond,
        loss=cfg.loss,
        prediction_type=diffusion.prediction_type,
        null_label=null_label,
        weighting=cfg.loss_weighting,
        timestep_sampling=cfg.timestep_sampling,
        min_snr_gamma=cfg.min_snr_gamma,
    )


def sample_grid(
    ema: UNet, schedule: NoiseSchedule, prediction_type: str, n_per_class: int = 8, steps: int = 20, classes=None
):
    """One row per class (DDIM, fixed seed): what the model draws now; ``classes``: only these (data.classes)."""
    was_training = ema.training
    pipe = DDPMPipeline(ema, schedule, prediction_type)
    classes = torch.arange(ema.config.num_classes) if classes is None else torch.as_tensor(classes)
    labels = classes.repeat_interleave(n_per_class)
    if ema.config.extra_labels:  # the further labels left out (null): one row per class
        labels = torch.cat([labels[:, None], torch.tensor(ema.null_labels[1:]).expand(len(labels), -1)], dim=1)
    x = pipe.generate(labels, sampler="ddim", steps=min(steps, schedule.T), seed=0)
    ema.train(was_training)
    return x


# --- devices and processes ------------------------------------------------------------------------------------


def resolve_device(name: str | None) -> torch.device:
    """``name`` (cpu, cuda, cuda:N, mps) checked against this machine, or the best available if None/"auto"."""
    if name is None or str(name) == "auto":
        return pick_device(None)
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ConfigError(f"--device {name}: Apple MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {name}: training runs on cpu, cuda or mps, not {dev.type}")
    return dev


@dataclass
class Distributed:
    """Where this process sits in a torchrun job (rank 0 of 1 when started without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this module called init_process_group (and so destroys the group at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the torchrun job described by $WORLD_SIZE, $RANK, $LOCAL_RANK (NCCL on GPUs, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return Distributed(), dev
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)  # one GPU per process
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ConfigError(f"torchrun: training on several processes needs cuda or cpu, not {dev.type}")
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        started = True
    return Distributed(rank, dist.get_world_size(), local, started), dev


# --- setup: configs, output directory, data, model, optimizer, resume -----------------------------------------


@dataclass
class Run:
    """Everything one training run holds; built by ``setup``."""

    model_cfg: UNetConfig
    diff_cfg: DiffusionConfig
    cfg: TrainConfig
    data_cfg: DataConfig
    config: dict  # the JSON form, stored in checkpoints
    out_dir: Path
    dist: Distributed
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool
    schedule: NoiseSchedule
    model: UNet  # the raw weights (what the optimizer updates)
    net: torch.nn.Module  # ``model``, wrapped in DistributedDataParallel under torchrun
    ema: UNet
    opt: torch.optim.Optimizer
    start: int = 0  # the first step to run (the checkpoint's step when resuming)
    last_saved: int | None = None  # the step of the newest checkpoint in ckpt_dir, if any
    loss_kwargs: dict = field(default_factory=dict)
    images: torch.Tensor | None = None  # the training set, on ``device``
    labels: torch.Tensor | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.csv"

    @property
    def precision(self) -> str:
        return "fp32" if self.amp is None else "bf16 autocast"


def existing_run(out_dir: Path) -> str | None:
    """What an earlier run left in ``out_dir`` (None if nothing)."""
    ckpt = out_dir / "checkpoint"
    if (ckpt / "config.json").is_file():
        try:
            return f"a checkpoint at step {read_config(ckpt).get('step', '?')}"
        except CheckpointError:
            return "an unreadable checkpoint"
    found = [name for name in RUN_ENTRIES if (out_dir / name).exists()]
    return ", ".join(found) if found else None


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool, dist_: Distributed) -> None:
    """Refuse to write into an earlier run unless asked to resume it or to replace it."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    found = existing_run(out_dir)
    if resume:
        if not (out_dir / "checkpoint").is_dir():
            what = f" (it holds {found})" if found else ""
            raise CheckpointError(
                f"--resume: there is no checkpoint in {out_dir / 'checkpoint'}{what}; "
                f"start the run without --resume (with --overwrite if {out_dir} holds an earlier run)"
            )
        return
    if found and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a training run ({found}); pass --resume to continue it, "
            f"--overwrite to replace it, or choose another --out"
        )
    dist_.barrier()  # every rank has looked before rank 0 deletes
    if found and dist_.is_main:
        for name in RUN_ENTRIES:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    dist_.barrier()


def load_resume_state(run: Run) -> None:
    """Load weights, EMA and optimizer state from ``run.ckpt_dir`` and set ``run.start``."""
    ckpt = run.ckpt_dir
    if run.dist.is_main:
        recover(ckpt)  # finish or undo a save that a kill interrupted
    run.dist.barrier()
    saved = read_config(ckpt)
    if "step" not in saved or "train" not in saved:
        raise CheckpointError(f"{ckpt / 'config.json'} has no step or train section: not a training checkpoint")
    try:
        saved_model, saved_diffusion = checkpoint_configs(saved)
    except ConfigError as e:
        raise CheckpointError(f"the config in {ckpt} is not valid: {e}") from None
    if saved_model != run.model_cfg or saved_diffusion != run.diff_cfg:
        raise CheckpointError(f"--resume: the checkpoint in {ckpt} was trained with another model or diffusion config")
    tensors = read_tensors(ckpt / "model.safetensors")
    if not any(k.startswith("model.") for k in tensors):
        raise CheckpointError(f"{ckpt} holds only EMA weights (an exported checkpoint); it cannot be resumed")
    load_weights(run.model, tensors, "model", str(ckpt))
    load_weights(run.ema, tensors, "ema", str(ckpt))
    load_optimizer(run.opt, ckpt, step=saved["step"])
    run.start = run.last_saved = saved["step"]


def prepare_log(run: Run) -> None:
    """A fresh log.csv, or the resumed run's log without the lines written after its checkpoint."""
    if not run.dist.is_main:
        return
    if run.start == 0 or not run.log_path.exists():
        run.log_path.write_text(LOG_HEADER)
        return
    kept = []
    for line in run.log_path.read_text().splitlines(keepends=True)[1:]:
        try:
            if int(line.split(",")[0]) <= run.start:
                kept.append(line)
        except ValueError:  # a line cut short by a kill
            continue
    run.log_path.write_text(LOG_HEADER + "".join(kept))


def setup(
    raw_config: dict,
    out_dir: str | os.PathLike,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    data_root: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
) -> Run:
    """Check the config and the output directory, build model, EMA and optimizer, resume, load the data."""
    model_cfg, diff_cfg, cfg = build_configs(raw_config)  # every setting checked before anything is written
    data_cfg = data_config(raw_config)
    dist_, dev = setup_distributed(device)
    try:
        return _setup(model_cfg, diff_cfg, cfg, data_cfg, Path(out_dir), dist_, dev, data, data_root, resume, overwrite)
    except BaseException:
        if dist_.started_here and dist.is_initialized():
            dist.destroy_process_group()
        raise


def _setup(model_cfg, diff_cfg, cfg, data_cfg, out_dir, dist_, dev, data, data_root, resume, overwrite) -> Run:
    check_out_dir(out_dir, resume, overwrite, dist_)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    amp = autocast_dtype(cfg.precision, dev)
    channels_last = use_channels_last(cfg.channels_last, dev, amp)

    torch.manual_seed(cfg.seed)  # the initial weights depend only on the seed (the same on every rank)
    model = UNet(model_cfg).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net = model
    if dist_.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False
        )
    null = model.null_labels if model_cfg.extra_labels else model.null_label
    run = Run(
        model_cfg, diff_cfg, cfg, data_cfg, config_dict(model_cfg, diff_cfg, cfg, data_cfg), out_dir, dist_, dev,
        amp, channels_last, NoiseSchedule.from_name(diff_cfg.schedule, diff_cfg.T), model, net, ema, opt,
        loss_kwargs=loss_options(cfg, diff_cfg, null),
    )  # fmt: skip
    if resume:
        load_resume_state(run)
        if dist_.is_main:
            print(f"resumed from {run.ckpt_dir} at step {run.start}", file=sys.stderr)
    run.images, run.labels = training_data(run, data, data_root)  # after the checks above: they fail fast
    if dist_.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    prepare_log(run)
    return run


def load_dataset(data_cfg: DataConfig, image_size: int = 28, root=None, train: bool = True):
    """The images in [-1, 1] and labels of the dataset that ``data_cfg`` names (``data.classes`` applied)."""
    if data_cfg.dataset == "shifted_mnist":
        from .shifted import ShiftedMNIST

        ds = ShiftedMNIST(
            root, train, image_size, data_cfg.holdout, data_cfg.holdout_rule, data_cfg.p_unlabel_position,
            data_cfg.seed, classes=data_cfg.classes,
        )  # fmt: skip
        return ds.tensors()
    if data_cfg.dataset == "cifar10":
        from .data import load_cifar10

        return load_cifar10(train=train, root=root, classes=data_cfg.classes)
    from .data import load_mnist

    images, labels = load_mnist(train=train, root=root)
    if data_cfg.classes is not None:
        keep = torch.isin(labels, torch.tensor(data_cfg.classes))
        images, labels = images[keep], labels[keep]
    return images, labels


def training_data(run: Run, data, data_root) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` or the training split of ``data.dataset``, on the run's device, checked against the model."""
    if data is None:
        check_data_agreement(run.model_cfg, run.data_cfg)  # before the (slow) loading
        data = load_dataset(run.data_cfg, run.model_cfg.image_size, data_root)
    images, labels = data
    cfg = run.model_cfg
    if tuple(images.shape[1:]) != (cfg.image_channels, cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"the images are {tuple(images.shape[1:])} but the model expects "
            f"({cfg.image_channels}, {cfg.image_size}, {cfg.image_size}): set model.image_size/image_channels"
        )
    if len(images) == 0 or len(labels) != len(images):
        raise ConfigError(f"the training data must be images with one label each, got {len(images)} and {len(labels)}")
    if cfg.extra_labels:  # (N, K) label rows; a row may leave a label out (its null value)
        if labels.ndim != 2 or labels.shape[1] != 1 + len(cfg.extra_labels):
            raise ConfigError(
                f"model.extra_labels={list(cfg.extra_labels)} needs {1 + len(cfg.extra_labels)} labels per image, "
                f"got labels of shape {tuple(labels.shape)}"
            )
        for k, n in enumerate((cfg.num_classes, *cfg.extra_labels)):
            if labels[:, k].min() < 0 or labels[:, k].max() > n:
                raise ConfigError(f"label column {k} goes from {int(labels[:, k].min())} to {int(labels[:, k].max())}, "
                                  f"outside 0..{n} ({n}: left out)")  # fmt: skip
    elif labels.ndim != 1:
        raise ConfigError(f"the labels must be one class per image, got shape {tuple(labels.shape)}")
    elif labels.min() < 0 or labels.max() >= cfg.num_classes:
        raise ConfigError(
            f"the labels go from {int(labels.min())} to {int(labels.max())}, but model.num_classes={cfg.num_classes} "
            f"allows 0..{cfg.num_classes - 1}"
        )
    return images.to(run.device), labels.to(run.device)


# --- one step, logging, checkpointing ----------------------------------------------------------------------


def global_batch(run: Run, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of the step's global batch of world_size * batch_size images."""
    B, r = run.cfg.batch_size, run.dist.rank
    idx = batch_indices(step, len(run.images), B * run.dist.world_size, run.cfg.seed)[r * B : (r + 1) * B]
    idx = idx.to(run.device)
    x0, y = run.images[idx], run.labels[idx]
    if run.data_cfg.hflip:  # mirror about half of the images, drawn for the global batch as above
        g = torch.Generator().manual_seed(run.cfg.seed * FLIP_SEED + step)
        flip = (torch.rand(B * run.dist.world_size, generator=g)[r * B : (r + 1) * B] < 0.5).to(run.device)
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    if run.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    return x0, y


def mean_over_ranks(run: Run, value: torch.Tensor) -> float:
    if run.dist.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= run.dist.world_size
    return value.item()


def _stopped(run: Run, step: int, what: str) -> FloatingPointError:
    where = (
        f"the last checkpoint, from step {run.last_saved}, is in {run.ckpt_dir} (continue it with --resume)"
        if run.last_saved is not None
        else "this run has written no checkpoint yet"
    )
    hint = "a lower train.lr or a smaller train.grad_clip"
    if run.amp is not None:
        hint += ", or train.precision=fp32"
    return FloatingPointError(
        f"{what} at step {step} ({run.precision}); stopped without writing a checkpoint: {where}. Try {hint}."
    )


def train_step(run: Run, step: int) -> float:
    """One step of Algorithm 1 (steps 2-5), then the EMA update; returns the loss (mean over ranks).

    Nothing is updated if the loss or the gradient is not finite, or if the loss exceeds train.max_loss."""
    cfg = run.cfg
    for group in run.opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    g = torch.Generator().manual_seed(cfg.seed * NOISE_SEED + step)  # t, eps, label dropout
    torch.manual_seed(cfg.seed * DROPOUT_SEED + step + (run.dist.rank << RANK_SEED_SHIFT))  # dropout masks
    x0, y = global_batch(run, step)
    shard = (run.dist.rank, run.dist.world_size)
    with torch.autocast(run.device.type, dtype=run.amp, enabled=run.amp is not None):
        if run.diff_cfg.process == "blur":  # cold diffusion: restore x_0 from a blurred copy (ddpmlib.cold)
            from .cold import restoration_loss

            loss = restoration_loss(run.net, x0=x0, labels=y, generator=g, shard=shard, **run.loss_kwargs)
        else:
            loss = diffusion_loss(run.net, run.schedule, x0, y, g, shard=shard, **run.loss_kwargs)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: the gradients are averaged over the ranks here
    value = mean_over_ranks(run, loss)
    if not math.isfinite(value):
        raise _stopped(run, step, f"the loss became {value}")
    if value > cfg.max_loss:
        what = f"the loss reached {value:.3g}, above train.max_loss={cfg.max_loss:g}: training diverged"
        raise _stopped(run, step, what)
    params = list(run.model.parameters())
    if cfg.grad_clip:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if not torch.isfinite(grad_norm):
        raise _stopped(run, step, f"the gradient norm became {grad_norm.item()} (loss {value:.4g})")
    run.opt.step()
    decay = min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay
    ema_update(run.ema, run.model, decay)
    return value


def log_step(run: Run, done: int, losses: list[float], seconds: float, elapsed: float) -> str:
    """Append the mean loss of the last ``len(losses)`` steps to log.csv; returns it for the progress bar."""
    images_per_s = len(losses) * run.cfg.batch_size * run.dist.world_size / max(seconds, 1e-9)
    mean_loss = sum(losses) / len(losses)
    with open(run.log_path, "a", newline="") as f:
        row = [done, f"{mean_loss:.5f}", f"{lr_at(done - 1, run.cfg):.6g}", f"{images_per_s:.1f}", f"{elapsed:.1f}"]
        csv.writer(f).writerow(row)
    return f"loss={mean_loss:.4f} img/s={images_per_s:.0f}"


def check_ranks_agree(run: Run) -> None:
    """Under torchrun: every rank must hold the same weights and EMA weights (compared by checksums)."""
    if run.dist.world_size == 1:
        return
    with torch.no_grad():
        sums = torch.stack([sum(p.double().sum() for p in m.parameters()) for m in (run.model, run.ema)]).to(run.device)
    gathered = [torch.zeros_like(sums) for _ in range(run.dist.world_size)]
    dist.all_gather(gathered, sums)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(
            f"the ranks hold different weights or EMA weights (checksums {[g.tolist() for g in gathered]})"
        )


def save(run: Run, step: int) -> None:
    """Rank 0 writes the training checkpoint (raw weights, EMA, optimizer), all or nothing."""
    check_ranks_agree(run)
    if run.dist.is_main:
        save_checkpoint(run.ckpt_dir, run.config, run.ema, run.model, run.opt, step)
    run.last_saved = step


def save_samples(run: Run, step: int) -> None:
    from .plotting import save_grid

    if run.diff_cfg.process == "blur":  # ddpmlib.cold: starts fitted to the blurred training images
        from .cold import sample_grid as cold_sample_grid

        grid = cold_sample_grid(run.ema, run.loss_kwargs["blur"], run.images.cpu(), run.labels.cpu())
    else:
        grid = sample_grid(run.ema, run.schedule, run.diff_cfg.prediction_type, classes=run.data_cfg.classes)
    save_grid(grid, run.out_dir / "samples" / f"step_{step:06d}.png", nrow=8)


def any_rank(run: Run, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on rank 0 (so that all ranks stop at the same step)."""
    if run.dist.world_size == 1:
        return flag
    t = torch.tensor([1.0 if (flag and run.dist.is_main) else 0.0], device=run.device)
    dist.all_reduce(t)
    return t.item() > 0


# --- the loop ------------------------------------------------------------------------------------------------


def train(
    raw_config: dict,
    out_dir: str | os.PathLike,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    data_root: str | None = None,
    resume: bool = False,
    device: str | None = None,
    stop_step: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Train and return the checkpoint directory ``out_dir/checkpoint``.

    ``out_dir`` must not hold an earlier run unless ``resume`` (continue it from its checkpoint) or
    ``overwrite`` (delete it first). ``data`` (images in [-1, 1], labels) replaces MNIST, for tests;
    ``stop_step`` stops early as if the process had been killed right after that step's checkpoint.
    Under torchrun (``$WORLD_SIZE`` > 1) every process calls this; rank 0 writes the files.
    """
    run = setup(raw_config, out_dir, data, data_root, resume, overwrite, device)
    try:
        return _loop(run, stop_step, progress)
    finally:
        if run.dist.started_here and dist.is_initialized():
            dist.destroy_process_group()


def _loop(run: Run, stop_step: int | None, progress: bool) -> Path:
    cfg, main = run.cfg, run.dist.is_main
    if main:
        print(
            f"device={run.device} processes={run.dist.world_size} precision={run.precision} "
            f"channels_last={run.channels_last} params={count_parameters(run.model) / 1e6:.2f}M "
            f"images={len(run.images)} steps {run.start}->{cfg.max_steps}",
            file=sys.stderr,
        )
    if run.start >= cfg.max_steps:
        print(f"{run.ckpt_dir} is already at step {run.start} of train.max_steps={cfg.max_steps}", file=sys.stderr)
        return run.ckpt_dir
    snapshots = sorted(cfg.snapshot_minutes)
    t0 = last_log_t = time.time()
    losses: list[float] = []
    bar = tqdm(
        range(run.start, cfg.max_steps),
        initial=run.start,
        total=cfg.max_steps,
        disable=not (progress and main),
        desc="train",
    )
    run.net.train()
    done = run.start
    for step in bar:
        losses.append(train_step(run, step))
        done = step + 1
        now = time.time()
        if main and (done % cfg.log_every == 0 or done == cfg.max_steps):
            bar.set_postfix_str(log_step(run, done, losses, now - last_log_t, now - t0))
            last_log_t, losses = now, []
        if main and cfg.sample_every and done % cfg.sample_every == 0:
            save_samples(run, done)
        minutes = (time.time() - t0) / 60
        while main and snapshots and minutes >= snapshots[0]:
            save_checkpoint(run.out_dir / "snapshots" / f"min{snapshots.pop(0):05.1f}", run.config, run.ema, step=done)
        if done % cfg.checkpoint_every == 0:
            save(run, done)
        if stop_step is not None and done >= stop_step:
            run.dist.barrier()
            return run.ckpt_dir
        if cfg.max_minutes is not None and any_rank(run, minutes >= cfg.max_minutes):
            if main:
                print(f"stopping after {minutes:.1f} minutes (train.max_minutes)", file=sys.stderr)
            break
    if run.last_saved != done:
        save(run, done)
    run.dist.barrier()  # the checkpoint is complete when train() returns on any rank
    return run.ckpt_dir


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Write an inference-only copy of a checkpoint: EMA weights in ``dtype`` plus config.json."""
    config = read_config(checkpoint)
    model_cfg, _ = checkpoint_configs(config)
    tensors = read_tensors(Path(checkpoint) / "model.safetensors")
    ema = UNet(model_cfg)
    load_weights(ema, tensors, "ema", str(checkpoint))
    config = {k: v for k, v in config.items() if k not in ("format_version", "step")}
    return save_checkpoint(out, config, ema, step=read_config(checkpoint)["step"], dtype=dtype)


def _one_line(e: BaseException) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Train a class-conditional DDPM (Algorithm 1) on MNIST, or on the config's data.dataset."
    )
    p.add_argument("--config", default=f"configs/{DEFAULT_CONFIG.name}", help="JSON file (model/diffusion/train)")
    p.add_argument("--out", default="runs/mnist", help="output directory (checkpoint/, samples/, log.csv)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="override config values")
    p.add_argument("--data-root", default=None, help="data root (default: $DDPM_DATA_ROOT or data/ in the repo)")
    p.add_argument("--device", default=None, help="cuda, cuda:N, mps or cpu (default: the best available)")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/checkpoint")
    runs.add_argument("--overwrite", action="store_true", help="delete the run in OUT (if any) and start afresh")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--export", default=None, metavar="DIR", help="afterwards, write fp16 EMA weights for inference here"
    )
    args = p.parse_args(argv)
    try:
        raw = apply_overrides(load_config_file(args.config), args.set)
        ckpt = train(
            raw,
            args.out,
            data_root=args.data_root,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.no_progress,
        )
        if int(os.environ.get("RANK", "0")) != 0:
            return
        print(f"checkpoint: {ckpt}")
        if args.export:
            print(f"exported: {export(ckpt, args.export)}")
    except (ConfigError, CheckpointError, FloatingPointError, FileNotFoundError, FileExistsError) as e:
        raise SystemExit(f"error: {_one_line(e)}") from None


if __name__ == "__main__":
    main()
