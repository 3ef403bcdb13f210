"""Quality against steps for every sampler, and optionally a guidance sweep, measured with ddpmlib.evaluate.

    python scripts/sampler_table.py [--checkpoint checkpoints/mnist] [--num-samples 1000] [--seed 0] \\
        [--steps 5 10 20 50] [--samplers ddpm ddim:0 ddim:0.5 dpmpp] [--guidance 0] \\
        [--guidance-sweep 0 0.25 0.5 1 2 --sweep-sampler dpmpp --sweep-steps 10] [--no-steps-table] \\
        [--csv runs/sampler_table.csv] [--threads N]

For every sampler (``name`` or ``ddim:ETA``) and step count, and for every w of the guidance sweep, it draws
N samples with balanced labels and the fixed seed (``ddpmlib.evaluate.evaluate``) and measures the conditional
accuracy, with its 95% Wilson interval, and the Frechet distance divided by the real-vs-real baseline at the
same N. Each row is appended to the CSV as soon as it is measured; rows already there for the same model
(by the SHA-256 of its weights), options, N, seed and batch size are not measured again, so an interrupted run
resumes where it stopped. At the end it prints a markdown table of the rows asked for. Generation times are
wall-clock seconds on this machine; the CSV records the load average next to them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ddpmlib import evaluate as ev
from ddpmlib.checkpoint import CheckpointError
from ddpmlib.classifier import SHIPPED_CLASSIFIER
from ddpmlib.data import MNISTNotFoundError
from ddpmlib.pipeline import load_pipeline
from ddpmlib.samplers import SAMPLER_NAMES, SamplingOptions, make_sampler

KEY = ["model_sha256", "sampler", "eta", "steps", "guidance", "num_samples", "seed", "batch_size"]
FIELDS = KEY + [
    "checkpoint",
    "accuracy",
    "correct",
    "acc_low95",
    "acc_high95",
    "fd",
    "fd_baseline",
    "fd_ratio",
    "generation_s",
    "device",
    "threads",
    "load_avg_1min",
    "finished_utc",
]


def parse_sampler(spec: str) -> tuple[str, float]:
    """ "ddpm", "ddim", "ddim:0.5", "dpmpp" -> (name, eta)."""
    name, _, eta = spec.partition(":")
    try:
        eta_value = float(eta) if eta else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad eta in {spec!r}: write ddim:0.5") from None
    if name not in SAMPLER_NAMES:
        raise argparse.ArgumentTypeError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    return name, eta_value


def label(sampler: str, eta: float) -> str:
    return f"{SAMPLER_NAMES[sampler]}, eta {eta:g}" if sampler == "ddim" else SAMPLER_NAMES[sampler]


def weights_sha256(checkpoint: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(Path(checkpoint) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def row_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in KEY)


def read_rows(path: Path) -> dict[tuple[str, ...], dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row_key(r): r for r in csv.DictReader(f)}


def append_row(path: Path, row: dict) -> None:
    """One complete line per write, header first in a new file, flushed to disk: a killed run loses at most
    the row it was measuring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def markdown(rows: list[dict], n: int) -> str:
    head = f"| sampler | steps | guidance w | accuracy (95% Wilson interval), N={n} | FD / real baseline"
    lines = [
        head + " | generation (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc, lo, hi = float(r["accuracy"]), float(r["acc_low95"]), float(r["acc_high95"])
        lines.append(
            f"| {label(r['sampler'], float(r['eta']))} | {r['steps']} | {float(r['guidance']):g} "
            f"| {acc:.1%} ({lo:.1%}-{hi:.1%}) | {float(r['fd_ratio']):.2f}x | {float(r['generation_s']):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mnist")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument(
        "--samplers",
        type=parse_sampler,
        nargs="+",
        default=[("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("dpmpp", 0.0)],
        help="ddpm, ddim[:eta], dpmpp (default: ddpm ddim:0 ddim:0.5 dpmpp)",
    )
    p.add_argument("--guidance", type=float, default=0.0, help="guidance w of the steps table (default 0)")
    p.add_argument("--guidance-sweep", type=float, nargs="*", default=[], metavar="W", help="e.g. 0 0.25 0.5 1 2")
    p.add_argument("--sweep-sampler", type=parse_sampler, default=("dpmpp", 0.0))
    p.add_argument("--sweep-steps", type=int, default=10)
    p.add_argument("--no-steps-table", action="store_true", help="only the guidance sweep")
    p.add_argument("--csv", default="runs/sampler_table.csv")
    p.add_argument("--classifier", default=SHIPPED_CLASSIFIER)
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if not 2 <= args.num_samples <= ev.MAX_SAMPLES or args.batch_size < 1:
        p.error(f"--num-samples must be between 2 and {ev.MAX_SAMPLES}, and --batch-size at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    plan = [] if args.no_steps_table else [(s, e, n, args.guidance) for s, e in args.samplers for n in args.steps]
    plan += [(*args.sweep_sampler, args.sweep_steps, w) for w in args.guidance_sweep]
    plan = list(dict.fromkeys(plan))  # a row asked for twice is measured once
    try:
        pipe = load_pipeline(args.checkpoint, device=args.device)
        options = [SamplingOptions(s, n, w, eta, seed=args.seed) for s, eta, n, w in plan]
        for o in options:
            make_sampler(o, pipe.schedule)  # a bad step count fails now, not after an hour of sampling
        ref = ev.load_reference(args.classifier, args.data_root, pipe.device)
    except (CheckpointError, MNISTNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None

    csv_path = Path(args.csv)
    done = read_rows(csv_path)
    sha = weights_sha256(args.checkpoint)
    rows = []
    for o in tqdm(options, desc="rows", unit="row"):
        key = {
            "model_sha256": sha,
            "sampler": o.sampler,
            "eta": f"{o.eta:g}",
            "steps": o.steps,
            "guidance": f"{o.guidance_scale:g}",
            "num_samples": args.num_samples,
            "seed": args.seed,
            "batch_size": args.batch_size,
        }
        if row_key(key) in done:
            rows.append(done[row_key(key)])
            continue
        r, _, _ = ev.evaluate(
            pipe, ref, args.num_samples, o, batch_size=args.batch_size, full_baseline=False, progress=True
        )
        acc, fd = r["accuracy"], r["frechet_distance"]
        lo, hi = ev.wilson_interval(acc["correct"], acc["total"])
        row = {
            **key,
            "checkpoint": str(args.checkpoint),
            "accuracy": f"{acc['overall']:.6f}",
            "correct": acc["correct"],
            "acc_low95": f"{lo:.6f}",
            "acc_high95": f"{hi:.6f}",
            "fd": f"{fd['generated']:.6f}",
            "fd_baseline": f"{fd['baseline'][str(args.num_samples)]:.6f}",
            "fd_ratio": f"{fd['ratio_to_baseline']:.6f}",
            "generation_s": f"{r['timing_s']['generation']:.2f}",
            "device": str(pipe.device),
            "threads": torch.get_num_threads(),
            "load_avg_1min": f"{os.getloadavg()[0]:.2f}",
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        append_row(csv_path, row)
        done[row_key(row)] = row
        rows.append(row)
        what = f"{label(o.sampler, o.eta)}, {o.steps} steps, w={o.guidance_scale:g}"
        tqdm.write(f"{what}: accuracy {acc['overall']:.1%}, FD ratio {fd['ratio_to_baseline']:.2f}x")

    print(f"\n{args.checkpoint} (weights {sha}), N = {args.num_samples}, seed {args.seed}; rows in {csv_path}\n")
    print(markdown(rows, args.num_samples))


if __name__ == "__main__":
    sys.exit(main())
