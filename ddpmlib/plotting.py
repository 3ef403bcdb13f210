"""Plotting helpers: image grids, PNG and GIF files (written atomically)."""

from __future__ import annotations

import os

import torch
from PIL import Image

from .checkpoint import atomic_write


def to_pil_grid(x: torch.Tensor, nrow: int = 10, padding: int = 2, scale: int = 1) -> Image.Image:
    """Images (B, C, H, W) in [-1, 1] -> one PIL image, ``nrow`` images per row."""
    from torchvision.utils import make_grid

    grid = make_grid(
        x.detach().float().cpu().clamp(-1, 1),
        nrow=nrow,
        padding=padding,
        pad_value=1.0,
        value_range=(-1, 1),
        normalize=True,
    )
    arr = (grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)).numpy()
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 or (arr[:, :, 0] == arr[:, :, 1]).all() else arr)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_grid(x: torch.Tensor, path: str | os.PathLike, nrow: int = 10, scale: int = 1) -> None:
    img = to_pil_grid(x, nrow=nrow, scale=scale)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_gif(
    frames: list[Image.Image], path: str | os.PathLike, duration_ms: int = 60, final_hold_ms: int = 1000
) -> None:
    """An animated GIF of PIL frames; the last frame is held a little longer."""
    durations = [duration_ms] * (len(frames) - 1) + [final_hold_ms]
    atomic_write(
        path,
        lambda tmp: frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
        ),
    )
