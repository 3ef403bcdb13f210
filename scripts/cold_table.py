"""Cold diffusion (blur) against the Gaussian DDPM at the same number of network calls, measured with
ddpmlib.evaluate; notebook 11 reads the CSV.

    python scripts/cold_table.py [--cold checkpoints/cold_mnist] [--gaussian checkpoints/mnist] \\
        [--steps 10 20 50] [--num-samples 1000] [--seed 0] [--fit-images 20000] [--threads N] \\
        [--csv checkpoints/cold_mnist/eval/cold_table.csv]

Rows (each at every step count n, i.e. n network calls per image, no guidance):

* ``blur improved, gaussian start``: Algorithm 2 of Bansal et al. (2022) from x_T drawn from a Gaussian fitted,
  per class, to the blurred training images D(x_0, T) (``ddpmlib.cold.fit_start_distribution``, kind "gaussian")
* ``blur naive, gaussian start``: Algorithm 1 from the same starts
* ``blur improved, channel-mean start + noise 0.002``: the paper's recipe (Sec. 5.2): a constant image of a
  channel mean drawn from a 3-component Gaussian mixture, plus N(0, 0.002^2) noise
* ``gaussian ddim`` and ``gaussian ddpm``: the shipped DDPM (``ddpmlib.pipeline.load_pipeline``)

For every row: the conditional accuracy of the shipped classifier with its 95% Wilson interval
(``ddpmlib.evaluate.wilson_interval``), the Frechet distance divided by the real-vs-real baseline at the same N
(``ddpmlib.evaluate.evaluate_samples``), and the wall-clock seconds per generated image on this machine. The
CSV is rewritten at the end of the run (and after every row, so a partial table survives an interruption).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from ddpmlib import evaluate as ev
from ddpmlib.cold import generate_samples, load_cold
from ddpmlib.pipeline import load_pipeline

REPO = Path(__file__).resolve().parent.parent
FIELDS = [
    "model",
    "sampler",
    "start",
    "start_noise",
    "steps",
    "num_samples",
    "seed",
    "accuracy",
    "correct",
    "acc_low95",
    "acc_high95",
    "fd",
    "fd_baseline",
    "fd_ratio",
    "seconds_per_image",
    "device",
    "threads",
]


def measure(images, labels, ref, seconds) -> dict:
    r = ev.evaluate_samples(images, labels, ref, full_baseline=False)
    acc, fd = r["accuracy"], r["frechet_distance"]
    lo, hi = ev.wilson_interval(acc["correct"], acc["total"])
    return {
        "accuracy": f"{acc['overall']:.6f}",
        "correct": acc["correct"],
        "acc_low95": f"{lo:.6f}",
        "acc_high95": f"{hi:.6f}",
        "fd": f"{fd['generated']:.6f}",
        "fd_baseline": f"{fd['baseline'][str(len(images))]:.6f}",
        "fd_ratio": f"{fd['ratio_to_baseline']:.6f}",
        "seconds_per_image": f"{seconds / len(images):.5f}",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Blur (cold) diffusion vs Gaussian DDPM: accuracy, FD ratio, time.")
    p.add_argument("--cold", default=str(REPO / "checkpoints" / "cold_mnist"), help="the blur model's checkpoint")
    p.add_argument("--gaussian", default=str(REPO / "checkpoints" / "mnist"), help="the Gaussian model's checkpoint")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50], help="network calls per image")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--fit-images", type=int, default=20000, help="training images the start distributions see")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--csv", default=None, help="default: <cold>/eval/cold_table.csv")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.csv or Path(args.cold) / "eval" / "cold_table.csv")
    out.parent.mkdir(parents=True, exist_ok=True)

    cold = load_cold(args.cold, device=args.device)
    gauss = load_pipeline(args.gaussian, device=args.device)
    ref = ev.load_reference(root=args.data_root, device=cold.device)
    fit_x, fit_y = ref.train_images[: args.fit_images], ref.train_labels[: args.fit_images]
    starts = {
        "gaussian": cold.fit_start(fit_x, fit_y, kind="gaussian"),
        "channel_mean": cold.fit_start(fit_x, fit_y, kind="channel_mean", n_components=3),
    }
    blur_rows = [("improved", "gaussian", 0.0), ("naive", "gaussian", 0.0), ("improved", "channel_mean", 0.002)]
    common = {"num_samples": args.num_samples, "seed": args.seed, "device": str(cold.device)}
    common["threads"] = torch.get_num_threads()
    rows = []

    def write():
        tmp = out.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, out)

    for n in args.steps:
        for method, kind, noise in blur_rows:
            t0 = time.time()
            x, y = generate_samples(
                cold, starts[kind], args.num_samples, batch_size=args.batch_size, seed=args.seed,
                method=method, steps=n, start_noise=noise,
            )  # fmt: skip
            row = {"model": args.cold, "sampler": f"blur {method}", "start": kind, "start_noise": noise, "steps": n}
            rows.append({**row, **common, **measure(x, y, ref, time.time() - t0)})
            print(rows[-1], flush=True)
            write()
        for sampler in ("ddim", "ddpm"):
            t0 = time.time()
            x, y = ev.generate_samples(
                gauss, args.num_samples, sampler=sampler, steps=n, seed=args.seed, batch_size=args.batch_size,
                progress=False,
            )  # fmt: skip
            row = {"model": args.gaussian, "sampler": f"gaussian {sampler}", "start": "noise", "start_noise": 1.0}
            rows.append({**row, "steps": n, **common, **measure(x, y, ref, time.time() - t0)})
            print(rows[-1], flush=True)
            write()
    print(f"table: {out}")


if __name__ == "__main__":
    main()
