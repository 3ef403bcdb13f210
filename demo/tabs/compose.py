"""The Digit × position tab: a two-label model (``ddpmlib.shifted``: digits at half size in one quadrant of the
canvas, labelled (digit, position)) draws a digit where it is asked to, and the pairs it never saw together in
training (the checkpoint's data.holdout) are marked: there the model has to compose the two labels.

Guidance of scale w is applied in one of three ways (``D.COMPOSE_MODES``):

    joint     eps = (1 + w) eps(x_t, d, p) - w eps(x_t, no digit, no position)
    position  eps = (1 + w) eps(x_t, d, p) - w eps(x_t, d, no position)        (pushes towards p alone)
    compose   eps = eps(x_t) + (1 + w) [(eps(x_t, d) - eps(x_t)) + (eps(x_t, p) - eps(x_t))]   (Liu et al. 2022)

"anywhere" leaves the position out (its null value). Results are dicts with the keys of ``OUTPUTS``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ddpmlib.shifted import NULL_POSITION

from .. import defaults as D
from ..checks import check_cost, check_digit, check_number, check_seed, fail
from ..images import grid
from ..model import Progress, ShiftedModel, Unavailable

# images: a picture (the grid of samples); info: markdown (settings, progress); pair: markdown (seen or held out)
OUTPUTS = ("images", "info", "pair")
# ddpmlib.shifted's positions 0..3, in its order (0 top left, 1 top right, 2 bottom left, 3 bottom right)
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
POSITION_CHOICES = [*POSITIONS, D.ANYWHERE]  # the picker: the 2 x 2 quadrants, then "anywhere"
MODE_TEXT = {
    "joint": "guidance towards both labels",
    "position": "guidance towards the position only",
    "compose": "digit and position composed",
}


@dataclass(frozen=True)
class Request:
    digit: int
    position: int | None  # 0..3, None: anywhere (the position label left out)
    mode: str  # a key of D.COMPOSE_MODES
    guidance: float
    n: int
    steps: int
    seed: int
    held_out: bool | None  # never labelled together in training; None: the checkpoint does not say
    settings: str  # one line for the page
    notes: tuple[str, ...] = ()  # adjustments the visitor should know about (shown as warnings)

    @property
    def pairs(self) -> list[list[int]]:
        """The labels (digit, position) of every image, the position ``NULL_POSITION`` for anywhere."""
        p = NULL_POSITION if self.position is None else self.position
        return [[self.digit, p]] * self.n


def check_position(position) -> int | None:
    """A quadrant (its name, or its number 0-3 as in ddpmlib.shifted) -> 0..3; "anywhere" -> None."""
    if isinstance(position, str):
        name = position.strip().lower().replace("-", " ").replace("_", " ")
        if name == D.ANYWHERE:
            return None
        if name in POSITIONS:
            return POSITIONS.index(name)
        if name in ("0", "1", "2", "3"):
            return int(name)
    elif isinstance(position, int) and not isinstance(position, bool) and 0 <= position < len(POSITIONS):
        return position
    names = ", ".join(f"'{p}'" for p in POSITION_CHOICES)
    fail(f"The position must be one of {names} (or 0-3), got {str(position)[:40]!r}.")


def check_mode(mode) -> str:
    """A key of D.COMPOSE_MODES ("joint", "position", "compose"), or its label ("both labels", ...)."""
    for key, label in D.COMPOSE_MODES.items():
        if isinstance(mode, str) and mode.strip().lower() in (key, label):
            return key
    names = ", ".join(f"{label} ({key!r})" for key, label in D.COMPOSE_MODES.items())
    fail(f"How guidance is applied must be one of {names}; got {str(mode)[:40]!r}.")


def where(position: int | None) -> str:
    return D.ANYWHERE if position is None else f"at {POSITIONS[position]}"


def pair_text(model: ShiftedModel, digit: int, position: int | None) -> str:
    """Whether the pair was in the training data, for the page (markdown)."""
    if model.holdout is None:
        return (
            f"**{digit} {where(position)}**: this checkpoint does not record which pairs were held out of "
            "training (its config.json has no data section)."
        )
    if position is None:
        never = [POSITIONS[p] for d, p in sorted(model.holdout) if d == digit]
        also = f" (in training, {digit} was never labelled at the {' or the '.join(never)})" if never else ""
        return f"**{digit} anywhere**: the position is left out, so the model picks the quadrant{also}."
    name = POSITIONS[position]
    if model.held_out(digit, position):
        if model.holdout_rule == "unlabel":
            return (
                f"⚠ **{digit} at {name} was never labelled in the training data** ({digit}s were placed there, but "
                f"never with their position): the model has to compose it from the labelled {digit}s elsewhere "
                f"and the other digits at {name}."
            )
        return (
            f"⚠ **{digit} at {name} was never in the training data**: the model has to compose it from the "
            f"{digit}s it saw elsewhere and the other digits it saw at {name}."
        )
    return f"✓ **{digit} at {name}** was in the training data."


def legend(model, digit, position) -> str:
    """The 2 x 2 layout of the positions as a markdown table: the chosen quadrant in bold, the quadrants never
    seen with ``digit`` in training marked. Never raises (it follows the picker as it changes)."""
    if not isinstance(model, ShiftedModel):
        return ""
    try:
        d = check_digit(digit, allow_all=False)
        chosen = check_position(position)
    except ValueError:
        d, chosen = None, -1
    cells = []
    for p, name in enumerate(POSITIONS):
        cell = f"**▶ {name}**" if p == chosen else name
        if d is not None and model.held_out(d, p):
            cell += f" ⚠ never seen with {d}"
        cells.append(cell)
    anywhere = "**▶ anywhere**" if chosen is None else "anywhere"
    return (
        "| left half | right half |\n|---|---|\n"
        f"| {cells[0]} | {cells[1]} |\n| {cells[2]} | {cells[3]} |\n\n"
        f"Position: one quadrant of the 28 x 28 canvas, or {anywhere} (left out)."
    )


def validate(model, digit, position, mode, guidance, n_images, steps, seed, random_seed=False) -> Request:
    """Check every input of a request (cheap: no sampling); ``DemoError`` with a message otherwise. ``model`` is
    a ``ShiftedModel``, or ``Unavailable``, whose reason is then the message."""
    if isinstance(model, Unavailable):
        fail(model.reason)
    d = check_digit(digit, allow_all=False, purpose="to draw")
    p = check_position(position)
    mode = check_mode(mode)
    w = check_number("The guidance scale", guidance, 0, D.MAX_GUIDANCE, hint="0 means no guidance.")
    n = check_number("The number of images", n_images, 1, D.COMPOSE_MAX_IMAGES, integer=True)
    steps = check_number("The number of steps", steps, 1, model.T, integer=True, hint=f"(T = {model.T})")
    seed = check_seed(seed, random_seed)
    notes = ()
    if p is None and mode == "position" and w > 0:  # (d, null) against (d, null): guidance has nothing to add
        notes = (f"With '{D.ANYWHERE}' there is no position to guide towards; 'position only' runs with w = 0.",)
        w = 0.0
    check_cost(steps, n, w, compose=mode == "compose")
    settings = (
        f"digit {d} {where(p)}, {n} image(s), {MODE_TEXT[mode]} (w = {w:g}), "
        f"{D.SAMPLERS[D.COMPOSE_SAMPLER]} with {steps} steps, seed {seed}"
    )
    return Request(d, p, mode, w, n, steps, seed, model.held_out(d, p), settings, notes)


def run(model: ShiftedModel, req: Request, progress: Progress | None = None) -> Iterator[dict]:
    """Sample, streaming the images being denoised at most every ``model.stream_interval_s``; the last yield is
    the result: the grid of samples, the settings and whether the pair was seen in training."""
    pair = pair_text(model, req.digit, req.position)
    nrow = min(req.n, 4)
    yield {"info": f"Sampling: {req.settings} ...", "pair": pair}
    gen = torch.Generator(model.pipe.device).manual_seed(req.seed)
    it = model.sample_pairs(req.pairs, req.mode, D.COMPOSE_SAMPLER, req.steps, req.guidance, gen)
    sent = time.monotonic()  # the first picture after one interval: a fast run streams nothing
    x = None
    for i, (_, _, x, _) in enumerate(it):
        if progress is not None:
            progress(i + 1, req.steps)
        if i + 1 < req.steps and time.monotonic() - sent >= model.stream_interval_s:
            sent = time.monotonic()
            yield {"images": grid(x, nrow, D.SCREEN_SCALE), "info": f"Step {i + 1} of {req.steps}: {req.settings}"}
    yield {
        "images": grid(x.clamp(-1, 1), nrow, D.SCREEN_SCALE),
        "info": f"**Done after {req.steps} step(s)**: {req.settings}.",
        "pair": pair,
    }
