import os
from pathlib import Path

import pytest
import torch

from ddpmlib.checkpoint import save_checkpoint
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


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """An inference checkpoint of a randomly initialised tiny model with T = 20."""
    torch.manual_seed(0)
    cfg = tiny_unet_config()
    model = UNet(cfg)
    with torch.no_grad():  # the zero-initialised output layers would make every output 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "ckpt"
    save_checkpoint(
        path, {"model": cfg.to_dict(), "diffusion": {"schedule": "linear", "T": 20, "prediction_type": "eps"}}, model
    )
    return path


@pytest.fixture
def mnist_root():
    root = os.environ.get("DDPM_DATA_ROOT")
    if not root or not (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("MNIST not available: set DDPM_DATA_ROOT to a folder holding MNIST/raw/ (CI uses ../shared/data)")
    return root
