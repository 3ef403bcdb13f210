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
