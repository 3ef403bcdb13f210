"""ddpmlib.cold: the blur degradation, the two samplers of Bansal et al. (2022), training and loading."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_unet_config

from ddpmlib.checkpoint import CheckpointError
from ddpmlib.cold import (
    BlurSchedule,
    ColdSampler,
    blur_matrix,
    blur_sigmas,
    fit_start_distribution,
    load_cold,
    restoration_loss,
    sample,
)
from ddpmlib.config import ConfigError, DiffusionConfig, apply_overrides, build_configs, load_config_file
from ddpmlib.train import train


def images(B=4, C=1, H=12, W=12, seed=0):
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def exact_restorer(x0):
    """A 'network' that knows the answer: R(x_s, t, y) = x_0 whatever it is shown."""
    return lambda x, t, y: x0


@pytest.mark.parametrize("schedule", ["sqrt", "geometric"])
def test_sigmas_start_at_zero_and_grow(schedule):
    s = blur_sigmas(10, 0.5, 8.0, schedule)
    assert s.shape == (11,) and s[0] == 0 and s[1] == pytest.approx(0.5) and s[-1] == pytest.approx(8.0)
    assert (s[1:] > s[:-1]).all()
    paper = blur_sigmas(10, 8.0 / 10**0.5, 8.0, "sqrt")  # a fixed kernel applied s times: sigma_T sqrt(s / T)
    torch.testing.assert_close(paper, 8.0 * (torch.arange(11, dtype=torch.float64) / 10).sqrt())
    with pytest.raises(ValueError):
        blur_sigmas(10, 2.0, 1.0)


@pytest.mark.parametrize("C", [1, 3])
def test_level_zero_is_the_identity_and_the_mean_is_kept(C):
    blur = BlurSchedule(8, 0.7, 20.0)
    x = images(C=C, H=12, W=10)
    assert torch.equal(blur.degrade(x, 0), x)
    assert torch.equal(blur.degrade(x, torch.tensor([0, 0, 0, 0])), x)
    for s in (1, 4, 8):
        y = blur.degrade(x, s)
        assert y.shape == x.shape
        torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)), rtol=0, atol=1e-6)
    flat = blur.degrade(x, 8)  # sigma 20 on 12 pixels: the constant image of the channel means
    torch.testing.assert_close(flat, x.mean((2, 3), keepdim=True).expand_as(x), rtol=0, atol=1e-4)
    spread = [blur.degrade(x, s).std((2, 3)).mean().item() for s in range(9)]
    assert spread[0] > spread[1] > spread[2] and all(a >= b for a, b in zip(spread, spread[1:])), spread


def test_blur_is_a_circular_gaussian_convolution_and_per_example():
    n, sigma = 16, 1.0
    x = images(B=2, C=3, H=n, W=n)
    r = torch.arange(-5, 6, dtype=torch.float64)
    k1 = torch.exp(-(r**2) / (2 * sigma**2))
    k1 = (k1 / k1.sum()).float()
    kernel = (k1[:, None] * k1[None, :]).expand(3, 1, 11, 11)  # the paper's 11x11 kernel, circular padding
    ref = F.conv2d(F.pad(x, (5, 5, 5, 5), mode="circular"), kernel, groups=3)
    blur = BlurSchedule(1, sigma, sigma)
    torch.testing.assert_close(blur.degrade(x, 1), ref, rtol=0, atol=1e-5)  # the tails beyond 5 sigma: < 1e-5
    K = blur_matrix(2.0, 7)
    torch.testing.assert_close(K.sum(0), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(K, K.T)
    blur = BlurSchedule(5, 0.5, 3.0)
    s = torch.tensor([0, 5])
    both = blur.degrade(x, s)
    assert torch.equal(both[0], x[0])
    torch.testing.assert_close(both[1:], blur.degrade(x[1:], 5))
    with pytest.raises(ValueError):
        blur.degrade(x, 6)


@pytest.mark.parametrize("method", ["naive", "improved"])
@pytest.mark.parametrize("steps", [12, 5, 1])
def test_an_exact_restorer_returns_x0(method, steps):
    blur = BlurSchedule(12, 0.5, 10.0)
    x0 = images(C=3)
    sampler = ColdSampler(blur, method, clip_x0=False)
    sampler.set_timesteps(steps)
    assert sampler.timesteps[0] == 11 and sampler.timesteps[-1] == (0 if steps > 1 else 11)
    out = sample(exact_restorer(x0), sampler, blur.degrade(x0, 12))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_improved_step_moves_to_the_next_level_and_keeps_the_mean():
    blur = BlurSchedule(6, 0.5, 6.0)
    x0 = images()
    sampler = ColdSampler(blur, "improved")
    x = blur.degrade(x0, 6)
    for t in sampler.timesteps.tolist():  # with the true x_0, every step lands exactly on D(x_0, t)
        x, pred = sampler.step(x0, t, x)
        torch.testing.assert_close(x, blur.degrade(x0, t), rtol=0, atol=1e-6)
    wrong = images(seed=1)  # any x0_hat: Algorithm 2 keeps the channel means of x_T
    x = x_T = blur.degrade(x0, 6)
    for t in sampler.timesteps.tolist():
        x, _ = sampler.step(wrong, t, x)
    torch.testing.assert_close(x.mean((2, 3)), x_T.mean((2, 3)), rtol=0, atol=1e-6)


def test_sampling_is_deterministic_and_noise_gives_diversity():
    blur = BlurSchedule(5, 0.5, 8.0)
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    restorer = lambda x, t, y: torch.tanh(3 * net(x))  # noqa: E731
    x_T = images(B=3).mean((2, 3), keepdim=True).expand(3, 1, 12, 12)
    sampler = ColdSampler(blur)
    with torch.no_grad():
        a = sample(restorer, sampler, x_T)
        b = sample(restorer, sampler, x_T)
        assert torch.equal(a, b)
        same = sample(restorer, sampler, x_T[:1].expand(3, 1, 12, 12))
        assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])  # same start -> same image
        g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        n1 = sample(restorer, sampler, x_T, start_noise=0.05, generator=g1)
        n2 = sample(restorer, sampler, x_T, start_noise=0.05, generator=g2)
        assert torch.equal(n1, n2) and not torch.equal(n1, a)


def test_start_distribution_per_class_shapes_and_means():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, 6, 6, generator=g) * 0.1
    labels = torch.arange(200) % 2
    x[labels == 1] += 0.5
    for kind, k in (("channel_mean", 1), ("channel_mean", 2), ("gaussian", 1)):
        dist = fit_start_distribution(x, labels, kind=kind, n_components=k)
        draws = dist.sample(torch.tensor([0] * 300 + [1] * 300), generator=torch.Generator().manual_seed(1))
        assert draws.shape == (600, 3, 6, 6)
        assert abs(draws[:300].mean() - x[labels == 0].mean()) < 0.02
        assert abs(draws[300:].mean() - x[labels == 1].mean()) < 0.02
        if kind == "channel_mean":
            assert torch.equal(draws, draws[:, :, :1, :1].expand_as(draws))  # constant images
        again = dist.sample(torch.tensor([0] * 300 + [1] * 300), generator=torch.Generator().manual_seed(1))
        assert torch.equal(draws, again)
    assert fit_start_distribution(x).sample(None, n=5).shape == (5, 3, 6, 6)


def test_restoration_loss_is_zero_for_an_exact_restorer_and_draws_from_the_generator():
    blur = BlurSchedule(10, 0.5, 5.0)
    x0 = images()
    y = torch.tensor([0, 1, 0, 1])
    seen = []

    def restorer(x, t, labels):
        seen.append((t.clone(), labels.clone()))
        return x0

    for loss in ("l1", "mse"):
        value = restoration_loss(restorer, blur, x0, y, torch.Generator().manual_seed(0), loss=loss, null_label=2)
        assert value.item() == 0
    assert torch.equal(seen[0][0], seen[1][0]) and ((seen[0][0] >= 0) & (seen[0][0] < 10)).all()
    blurry = restoration_loss(lambda x, t, labels: x, blur, x0, y, torch.Generator().manual_seed(0), null_label=2)
    assert blurry.item() > 0.05  # returning the blurred input is not a restoration


def test_config_validation():
    ok = build_configs(apply_overrides({}, ["diffusion.process=blur", "diffusion.prediction_type=x0"]))[1]
    assert ok.process == "blur" and ok.blur_schedule == "geometric"
    assert DiffusionConfig().process == "gaussian"
    for override, message in [
        ("diffusion.process=heat", "diffusion.process must be one of 'gaussian', 'blur'"),
        ("diffusion.blur_sigma_max=0", "diffusion.blur_sigma_max must be a number > 0"),
        ("diffusion.blur_sigma_min=-1", "diffusion.blur_sigma_min must be a number > 0"),
        ("diffusion.blur_schedule=linear", "diffusion.blur_schedule must be one of 'sqrt', 'geometric'"),
        ("diffusion.blur_sigma_min=20", "diffusion.blur_sigma_min=20 must not exceed diffusion.blur_sigma_max=10"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_configs(apply_overrides({}, [override]))
    with pytest.raises(ConfigError, match="set diffusion.prediction_type to 'x0'"):
        build_configs(apply_overrides({}, ["diffusion.process=blur"]))
    model, diffusion, train_cfg = build_configs(load_config_file("configs/mnist_cold.json"))
    assert diffusion.process == "blur" and train_cfg.loss == "l1" and model.num_timesteps == diffusion.T


def tiny_blur_config(**train_kw):
    model = tiny_unet_config(image_size=8, num_classes=2, num_timesteps=10).to_dict()
    t = dict(batch_size=8, max_steps=6, lr=3e-3, warmup_steps=2, log_every=2, sample_every=3, checkpoint_every=3)
    t.update(train_kw)
    diffusion = dict(process="blur", T=10, prediction_type="x0", blur_sigma_min=0.5, blur_sigma_max=6.0)
    return {"model": model, "diffusion": diffusion, "train": t}


def tiny_data(n=32):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    x = -torch.ones(n, 1, 8, 8)
    x[labels == 0, :, :, :4] = 1.0
    x[labels == 1, :, :, 4:] = 1.0
    return x + 0.05 * torch.randn(x.shape, generator=g), labels


def test_train_a_tiny_blur_model_and_load_it(tmp_path):
    ckpt = train(tiny_blur_config(), tmp_path, data=tiny_data(), progress=False, device="cpu")
    assert json.loads((ckpt / "config.json").read_text())["diffusion"]["process"] == "blur"
    assert (tmp_path / "samples" / "step_000006.png").is_file()
    pipe = load_cold(ckpt, device="cpu")
    assert pipe.T == 10 and pipe.blur.sigmas[-1] == pytest.approx(6.0)
    x, y = tiny_data()
    start = pipe.fit_start(x, y)
    a = pipe.generate([0, 1, 1], start, seed=3, start_noise=0.01)
    b = pipe.generate([0, 1, 1], start, seed=3, start_noise=0.01, steps=4, method="naive")
    assert a.shape == b.shape == (3, 1, 8, 8) and a.abs().max() <= 1
    assert torch.equal(a, pipe.generate([0, 1, 1], start, seed=3, start_noise=0.01))
    resumed = train(tiny_blur_config(max_steps=8), tmp_path, data=tiny_data(), progress=False, resume=True)
    assert json.loads((resumed / "config.json").read_text())["step"] == 8
    with pytest.raises(ConfigError, match="loss_weighting"):
        train(tiny_blur_config(loss_weighting="min_snr"), tmp_path / "w", data=tiny_data(), progress=False)


def test_load_cold_refuses_a_gaussian_checkpoint(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not a blur"):
        load_cold(tiny_checkpoint)


def test_a_blur_checkpoint_is_not_loaded_as_a_gaussian_ddpm(tmp_path):
    from ddpmlib.checkpoint import save_checkpoint
    from ddpmlib.pipeline import load_pipeline
    from ddpmlib.unet import UNet

    cfg = tiny_unet_config(num_timesteps=10)
    diffusion = {"process": "blur", "T": 10, "prediction_type": "x0"}
    path = save_checkpoint(tmp_path / "ckpt", {"model": cfg.to_dict(), "diffusion": diffusion}, UNet(cfg))
    with pytest.raises(CheckpointError, match="cold-diffusion model.*ddpmlib.cold.load_cold"):
        load_pipeline(path, device="cpu")
    assert load_cold(path, device="cpu").model.config == cfg
