"""Latency of the demo's main request: ten digits (one of each), guidance, 25 DDIM steps.

    python scripts/bench_demo.py                      # the shipped model, 5 timed calls after a warm-up
    python scripts/bench_demo.py --app --repeats 10   # also through the running app over HTTP

Three figures, each after one untimed warm-up call:
  library  ddpmlib alone: pipe.generate(range(10), sampler="ddim", steps=25, guidance_scale=w)
  result   the Generate tab's handler until it hands over the final images (sampling, recording the
           trajectory, the streamed pictures)
  handler  the same handler to its end, including writing the trajectory GIF and the PNG
  app      (--app) a gradio_client request to the app on a free local port: the above plus HTTP, the
           queue and the streamed intermediate images (files are not downloaded)
The goal (issue 4) is <= 1 s for the handler on the project's 2-core CPU machine. The load average is
printed because other processes on the machine slow every figure down; the CPU time (summed over this
process's threads) does not depend on them much: with --threads 1 it is the wall time on an idle core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from ddpmlib.pipeline import SHIPPED_CHECKPOINT  # noqa: E402

GOAL_S = 1.0


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock seconds and CPU seconds of this process (all its threads) for each call after a warm-up."""
    fn(-1)  # warm-up
    wall, cpu = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def report(name: str, times: tuple[list[float], list[float]]) -> None:
    wall, cpu = times
    med = statistics.median(wall)
    print(
        f"{name:8s} wall median {med:6.3f} s (min {min(wall):.3f}, max {max(wall):.3f}, n={len(wall)}) "
        f"{'<=' if med <= GOAL_S else '> '} {GOAL_S:g} s goal;  CPU time median {statistics.median(cpu):.3f} s"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--app", action="store_true", help="also time requests to the launched app")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from demo.app import build_demo, launch
    from demo.tabs import generate
    from demo.testing import free_port

    demo = build_demo(args.checkpoint, device=args.device)
    model = demo.model
    pipe = model.pipe
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"checkpoint {args.checkpoint} (T={pipe.T}), device {pipe.device}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, load average {load[0]:.2f}"
    )
    print(f"request: digits 0-9, DDIM, {args.steps} steps, guidance w = {args.guidance:g}")

    report(
        "library",
        timed(
            lambda i: pipe.generate(range(10), sampler="ddim", steps=args.steps, guidance_scale=args.guidance, seed=i),
            args.repeats,
        ),
    )
    for name, stop in (("result", True), ("handler", False)):

        def handler(i, stop=stop):
            req = generate.validate(model, "one of each", 10, "ddim", args.steps, args.guidance, 0.0, max(i, 0))
            for out in generate.run(model, req):
                if stop and "trajectory" in out:
                    break  # the final images are ready; the GIF and PNG are written after this

        report(name, timed(handler, args.repeats))
    if args.app:
        from gradio_client import Client

        port = free_port()
        launch(demo, port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False, analytics_enabled=False)
            request = dict(
                digit="one of each",
                n_images=10,
                sampler="ddim",
                steps=args.steps,
                guidance=args.guidance,
                eta=0.0,
                random_seed=False,
                api_name="/generate",
            )
            report("app", timed(lambda i: client.predict(seed=max(i, 0), **request), args.repeats))
        finally:
            demo.close()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average at the end {load[0]:.2f} (on {os.cpu_count()} CPUs; above that, other work competes)")


if __name__ == "__main__":
    main()
