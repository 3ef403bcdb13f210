import pytest
import torch

from ddpmlib.unet import UNet, UNetConfig, count_parameters, sinusoidal_embedding


def randomised(model):
    """Zero-initialised output layers make a fresh U-Net output exactly 0; perturb every weight."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(),  # 1 x 28 x 28, MNIST
        UNetConfig(image_channels=3, image_size=32, channel_mults=(1, 2, 2), attention_resolutions=(8,)),
        UNetConfig(base_channels=16, channel_mults=(1, 2, 4), time_embedding="scalar"),
    ],
)
def test_output_shape_equals_input_shape(cfg):
    model = UNet(cfg)
    x = torch.randn(3, cfg.image_channels, cfg.image_size, cfg.image_size)
    out = model(x, torch.tensor([0, 500, 999]), torch.tensor([1, 2, 10]))
    assert out.shape == x.shape


@pytest.mark.parametrize("scale_shift", [False, True])
def test_label_and_time_change_the_output(scale_shift):
    model = randomised(UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 4), scale_shift=scale_shift)))
    x = torch.randn(1, 1, 28, 28).repeat(3, 1, 1, 1)
    t = torch.full((3,), 300)
    out = model(x, t, torch.tensor([3, 7, 10]))
    assert not torch.allclose(out[0], out[1], atol=1e-4), "different labels must give different outputs"
    assert not torch.allclose(out[0], out[2], atol=1e-4)
    # y=None means the null label
    torch.testing.assert_close(model(x[:1], t[:1], None), model(x[:1], t[:1], torch.tensor([10])))
    assert not torch.allclose(model(x[:1], torch.tensor([10]), torch.tensor([3])), out[:1], atol=1e-4)


def test_default_config_fits_a_cpu_budget():
    n = count_parameters(UNet(UNetConfig()))
    assert 0.5e6 <= n <= 1.5e6, n


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 1, 999]), 32)
    assert e.shape == (3, 32)
    torch.testing.assert_close(e[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    assert not torch.allclose(e[1], e[2])


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(image_size=30, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="time_embedding"):
        UNetConfig(time_embedding="fourier")
    cfg = UNetConfig(base_channels=16, channel_mults=(1, 2, 4))
    assert UNetConfig(**cfg.to_dict()) == cfg


def test_scale_shift_modulates_the_normalised_features():
    """AdaGN: with emb -> (scale, shift), the block computes norm2(h) * (1 + scale) + shift before conv2."""
    from ddpmlib.unet import ResBlock

    torch.manual_seed(0)
    block = ResBlock(8, 8, 16, groups=4, dropout=0.0, scale_shift=True).eval()
    x, emb = torch.randn(2, 8, 5, 5), torch.randn(2, 16)
    h = block.conv1(torch.nn.functional.silu(block.norm1(x)))
    scale, shift = block.emb(torch.nn.functional.silu(emb)).chunk(2, dim=1)
    h = block.norm2(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    expected = x + block.conv2(torch.nn.functional.silu(h))
    torch.testing.assert_close(block(x, emb), expected)
    assert block.emb.out_features == 16
    # an old config without the key still builds the additive-embedding network
    assert UNetConfig(**{k: v for k, v in UNetConfig().to_dict().items() if k != "scale_shift"}).scale_shift is False


# ---------------------------------------------------------------------------------------------------
# options of the design study (notebook 09)


def test_cbam_shapes_gates_and_effect():
    from ddpmlib.unet import CBAM

    torch.manual_seed(0)
    cbam = CBAM(16)
    x = torch.randn(2, 16, 7, 7)
    mc = cbam.channel_gate(x)
    assert mc.shape == (2, 16, 1, 1)
    ms = cbam.spatial_gate(mc * x)
    assert ms.shape == (2, 1, 7, 7)
    assert ((mc > 0) & (mc < 1)).all() and ((ms > 0) & (ms < 1)).all(), "both gates are sigmoids"
    out = cbam(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ms * (mc * x))  # Eqs. 1-3 of Woo et al.: channel gate first, then spatial
    assert not torch.allclose(out, x, atol=1e-3), "CBAM must change its input"
    # a gate only scales: a feature map that is 0 stays 0
    assert cbam(torch.zeros(1, 16, 7, 7)).abs().max() == 0


@pytest.mark.parametrize(
    "options",
    [
        dict(attention_type="cbam"),
        dict(attention_type="cbam", attention_resolutions=(14,), mid_attention=False),
        dict(attention_resolutions=(14,), mid_attention=False),
        dict(norm="batch"),
        dict(kernel_size=5),
        dict(emb_mult=8),
    ],
)
def test_study_options_build_run_and_change_the_network(options):
    base = dict(base_channels=8, channel_mults=(1, 2, 4), groups=4, dropout=0.0)
    torch.manual_seed(0)
    ref = randomised(UNet(UNetConfig(**base)))
    torch.manual_seed(0)
    model = randomised(UNet(UNetConfig(**base, **options)))
    x = torch.randn(2, 1, 28, 28)
    t, y = torch.tensor([10, 900]), torch.tensor([3, 10])
    out = model(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    differs = count_parameters(model) != count_parameters(ref) or not torch.allclose(out, ref(x, t, y), atol=1e-5)
    assert differs, f"{options} must change the network"


def test_study_options_leave_the_shipped_architecture_unchanged():
    from ddpmlib.checkpoint import read_config

    cfg = read_config("checkpoints/mnist")["model"]
    model = UNet(UNetConfig(**cfg))
    names = {k for k in model.state_dict()}
    assert "mid.1.qkv.weight" in names, "the bottleneck keeps its self-attention by default"
    assert not any("cbam" in k for k in names)
    assert all(type(m).__name__ != "BatchNorm2d" for m in model.modules())


def test_cbam_placement_and_no_attention():
    from ddpmlib.unet import Attention, CBAMBlock

    base = dict(base_channels=8, channel_mults=(1, 2, 4), groups=4)
    kinds = lambda m: [type(x).__name__ for x in m.modules() if isinstance(x, (Attention, CBAMBlock))]  # noqa: E731
    none = UNet(UNetConfig(**base, attention_resolutions=(), mid_attention=False))
    assert kinds(none) == []
    cbam14 = UNet(UNetConfig(**base, attention_type="cbam", attention_resolutions=(14,), mid_attention=False))
    assert set(kinds(cbam14)) == {"CBAMBlock"} and len(kinds(cbam14)) == 3  # one down, two up blocks at 14x14
    mid_only = UNet(UNetConfig(**base, attention_resolutions=(), mid_attention=True))
    assert kinds(mid_only) == ["Attention"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(norm="layer"), "norm must be one of"),
        (dict(attention_type="linear"), "attention_type must be one of"),
        (dict(kernel_size=4), "kernel_size must be odd"),
        (dict(kernel_size=0), "kernel_size must be an odd integer"),
        (dict(emb_mult=0), "emb_mult must be an integer >= 1"),
    ],
)
def test_study_option_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**bad)


def test_ema_update_copies_batchnorm_statistics():
    import copy

    from ddpmlib.train import ema_update

    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), groups=4, norm="batch", attention_resolutions=()))
    ema = copy.deepcopy(model).requires_grad_(False)
    model.train()
    model(torch.randn(4, 1, 28, 28) * 3 + 1, torch.tensor([1, 2, 3, 4]), None)  # updates running statistics
    ema_update(ema, model, 0.999)
    for (name, b), (_, e) in zip(model.named_buffers(), ema.named_buffers()):
        torch.testing.assert_close(e, b, msg=f"buffer {name} must be copied")
