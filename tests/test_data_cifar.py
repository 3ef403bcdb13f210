"""ddpmlib.data.load_cifar10: the JPEG ImageFolder copy, the class filter, the root resolution and the errors.

Most tests build a tiny fake ``CIFAR-10-images`` tree in tmp_path (solid-colour 32x32 JPEGs, so decoded
pixel values are known to within JPEG's rounding); one test reads the real copy when $DDPM_DATA_ROOT has it.
"""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import ddpmlib.data as data
from ddpmlib.data import CIFAR10_CLASSES, CIFARNotFoundError, data_root, load_cifar10

PER_CLASS = 3


def colour(c: int, i: int) -> tuple[int, int, int]:
    """The solid colour of image i of class c in the fake tree: R encodes the class, G the file index."""
    return (20 * c + 10, 60 * i + 30, 200)


def make_tree(root: Path, classes=range(10), splits=("train", "test"), names=("0002.jpg", "0000.jpg", "0001.jpg")):
    """root/CIFAR-10-images/<split>/<class>/NNNN.jpg, written in the order of ``names`` (not sorted)."""
    for split in splits:
        for c in classes:
            folder = root / "CIFAR-10-images" / split / CIFAR10_CLASSES[c]
            folder.mkdir(parents=True)
            for name in names:
                i = int(Path(name).stem)
                Image.new("RGB", (32, 32), colour(c, i)).save(folder / name, quality=95)
    return root


def test_class_names_are_cifar_order():
    assert len(CIFAR10_CLASSES) == 10 and list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)  # ImageFolder's order
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[3] == "cat" and CIFAR10_CLASSES[9] == "truck"


def test_jpeg_tree_shapes_range_labels_and_order(tmp_path):
    root = make_tree(tmp_path)
    x, y = load_cifar10(train=True, root=root, download=False)
    assert x.shape == (10 * PER_CLASS, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (10 * PER_CLASS,) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1
    assert y.tolist() == [c for c in range(10) for _ in range(PER_CLASS)]
    # sorted file names within each class: 0000, 0001, 0002 (G channel 30, 90, 150), whatever the write order
    expected = torch.tensor([colour(c, i) for c in range(10) for i in range(PER_CLASS)], dtype=torch.float32)
    pixels = (x.mean(dim=(2, 3)) + 1) * 127.5  # back to [0, 255], one value per image and channel
    assert (pixels - expected).abs().max() < 4, "pixel values or file order differ from the tree"


def test_test_split_and_class_filter(tmp_path):
    root = make_tree(tmp_path)
    x, y = load_cifar10(train=False, root=root, download=False, classes=[8, 1])
    assert y.tolist() == [1] * PER_CLASS + [8] * PER_CLASS  # CIFAR's own ids, in id order
    red = (x[:, 0].mean(dim=(1, 2)) + 1) * 127.5
    assert (red[:PER_CLASS] - 30).abs().max() < 4 and (red[PER_CLASS:] - 170).abs().max() < 4


def test_only_the_requested_folders_are_read(tmp_path):
    root = make_tree(tmp_path, classes=[1, 8], splits=("train",))
    x, y = load_cifar10(root=root, download=False, classes=[1, 8])
    assert len(x) == 2 * PER_CLASS and set(y.tolist()) == {1, 8}
    with pytest.raises(CIFARNotFoundError, match="airplane"):  # all classes: the first missing folder is named
        load_cifar10(root=root, download=False)


@pytest.mark.parametrize("bad", [[], [10], [-1], [1.5], ["cat"], 3, [True]])
def test_bad_classes(tmp_path, bad):
    with pytest.raises(ValueError, match="class ids 0..9"):
        load_cifar10(root=make_tree(tmp_path, classes=[0], splits=("train",)), download=False, classes=bad)


def test_missing_data_error_says_what_to_do(tmp_path):
    root = tmp_path / "nothing_here"
    with pytest.raises(CIFARNotFoundError) as info:
        load_cifar10(root=root, download=False)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for needed in ("download=False", "--data-root", data.ENV_VAR, "cifar-10-batches-py", "CIFAR-10-images", "train"):
        assert needed in msg, needed
    assert str(root) in msg and not root.exists()


def test_failed_download_leaves_no_folder(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise OSError("no network (test)")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    root = tmp_path / "new"
    with pytest.raises(CIFARNotFoundError, match="OSError: no network"):
        load_cifar10(root=root, download=True)
    assert not root.exists()


def test_binary_copy_comes_first(tmp_path):
    # a cifar-10-batches-py folder is used in preference to the JPEG copy: a broken one is an error, not skipped
    root = make_tree(tmp_path, splits=("train",))
    (root / "cifar-10-batches-py").mkdir()
    with pytest.raises(CIFARNotFoundError, match="incomplete or corrupt"):
        load_cifar10(root=root, download=False)


def test_env_var_and_relative_root(tmp_path, monkeypatch):
    make_tree(tmp_path / "shared", classes=[3], splits=("test",))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "shared"))
    x, y = load_cifar10(train=False, download=False, classes=[3])
    assert len(x) == PER_CLASS and (y == 3).all()
    # a relative root is resolved against the working directory when it holds a CIFAR copy there
    monkeypatch.chdir(tmp_path)
    assert data_root("shared") == (tmp_path / "shared").resolve()
    monkeypatch.setenv(data.ENV_VAR, "shared")
    assert data_root() == (tmp_path / "shared").resolve()
    # MNIST still marks a data root, and the repository's data/ remains the default
    (tmp_path / "m" / "MNIST").mkdir(parents=True)
    assert data_root("m") == (tmp_path / "m").resolve()
    monkeypatch.delenv(data.ENV_VAR)
    assert data_root() == (data.REPO_ROOT / "data").resolve()


def test_real_copy():
    root = os.environ.get(data.ENV_VAR)
    if not root or not (Path(root) / "CIFAR-10-images" / "test" / "cat").is_dir():
        pytest.skip("needs the JPEG copy of CIFAR-10: set DDPM_DATA_ROOT to a folder holding CIFAR-10-images/")
    x, y = load_cifar10(train=False, root=root, download=False)
    assert x.shape == (10_000, 3, 32, 32) and torch.bincount(y).tolist() == [1000] * 10
    assert x.min() == -1 and x.max() == 1
    cats = x[y == 3][:200]
    mean_pixel = ((cats + 1) * 127.5).mean().item()
    assert abs(mean_pixel - 117.0) < 1.0, mean_pixel  # the copy's README: 117.0 for 200 test cats
    assert torch.equal(load_cifar10(train=False, root=root, classes=[3])[0][:200], cats)


def test_png_files_are_read_too(tmp_path):
    folder = tmp_path / "CIFAR-10-images" / "train" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "0001.png")
    Image.new("L", (32, 32), 0).save(folder / "0000.png")  # greyscale is converted to RGB
    x, y = load_cifar10(root=tmp_path, download=False, classes=[3])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 3]
    assert torch.equal(x[0], -torch.ones(3, 32, 32)) and x[1, 0].eq(1).all() and x[1, 1:].eq(-1).all()
