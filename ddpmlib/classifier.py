"""A small CNN that recognises MNIST digits: the judge of ``ddpmlib.evaluate``.

    python -m ddpmlib.classifier --data-root ../shared/data --out checkpoints/classifier

The evaluation asks it two things about generated digits: which digit is this (conditional
accuracy), and what are its penultimate features (``features(x)``, for the Frechet distance).
Inputs are images in [-1, 1], (B, 1, 28, 28), exactly what ``ddpmlib.data.load_mnist`` and the
samplers produce.

A classifier checkpoint is a directory like a model checkpoint (``ddpmlib.checkpoint``):

    config.json          {"format_version", "kind": "mnist-classifier", "model": ClassifierConfig,
                          "train": {...}, "test_accuracy", ...}
    model.safetensors    "classifier.<name>" tensors (float16 in the shipped copy)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_write,
    atomic_write_json,
    load_weights,
    read_tensors,
    state_tensors,
)
from .paths import shipped_checkpoints

KIND = "mnist-classifier"
PREFIX = "classifier"
# ``checkpoints/classifier`` in the repository (package data in a wheel): the classifier shipped with the project
SHIPPED_CLASSIFIER = os.path.join(shipped_checkpoints(), "classifier")
TRAIN_COMMAND = "python -m ddpmlib.classifier --data-root DIR --out DIR"


@dataclass
class ClassifierConfig:
    channels: tuple[int, ...] = (16, 32, 64)  # one stage per resolution: 28 -> 14 -> 7
    num_classes: int = 10
    dropout: float = 0.1

    def __post_init__(self):
        self.channels = tuple(self.channels)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}


class MNISTClassifier(nn.Module):
    """One (conv 3x3, BatchNorm, ReLU) at 28x28, then a stage of two of them at each lower resolution
    (2x2 max-pooling before each), then global average pooling (the features) and one linear layer."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ClassifierConfig()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(config.channels):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(1 if i == 0 else 2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.num_classes)

    @property
    def feature_dim(self) -> int:
        return self.config.channels[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim) of images (B, 1, 28, 28) in [-1, 1]."""
        return self.body(x).mean(dim=(2, 3))  # (B, C, 7, 7) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes)."""
        return self.head(self.dropout(self.features(x)))


@torch.no_grad()
def classify(model: MNISTClassifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels (N,) and penultimate features (N, feature_dim) as CPU tensors, in batches."""
    model.eval()
    device = next(model.parameters()).device
    preds, feats = [], []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device, torch.float32).contiguous(memory_format=torch.channels_last)
        f = model.features(x)
        preds.append(model.head(f).argmax(1).cpu())
        feats.append(f.float().cpu())
    return torch.cat(preds), torch.cat(feats)


def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    preds, _ = classify(model, images, batch_size)
    return (preds == labels.cpu()).sum().item() / len(labels)


def save_classifier(
    directory: str | os.PathLike,
    model: MNISTClassifier,
    info: dict | None = None,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Write ``model.safetensors`` (floating tensors cast to ``dtype``) and ``config.json`` (plus ``info``)."""
    directory = Path(directory)
    tensors = state_tensors(PREFIX, model, dtype)
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(tensors, tmp))
    config = {**(info or {}), "format_version": FORMAT_VERSION, "kind": KIND, "model": model.config.to_dict()}
    atomic_write_json(directory / "config.json", config)
    return directory


def read_classifier_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"no classifier at {directory}: {path} does not exist. The project ships one in "
            f"checkpoints/classifier; to train your own, run {TRAIN_COMMAND}"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the classifier checkpoint is corrupt") from None
    if config.get("kind") != KIND or "model" not in config:
        raise CheckpointError(f"{path} does not describe an MNIST classifier (kind {config.get('kind')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {config.get('format_version')!r}; this ddpmlib reads version {FORMAT_VERSION}"
        )
    return config


def load_classifier(directory: str | os.PathLike = SHIPPED_CLASSIFIER, device=None) -> MNISTClassifier:
    """The classifier in ``directory`` (default: the shipped one), in eval mode, in float32."""
    config = read_classifier_config(directory)
    try:
        model = MNISTClassifier(ClassifierConfig(**config["model"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the config in {directory} does not describe a valid classifier: {e}") from None
    load_weights(model, read_tensors(Path(directory) / "model.safetensors"), PREFIX, str(directory))
    model.info = {k: v for k, v in config.items() if k not in ("model", "kind", "format_version")}
    # channels_last: about a third faster on CPUs for this small network (inference)
    return model.to(device or "cpu", memory_format=torch.channels_last).eval()


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate every image by its own random whole-pixel offset in [-max_shift, max_shift]^2."""
    if max_shift <= 0:
        return x
    B, _, H, W = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator).float()
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2 * shift[:, 0] / W  # normalised coordinates span 2 over W pixels
    theta[:, 1, 2] = -2 * shift[:, 1] / H
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    # whole-pixel shifts sample pixel centres exactly; "border" repeats the black (-1) margin
    return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: ClassifierConfig | None = None,
    epochs: int = 3,
    batch_size: int = 256,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    max_shift: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> MNISTClassifier:
    """AdamW with a one-cycle schedule (linear warm-up over 10%, then cosine to 0), cross-entropy loss,
    random shifts of up to ``max_shift`` pixels. All randomness comes from generators seeded by ``seed``."""
    torch.manual_seed(seed)  # weight init and dropout
    model = MNISTClassifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = math.ceil(len(images) / batch_size)
    total = epochs * per_epoch
    warmup = max(1, total // 10)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    g = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(total=total, disable=not progress, desc="train classifier")
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        correct = seen = 0
        for i in range(0, len(images), batch_size):
            idx = perm[i : i + batch_size]
            x, y = random_shift(images[idx], max_shift, g), labels[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", train_acc=f"{correct / seen:.4f}")
    bar.close()
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the small MNIST classifier used by python -m ddpmlib.evaluate.")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--out", default="checkpoints/classifier", help="output directory (config.json, model.safetensors)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--max-shift", type=int, default=2, help="random translation in pixels (augmentation)")
    p.add_argument("--channels", type=int, nargs="+", default=list(ClassifierConfig.channels))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="precision of the saved weights")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from .data import MNISTNotFoundError, load_mnist

    try:
        train_x, train_y = load_mnist(train=True, root=args.data_root)
        test_x, test_y = load_mnist(train=False, root=args.data_root)
    except MNISTNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    t0 = time.time()
    model = train_classifier(
        train_x,
        train_y,
        ClassifierConfig(channels=tuple(args.channels)),
        args.epochs,
        args.batch_size,
        args.lr,
        max_shift=args.max_shift,
        seed=args.seed,
    )
    wall = time.time() - t0
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    info = {
        "train": {k: v for k, v in vars(args).items() if k not in ("data_root", "out", "channels")},
        "train_wall_time_s": round(wall, 1),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    save_classifier(args.out, model, info, dtype)
    # the accuracy that counts is that of the saved (possibly fp16) weights, loaded back
    acc = accuracy(load_classifier(args.out), test_x, test_y)
    info.update(test_accuracy=acc, test_accuracy_note=f"{args.dtype} weights as saved, all {len(test_y)} test images")
    save_classifier(args.out, model, info, dtype)
    print(
        f"test accuracy {acc:.4f} ({args.dtype} weights as loaded), training took {wall:.0f} s; saved to {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
