"""MNIST, scaled to [-1, 1], held in memory as tensors.

Where the data comes from, in order: the ``root`` argument (the ``--data-root`` flag of the
commands), the ``DDPM_DATA_ROOT`` environment variable, then ``data/`` in the repository. The root uses
torchvision's layout, ``<root>/MNIST/raw/train-images-idx3-ubyte`` and friends. Missing files are
downloaded by torchvision when the network allows it; otherwise you get an error that says what to do
(and no empty folders are left behind).

A relative root is resolved once, to an absolute path: against the working directory if MNIST is
there, else against the repository root. So ``DDPM_DATA_ROOT=../shared/data`` set for ``make test`` in
the repository means the same folder to the tests (working directory: the repository) and to the
notebooks (working directory: notebooks/).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ENV_VAR = "DDPM_DATA_ROOT"
DEFAULT_ROOT = "data"
REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The MNIST root directory, absolute: ``root`` if given, else $DDPM_DATA_ROOT, else data/ in the repository.

    A relative path is taken from the working directory if it holds MNIST there, else from the repository."""
    given = root if root is not None else os.environ.get(ENV_VAR) or None
    path = Path(given if given is not None else DEFAULT_ROOT).expanduser()
    if path.is_absolute():
        return path
    here, repo = Path.cwd() / path, REPO_ROOT / path
    if (here / "MNIST").is_dir():
        return here.resolve()
    if (repo / "MNIST").is_dir():
        return repo.resolve()
    return (here if given is not None else repo).resolve()  # where a download will go


class MNISTNotFoundError(FileNotFoundError):
    pass


def _missing_message(root: Path, reason: str) -> str:
    files = "\n".join(f"    {root / 'MNIST' / 'raw' / f}" for f in RAW_FILES)
    return (
        f"MNIST was not found under {root} and could not be downloaded ({reason}).\n"
        f"Either connect to the internet (torchvision downloads it automatically), or point ddpmlib at an "
        f"existing copy with --data-root DIR or the environment variable {ENV_VAR}=DIR, where DIR contains\n{files}"
    )


def load_mnist(
    train: bool = True, root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float32 in [-1, 1] and labels (N,) int64 of the MNIST train or test split."""
    from torchvision.datasets import MNIST

    root = data_root(root)
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise MNISTNotFoundError(_missing_message(root, "download=False")) from None
        created = [d for d in (root, root / "MNIST", root / "MNIST" / "raw") if not d.exists()]
        try:
            ds = MNIST(str(root), train=train, download=True)
        except Exception as e:  # no network, DNS failure, HTTP error, ...
            for d in reversed(created):  # the download made these folders; leave no empty ones behind
                try:
                    d.rmdir()
                except OSError:  # not empty (a partial download) or already gone
                    pass
            raise MNISTNotFoundError(_missing_message(root, f"{type(e).__name__}: {e}".strip())) from None
    images = ds.data.unsqueeze(1).float().div(127.5).sub(1.0)  # uint8 [0, 255] -> [-1, 1]
    return images, ds.targets.long()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> [0, 255] uint8, the inverse of the scaling in ``load_mnist``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
