"""Helpers for the demo's tests and benchmark: a tiny random checkpoint and the app on a free local port."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch

from ddpmlib.checkpoint import save_checkpoint
from ddpmlib.unet import UNet, UNetConfig


def make_tiny_checkpoint(
    directory: str | os.PathLike, T: int = 50, seed: int = 0, data: dict | None = None, **model
) -> Path:
    """A random-init, fast checkpoint (a few thousand parameters, T steps) that loads like the real one.

    The layers that ddpmlib initialises to zero get small random weights, so the output depends on the
    input, the timestep and the label (as with a trained model). ``model`` overrides U-Net settings
    (``extra_labels=(4,)``: a (digit, position) model); ``data`` becomes the config's "data" section."""
    settings = dict(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), groups=4, dropout=0.0)
    cfg = UNetConfig(**{**settings, **model, "num_timesteps": T})
    gen = torch.Generator().manual_seed(seed)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    config = {"model": cfg.to_dict(), "diffusion": {"schedule": "linear", "T": T, "prediction_type": "eps"}}
    if data is not None:
        config["data"] = data
    return save_checkpoint(directory, config, ema_model=net)


def make_tiny_shifted_checkpoint(
    directory: str | os.PathLike, T: int = 50, seed: int = 0, holdout=((7, 2), (7, 3)), holdout_rule: str = "exclude"
) -> Path:
    """A tiny random (digit, position) checkpoint like checkpoints/shifted_mnist, with the data section that
    names its held-out pairs (the Digit × position tab reads them)."""
    data = {"dataset": "shifted_mnist", "holdout": [list(p) for p in holdout], "holdout_rule": holdout_rule}
    return make_tiny_checkpoint(directory, T=T, seed=seed, data=data, extra_labels=(4,))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(checkpoint, host: str = "127.0.0.1", **build_kwargs):
    """Build and launch the demo on a free port without blocking; yields its URL and closes it afterwards.
    ``build_kwargs`` go to ``build_demo`` (``shifted_checkpoint=...``: the Digit × position tab's model)."""
    from .app import build_demo, launch

    demo = build_demo(checkpoint, **build_kwargs)
    port = free_port(host)
    launch(demo, host=host, port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://{host}:{port}/", demo
    finally:
        demo.close()
