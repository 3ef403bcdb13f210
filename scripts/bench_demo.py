"""Latency of the demo's main request: ten digits (one of each) with the demo's default sampler, steps and
guidance (demo/defaults.py); where its time goes; and the calibration of the demo's cost limit.

    python scripts/bench_demo.py --app --repeats 10   # median of 10 through the library, the handler, HTTP
    python scripts/bench_demo.py --profile            # where a request's time goes
    python scripts/bench_demo.py --calibrate          # seconds per unit of the cost model; the worst request

Figures, each after one untimed warm-up call:
  library  ddpmlib alone: pipe.generate(range(10), ...) with the same settings
  result   the Generate tab's handler until it hands over the final images (sampling, recording the
           trajectory, the streamed pictures)
  handler  the same handler to its end, including writing the trajectory GIF and the PNG
  app      (--app) a gradio_client request to the app on a free local port, from click to final result:
           the above plus HTTP, the queue and the streamed intermediate images (files are not downloaded)
The goal (issue 12) is <= 1 s median for the app on an idle 2-core CPU. The load average is printed
because other processes on the machine slow every figure down; the CPU time (summed over this process's
threads) depends on them less.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from ddpmlib.pipeline import SHIPPED_CHECKPOINT  # noqa: E402
from demo import defaults as D  # noqa: E402

GOAL_S = 1.0


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


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


def report(name: str, times: tuple[list[float], list[float]], goal: bool = True) -> float:
    wall, cpu = times
    med = statistics.median(wall)
    verdict = f"{'<=' if med <= GOAL_S else '> '} {GOAL_S:g} s goal;" if goal else ""
    print(
        f"{name:9s} wall median {med:6.3f} s (min {min(wall):.3f}, max {max(wall):.3f}, n={len(wall)}) "
        f"{verdict}  CPU time median {statistics.median(cpu):.3f} s  (load {load():.2f})"
    )
    return med


def profile(model, req_args: dict, repeats: int) -> None:
    """Where the time of one request goes: the network (with and without guidance), the handler's own
    work (recording frames, pictures), PNG encoding of a streamed picture, and torch's thread count."""
    from demo.tabs import generate

    pipe = model.pipe
    net = {"s": 0.0, "calls": 0}
    forward = pipe.model.forward

    def timed_forward(*a, **k):
        t0 = time.perf_counter()
        out = forward(*a, **k)
        net["s"] += time.perf_counter() - t0
        net["calls"] += 1
        return out

    pipe.model.forward = timed_forward
    try:
        req = generate.validate(model, **req_args, seed=0)
        list(generate.run(model, req))  # warm-up
        rows = []
        for _ in range(repeats):
            net.update(s=0.0, calls=0)
            t0 = time.perf_counter()
            for out in generate.run(model, req):
                if "trajectory" in out:
                    break
            rows.append((time.perf_counter() - t0, net["s"], net["calls"]))
    finally:
        pipe.model.forward = forward
    total, network, calls = (statistics.median(c) for c in zip(*rows))
    print(
        f"profile   result {total:.3f} s = network {network:.3f} s ({calls:.0f} calls) "
        f"+ the rest {total - network:.3f} s"
    )
    lib = {}
    for w in (req.guidance, 0.0):
        kwargs = dict(sampler=req.sampler, steps=req.steps, guidance_scale=w)
        lib[w] = statistics.median(
            timed(lambda i, kw=kwargs: pipe.generate(range(10), seed=max(i, 0), **kw), repeats)[0]
        )
    print(f"guidance  library with w = {req.guidance:g}: {lib[req.guidance]:.3f} s; with w = 0: {lib[0.0]:.3f} s")
    x = torch.rand(10, 1, 28, 28) * 2 - 1
    for scale in (1, 3):
        img = model.grids(x[:5], nrow=5, scale=scale)[0]
        t0 = time.perf_counter()
        for _ in range(20):
            img.save(io.BytesIO(), format="PNG")
        ms = (time.perf_counter() - t0) / 20 * 1000
        print(f"encoding  one streamed {img.size[0]}x{img.size[1]} PNG (scale {scale}): {ms:.1f} ms")
    n = torch.get_num_threads()
    for threads in sorted({1, 2, n}):
        torch.set_num_threads(threads)
        kwargs = dict(sampler=req.sampler, steps=req.steps, guidance_scale=req.guidance)
        med = statistics.median(timed(lambda i, kw=kwargs: pipe.generate(range(10), seed=max(i, 0), **kw), repeats)[0])
        print(f"threads   library with {threads} thread(s): {med:.3f} s  (load {load():.2f})")
    torch.set_num_threads(n)


def calibrate(model) -> None:
    """Seconds per unit of the cost model (one network evaluation of one image) and the fixed per-step
    cost in units, from steps of batch 1 and 40; then the largest requests the limit accepts, timed."""
    from demo.checks import check_cost, cost
    from demo.tabs import generate

    pipe = model.pipe

    def per_step(batch: int, steps: int = 20) -> float:
        pipe.generate([1] * batch, sampler="ddim", steps=2, guidance_scale=0.0)  # warm-up
        t0 = time.perf_counter()
        pipe.generate([1] * batch, sampler="ddim", steps=steps, guidance_scale=0.0)
        return (time.perf_counter() - t0) / steps

    s1, s40 = per_step(1), per_step(40)
    unit = (s40 - s1) / 39
    fixed = s1 / unit - 1
    print(
        f"calibrate one step: batch 1 {s1 * 1000:.1f} ms, batch 40 {s40 * 1000:.1f} ms "
        f"-> one unit {unit * 1000:.2f} ms, "
        f"fixed per-step cost {fixed:.2f} units (STEP_COST = {D.STEP_COST:g}); MAX_COST = {D.MAX_COST} units "
        f"~ {D.MAX_COST * unit:.1f} s; {D.MAX_COST_SECONDS} s would be MAX_COST ~ {D.MAX_COST_SECONDS / unit:.0f}  "
        f"(load {load():.2f})"
    )
    worst = []
    for n in (1, D.MAX_IMAGES):
        g = 2
        steps = min(model.T, int(D.MAX_COST // (n * g + D.STEP_COST)))
        check_cost(steps, n, 1.0)
        worst.append((n, steps, "ddpm" if steps > 100 else "ddim"))
    for n, steps, sampler in worst:
        req = generate.validate(model, "one of each", n, sampler, steps, 1.0, 0.0, 0)
        t0 = time.perf_counter()
        for _ in generate.run(model, req):
            pass
        print(
            f"worst     {n} image(s) x {steps} {sampler.upper()} steps with guidance (cost {cost(steps, n, 1.0):g}): "
            f"{time.perf_counter() - t0:.1f} s through the handler, GIF included  (load {load():.2f})"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sampler", default=D.SAMPLER)
    p.add_argument("--steps", type=int, default=None, help=f"default: the demo's ({D.STEPS})")
    p.add_argument("--guidance", type=float, default=D.GUIDANCE)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--app", action="store_true", help="also time requests to the launched app over HTTP")
    p.add_argument("--profile", action="store_true", help="where a request's time goes")
    p.add_argument("--calibrate", action="store_true", help="calibrate the cost model; time the worst requests")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from demo.app import build_demo, launch
    from demo.tabs import generate
    from demo.testing import free_port

    demo = build_demo(args.checkpoint, device=args.device)
    model = demo.model
    pipe = model.pipe
    steps = args.steps or D.default_steps(pipe.T)
    print(
        f"checkpoint {args.checkpoint} (T={pipe.T}), device {pipe.device}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, load average {load():.2f}"
    )
    request = dict(
        digit=D.ONE_OF_EACH, n_images=10, sampler=args.sampler, steps=steps, guidance=args.guidance, eta=D.ETA
    )
    print(f"request: digits 0-9, {args.sampler} with {steps} steps, guidance w = {args.guidance:g}")
    if args.calibrate:
        calibrate(model)
        return
    if args.profile:
        profile(model, request, args.repeats)
        return

    report(
        "library",
        timed(
            lambda i: pipe.generate(
                range(10), sampler=args.sampler, steps=steps, guidance_scale=args.guidance, seed=max(i, 0)
            ),
            args.repeats,
        ),
    )
    for name, stop in (("result", True), ("handler", False)):

        def handler(i, stop=stop):
            for out in generate.run(model, generate.validate(model, **request, seed=max(i, 0))):
                if stop and "trajectory" in out:
                    break  # the final images are ready; the GIF and PNG are written after this

        report(name, timed(handler, args.repeats))
    if args.app:
        from gradio_client import Client

        port = free_port()
        launch(demo, port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False, analytics_enabled=False)
            report(
                "app",
                timed(
                    lambda i: client.predict(**request, seed=max(i, 0), random_seed=False, api_name="/generate"),
                    args.repeats,
                ),
            )
        finally:
            demo.close()
    print(f"load average at the end {load():.2f} (on {os.cpu_count()} CPUs; above that, other work competes)")


if __name__ == "__main__":
    main()
