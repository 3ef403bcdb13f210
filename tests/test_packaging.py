"""The wheel works where it is installed: built from the sources, installed into a fresh virtual environment
that sees this environment's dependencies but not ddpm-course itself, and run from a folder outside the clone.

Slow (a wheel build, a venv, the demo's imports): ``pytest tests/test_packaging.py``. Offline: pip builds with
the installed setuptools (``--no-build-isolation``) and installs with ``--no-index``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "ddpmlib", "demo", "configs")
CHECKPOINTS = ("mnist", "classifier", "shifted_mnist")  # the package data of the wheel (pyproject.toml)

QUICK_START = """
import importlib.util, os, sys
import ddpmlib
from ddpmlib.classifier import SHIPPED_CLASSIFIER, load_classifier
from ddpmlib.config import DEFAULT_CONFIG, load_config_file
from ddpmlib.paths import shipped_checkpoints
from ddpmlib.pipeline import SHIPPED_CHECKPOINT, load_pipeline

prefix = os.path.realpath(sys.prefix)
assert os.path.realpath(ddpmlib.__file__).startswith(prefix), ddpmlib.__file__
assert os.path.realpath(SHIPPED_CHECKPOINT).startswith(prefix), SHIPPED_CHECKPOINT
assert importlib.util.find_spec("demo") is None, "a top-level package named demo is importable"
assert os.path.isdir(os.path.join(shipped_checkpoints(), "shifted_mnist"))
pipe = load_pipeline()
images = pipe.generate(labels=range(10), sampler="dpmpp", steps=10, guidance_scale=0.5, seed=0)
assert tuple(images.shape) == (10, 1, 28, 28), images.shape
load_classifier(SHIPPED_CLASSIFIER)
assert os.path.realpath(DEFAULT_CONFIG).startswith(prefix), DEFAULT_CONFIG
assert load_config_file("configs/mnist_cpu.json")["diffusion"]["T"] == 1000  # ddpm-train's default --config
print("quick start ok", tuple(images.shape))
"""


def _clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH & co., which would put the clone's packages back in view."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _run(cmd, cwd, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    try:
        setuptools_version = importlib.metadata.version("setuptools")
        importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError as e:
        pytest.skip(f"cannot build the wheel offline: {e.name} is not installed in this environment")
    if int(setuptools_version.split(".")[0]) < 77:
        pytest.skip(
            f"cannot build the wheel offline: setuptools {setuptools_version} < 77 (pyproject's build requires)"
        )
    # a copy of what the wheel is built from, so that the build leaves no build/ or egg-info in the clone
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, src / name)
    for name in CHECKPOINTS:
        shutil.copytree(REPO / "checkpoints" / name, src / "checkpoints" / name, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip_wheel, "-w", str(dist), str(src)], cwd=src)
    (found,) = dist.glob("ddpm_course-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A venv with the wheel installed; this environment's site-packages are visible through a .pth file, whose
    directories' own .pth files (the editable install's finder of ddpm-course) are not executed."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root)
    python = root / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    dirs = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(purelib.stdout.strip(), "ddpm_test_env.pth").write_text("".join(f"{d}\n" for d in dirs if os.path.isdir(d)))
    # --ignore-installed: pip sees this environment's ddpm-course (the editable install) and must leave it alone
    install = ["-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-warn-script-location"]
    _run([str(python), *install, str(wheel)], cwd=root)
    return root


def test_wheel_holds_no_top_level_demo_and_the_default_checkpoints(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("demo/")], "the wheel installs a top-level package named demo"
    for name in CHECKPOINTS:
        assert f"ddpmlib/_checkpoints/{name}/model.safetensors" in names
        assert f"ddpmlib/_checkpoints/{name}/config.json" in names
    assert "ddpmlib/_configs/mnist_cpu.json" in names
    assert not [n for n in names if "/eval/" in n], "the evaluation results are not package data"
    assert wheel.stat().st_size < 5_000_000


def test_installed_wheel_runs_the_quick_start_and_the_commands(venv, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the clone: nothing found through the working directory
    elsewhere.mkdir()
    r = _run([str(venv / "bin" / "python"), "-c", QUICK_START], cwd=elsewhere)
    assert "quick start ok (10, 1, 28, 28)" in r.stdout
    for command, words in [("ddpm-evaluate", "--classifier"), ("ddpm-train", "--config"), ("ddpm-demo", "--port")]:
        r = _run([str(venv / "bin" / command), "--help"], cwd=elsewhere)
        assert words in r.stdout, (command, r.stdout)
    installed = [p for p in venv.glob("lib/python*/site-packages/*") if p.name == "demo"]
    assert not installed, installed
