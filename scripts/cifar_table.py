"""Measure a CIFAR-10 checkpoint: Fréchet distance of 8x8 thumbnails, next to its real-vs-real baseline.

    python scripts/cifar_table.py --checkpoint checkpoints/cifar10_cpu --num-samples 500 --steps 25 100 \
        --csv checkpoints/cifar10_cpu/eval/thumbnail_fd.csv

The project has no CIFAR classifier and no Inception network (the usual FID needs one trained on ImageNet), so the
features are the crudest ones: every image average-pooled to 8x8 per channel, 192 numbers (notebook 12, section 7).
They see colour layout and coarse shape, nothing finer; a ratio near 1 would mean "thumbnails as close to the test
set as real training images", not "good CIFAR images". The reference set is the test split of the classes the model
was trained on (from the checkpoint's ``data.classes``, else all ten); the baseline is the distance of N real
training images of those classes from it, as ``ddpmlib.evaluate`` does for MNIST. Labels are balanced over the classes.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without pip install

from ddpmlib.data import load_cifar10  # noqa: E402
from ddpmlib.evaluate import feature_statistics, frechet_distance  # noqa: E402
from ddpmlib.pipeline import load_pipeline  # noqa: E402

FIELDS = ("checkpoint", "T", "train_steps", "classes", "sampler", "steps", "num_samples", "seed", "fd", "baseline_fd",
          "fd_ratio", "seconds")  # fmt: skip


def thumbnails(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """(N, 3, 32, 32) -> (N, 3 * size * size): the mean of every (32 / size)^2 block of each channel."""
    return F.adaptive_avg_pool2d(x.float(), size).flatten(1)


def thumbnail_fd(a: torch.Tensor, b: torch.Tensor, size: int = 8) -> float:
    return frechet_distance(*feature_statistics(thumbnails(a, size)), *feature_statistics(thumbnails(b, size)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/cifar10_cpu")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--sampler", default="ddpm", help="ddpm, ddim or dpmpp")
    p.add_argument("--steps", type=int, nargs="+", default=[100])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument(
        "--csv", default=None, help="append the rows to this CSV file (default: <checkpoint>/eval/thumbnail_fd.csv)"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.checkpoint, device=args.device)
    classes = (pipe.config.get("data") or {}).get("classes") or list(range(10))
    test_x, _ = load_cifar10(train=False, root=args.data_root, classes=classes)
    train_x, _ = load_cifar10(train=True, root=args.data_root, classes=classes)
    g = torch.Generator().manual_seed(args.seed)
    baseline = thumbnail_fd(train_x[torch.randperm(len(train_x), generator=g)[: args.num_samples]], test_x)
    labels = torch.tensor(classes).repeat(args.num_samples // len(classes) + 1)[: args.num_samples]
    out = Path(args.csv) if args.csv else Path(args.checkpoint) / "eval" / "thumbnail_fd.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for steps in args.steps:
            t0 = time.time()
            x = torch.cat([
                pipe.generate(chunk, sampler=args.sampler, steps=steps, seed=args.seed + i)
                for i, chunk in enumerate(labels.split(250))
            ]).cpu()  # fmt: skip
            seconds = time.time() - t0
            fd = thumbnail_fd(x, test_x)
            row = dict(checkpoint=args.checkpoint, T=pipe.T, train_steps=pipe.config.get("step"),
                       classes=" ".join(map(str, classes)), sampler=args.sampler, steps=steps,
                       num_samples=args.num_samples, seed=args.seed, fd=f"{fd:.4f}", baseline_fd=f"{baseline:.4f}",
                       fd_ratio=f"{fd / baseline:.3f}", seconds=f"{seconds:.1f}")  # fmt: skip
            writer.writerow(row)
            f.flush()
            print(f"T={pipe.T} {args.sampler} {steps} steps, N={args.num_samples}: FD {fd:.3f}, "
                  f"baseline {baseline:.3f}, ratio {fd / baseline:.2f} ({seconds:.0f} s)")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
