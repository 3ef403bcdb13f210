"""Images sent to the demo cost bounded memory: a 9000 x 9000 PNG (a small file: 81 million pixels that
compress well) is refused from its header, without decoding it, through the handler's path and through
the sketchpad's (what an API client reaches). Measured in a fresh process as the growth of its peak
resident memory (VmHWM, reset through /proc/self/clear_refs where the kernel allows it)."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("gradio")

REPO = Path(__file__).resolve().parent.parent
LIMIT_MB = 60  # decoding the 9000 x 9000 image would take 81 MB as grayscale, 324 MB as RGBA


def write_png(path: Path, width: int, height: int) -> Path:
    """A white grayscale PNG of any size, written row by row (never held in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", idat))
        f.write(chunk(b"IEND", b""))
    return path


PROBE = r"""
import json, os, resource, sys
import gradio as gr
from gradio.data_classes import FileData
from demo.app import drawing_pad
from demo.checks import DemoError
from demo.images import drawing_to_x0

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MB
    return None

def peak_growth(fn):
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        before = status("VmRSS")
        reset = True
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reset = False
    try:
        fn()
        outcome = "accepted"
    except (DemoError, gr.Error) as e:
        outcome = str(e)
    after = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return after - before, outcome

pad = drawing_pad(type="numpy", image_mode="RGBA")
path = sys.argv[1]
results = {
    "handler": peak_growth(lambda: drawing_to_x0(path)),
    "sketchpad": peak_growth(lambda: pad.preprocess(pad.data_model(composite=FileData(path=path)))),
}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_huge_png_is_refused_without_a_memory_spike(tmp_path):
    png = write_png(tmp_path / "huge.png", 9000, 9000)
    assert png.stat().st_size < 1_000_000  # a small file ...
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(png)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for path, (growth_mb, outcome) in results.items():
        assert "9000 x 9000 pixels" in outcome and "at most 2048 x 2048" in outcome, (path, outcome)
        assert growth_mb < LIMIT_MB, f"{path}: peak memory grew by {growth_mb:.0f} MB"


def test_large_accepted_image_is_shrunk(tmp_path):
    """Just under the limit: decoded once, then shrunk; the drawing is read correctly."""
    from demo.images import drawing_to_x0

    png = write_png(tmp_path / "big.png", 2048, 2000)
    assert drawing_to_x0(str(png)) is None  # all white: nothing drawn, and no error
