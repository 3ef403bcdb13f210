"""Pictures in and out of the demo: images sent to it (checked before decoding), sketchpad drawings -> x_0,
image grids, GIF frames, the alpha_bar plot.

Images inside the demo are tensors (B, 1, 28, 28) in [-1, 1] as everywhere in ddpmlib (white ink = +1,
black background = -1); recorded trajectories are kept as uint8 (``ddpmlib.data.to_uint8``) to save memory.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from ddpmlib.data import to_uint8
from ddpmlib.plotting import to_pil_grid
from ddpmlib.schedules import NoiseSchedule

from . import defaults as D
from .checks import fail
from .steps import alpha_bar

SIZE = 28  # MNIST images are 28 x 28 ...
BOX = 20  # ... with the digit scaled to fit a 20 x 20 box and centred by its centre of mass
MODES = ("L", "RGB", "RGBA")  # other modes (palette, 16-bit, CMYK, ...) are converted to RGBA


def check_pixels(width: int, height: int) -> None:
    """Refuse an image with more than MAX_IMAGE_PIXELS pixels (known before it is decoded)."""
    if width * height > D.MAX_IMAGE_PIXELS:
        side = int(D.MAX_IMAGE_PIXELS**0.5)
        fail(
            f"The image is {width} x {height} pixels; the demo takes images of at most {side} x {side} pixels "
            f"(the canvas is 280 x 280). Send a smaller image."
        )


def shrink(im: Image.Image, side: int | None = None) -> Image.Image:
    """``im`` in mode L, RGB or RGBA with its longer side at most ``side`` (MAX_IMAGE_SIDE)."""
    side = side or D.MAX_IMAGE_SIDE
    if im.mode not in MODES:
        im = im.convert("RGBA")
    if max(im.size) > side:
        im = im.copy() if im.readonly else im
        im.thumbnail((side, side), Image.Resampling.BOX)
    return im


def open_image(source) -> Image.Image:
    """An image file (a path, bytes or a binary file object) decoded and shrunk, after checking its size.

    ``Image.open`` reads only the header, so the pixel count is checked before anything large is
    decoded; PIL's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is a second line."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        im = Image.open(source)
    except Image.DecompressionBombError:
        fail("The image is far too large; send an image of at most 2048 x 2048 pixels.")
    except (UnidentifiedImageError, ValueError, TypeError):
        fail("That file is not an image the demo can read; send a PNG, JPEG or WebP picture.")
    except OSError as e:
        fail(f"The image could not be read ({type(e).__name__}); send a PNG, JPEG or WebP picture.")
    check_pixels(*im.size)
    try:
        im.draft("RGB", (D.MAX_IMAGE_SIDE, D.MAX_IMAGE_SIDE))  # JPEG: decode at a reduced size directly
        im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        fail(f"The image could not be decoded ({type(e).__name__}: {str(e)[:60]}); send a PNG or JPEG picture.")
    return shrink(im)


def as_image_array(img) -> np.ndarray | None:
    """An image in any form the demo receives (array, PIL image, file path, bytes; None) -> a uint8-range
    array (H, W) or (H, W, C), at most MAX_IMAGE_SIDE on its longer side. Raises ``DemoError`` otherwise."""
    if img is None:
        return None
    if isinstance(img, (str, os.PathLike, bytes, bytearray)):
        img = open_image(img)
    if isinstance(img, Image.Image):
        check_pixels(*img.size)
        return np.asarray(shrink(img))
    if isinstance(img, dict) and "path" in img:  # a file reference as API clients send it
        return as_image_array(img["path"])
    try:
        arr = np.asarray(img)
    except (ValueError, TypeError):
        fail("The drawing is not an image.")
    if arr.dtype == object or arr.ndim not in (2, 3) or arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        fail(f"The drawing must be an image (height x width, with 1, 3 or 4 channels), got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or arr.size == 0:
        fail("The drawing must be an image of numbers.")
    check_pixels(arr.shape[1], arr.shape[0])
    if max(arr.shape[:2]) > D.MAX_IMAGE_SIDE:
        arr = np.asarray(shrink(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8).squeeze())))
    return arr


def drawing_to_x0(value, size: int = SIZE, box: int = BOX) -> torch.Tensor | None:
    """A sketchpad value (dark ink on a light or transparent canvas) -> x_0 (1, 1, size, size) in [-1, 1].

    ``value`` is what ``gr.Sketchpad`` passes (a dict whose "composite" is an RGBA array), or an array,
    PIL image or image file. The drawing is prepared the way MNIST was: cropped to the ink, scaled to
    fit a 20 x 20 box, and centred by its centre of mass in a 28 x 28 field, white on black. None if
    nothing is drawn; ``DemoError`` if it is not an image or too large.
    """
    img = value.get("composite") if isinstance(value, dict) and "composite" in value else value
    arr = as_image_array(img)
    if arr is None:
        return None
    arr = np.nan_to_num(arr.astype(np.float32), nan=255.0, posinf=255.0, neginf=0.0)
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


# alpha-bar_t written in Unicode, not as mathtext ($\bar\alpha_t$): matplotlib's mathtext parser keeps shared
# state and fails (ParseException) when several request threads draw figures at once; plain text has no parser.
ALPHA_BAR = "\u1fb1\u209c"  # ᾱ and a subscript t


def alpha_bar_figure(schedules: dict[str, NoiseSchedule], current: str, t: int) -> Figure:
    """alpha_bar_t of every schedule against the paper step t = 1..T, with ``current`` highlighted and
    the point (t, alpha_bar_t) marked (t = 0 is the clean image, alpha_bar_0 = 1). No text of it goes through
    mathtext, so figures may be built and rendered in several threads at once."""
    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    for name, s in schedules.items():
        steps = np.arange(0, s.T + 1)
        ab = np.concatenate([[1.0], s.alpha_bars.numpy()])
        ax.plot(steps, ab, lw=2.6 if name == current else 1.2, alpha=1.0 if name == current else 0.55, label=name)
    s = schedules[current]
    ab_t = alpha_bar(s, t)
    ax.axvline(t, color="0.3", ls="--", lw=0.8)
    ax.plot([t], [ab_t], "o", color="black", ms=6, zorder=5)
    # the note sits below the point while the curve is high (so that it stays clear of the title), and
    # to its left in the last third of the axis (so that it stays inside the plot)
    ax.annotate(
        f"t = {t}\n{ALPHA_BAR} = {ab_t:.3f}",
        (t, ab_t),
        textcoords="offset points",
        xytext=(-62 if t > 0.7 * s.T else 8, -34 if ab_t > 0.6 else 8),
        fontsize=9,
        parse_math=False,
    )
    ax.set_xlim(0, s.T)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel(ALPHA_BAR, parse_math=False)
    ax.set_title(f"{ALPHA_BAR} of each schedule (1 = the clean image, 0 = pure noise)", fontsize=9, parse_math=False)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
