"""Evaluation (ddpmlib.evaluate): accuracy, Frechet distance, memorisation and the command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_checkpoint

from ddpmlib import evaluate as ev
from ddpmlib.classifier import SHIPPED_CLASSIFIER, ClassifierConfig, MNISTClassifier, save_classifier
from ddpmlib.pipeline import load_pipeline
from ddpmlib.samplers import SamplingOptions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny conditional U-Net with T = 20: fast to sample, draws noise."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", T=20)


# --- the measures on hand-made inputs ----------------------------------------------------------------


def test_balanced_labels():
    assert torch.bincount(ev.balanced_labels(1000)).tolist() == [100] * 10
    counts = torch.bincount(ev.balanced_labels(25), minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1
    assert ev.balanced_labels(12)[:10].tolist() == list(range(10))  # every batch holds every class


def test_conditional_accuracy():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 1, 0, 2, 5, 5])
    acc = ev.conditional_accuracy(preds, labels, num_classes=4)
    assert acc["overall"] == pytest.approx(5 / 9)
    assert acc["correct"] == 5 and acc["total"] == 9
    assert acc["per_class"][:3] == pytest.approx([0.5, 1.0, 0.25])
    assert acc["per_class"][3] is None  # no samples of class 3


def test_wilson_interval():
    lo, hi = ev.wilson_interval(95, 100)
    assert (lo, hi) == pytest.approx((0.8882, 0.9785), abs=5e-4)  # textbook values for 95/100
    lo, hi = ev.wilson_interval(1000, 1000)
    assert hi == 1.0 and lo == pytest.approx(0.99617, abs=1e-4)  # not empty at k = n
    assert ev.wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError, match="successes"):
        ev.wilson_interval(11, 10)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = ev.feature_statistics(f)
    assert ev.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)
    # a shift of every feature by 1 adds |shift|^2 = 8 and nothing else
    assert ev.frechet_distance(*ev.feature_statistics(f + 1.0), mu, sigma) == pytest.approx(8.0, rel=1e-6)
    # another covariance: strictly positive, and symmetric
    g = f * 1.5
    d = ev.frechet_distance(*ev.feature_statistics(g), mu, sigma)
    assert d > 0.1 and d == pytest.approx(ev.frechet_distance(mu, sigma, *ev.feature_statistics(g)), rel=1e-6)
    # fewer samples than features (singular covariances) still gives a finite number
    few = rng.normal(size=(5, 16))
    assert np.isfinite(ev.frechet_distance(*ev.feature_statistics(few), *ev.feature_statistics(few + 0.5)))


def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(300, 1, 28, 28, generator=g) * 2 - 1
    queries = torch.rand(70, 1, 28, 28, generator=g) * 2 - 1
    queries[13] = reference[247]  # an exact copy
    d, i = ev.nearest_neighbours(queries, reference, query_chunk=32, ref_chunk=64)  # several blocks each way
    brute = torch.cdist(queries.flatten(1).double(), reference.flatten(1).double())
    torch.testing.assert_close(d.double(), brute.min(1).values, rtol=1e-5, atol=1e-5)
    assert torch.equal(i, brute.argmin(1))
    assert d[13] == 0 and i[13] == 247


def test_memorisation_flags_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(200, 1, 28, 28, generator=g) * 2 - 1
    test = torch.rand(50, 1, 28, 28, generator=g) * 2 - 1
    copies = ev.memorisation(train[:50].clone(), train, test)
    assert copies["generated_median"] == 0 and copies["generated_min"] == 0
    assert copies["ratio_of_medians"] == 0 and copies["fraction_below_test_p01"] == 1
    fresh = ev.memorisation(torch.rand(50, 1, 28, 28, generator=g) * 2 - 1, train, test)
    assert 0.9 < fresh["ratio_of_medians"] < 1.1  # new draws from the same distribution as the test set


def test_balanced_subset():
    labels = torch.arange(1000) % 7 % 3  # classes 0, 1, 2 with unequal counts
    idx = ev.balanced_subset(labels, 90, num_classes=3)
    assert len(idx.unique()) == 90 and torch.bincount(labels[idx]).tolist() == [30, 30, 30]
    assert torch.equal(idx, ev.balanced_subset(labels, 90, num_classes=3))  # same seed, same subset
    with pytest.raises(ValueError, match="cannot pick"):
        ev.balanced_subset(labels, 3000, num_classes=3)


# --- generation --------------------------------------------------------------------------------------


def test_generate_samples_is_reproducible(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint, device="cpu")
    kw = dict(sampler="ddim", steps=3, guidance_scale=1.0, batch_size=3, progress=False)
    x, y = ev.generate_samples(pipe, 7, seed=1, **kw)
    assert x.shape == (7, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert y.tolist() == [0, 1, 2, 3, 4, 5, 6]
    x2, _ = ev.generate_samples(pipe, 7, seed=1, **kw)
    x3, _ = ev.generate_samples(pipe, 7, seed=2, **kw)
    assert torch.equal(x, x2) and not torch.equal(x, x3)


def test_generate_samples_takes_options_or_keywords_and_every_sampler(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint, device="cpu")
    x, _ = ev.generate_samples(pipe, 5, sampler="dpmpp", steps=4, batch_size=2, progress=False)
    x2, _ = ev.generate_samples(pipe, 5, SamplingOptions("dpmpp", 4, seed=0), batch_size=2, progress=False)
    assert torch.equal(x, x2) and x.shape == (5, 1, 28, 28)
    x3, _ = ev.generate_samples(pipe, 5, sampler="ddpm", steps=4, variance="beta", batch_size=2, progress=False)
    assert not torch.equal(x, x3)
    with pytest.raises(ValueError, match="eta applies to the DDIM sampler only"):
        ev.generate_samples(pipe, 5, sampler="dpmpp", steps=4, eta=0.5, progress=False)
    with pytest.raises(TypeError):
        ev.generate_samples(pipe, 5, "ddim", 4)  # the old positional form is gone


def test_cli_rejects_options_that_do_not_apply(tiny_checkpoint):
    for extra, message in (
        (["--sampler", "ddpm", "--eta", "0.5"], "eta applies to the DDIM sampler only"),
        (["--sampler", "dpmpp", "--variance", "beta"], "variance applies to the DDPM sampler only"),
    ):
        with pytest.raises(SystemExit) as e:
            ev.main(["--checkpoint", str(tiny_checkpoint), "--steps", "3", "--no-progress", *extra])
        assert str(e.value.code).startswith(f"error: {message}")


# --- against real MNIST ------------------------------------------------------------------------------


def test_training_digits_score_like_real_data_and_are_flagged_as_copies(mnist_root):
    ref = ev.load_reference(SHIPPED_CLASSIFIER, mnist_root)
    assert ev.load_reference(SHIPPED_CLASSIFIER, mnist_root) is ref  # cached per process
    idx = ev.balanced_subset(ref.train_labels, 300, seed=1)
    r = ev.evaluate_samples(ref.train_images[idx], ref.train_labels[idx], ref, full_baseline=False)
    assert r["accuracy"]["overall"] >= 0.98
    assert 0.5 < r["frechet_distance"]["ratio_to_baseline"] < 2  # real digits score about the baseline
    assert r["memorisation"]["generated_median"] == 0  # training images are their own nearest neighbours
    assert r["memorisation"]["test_median"] > 3


def test_cli_missing_checkpoint(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ddpmlib.evaluate", "--checkpoint", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "error: no checkpoint at" in out.stderr and "Traceback" not in out.stderr


def test_cli_missing_classifier(tiny_checkpoint, tmp_path):
    with pytest.raises(SystemExit) as e:
        ev.main(
            [
                "--checkpoint",
                str(tiny_checkpoint),
                "--classifier",
                str(tmp_path / "none"),
                "--steps",
                "3",
                "--no-progress",
            ]
        )
    assert "no classifier at" in str(e.value.code) and "python -m ddpmlib.classifier" in str(e.value.code)


def test_cli_missing_data(tiny_checkpoint, tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise OSError("no network (simulated by the test)")

    monkeypatch.setattr(MNIST, "download", offline)
    save_classifier(tmp_path / "classifier", MNISTClassifier(ClassifierConfig(channels=(4, 8, 8))))
    with pytest.raises(SystemExit) as e:
        ev.main(
            [
                "--checkpoint",
                str(tiny_checkpoint),
                "--classifier",
                str(tmp_path / "classifier"),
                "--data-root",
                str(tmp_path / "empty"),
                "--steps",
                "3",
                "--no-progress",
            ]
        )
    assert "--data-root" in str(e.value.code) and "DDPM_DATA_ROOT" in str(e.value.code)


def test_cli_bad_steps(tiny_checkpoint):
    with pytest.raises(SystemExit) as e:
        ev.main(["--checkpoint", str(tiny_checkpoint), "--steps", "50", "--no-progress"])  # T = 20
    assert "between 1 and 20" in str(e.value.code)


def test_cli_end_to_end(tiny_checkpoint, tmp_path, capsys, mnist_root):
    root = mnist_root
    ev.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--classifier",
            SHIPPED_CLASSIFIER,
            "--data-root",
            root,
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--guidance",
            "2.0",
            "--num-samples",
            "20",
            "--batch-size",
            "8",
            "--seed",
            "0",
            "--no-full-baseline",
            "--no-progress",
            "--json",
            str(tmp_path / "r.json"),
            "--grid",
            str(tmp_path / "grid.png"),
        ]
    )
    printed = capsys.readouterr().out
    assert "conditional accuracy" in printed and "Frechet distance" in printed and "baseline" in printed
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["num_samples"] == 20 and r["steps"] == 3 and r["guidance_scale"] == 2.0
    assert r["accuracy"]["total"] == 20 and 0 <= r["accuracy"]["overall"] <= 1
    assert set(r["frechet_distance"]["baseline"]) == {"20"}
    assert r["frechet_distance"]["generated"] > r["frechet_distance"]["baseline"]["20"]  # noise is not MNIST
    assert r["memorisation"]["num_generated"] == 20 and r["memorisation"]["num_test"] == 20
    assert r["classifier_test_accuracy"] >= 0.99
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (2 + 2 * 30, 2 + 10 * 30)  # 10 rows of 2 samples


def test_sampler_table_script_resumes(tiny_checkpoint, tmp_path, capsys, mnist_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sampler_table", REPO / "scripts" / "sampler_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.parse_sampler("ddim:0.5") == ("ddim", 0.5) and table.parse_sampler("dpmpp") == ("dpmpp", 0.0)
    root = mnist_root
    csv_path = tmp_path / "t.csv"
    argv = ["--checkpoint", str(tiny_checkpoint), "--data-root", root, "--num-samples", "10", "--batch-size", "4"]
    argv += ["--steps", "2", "--samplers", "ddim:0.5", "dpmpp", "--csv", str(csv_path)]
    table.main(argv)
    first = csv_path.read_text()
    assert len(first.splitlines()) == 1 + 2
    out = capsys.readouterr().out
    assert "| DDIM, eta 0.5 | 2 | 0 |" in out and "| DPM-Solver++(2M) | 2 | 0 |" in out
    table.main(argv + ["--guidance-sweep", "0", "1", "--sweep-steps", "2"])  # w = 0 is known, w = 1 is new
    lines = csv_path.read_text().splitlines()
    assert lines[:3] == first.splitlines() and len(lines) == 4 and ",dpmpp,0,2,1,10,0,4," in lines[3]
    with pytest.raises(SystemExit, match="between 1 and 20"):
        table.main(argv[:-2] + ["--csv", str(tmp_path / "u.csv"), "--steps", "50"])
