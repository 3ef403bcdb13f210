"""Shared test helpers: one tiny U-Net config, one tiny-checkpoint factory, one MNIST-root fixture."""

import os
from pathlib import Path

import pytest
import torch

from ddpmlib.checkpoint import save_checkpoint
from ddpmlib.data import RAW_FILES
from ddpmlib.unet import UNet, UNetConfig

REPO = Path(__file__).resolve().parent.parent

# tiny tensors: one thread avoids OpenMP barrier stalls when the machine is busy
torch.set_num_threads(1)


def tiny_unet_config(**kw) -> UNetConfig:
    """A U-Net small enough for unit tests (a few thousand parameters)."""
    base = dict(
        base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), groups=4, dropout=0.0
    )
    base.update(kw)
    return UNetConfig(**base)


def make_tiny_checkpoint(directory, T: int = 20, prediction_type: str = "eps", seed: int = 0, **model) -> Path:
    """An inference checkpoint of a randomly initialised tiny model with T steps, written to ``directory``.

    Every weight gets small random noise on top of its initial value: the layers that ddpmlib initialises
    to zero would otherwise make every output 0, and the output should depend on x_t, t and the label."""
    torch.manual_seed(seed)
    cfg = tiny_unet_config(num_timesteps=T, **model)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = {"model": cfg.to_dict(), "diffusion": {"schedule": "linear", "T": T, "prediction_type": prediction_type}}
    return save_checkpoint(directory, config, net)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """An inference checkpoint of a randomly initialised tiny model with T = 20 (see make_tiny_checkpoint)."""
    return make_tiny_checkpoint(tmp_path / "ckpt")


@pytest.fixture(scope="session")
def mnist_root() -> str:
    """$DDPM_DATA_ROOT if it holds the four MNIST files (CI: ../shared/data); else the test is skipped."""
    root = os.environ.get("DDPM_DATA_ROOT")
    if not root or not all((Path(root) / "MNIST" / "raw" / f).is_file() for f in RAW_FILES):
        pytest.skip("needs MNIST: set DDPM_DATA_ROOT to a directory holding MNIST/raw/*-ubyte (CI: ../shared/data)")
    return str(Path(root).resolve())
