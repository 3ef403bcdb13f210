"""Run the design study of notebook 09: every setting of ``ddpmlib.study.STUDY_GRID`` x every seed.

    python scripts/study.py --out results/study_256k --seeds 0 1 2 --budget-images 256000 [--workers 6]
    python scripts/study.py --out results/study_256k --settings baseline T250 --seeds 0     # a subset
    python scripts/study.py --list                                                          # the grid

Each run trains the shipped recipe with one factor changed, for ``--budget-images`` training images
(``max_steps = budget / batch size``), then draws ``--num-samples`` digits with the same sampler, steps
and sampling seed, and appends one row to ``OUT/study.csv`` (config, seed, steps, wall time, hardware,
accuracy, Frechet distance and its baseline, discriminator accuracy, final loss). A rerun skips the
(setting, seed) pairs already in the CSV, so an interrupted study resumes. Runs go seed by seed
(every setting with seed 0 first), so a partial study still covers the grid. ``--workers N`` runs N
trainings at once in separate processes (on a GPU, several small models share it well); the CSV is
written by this process alone, one complete row at a time.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpmlib.study import STUDY_GRID, run_setting, setting_by_name  # noqa: E402

_DATA = None


def _worker_init(threads: int, data_root: str | None) -> None:
    import torch

    global _DATA
    if threads:
        torch.set_num_threads(threads)
    from ddpmlib.data import load_mnist

    _DATA = load_mnist(True, data_root)


def _run(name: str, seed: int, args: argparse.Namespace) -> dict:
    setting = setting_by_name(name)
    out = Path(args.runs_dir) / f"{name}_seed{seed}"
    if out.exists():  # a run that was interrupted: start it again from scratch
        import shutil

        shutil.rmtree(out)
    grid = Path(args.out) / "grids" / f"{name}.png" if seed == args.seeds[0] else None
    return run_setting(
        setting,
        seed,
        args.budget_images,
        out,
        _DATA,
        device=args.device,
        num_samples=args.num_samples,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        data_root=args.data_root,
        grid_path=grid,
        extra_overrides={"train.precision": args.precision} if args.precision else None,
    )


def done_pairs(path: Path, budget_images: int | None = None) -> set[tuple[str, int]]:
    """The (setting, seed) pairs already in the CSV. With ``budget_images``, refuse a CSV whose runs saw another
    number of training images: resuming it would skip every pair and mix two budgets in one table."""
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # a run sees (budget // batch) * batch images: the budget itself, or a little less when batch does not divide it
    other = [
        r
        for r in rows
        if budget_images is not None
        and r.get("images_seen")
        and int(r["images_seen"]) != max(1, budget_images // int(r["batch_size"])) * int(r["batch_size"])
    ]
    if other:
        budgets = sorted({int(r["images_seen"]) for r in other})
        raise SystemExit(
            f"error: {path} holds runs at {', '.join(f'{b:,}' for b in budgets)} training images, not "
            f"{budget_images:,}; pass a new --out for another budget "
            f"(e.g. --out results/study_{budget_images // 1000}k)"
        )
    return {(r["setting"], int(r["seed"])) for r in rows}


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run the notebook-09 design study (one factor at a time, several seeds).")
    p.add_argument("--out", default="results/study", help="folder for study.csv and grids/")
    p.add_argument("--runs-dir", default="runs/study", help="training runs (checkpoints, logs); not committed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="*", default=None, help="names from --list (default: all)")
    p.add_argument("--budget-images", type=int, default=256_000, help="training images per run")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eta", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=1, help="trainings at once, each in its own process")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker")
    p.add_argument("--device", default=None, help="cuda or cpu (default: the best available)")
    p.add_argument("--precision", default=None, help="train.precision for every run (default: the recipe's, auto)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--stop-after-minutes", type=float, default=None, help="start no new run after this long")
    p.add_argument("--list", action="store_true", help="print the grid and exit")
    args = p.parse_args(argv)
    if args.list:
        for s in STUDY_GRID:
            print(f"{s.name:12s} {s.factor:16s} {s.value:36s} {s.overrides}")
        return
    try:
        names = [setting_by_name(n).name for n in (args.settings or [s.name for s in STUDY_GRID])]
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.budget_images < 128 or args.num_samples < 20 or args.workers < 1:
        raise SystemExit("error: --budget-images must be >= 128, --num-samples >= 20 and --workers >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "study.csv"
    done = done_pairs(csv_path, args.budget_images)
    todo = [(n, s) for s in args.seeds for n in names if (n, s) not in done]
    print(f"{len(done)} runs already in {csv_path}; {len(todo)} to go with {args.workers} worker(s)", flush=True)
    if not todo:
        return
    t0 = time.time()
    import multiprocessing as mp

    from tqdm.auto import tqdm

    ctx = mp.get_context("spawn")
    failures = 0
    with ProcessPoolExecutor(args.workers, ctx, _worker_init, (args.threads, args.data_root)) as pool:
        pending, queue = {}, list(todo)
        bar = tqdm(total=len(todo), desc="study runs")
        while queue or pending:
            late = args.stop_after_minutes is not None and (time.time() - t0) / 60 >= args.stop_after_minutes
            while queue and len(pending) < args.workers and not late:
                name, seed = queue.pop(0)
                pending[pool.submit(_run, name, seed, args)] = (name, seed)
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                name, seed = pending.pop(fut)
                try:
                    row = fut.result()
                except Exception as e:  # report and go on: one broken setting must not stop the study
                    failures += 1
                    print(f"run {name} seed {seed} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    continue
                append_row(csv_path, row)
                bar.update(1)
                tqdm.write(
                    f"{name:12s} seed {seed}: acc {row['accuracy']:.3f} FD x{row['fd_ratio']:.2f} "
                    f"disc {row['disc_accuracy']:.3f} loss {row['final_loss']:.4f} ({row['wall_s']:.0f} s)"
                )
        bar.close()
    left = len(todo) - bar.n
    print(f"done in {(time.time() - t0) / 60:.1f} min; {bar.n} new rows, {failures} failed, {left} not run", flush=True)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
