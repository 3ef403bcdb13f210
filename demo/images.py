"""Pictures in and out of the demo: sketchpad drawings -> x_0, image grids, GIF frames, the alpha_bar plot.

Images inside the demo are tensors (B, 1, 28, 28) in [-1, 1] as everywhere in ddpmlib (white ink = +1,
black background = -1); recorded trajectories are kept as uint8 (``ddpmlib.data.to_uint8``) to save memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ddpmlib.data import to_uint8
from ddpmlib.plotting import to_pil_grid
from ddpmlib.schedules import NoiseSchedule

SIZE = 28  # MNIST images are 28 x 28 ...
BOX = 20  # ... with the digit scaled to fit a 20 x 20 box and centred by its centre of mass


def drawing_to_x0(value, size: int = SIZE, box: int = BOX) -> torch.Tensor | None:
    """A sketchpad value (dark ink on a light or transparent canvas) -> x_0 (1, 1, size, size) in [-1, 1].

    ``value`` is what ``gr.Sketchpad`` passes (a dict whose "composite" is an RGBA array), or an array or
    PIL image. The drawing is prepared the way MNIST was: cropped to the ink, scaled to fit a 20 x 20
    box, and centred by its centre of mass in a 28 x 28 field, white on black. None if nothing is drawn.
    """
    img = value.get("composite") if isinstance(value, dict) else value
    if img is None:
        return None
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        ink = 1.0 - arr / 255.0
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        ink = 1.0 - arr[:, :, :3].mean(axis=2) / 255.0  # dark strokes are ink
        if arr.shape[2] == 4:
            ink = ink * arr[:, :, 3] / 255.0  # transparent pixels are background
    else:
        return None
    ink = np.clip(ink, 0.0, 1.0)
    rows, cols = np.nonzero(ink > 0.1)
    if len(rows) == 0:
        return None
    # 1. crop to the ink's bounding box and scale its longer side to ``box`` pixels
    crop = torch.from_numpy(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].copy())
    h, w = crop.shape
    k = box / max(h, w)
    new_h, new_w = max(1, round(h * k)), max(1, round(w * k))
    small = F.interpolate(crop[None, None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    small = small[0, 0].clamp(min=0)
    small = small / small.max().clamp(min=1e-6)  # strokes as bright as MNIST's
    # 2. paste it so that its centre of mass lands in the middle of the field
    ys, xs = torch.arange(new_h, dtype=torch.float32), torch.arange(new_w, dtype=torch.float32)
    mass = small.sum()
    cy, cx = float((small.sum(1) * ys).sum() / mass), float((small.sum(0) * xs).sum() / mass)
    top = min(max(round(size / 2 - 0.5 - cy), 0), size - new_h)
    left = min(max(round(size / 2 - 0.5 - cx), 0), size - new_w)
    field = torch.zeros(size, size)
    field[top : top + new_h, left : left + new_w] = small
    return (field * 2 - 1)[None, None]  # (1, 1, H, W), ink = +1


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (clipped) -> uint8 on the CPU, for storing trajectories."""
    return to_uint8(x.detach().float().cpu())


def from_u8(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def grid(x: torch.Tensor, nrow: int = 10, scale: int = 2) -> Image.Image:
    """(B, 1, H, W) in [-1, 1] (or uint8) -> a grayscale PIL grid, ``scale`` x enlarged without blurring."""
    if x.dtype == torch.uint8:
        x = from_u8(x)
    return to_pil_grid(x, nrow=nrow, scale=scale).convert("L")


def _font():
    return ImageFont.load_default()


def labelled(panels: list[tuple[str, Image.Image]], caption: str = "", gap: int = 12) -> Image.Image:
    """Panels side by side, each with a title above it, and a caption line below (one GIF frame)."""
    font = _font()
    top, bottom = 16, 18 if caption else 4
    width = sum(img.width for _, img in panels) + gap * (len(panels) - 1)
    height = max(img.height for _, img in panels) + top + bottom
    out = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(out)
    x = 0
    for title, img in panels:
        draw.text((x + 2, 2), title, fill=0, font=font)
        out.paste(img.convert("L"), (x, top))
        x += img.width + gap
    if caption:
        draw.text((2, height - bottom + 3), caption, fill=0, font=font)
    return out


def alpha_bar_figure(schedules: dict[str, NoiseSchedule], current: str, t: int) -> Figure:
    """alpha_bar_t of every schedule against the paper step t = 1..T, with ``current`` highlighted and
    the point (t, alpha_bar_t) marked (t = 0 is the clean image, alpha_bar_0 = 1)."""
    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    for name, s in schedules.items():
        steps = np.arange(0, s.T + 1)
        ab = np.concatenate([[1.0], s.alpha_bars.numpy()])
        ax.plot(steps, ab, lw=2.6 if name == current else 1.2, alpha=1.0 if name == current else 0.55, label=name)
    s = schedules[current]
    ab_t = 1.0 if t == 0 else float(s.alpha_bars[t - 1])
    ax.axvline(t, color="0.3", ls="--", lw=0.8)
    ax.plot([t], [ab_t], "o", color="black", ms=6, zorder=5)
    ax.annotate(
        f"t = {t}\n" + r"$\bar\alpha_t$" + f" = {ab_t:.3f}",
        (t, ab_t),
        textcoords="offset points",
        xytext=(8, 6),
        fontsize=9,
    )
    ax.set_xlim(0, s.T)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel(r"$\bar\alpha_t$")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
