"""Input checks and the cost model. Every check raises ``DemoError`` with one sentence for the visitor;
the app shows it as a message in the page (``gr.Error``), the tests read it directly.

Values may arrive as anything an API client sends: numbers, numeric strings, None, lists, NaN.
"""

from __future__ import annotations

import math
import secrets

from . import defaults as D


class DemoError(ValueError):
    """A request the demo refuses; the message says what to change."""


def fail(message: str):
    raise DemoError(message)


def _fmt(x: float, integer: bool) -> str:
    return str(int(x)) if integer else f"{x:g}"


def check_number(name: str, value, lo: float, hi: float, integer: bool = False, hint: str = ""):
    """``value`` as an int (``integer``) or float in [lo, hi]; a message naming ``name`` otherwise."""
    if value is None or isinstance(value, str) and not value.strip():
        fail(f"Please enter a value for {name}.")
    if isinstance(value, bool):  # JSON true/false from an API client: not a number, although Python calls it one
        fail(f"{name} must be a number, got {value!r}.")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        fail(f"{name} must be a number, got {str(value)[:40]!r}.")
    if not math.isfinite(x):
        fail(f"{name} must be a finite number, got {str(value)[:40]!r}.")
    if integer and x != int(x):
        fail(f"{name} must be a whole number, got {value!r}.")
    if not lo <= x <= hi:
        fail(
            f"{name} must be between {_fmt(lo, integer)} and {_fmt(hi, integer)}, got {str(value)[:40]}."
            + (f" {hint}" if hint else "")
        )
    return int(x) if integer else x


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        fail(f"{name} must be one of {', '.join(map(str, choices))}; got {str(value)[:40]!r}.")
    return value


def check_digit(digit, allow_all: bool = True, purpose: str = "to denoise towards") -> int | str:
    """A digit 0-9 (int), or ``ONE_OF_EACH`` where ``allow_all``; ``purpose`` ends the message otherwise."""
    if allow_all and digit == D.ONE_OF_EACH:
        return D.ONE_OF_EACH
    d = str(digit).strip() if isinstance(digit, (str, int)) and not isinstance(digit, bool) else ""
    if d.isdigit() and 0 <= int(d) <= 9:
        return int(d)
    if allow_all:
        fail(f"Pick a digit from 0 to 9 (or '{D.ONE_OF_EACH}'), got {str(digit)[:40]!r}.")
    fail(f"Pick one digit from 0 to 9 {purpose}, got {str(digit)[:40]!r}.")


def check_sampler(sampler) -> str:
    s = sampler.lower() if isinstance(sampler, str) else None
    if s not in D.SAMPLERS:
        names = ", ".join(f"{label} ({key!r})" for key, label in D.SAMPLERS.items())
        fail(f"The sampler must be one of {names}; got {str(sampler)[:40]!r}.")
    return s


def check_seed(seed, random_seed=False) -> int:
    if random_seed is True:
        return secrets.randbelow(D.MAX_SEED + 1)
    if random_seed not in (False, None):
        fail(f"'random seed' must be true or false, got {str(random_seed)[:40]!r}.")
    return check_number("The seed", seed, 0, D.MAX_SEED, integer=True, hint="Or tick 'random seed'.")


# ---------------------------------------------------------------- the cost of a sampling request


def passes(guidance: float, compose: bool = False) -> int:
    """Network evaluations per image and step: 3 when composing (digit, position and neither: ComposedLabels),
    2 with guidance (with and without the label), 1 without."""
    return 3 if compose else 2 if guidance > 0 else 1


def cost(steps: int, batch: int, guidance: float, compose: bool = False) -> float:
    """Network evaluations of one image that a request needs: steps x (batch x passes + STEP_COST).

    Guidance evaluates every image twice (with and without the digit) in one doubled batch; composing
    (``ddpmlib.shifted.ComposedLabels``) three times, in one tripled batch."""
    return steps * (batch * passes(guidance, compose) + D.STEP_COST)


def limits_text(compose: bool = False) -> str:
    """The limit as stated in the page (``compose``: for the Digit × position tab)."""
    factors = "× 3 to compose, × 2 with guidance, × 1 without" if compose else "× 2 with guidance, × 1 without"
    return (
        f"Work per request: steps × (images {factors}, + {D.STEP_COST:g}) ≤ {D.MAX_COST}, "
        f"about {D.MAX_COST_SECONDS} s on a 2-core CPU."
    )


def check_cost(steps: int, batch: int, guidance: float, what: str = "images", compose: bool = False) -> None:
    """Refuse a request that would take much longer than MAX_COST_SECONDS, saying what to lower."""
    c = cost(steps, batch, guidance, compose)
    if c <= D.MAX_COST:
        return
    g = passes(guidance, compose)
    max_steps = int(D.MAX_COST // (batch * g + D.STEP_COST))
    max_batch = int((D.MAX_COST / steps - D.STEP_COST) // g)
    options = [f"at most {max_steps} steps" if max_steps >= 1 else None]
    if max_batch >= 1:
        options.append(f"at most {max_batch} {what if max_batch != 1 else what.removesuffix('s')}")
    if compose and cost(steps, batch, 0) <= D.MAX_COST:
        options.append("'both labels' with guidance 0 (a third of the work)")
    elif not compose and guidance > 0 and cost(steps, batch, 0) <= D.MAX_COST:
        options.append("guidance 0 (it halves the work)")
    factor = " × 3 to compose" if compose else " × 2 for guidance" if guidance > 0 else ""
    fail(
        f"This request is too big for the demo: {steps} steps × {batch} {what}{factor} is {c:g} units of work, "
        f"more than {D.MAX_COST} (about {D.MAX_COST_SECONDS} s). Lower it to "
        + " or ".join(o for o in options if o)
        + "."
    )
