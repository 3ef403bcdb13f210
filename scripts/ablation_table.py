"""Markdown table of the runs made by scripts/ablations.sh: accuracy, FD ratio, wall time per variant.

python scripts/ablation_table.py [runs/ablations]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablations")
    print("| variant | steps | train wall (min) | final loss | accuracy (DDIM-20, w=0) | FD / baseline |")
    print("|---|---|---|---|---|---|")
    for ev in sorted(root.glob("*/eval.json"), key=lambda p: p.stat().st_mtime):
        r = json.loads(ev.read_text())
        log = (ev.parent / "log.csv").read_text().splitlines()
        step, loss, _, _, elapsed = log[-1].split(",")
        acc, fd = r["accuracy"], r["frechet_distance"]
        print(
            f"| {ev.parent.name} | {step} | {float(elapsed) / 60:.1f} | {float(loss):.4f} "
            f"| {acc['overall']:.1%} ({acc['correct']}/{acc['total']}) | {fd['ratio_to_baseline']:.1f}x |"
        )


if __name__ == "__main__":
    main()
