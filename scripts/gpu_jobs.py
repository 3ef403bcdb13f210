"""Fill one GPU session of a fixed length with the project's long jobs, in parallel:

1. the design study (``scripts/study.py``), with the training budget per run chosen so that the whole
   grid x seeds fits the session, and
2. candidate shipped models (``python -m ddpmlib.train --config configs/mnist_long.json``), each with
   as many steps as fit the session, then a quick evaluation of each (``python -m ddpmlib.evaluate``).

    python scripts/gpu_jobs.py --minutes 9 --data-root /tmp/data --out results/gpu_session

It first measures the training speed with every process running at once (several small models share
one GPU; each step is limited by kernel launches, not arithmetic), then sizes the jobs from it. Every
number it picks is printed and written to ``plan.json``, so a run can be repeated with fixed sizes:
the commands it runs are ordinary project commands.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable
# one CPU thread per process: a dozen processes with 16 OpenMP threads each would fight over 16 cores
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

CANDIDATES = {  # name -> overrides of configs/mnist_long.json
    "c16": [],
    "c24": ["model.base_channels=24"],
    "c16r2": ["model.num_res_blocks=2"],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def calibrate(n_proc: int, out: Path, data_root: str, device: str, steps: int = 300) -> float:
    """Seconds per training step of the shipped architecture with ``n_proc`` trainings at once."""
    procs = []
    for i in range(n_proc):
        d = out / f"cal{i}"
        cmd = [
            PY,
            "-m",
            "ddpmlib.train",
            "--config",
            "configs/mnist_cpu.json",
            "--out",
            str(d),
            "--device",
            device,
            "--data-root",
            data_root,
            "--set",
            f"train.max_steps={steps}",
            f"train.log_every={steps // 6}",
            "train.sample_every=0",
            "train.snapshot_minutes=[]",
            "train.max_minutes=null",
            f"train.checkpoint_every={steps}",
            "train.precision=fp32",
        ]
        procs.append((d, subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    per_step = []
    for d, p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"calibration run failed:\n{err.decode()[-2000:]}")
        with open(d / "log.csv") as f:
            rows = list(csv.DictReader(f))
        (a, b) = rows[1], rows[-1]  # skip the first sixth of the steps (start-up, cuDNN autotuning)
        per_step.append((float(b["elapsed_s"]) - float(a["elapsed_s"])) / (int(b["step"]) - int(a["step"])))
    return max(per_step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=9.0, help="wall time for everything, packing included")
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", default="results/gpu_session")
    p.add_argument("--device", default="cuda")
    p.add_argument("--study-workers", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    p.add_argument("--settings", nargs="*", default=None, help="study settings (default: the whole grid)")
    p.add_argument("--calibration-steps", type=int, default=300)
    p.add_argument("--eval-reserve-s", type=float, default=75, help="seconds kept for evaluating candidates")
    args = p.parse_args()
    t0 = time.time()
    deadline = t0 + 60 * args.minutes
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    n_proc = args.study_workers + len(args.candidates)

    log(f"calibrating with {n_proc} trainings at once")
    s_step = calibrate(n_proc, out / "calibration", args.data_root, args.device, args.calibration_steps)
    log(f"{1000 * s_step:.1f} ms per step per process with {n_proc} processes")

    # the window in which study and candidates train; the study's last runs end before the candidates'
    window = deadline - time.time() - args.eval_reserve_s - 20
    from ddpmlib.study import STUDY_GRID

    runs = len(args.settings or STUDY_GRID) * len(args.seeds)
    rounds = math.ceil(runs / args.study_workers)
    eval_s = 20  # per study run: sampling, classifier, FD, discriminator, process overhead
    train_s = max(10.0, window / rounds - eval_s)
    budget = int(train_s / s_step) * 64 // 6400 * 6400
    budget = max(budget, 6400)
    cand_steps = max(1000, int(window / (1.15 * s_step)) // 500 * 500)  # batch 128 steps cost a little more
    plan = {
        "seconds_per_step": s_step,
        "processes": n_proc,
        "window_s": window,
        "study_runs": runs,
        "study_budget_images": budget,
        "study_steps_at_batch_64": budget // 64,
        "candidate_steps": cand_steps,
        "candidates": {k: CANDIDATES[k] for k in args.candidates},
    }
    log(f"plan: {json.dumps(plan)}")
    (out / "plan.json").write_text(json.dumps(plan, indent=2))

    env = ENV
    jobs = []
    stop_after = max(0.5, (window - train_s - eval_s) / 60)
    study_cmd = [
        PY,
        "scripts/study.py",
        "--out",
        str(out / "study"),
        "--runs-dir",
        str(out / "study_runs"),
        "--seeds",
        *map(str, args.seeds),
        "--budget-images",
        str(budget),
        "--workers",
        str(args.study_workers),
        "--device",
        args.device,
        "--data-root",
        args.data_root,
        "--precision",
        "fp32",
        "--stop-after-minutes",
        f"{stop_after:.2f}",
    ]
    if args.settings:
        study_cmd += ["--settings", *args.settings]
    jobs.append(
        (
            "study",
            subprocess.Popen(
                study_cmd, cwd=REPO, env=env, stdout=open(out / "study.log", "w"), stderr=subprocess.STDOUT
            ),
        )
    )
    for name in args.candidates:
        cmd = [
            PY,
            "-m",
            "ddpmlib.train",
            "--config",
            "configs/mnist_long.json",
            "--out",
            str(out / name),
            "--device",
            args.device,
            "--data-root",
            args.data_root,
            "--export",
            str(out / f"{name}_export"),
            "--set",
            f"train.max_steps={cand_steps}",
            *CANDIDATES[name],
        ]
        log(" ".join(cmd))
        jobs.append(
            (
                name,
                subprocess.Popen(
                    cmd, cwd=REPO, env=env, stdout=open(out / f"{name}.log", "w"), stderr=subprocess.STDOUT
                ),
            )
        )
    hard_stop = deadline - args.eval_reserve_s + 30  # past this, unfinished jobs are stopped
    while any(proc.poll() is None for _, proc in jobs) and time.time() < hard_stop:
        time.sleep(2)
    for name, proc in jobs:
        if proc.poll() is None:
            log(f"{name} is still running at the deadline: stopping it (finished study rows are kept)")
            proc.terminate()
        proc.wait()
        log(f"{name} finished with exit code {proc.returncode}")
    for name in args.candidates:
        if not (out / f"{name}_export" / "config.json").exists():
            continue
        for w in ("0", "0.5"):
            cmd = [
                PY,
                "-m",
                "ddpmlib.evaluate",
                "--checkpoint",
                str(out / f"{name}_export"),
                "--sampler",
                "ddim",
                "--steps",
                "20",
                "--eta",
                "0.5",
                "--guidance",
                w,
                "--num-samples",
                "1000",
                "--device",
                args.device,
                "--data-root",
                args.data_root,
                "--no-full-baseline",
                "--no-progress",
                "--discriminator",
                "--json",
                str(out / f"{name}_eval_w{w}.json"),
            ]
            if time.time() > deadline - 25:
                log("no time left for more evaluations")
                break
            r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            log(f"{name} w={w}:\n{r.stdout}{r.stderr[-800:] if r.returncode else ''}")
    log(f"done in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
