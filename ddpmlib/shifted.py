"""Shifted digits (notebook 10): can a model compose two labels it never saw together?

Every MNIST digit is shrunk to half size and placed in one of the four quadrants of the canvas::

    position 0 | position 1          (0 top left, 1 top right,
    -----------+-----------           2 bottom left, 3 bottom right)
    position 2 | position 3

and labelled with the pair (digit, position). Some pairs are held out of training (by default the digit 7
at positions 2 and 3), and for a share of the images (``p_unlabel_position``, default one half) the position
label is left out (set to its null value 4). A model that draws a 7 at position 3 when asked has composed
"seven" (learnt at positions 0 and 1) with "bottom right" (learnt from the other digits).

The held-out pairs are removed in one of two ways (``holdout_rule``): ``"exclude"`` never places those digits
there (the model never sees a 7 at the bottom), ``"unlabel"`` places them there but never says where.

The evaluation helpers score a generated image for a requested (digit, position): is the crop at that
position recognised as the digit by the shipped MNIST classifier (``digit_accuracy``), and does most of the
ink lie in that quadrant (``position_mass``)?
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

NUM_POSITIONS = 4
NULL_POSITION = NUM_POSITIONS  # the position label's null value
DEFAULT_HOLDOUT = ((7, 2), (7, 3))


def quadrant_slices(position: int, canvas: int) -> tuple[slice, slice]:
    """Rows and columns of quadrant ``position`` (0 top left, 1 top right, 2 bottom left, 3 bottom right)."""
    if not 0 <= position < NUM_POSITIONS:
        raise ValueError(f"position must be 0..{NUM_POSITIONS - 1}, got {position}")
    half = canvas // 2
    row, col = divmod(position, 2)
    return slice(row * half, (row + 1) * half), slice(col * half, (col + 1) * half)


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] -> (N, 1, size, size), area-averaged (no aliasing when halving)."""
    return F.interpolate(images, size=(size, size), mode="area")


def place(digits: torch.Tensor, positions: torch.Tensor, canvas: int) -> torch.Tensor:
    """Put each (1, canvas/2, canvas/2) digit into its quadrant of a black (-1) canvas -> (N, 1, canvas, canvas)."""
    out = torch.full((len(digits), 1, canvas, canvas), -1.0, dtype=digits.dtype)
    for p in range(NUM_POSITIONS):
        idx = (positions == p).nonzero().flatten()
        rows, cols = quadrant_slices(p, canvas)
        out[idx, :, rows, cols] = digits[idx]
    return out


def draw_positions(
    digits: torch.Tensor,
    holdout=DEFAULT_HOLDOUT,
    holdout_rule: str = "exclude",
    p_unlabel_position: float = 0.5,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each digit goes, and its position label (``NULL_POSITION`` where it is left out), both (N,).

    Positions are uniform over the quadrants a digit may take: all four, less the held-out ones under
    ``"exclude"``. Under ``"unlabel"`` every quadrant is allowed and the held-out pairs lose their position
    label. Then each remaining position label is dropped with probability ``p_unlabel_position``.
    """
    if holdout_rule not in ("exclude", "unlabel"):
        raise ValueError(f"holdout_rule must be 'exclude' or 'unlabel', got {holdout_rule!r}")
    held = {(int(d), int(p)) for d, p in holdout}
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(len(digits), generator=g, dtype=torch.float64)
    positions = torch.empty(len(digits), dtype=torch.long)
    for d in digits.unique().tolist():
        allowed = [p for p in range(NUM_POSITIONS) if holdout_rule == "unlabel" or (d, p) not in held]
        if not allowed:
            raise ValueError(f"data.holdout leaves digit {d} no position to be placed at")
        idx = (digits == d).nonzero().flatten()
        choice = (u[idx] * len(allowed)).long().clamp_(max=len(allowed) - 1)
        positions[idx] = torch.tensor(allowed)[choice]
    drop = torch.rand(len(digits), generator=g) < p_unlabel_position
    for d, p in held:
        drop |= (digits == d) & (positions == p)
    labels = torch.where(drop, torch.full_like(positions, NULL_POSITION), positions)
    return positions, labels


class ShiftedMNIST(Dataset):
    """MNIST digits at half size in one of four quadrants, as a torchvision-style ``Dataset``.

    ``dataset[i]`` is ``(image, label)``: image (1, canvas, canvas) float32 in [-1, 1], label (2,) int64 =
    (digit, position), position ``NULL_POSITION`` (4) where it is left out. ``positions`` holds where every
    digit really is (labelled or not). ``tensors()`` gives everything at once, for ``ddpmlib.train``.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        canvas: int = 28,
        holdout=DEFAULT_HOLDOUT,
        holdout_rule: str = "exclude",
        p_unlabel_position: float = 0.5,
        seed: int = 0,
        download: bool = True,
        classes: list[int] | None = None,
    ):
        from .data import load_mnist

        if canvas % 2:
            raise ValueError(f"canvas must be even (four equal quadrants), got {canvas}")
        images, digits = load_mnist(train=train, root=root, download=download)
        if classes is not None:
            keep = torch.isin(digits, torch.tensor(classes))
            images, digits = images[keep], digits[keep]
        self.positions, position_labels = draw_positions(digits, holdout, holdout_rule, p_unlabel_position, seed)
        self.images = place(shrink(images, canvas // 2), self.positions, canvas)
        self.labels = torch.stack([digits, position_labels], dim=1)  # (N, 2)
        self.holdout = tuple((int(d), int(p)) for d, p in holdout)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels


# --- evaluation ----------------------------------------------------------------------------------------------


def crop(images: torch.Tensor, positions, size: int = 28) -> torch.Tensor:
    """The quadrant ``positions[i]`` of image i, scaled back up to ``size`` (the classifier's input)."""
    positions = torch.as_tensor(positions).flatten().tolist()
    if len(positions) == 1:
        positions = positions * len(images)
    canvas = images.shape[-1]
    parts = []
    for img, p in zip(images, positions):
        rows, cols = quadrant_slices(p, canvas)
        parts.append(img[:, rows, cols])
    return F.interpolate(torch.stack(parts), size=(size, size), mode="bilinear", align_corners=False)


def position_mass(images: torch.Tensor, positions) -> torch.Tensor:
    """Share of the ink of image i that lies in quadrant ``positions[i]``, (B,) in [0, 1] (ink = (x + 1) / 2)."""
    ink = (images.clamp(-1, 1) + 1) / 2
    positions = torch.as_tensor(positions).flatten().tolist()
    if len(positions) == 1:
        positions = positions * len(images)
    inside = []
    for i, p in enumerate(positions):
        rows, cols = quadrant_slices(p, images.shape[-1])
        inside.append(ink[i, :, rows, cols].sum())
    return torch.stack(inside) / ink.flatten(1).sum(1).clamp_min(1e-8)


def score_pairs(classifier, images: torch.Tensor, digits, positions, mass_threshold: float = 0.5) -> dict:
    """Per image: the classifier's digit on the requested quadrant, whether it is right, the ink share in that
    quadrant and whether it exceeds ``mass_threshold``; plus ``both`` (right digit at the right place)."""
    from .classifier import classify

    digits, positions = torch.as_tensor(digits).cpu(), torch.as_tensor(positions).cpu()
    images = images.cpu()
    preds, _ = classify(classifier, crop(images, positions))
    mass = position_mass(images, positions)
    digit_ok = preds.cpu() == digits
    place_ok = mass > mass_threshold
    return {"pred": preds.cpu(), "digit_ok": digit_ok, "mass": mass, "place_ok": place_ok, "both": digit_ok & place_ok}


def pair_grid(num_classes: int = 10) -> torch.Tensor:
    """Every (digit, position) pair once, digit-major: (num_classes * 4, 2)."""
    digits = torch.arange(num_classes).repeat_interleave(NUM_POSITIONS)
    return torch.stack([digits, torch.arange(NUM_POSITIONS).repeat(num_classes)], dim=1)


def guidance_labels(pairs: torch.Tensor, mode: str) -> torch.Tensor | None:
    """The labels of the unconditional term of classifier-free guidance for ``pairs`` (B, 2):
    ``"joint"``: both left out (None: the sampler's default); ``"position"``: the digit kept, the position left
    out, so that guidance pushes only towards the position; ``"digit"``: the position kept."""
    if mode == "joint":
        return None
    out = pairs.clone()
    if mode == "position":
        out[:, 1] = NULL_POSITION
    elif mode == "digit":
        out[:, 0] = 10
    else:
        raise ValueError(f"guidance mode must be joint, position or digit, got {mode!r}")
    return out


class ComposedLabels(torch.nn.Module):
    """Conjunction of separately conditioned outputs (Liu et al. 2022, "Compositional Visual Generation with
    Composable Diffusion Models", Eq. 10): for labels (digit, position),

        out(x, t | d, p) = out(x, t) + (1 + w) [(out(x, t | d) - out(x, t)) + (out(x, t | p) - out(x, t))]

    where out(x, t | d) leaves the position out and out(x, t | p) the digit. With w = 0 it is
    out(x | d) + out(x | p) - out(x): each label's contribution is learnt from all the images that carry it,
    never from the pair together. Wraps a two-label network (``UNetConfig.extra_labels=(4,)``) so that any
    sampler can use it; the output is linear in the network's, so it works for eps, x_0 and v targets alike.
    Costs three network passes per step."""

    def __init__(self, model: torch.nn.Module, guidance_scale: float = 0.0):
        super().__init__()
        self.model = model
        self.guidance_scale = guidance_scale
        self.config = model.config
        self.null_label = model.null_label
        self.null_labels = model.null_labels

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self.model(x, t, None)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        nulls = torch.tensor(self.null_labels, device=y.device).expand_as(y)
        digit_only, position_only = y.clone(), y.clone()
        digit_only[:, 1], position_only[:, 0] = nulls[:, 1], nulls[:, 0]
        out = self.model(torch.cat([x, x, x]), torch.cat([t, t, t]), torch.cat([digit_only, position_only, nulls]))
        c_digit, c_position, uncond = out.chunk(3)
        return uncond + (1 + self.guidance_scale) * ((c_digit - uncond) + (c_position - uncond))


@torch.no_grad()
def evaluate_pairs(
    pipe,
    classifier,
    n_per_pair: int,
    guidance_scale: float = 0.0,
    mode: str = "joint",
    sampler: str = "dpmpp",
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 400,
    progress: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Draw ``n_per_pair`` images for every (digit, position) pair and score them with ``score_pairs``.

    ``mode`` is how guidance of scale ``guidance_scale`` is applied (``guidance_labels``), or ``"compose"``: the
    pair is drawn from ``ComposedLabels`` (each label conditioned on its own, then added up).

    Returns the pairs (P, 2) and a dict of (P, n_per_pair) tensors (``digit_ok``, ``place_ok``, ``both``,
    ``mass``, ``pred``) plus ``images`` (P, n_per_pair, 1, H, W). Batch i is drawn with seed ``seed + i``, so the
    result depends only on the arguments (and the machine's arithmetic)."""
    from tqdm.auto import tqdm

    if mode == "compose":
        from .pipeline import DDPMPipeline

        composed = ComposedLabels(pipe.model, guidance_scale)
        pipe, guidance_scale, mode = DDPMPipeline(composed, pipe.schedule, pipe.prediction_type), 0.0, "joint"
        label = f"compose w={composed.guidance_scale:g}"
    else:
        label = f"{mode} w={guidance_scale:g}"
    pairs = pair_grid(pipe.num_classes)
    labels = pairs.repeat_interleave(n_per_pair, dim=0)  # pair-major
    chunks = list(torch.split(labels, batch_size))
    images = []
    for i, y in enumerate(tqdm(chunks, desc=label, disable=not progress)):
        uncond = guidance_labels(y, mode) if guidance_scale else None
        images.append(
            pipe.generate(
                y, sampler=sampler, steps=steps, guidance_scale=guidance_scale, seed=seed + i, uncond_labels=uncond
            ).cpu()
        )
    images = torch.cat(images)
    scores = score_pairs(classifier, images, labels[:, 0], labels[:, 1])
    shaped = {k: v.reshape(len(pairs), n_per_pair) for k, v in scores.items()}
    shaped["images"] = images.reshape(len(pairs), n_per_pair, *images.shape[1:])
    return pairs, shaped
