"""MNIST and CIFAR-10, scaled to [-1, 1], held in memory as tensors.

Where the data comes from, in order: the ``root`` argument (the ``--data-root`` flag of the
commands), the ``DDPM_DATA_ROOT`` environment variable, then ``data/`` in the repository. The root uses
torchvision's layout, ``<root>/MNIST/raw/train-images-idx3-ubyte`` and friends. Missing files are
downloaded by torchvision when the network allows it; otherwise you get an error that says what to do
(and no empty folders are left behind).

CIFAR-10 (``load_cifar10``, notebook 12) is read from the same root, from the first of
``<root>/cifar-10-batches-py/`` (torchvision's copy of the original binary release),
``<root>/CIFAR-10-images/{train,test}/<class>/*.jpg`` (a JPEG copy in torchvision's ``ImageFolder`` layout,
for machines without network access), or a torchvision download into ``<root>``.

A relative root is resolved once, to an absolute path: against the working directory if a data set
(MNIST, or either CIFAR-10 copy) is there, else against the repository root. So
``DDPM_DATA_ROOT=../shared/data`` set for ``make test`` in the repository means the same folder to the
tests (working directory: the repository) and to the notebooks (working directory: notebooks/).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .paths import REPO_ROOT

ENV_VAR = "DDPM_DATA_ROOT"
DEFAULT_ROOT = "data"
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# CIFAR-10's label order (the ImageFolder copy's folders sort alphabetically into the same order)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_BINARY = "cifar-10-batches-py"  # torchvision's folder (the original python pickles)
CIFAR_JPEG = "CIFAR-10-images"  # the JPEG copy: CIFAR-10-images/{train,test}/<class>/NNNN.jpg
DATASET_FOLDERS = ("MNIST", CIFAR_BINARY, CIFAR_JPEG)  # what marks a folder as a data root


def _holds_data(path: Path) -> bool:
    return any((path / name).is_dir() for name in DATASET_FOLDERS)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root directory, absolute: ``root`` if given, else $DDPM_DATA_ROOT, else data/ in the repository.

    A relative path is taken from the working directory if it holds a data set there (``MNIST/``,
    ``cifar-10-batches-py/`` or ``CIFAR-10-images/``), else from the repository."""
    given = root if root is not None else os.environ.get(ENV_VAR) or None
    path = Path(given if given is not None else DEFAULT_ROOT).expanduser()
    if path.is_absolute():
        return path
    here, repo = Path.cwd() / path, REPO_ROOT / path
    if _holds_data(here):
        return here.resolve()
    if _holds_data(repo):
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


# --- CIFAR-10 ---------------------------------------------------------------------------------------------


class CIFARNotFoundError(FileNotFoundError):
    pass


def _cifar_missing_message(root: Path, reason: str) -> str:
    return (
        f"CIFAR-10 was not found under {root} and could not be downloaded ({reason}).\n"
        f"Either connect to the internet (torchvision downloads it automatically, about 170 MB), or point ddpmlib "
        f"at an existing copy with --data-root DIR or the environment variable {ENV_VAR}=DIR, where DIR contains "
        f"one of\n"
        f"    {root / CIFAR_BINARY}/data_batch_1 ... data_batch_5, test_batch   (torchvision's copy)\n"
        f"    {root / CIFAR_JPEG}/train/<class>/*.jpg and {root / CIFAR_JPEG}/test/<class>/*.jpg   "
        f"(ImageFolder layout; classes {', '.join(CIFAR10_CLASSES)})"
    )


def _check_classes(classes) -> list[int] | None:
    if classes is None:
        return None
    ok = isinstance(classes, (list, tuple)) and len(classes) > 0
    ok = ok and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(CIFAR10_CLASSES) for c in classes)
    if not ok:
        raise ValueError(f"classes must be a non-empty list of CIFAR-10 class ids 0..9, got {classes!r}")
    return sorted(set(classes))


def _decode_jpegs(files: list[Path], chunk: int = 2048) -> torch.Tensor:
    """JPEG files -> (N, 3, H, W) uint8: torchvision's decoder in batches (about 4 s for the 50,000 training
    images on one core), or PIL one by one (about 7 s) where torchvision no longer has it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to TorchCodec
            from torchvision.io import ImageReadMode, decode_jpeg

            out = []
            for i in range(0, len(files), chunk):
                data = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files[i : i + chunk]]
                out.extend(decode_jpeg(data, mode=ImageReadMode.RGB))
            return torch.stack(out)
    except ImportError:
        pass
    return _decode_pil(files)


def _decode_pil(files: list[Path]) -> torch.Tensor:
    """Image files -> (N, 3, H, W) uint8, with PIL."""
    import numpy as np
    from PIL import Image

    arrays = []
    for f in files:
        with Image.open(f) as img:
            arrays.append(np.asarray(img.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_cifar_jpeg(split_dir: Path, classes: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageFolder copy: only the requested classes' folders, files in sorted order."""
    images, labels = [], []
    for c in classes if classes is not None else range(len(CIFAR10_CLASSES)):
        folder = split_dir / CIFAR10_CLASSES[c]
        files = sorted(f for f in folder.glob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise CIFARNotFoundError(
                f"{folder} holds no images: the JPEG copy of CIFAR-10 in {split_dir.parent} is incomplete "
                f"(expected {split_dir}/<class>/*.jpg for the classes {', '.join(CIFAR10_CLASSES)})"
            )
        jpeg = all(f.suffix.lower() != ".png" for f in files)
        x = _decode_jpegs(files) if jpeg else _decode_pil(files)
        if tuple(x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"the images in {folder} are {tuple(x.shape[2:])} pixels; CIFAR-10's are 32x32")
        images.append(x)
        labels.append(torch.full((len(x),), c, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def load_cifar10(
    train: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = True,
    classes: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) float32 in [-1, 1] and labels (N,) int64 (CIFAR-10's own ids, ``CIFAR10_CLASSES``)
    of the CIFAR-10 train or test split, optionally only the ``classes`` listed (ids 0..9).

    Sources, in order: ``<root>/cifar-10-batches-py`` (torchvision's binary copy), ``<root>/CIFAR-10-images/
    {train,test}`` (a JPEG copy in ImageFolder layout: pixel values differ slightly from the original), a
    torchvision download into ``<root>`` (if ``download``), else ``CIFARNotFoundError`` saying what to do.
    Every pixel of every channel is scaled the same way, x / 127.5 - 1 (no per-channel normalisation).
    """
    classes = _check_classes(classes)
    root = data_root(root)
    split = "train" if train else "test"
    if (root / CIFAR_BINARY).is_dir():
        x, y = _read_cifar_binary(root, train)
    elif (root / CIFAR_JPEG / split).is_dir():
        x, y = _read_cifar_jpeg(root / CIFAR_JPEG / split, classes)
    elif not download:
        raise CIFARNotFoundError(_cifar_missing_message(root, "download=False"))
    else:
        x, y = _download_cifar(root, train)
    if classes is not None:
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], y[keep]
    return x.float().div(127.5).sub(1.0), y  # uint8 [0, 255] -> [-1, 1]


def _read_cifar_binary(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise CIFARNotFoundError(
            f"{root / CIFAR_BINARY} exists but is incomplete or corrupt ({e}). Delete that folder (with the "
            f"network, torchvision then downloads CIFAR-10 again), or point --data-root or {ENV_VAR} at a "
            f"complete copy"
        ) from None
    return _from_torchvision(ds)


def _from_torchvision(ds) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return x, torch.tensor(ds.targets, dtype=torch.long)


def _download_cifar(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    created = [root] if not root.exists() else []
    try:
        ds = CIFAR10(str(root), train=train, download=True)
    except Exception as e:  # no network, DNS failure, HTTP error, ...
        for d in created:  # leave no empty folder behind
            try:
                d.rmdir()
            except OSError:  # not empty (a partial download) or already gone
                pass
        raise CIFARNotFoundError(_cifar_missing_message(root, f"{type(e).__name__}: {e}".strip())) from None
    return _from_torchvision(ds)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> [0, 255] uint8, the inverse of the scaling in ``load_mnist`` and ``load_cifar10``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
