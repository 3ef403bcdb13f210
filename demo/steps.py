"""Paper steps and tensor indices, converted here and nowhere else.

The page speaks the paper's language: the forward process runs t = 1..T, and t = 0 is the clean image x_0.
ddpmlib indexes its schedule tensors by t - 1 = 0..T-1 (see ddpmlib/schedules.py). Every other module of
the demo works with paper steps and calls ``to_index`` only where it hands a step to ddpmlib.
"""

from __future__ import annotations

from ddpmlib.schedules import NoiseSchedule


def to_index(t: int) -> int:
    """Paper step t = 1..T -> ddpmlib's index t - 1."""
    if t < 1:
        raise ValueError(f"paper step t must be >= 1 to have a tensor index, got {t}")
    return t - 1


def to_paper(index: int) -> int:
    """ddpmlib's index 0..T-1 -> paper step t = index + 1."""
    return index + 1


def alpha_bar(schedule: NoiseSchedule, t: int) -> float:
    """alpha_bar_t for paper step t, with alpha_bar_0 = 1 (the clean image)."""
    return 1.0 if t == 0 else float(schedule.alpha_bars[to_index(t)])


def describe(schedule: NoiseSchedule, t: int) -> str:
    """'t = 917 of 1000 · ᾱ_t = ... · SNR = ...' for paper step t (0: the clean image)."""
    if t == 0:
        return "t = 0 (the clean image) · ᾱ = 1 · SNR = ∞"
    ab, snr = alpha_bar(schedule, t), float(schedule.snr[to_index(t)])
    return f"t = {t} of {schedule.T} · ᾱ_t = {ab:.4g} · SNR = ᾱ_t / (1 − ᾱ_t) = {snr:.3g}"
