import pytest
import torch

from ddpmlib.discriminator import Discriminator, real_vs_generated, wilson_interval


def test_wilson_interval_properties():
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.1924, abs=1e-3)  # 0.404-0.596 for 50/100
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and 0.95 < lo < 0.97, "at s = 1 the interval does not collapse to a point (Wald's does)"
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_discriminator_shapes():
    d = Discriminator()
    assert d(torch.randn(5, 1, 28, 28)).shape == (5,)


def _digits(mnist_root, n=600):
    from ddpmlib.data import load_mnist

    images, _ = load_mnist(False, mnist_root)
    return images[:n], images[n : 2 * n]


@pytest.mark.slow
def test_real_vs_real_is_near_chance(mnist_root):
    a, b = _digits(mnist_root)
    r = real_vs_generated(a, b, steps=150, seed=0)
    assert r["total"] == 600 and r["num_train_per_set"] == 300
    assert 0.4 < r["accuracy"] < 0.6, r
    lo, hi = r["interval"]
    assert lo < r["accuracy"] < hi


@pytest.mark.slow
def test_real_vs_blurred_is_near_perfect(mnist_root):
    from torchvision.transforms.functional import gaussian_blur

    a, b = _digits(mnist_root)
    r = real_vs_generated(a, gaussian_blur(b, 5, 1.0), steps=150, seed=0)
    assert r["accuracy"] > 0.95, r
    assert r["accuracy_on_real"] > 0.9 and r["accuracy_on_generated"] > 0.9


def test_real_vs_generated_is_deterministic_and_checks_sizes():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    b = (torch.rand(40, 1, 28, 28, generator=g) * 2 - 1) * 0.5
    r1 = real_vs_generated(a, b, steps=5, seed=3)
    r2 = real_vs_generated(a, b, steps=5, seed=3)
    assert r1 == r2
    with pytest.raises(ValueError, match="at least 4"):
        real_vs_generated(a[:3], b, steps=1)
