"""Composition test of the shifted-digit model (notebook 10): for every (digit, position) pair, is the digit
recognised and is it where it was asked to be? Seen pairs against the pairs held out of training.

    python scripts/shifted_table.py [--checkpoint checkpoints/shifted_mnist] [--n 100] [--sampler dpmpp]
        [--steps 20] [--conditions none joint:1 joint:3 position:3] [--seed 0] [--device cpu]
        [--csv checkpoints/shifted_mnist/eval/pairs.csv]

A condition is ``none`` (no guidance) or ``MODE:W``: classifier-free guidance of scale W, where MODE says
which labels the unconditional term leaves out (``joint``: both; ``position``: only the position, so the
guidance pushes towards the position alone; ``digit``: only the digit), or ``compose:W``: the digit and the
position conditioned separately and added (``ddpmlib.shifted.ComposedLabels``, Liu et al. 2022). Each
(condition, pair) becomes one CSV row (the file is rewritten atomically), and a summary with 95% Wilson
intervals is printed. The first rows (condition ``real``) score real shifted test digits at every position,
the ceiling of the measurement: the classifier reads a digit shrunk to a quadrant and scaled back up less
well than a full-size one.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

import torch

from ddpmlib.checkpoint import CheckpointError, atomic_write, read_config
from ddpmlib.classifier import load_classifier
from ddpmlib.data import load_mnist
from ddpmlib.evaluate import wilson_interval
from ddpmlib.pipeline import load_pipeline
from ddpmlib.shifted import NUM_POSITIONS, evaluate_pairs, pair_grid, place, score_pairs, shrink

FIELDS = ["condition", "digit", "position", "seen", "n", "digit_ok", "place_ok", "both", "both_low95", "both_high95"]


def parse_condition(spec: str) -> tuple[str, float]:
    if spec == "none":
        return "joint", 0.0
    mode, _, w = spec.partition(":")
    if mode not in ("joint", "position", "digit", "compose") or not w:
        raise SystemExit(
            f"error: a condition is 'none' or MODE:W, MODE joint, position, digit or compose; got {spec!r}"
        )
    return mode, float(w)


def real_rows(data_root, classifier, seen, n: int) -> list[dict]:
    """The first ``n`` real test digits of each class placed at every position (held-out pairs too): the
    measurement's ceiling."""
    images, digits = load_mnist(train=False, root=data_root)
    rows = []
    for d in range(10):
        small = shrink(images[digits == d][:n], 14)
        for p in range(NUM_POSITIONS):
            at = torch.full((len(small),), p)
            s = score_pairs(classifier, place(small, at, 28), torch.full((len(small),), d), at)
            rows.append(row("real", d, p, (d, p) in seen, s["digit_ok"], s["place_ok"], s["both"]))
    return rows


def row(condition, digit, position, seen, digit_ok, place_ok, both) -> dict:
    n, k = len(both), int(both.sum())
    lo, hi = wilson_interval(k, n)
    return dict(
        condition=condition, digit=digit, position=position, seen=int(seen), n=n,
        digit_ok=int(digit_ok.sum()), place_ok=int(place_ok.sum()), both=k,
        both_low95=f"{lo:.4f}", both_high95=f"{hi:.4f}",
    )  # fmt: skip


def summary(rows: list[dict]) -> str:
    lines = [
        "| condition | pairs | n | digit right | at the right place | both (95% Wilson) |",
        "|---|---|---|---|---|---|",
    ]
    for cond in dict.fromkeys(r["condition"] for r in rows):
        for seen in (1, 0):
            sel = [r for r in rows if r["condition"] == cond and r["seen"] == seen]
            if not sel:
                continue
            n = sum(r["n"] for r in sel)
            d, p, b = (sum(r[k] for r in sel) for k in ("digit_ok", "place_ok", "both"))
            lo, hi = wilson_interval(b, n)
            what = "seen" if seen else "held out"
            lines.append(
                f"| {cond} | {what} ({len(sel)}) | {n} | {d / n:.1%} | {p / n:.1%} | {b / n:.1%} ({lo:.1%}-{hi:.1%}) |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/shifted_mnist")
    p.add_argument("--n", type=int, default=100, help="images per (digit, position) pair and condition")
    p.add_argument("--sampler", default="dpmpp")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument(
        "--conditions", nargs="+", default=["none", "joint:1", "joint:3", "position:3", "compose:0", "compose:1"]
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--csv", default=None, help="default: CHECKPOINT/eval/pairs.csv")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    conditions = [(spec, *parse_condition(spec)) for spec in args.conditions]
    try:
        pipe = load_pipeline(args.checkpoint, device=args.device)
        data = read_config(args.checkpoint).get("data", {})
    except (CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if pipe.null_labels != (10, NUM_POSITIONS):
        raise SystemExit(
            f"error: {args.checkpoint} is not a (digit, position) model: its labels are {pipe.null_labels}"
        )
    held = {tuple(pair) for pair in data.get("holdout", [])}
    seen = {tuple(pair) for pair in pair_grid().tolist()} - held
    classifier = load_classifier(device=pipe.device)
    t0 = time.time()
    rows = real_rows(args.data_root, classifier, seen, args.n)
    for spec, mode, w in conditions:
        pairs, s = evaluate_pairs(pipe, classifier, args.n, w, mode, args.sampler, args.steps, args.seed,
                                  progress=not args.no_progress)  # fmt: skip
        for i, (d, pos) in enumerate(pairs.tolist()):
            rows.append(row(spec, d, pos, (d, pos) in seen, s["digit_ok"][i], s["place_ok"][i], s["both"][i]))
    out = Path(args.csv or os.path.join(args.checkpoint, "eval", "pairs.csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out, lambda tmp: Path(tmp).write_text(buf.getvalue()))
    print(f"held out: {sorted(held)}; {args.sampler} {args.steps} steps, n={args.n} per pair, seed {args.seed}, "
          f"device {pipe.device}, {time.time() - t0:.0f} s; rows in {out}", file=sys.stderr)  # fmt: skip
    print(summary(rows))


if __name__ == "__main__":
    main()
