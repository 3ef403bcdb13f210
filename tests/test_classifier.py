"""The MNIST classifier that judges generated digits (ddpmlib.classifier)."""

import json

import pytest
import torch

from ddpmlib.checkpoint import CheckpointError
from ddpmlib.classifier import (
    SHIPPED_CLASSIFIER,
    ClassifierConfig,
    MNISTClassifier,
    accuracy,
    load_classifier,
    main,
    random_shift,
    save_classifier,
    train_classifier,
)

SUBSET = 2000  # test images for the shipped classifier's accuracy check (a fixed random subset)


def test_shapes_and_features():
    torch.manual_seed(0)
    model = MNISTClassifier().eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    feats = model.features(x)
    assert feats.shape == (5, model.feature_dim) == (5, 64)
    assert model(x).shape == (5, 10)
    torch.testing.assert_close(model(x), model.head(feats))  # features are the penultimate layer


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MNISTClassifier(ClassifierConfig(channels=(8, 16, 16))).eval()
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    save_classifier(tmp_path / "fp32", model, {"note": "x"}, dtype=None)
    torch.testing.assert_close(load_classifier(tmp_path / "fp32")(x), model(x), rtol=1e-5, atol=1e-5)
    assert load_classifier(tmp_path / "fp32").info["note"] == "x"
    save_classifier(tmp_path / "fp16", model)
    loaded = load_classifier(tmp_path / "fp16")
    assert next(loaded.parameters()).dtype == torch.float32  # computed in fp32 whatever the file holds
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=2e-2)


def test_missing_or_wrong_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no classifier at .*python -m ddpmlib.classifier"):
        load_classifier(tmp_path / "nothing")
    (tmp_path / "diffusion").mkdir()
    (tmp_path / "diffusion" / "config.json").write_text(json.dumps({"format_version": 1, "model": {}, "diffusion": {}}))
    with pytest.raises(CheckpointError, match="does not describe an MNIST classifier"):
        load_classifier(tmp_path / "diffusion")


def test_random_shift_moves_whole_pixels():
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, 13, 14] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert set(y.unique().tolist()) == {-1.0, 1.0} and (y == 1).sum() == 64  # one bright pixel each
    pos = (y[:, 0] == 1).nonzero()[:, 1:]
    dy, dx = pos[:, 0] - 13, pos[:, 1] - 14
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and len(set(zip(dy.tolist(), dx.tolist()))) > 5
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_training_learns_a_toy_task():
    # class 0: a bright square top left, class 1: bottom right; enough steps for BatchNorm's running stats
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (128,), generator=g)
    images = torch.full((128, 1, 28, 28), -1.0) + 0.1 * torch.randn(128, 1, 28, 28, generator=g)
    images[labels == 0, :, 4:12, 4:12] = 1.0
    images[labels == 1, :, 16:24, 16:24] = 1.0
    model = train_classifier(
        images,
        labels,
        ClassifierConfig(channels=(4, 8, 8), num_classes=2),
        epochs=8,
        batch_size=32,
        lr=1e-2,
        progress=False,
    )
    assert not model.training
    assert accuracy(model, images, labels) > 0.95


def test_shipped_classifier_accuracy(mnist_root):
    """The shipped weights, as loaded (fp16 on disk), on 2000 randomly chosen test images."""
    from ddpmlib.data import load_mnist

    images, labels = load_mnist(train=False, root=mnist_root, download=False)
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:SUBSET]
    model = load_classifier(SHIPPED_CLASSIFIER)
    assert model.info["test_accuracy"] >= 0.99  # recorded on all 10,000 test images by the training command
    assert accuracy(model, images[idx], labels[idx]) >= 0.99


def test_cli_without_data_names_the_fix(tmp_path, monkeypatch, capsys):
    from torchvision.datasets import MNIST

    def offline(self):
        raise OSError("no network (simulated by the test)")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(SystemExit) as e:
        main(["--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    msg = str(e.value.code)
    assert "--data-root" in msg and "DDPM_DATA_ROOT" in msg and "train-images-idx3-ubyte" in msg
    assert not (tmp_path / "out").exists()
