"""The Forward process tab: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps in closed form (Ho et
al. 2020, Eq. 4) for paper step t (0 = the clean image), beside alpha_bar_t of every schedule.
Results are dicts with the keys of ``OUTPUTS``."""

from __future__ import annotations

import math

import torch

from ddpmlib.diffusion import q_sample

from ..checks import check_choice, check_number
from ..images import alpha_bar_figure, grid
from ..model import DemoModel
from ..steps import alpha_bar, describe, to_index

# xt, strip: pictures; plot: a matplotlib figure; info: markdown
OUTPUTS = ("xt", "strip", "plot", "info")
STRIP = 11  # pictures in the strip: t = 0, T/10, ..., T


def validate(model: DemoModel, source, image_number, traj, schedule, t) -> tuple[str, int]:
    """Check everything but the drawing itself; returns (schedule, t)."""
    schedule = check_choice("The noise schedule", schedule, list(model.schedules))
    t = check_number("t", t, 0, model.T, integer=True, hint=f"(T = {model.T})")
    model.check_source(source, image_number, traj)
    return schedule, t


def run(model: DemoModel, source, drawing, image_number, traj, schedule, t) -> dict:
    schedule, t = validate(model, source, image_number, traj, schedule, t)
    s = model.schedules[schedule]
    fig = alpha_bar_figure(model.schedules, schedule, t)
    x0 = model.source_image(source, drawing, image_number, traj)
    if x0 is None:
        return {
            "xt": None,
            "strip": None,
            "plot": fig,
            "info": "The drawing is empty: draw a digit on the canvas (or start from a generated image).",
        }
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))  # the same noise at every t

    def noised(step: int) -> torch.Tensor:
        return x0 if step == 0 else q_sample(s, x0, torch.tensor([to_index(step)]), noise=eps)

    strip_steps = [round(k * model.T / (STRIP - 1)) for k in range(STRIP)]
    strip = grid(torch.cat([noised(k) for k in strip_steps]), nrow=STRIP, scale=2)
    if t == 0:
        info = f"**{schedule} schedule**, t = 0: x_0 itself, no noise yet."
    else:
        ab = alpha_bar(s, t)
        info = (
            f"**{schedule} schedule**, {describe(s, t)}\n\n"
            f"x_t = {math.sqrt(ab):.3f} · x_0 + {math.sqrt(1 - ab):.3f} · ε"
        )
    info += f"\n\nStrip below: the same image and noise at t = {', '.join(map(str, strip_steps))}."
    return {"xt": grid(noised(t), 1, 8), "strip": strip, "plot": fig, "info": info}
