"""One module per tab. Each offers ``validate(model, ...)`` (fast, no sampling; raises ``DemoError``) and
``run(model, ...)``, which returns or yields results as dicts keyed by output name ("xt", "info", ...).
The app maps the names to its components; nothing here builds or knows a Gradio component.

    generate.py   Generate: sample digits, record the trajectory, the timeline that replays it
    forward.py    Forward process: x_t from the closed form q(x_t | x_0)
    denoise.py    Draw and denoise: noise an image to step t, then denoise it towards a digit (SDEdit)
    compose.py    Digit × position: a (digit, position) model; the pairs never seen in training marked
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeline:
    """The state of a step slider: its range 0..maximum, its position, and whether it can be moved."""

    maximum: int
    value: int
    interactive: bool
