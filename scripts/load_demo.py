"""Load test of the demo: N clients at once, each sending R typical requests to a demo this script starts
on 127.0.0.1 (never another host), then stops.

    python scripts/load_demo.py                      # 8 clients x 10 requests, the shipped model
    python scripts/load_demo.py --clients 4 --requests 5 --checkpoint DIR

A typical request is what the page sends when a visitor presses Generate without changing anything:
ten digits with the demo's default sampler, steps and guidance (demo/defaults.py), each with its own seed.
Prints the median and maximum latency (from sending a request to its final result), the errors, the
requests per second, and the server's peak resident memory (VmHWM; Linux). Bounded: at most 16 clients x
20 requests, and the whole run stops after --timeout seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ddpmlib.checkpoint import read_config  # noqa: E402
from ddpmlib.pipeline import SHIPPED_CHECKPOINT  # noqa: E402
from demo import defaults as D  # noqa: E402
from demo.testing import free_port  # noqa: E402

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


def memory_mb(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.poll() is not None:
            sys.exit(f"error: the demo stopped (exit code {server.returncode}) before it answered")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"error: the demo did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT)
    p.add_argument("--clients", type=int, default=8, choices=range(1, 17), metavar="1..16")
    p.add_argument("--requests", type=int, default=10, choices=range(1, 21), metavar="1..20", help="per client")
    p.add_argument("--timeout", type=float, default=900, help="stop the whole run after this many seconds")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    args = p.parse_args(argv)

    from gradio_client import Client

    port = free_port(HOST)
    url = f"http://{HOST}:{port}/"
    cmd = [sys.executable, "-m", "demo.app", "--host", HOST, "--port", str(port), "--checkpoint", args.checkpoint]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(url, server, timeout=180)
        rss0 = memory_mb(server.pid, "VmRSS")
        steps = D.default_steps(int(read_config(args.checkpoint)["diffusion"].get("T", 1000)))
        request = dict(
            digit=D.ONE_OF_EACH,
            n_images=D.N_IMAGES,
            sampler=D.SAMPLER,
            steps=steps,
            guidance=D.GUIDANCE,
            eta=D.ETA,
            random_seed=False,
            api_name="/generate",
        )
        print(
            f"demo on {url} (pid {server.pid}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"{args.clients} clients x {args.requests} requests: {D.N_IMAGES} digits, {D.SAMPLER} "
            f"{steps} steps, guidance {D.GUIDANCE:g}"
        )
        Client(url, verbose=False, download_files=False, analytics_enabled=False).predict(seed=0, **request)  # warm-up
        deadline = time.monotonic() + args.timeout
        latencies: list[float] = []
        errors: list[str] = []

        def client(k: int) -> None:
            c = Client(url, verbose=False, download_files=False, analytics_enabled=False)
            for j in range(args.requests):
                if time.monotonic() > deadline:
                    errors.append("not sent: --timeout reached")
                    continue
                t0 = time.monotonic()
                try:
                    out = c.predict(seed=1000 * k + j, **request)
                    if "Done" not in out[2]:
                        errors.append(f"unexpected result: {out[2][:80]}")
                        continue
                    latencies.append(time.monotonic() - t0)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors.append(f"{type(e).__name__}: {str(e)[:120]}")

        t0 = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [pool.submit(client, k) for k in range(args.clients)]
            wait(futures, timeout=args.timeout + 120)
        elapsed = time.monotonic() - t0
        n = args.clients * args.requests
        print(
            f"{len(latencies)} of {n} requests answered in {elapsed:.1f} s "
            f"({len(latencies) / elapsed:.2f} per second); errors: {len(errors)}"
        )
        for e in sorted(set(errors)):
            print(f"  {errors.count(e)} x {e}")
        if latencies:
            print(
                f"latency: median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
                f"(one sampling request at a time; the others wait in the queue)"
            )
        print(
            f"server memory: {rss0:.0f} MB before the load, peak {memory_mb(server.pid, 'VmHWM'):.0f} MB, "
            f"{memory_mb(server.pid, 'VmRSS'):.0f} MB after; load average at the end {os.getloadavg()[0]:.2f}"
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
