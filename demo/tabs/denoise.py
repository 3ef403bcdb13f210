"""The Draw and denoise tab: noise an image to paper step t, then run the reverse process from there
towards a chosen digit (SDEdit, Meng et al. 2022). Results are dicts with the keys of ``OUTPUTS``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ddpmlib.diffusion import q_sample

from .. import defaults as D
from ..checks import check_cost, check_digit, check_number, check_sampler, check_seed
from ..images import grid
from ..model import DemoModel, Progress
from ..steps import describe, to_index

# seen, noised, result: pictures; info: markdown
OUTPUTS = ("seen", "noised", "result", "info")
EMPTY = "The drawing is empty: draw a digit on the canvas (or start from a generated image)."


@dataclass(frozen=True)
class Request:
    digit: int
    t: int  # paper step the image is noised to
    steps: int
    sampler: str
    guidance: float
    n: int
    seed: int
    notes: tuple[str, ...] = ()  # adjustments the visitor should know about (shown as warnings)


def validate(
    model: DemoModel, source, image_number, traj, digit, t, steps, sampler, guidance, n_variations, seed
) -> Request:
    """Check every input but the drawing itself (cheap: no sampling); ``DemoError`` with a message otherwise."""
    d = check_digit(digit, allow_all=False)
    t = check_number("The noise level t", t, 1, model.T, integer=True, hint=f"(T = {model.T})")
    steps = check_number("The number of steps", steps, 1, model.T, integer=True, hint=f"(T = {model.T})")
    sampler = check_sampler(sampler)
    w = check_number("The guidance scale", guidance, 0, D.MAX_GUIDANCE, hint="0 means no guidance; 1-5 is typical.")
    n = check_number("The number of variations", n_variations, 1, D.MAX_VARIATIONS, integer=True)
    seed = check_seed(seed)
    model.check_source(source, image_number, traj)
    notes = ()
    if steps > t:
        notes = (f"From t = {t} there are only {t} steps down to x_0; using {t} steps instead of {steps}.",)
        steps = t
    check_cost(steps, n, w, "variations")
    return Request(d, t, steps, sampler, w, n, seed, notes)


def run(model: DemoModel, req: Request, source, drawing, image_number, traj, progress: Progress | None = None):
    """Yield the picture as the model sees it, the noised x_t, the result (streamed while denoising), info."""
    x0 = model.source_image(source, drawing, image_number, traj)
    if x0 is None:
        yield {"info": EMPTY}
        return
    yield from _denoise(model, req, x0, progress)


def _denoise(model: DemoModel, req: Request, x0: torch.Tensor, progress: Progress | None) -> Iterator[dict]:
    pipe, n, steps = model.pipe, req.n, req.steps
    gen = torch.Generator(pipe.device).manual_seed(req.seed)
    x0 = x0.to(pipe.device).expand(n, -1, -1, -1)
    tt = torch.full((n,), to_index(req.t), dtype=torch.long, device=pipe.device)
    xt = q_sample(pipe.schedule, x0, tt, generator=gen)  # a different noise draw for every variation
    nrow = min(n, 4)
    seen, noised = grid(x0[:1], 1, 8), grid(xt, nrow, D.SCREEN_SCALE)
    head = (
        f"Noised to {describe(model.schedule, req.t)}; denoising towards **{req.digit}** with "
        f"{D.SAMPLERS[req.sampler]}, {steps} step(s), w = {req.guidance:g}"
    )
    yield {"seen": seen, "noised": noised, "result": None, "info": head + " ..."}
    sent = time.monotonic()
    x = xt
    it = model.sample([req.digit] * n, req.sampler, steps, req.guidance, 0.0, gen, x_start=xt, t_start=req.t)
    for i, (_, _, x, _) in enumerate(it):
        if progress is not None:
            progress(i + 1, steps)
        if i + 1 < steps and time.monotonic() - sent >= model.stream_interval_s:
            sent = time.monotonic()
            yield {"result": grid(x, nrow, D.SCREEN_SCALE), "info": f"{head}: step {i + 1} of {steps}"}
    result = grid(x.clamp(-1, 1), nrow, D.SCREEN_SCALE)
    yield {"seen": seen, "noised": noised, "result": result, "info": f"{head}: done (seed {req.seed})."}
