"""The Generate tab: sample digits while streaming x_t and the predicted x_0, record the trajectory, and
replay it with the timeline. Results are dicts with the keys of ``OUTPUTS``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ddpmlib.plotting import save_gif

from .. import defaults as D
from ..checks import check_cost, check_digit, check_number, check_sampler, check_seed, fail
from ..images import from_u8, grid, labelled, to_u8
from ..model import DemoModel, Progress
from ..steps import describe
from . import Timeline

# xt, x0: pictures; info: markdown; timeline: Timeline; trajectory: Trajectory; gif, png: a file path or None
OUTPUTS = ("xt", "x0", "info", "timeline", "trajectory", "gif", "png")
DOWNLOADS = ("gif", "png")  # written by ``downloads`` after the result is shown


@dataclass
class Trajectory:
    """One Generate run, replayed by the timeline without recomputing.

    Frame i < n shows the model's input x_t at the i-th sampling step and its predicted x_0;
    frame n is the final sample. Images are uint8 (frames, B, 1, H, W)."""

    xt: torch.Tensor
    x0: torch.Tensor
    t: list[int]  # paper step t of each frame's x_t (T ... 1); 0 for the final frame
    labels: list[int]
    nrow: int  # images per row on screen
    settings: str
    seed: int
    files: dict[str, str] = field(default_factory=dict)  # "gif", "png" -> path

    @property
    def num_steps(self) -> int:
        return len(self.t) - 1

    @property
    def final(self) -> torch.Tensor:
        """The generated images (B, 1, H, W) in [-1, 1]."""
        return from_u8(self.xt[-1])


@dataclass(frozen=True)
class Request:
    labels: list[int]
    sampler: str
    steps: int
    guidance: float
    eta: float
    seed: int
    settings: str  # one line for the page


def validate(model: DemoModel, digit, n_images, sampler, steps, guidance, eta, seed, random_seed=False) -> Request:
    """Check every input of a Generate request (cheap: no sampling); ``DemoError`` with a message otherwise."""
    d = check_digit(digit)
    n = check_number("The number of images", n_images, 1, D.MAX_IMAGES, integer=True)
    sampler = check_sampler(sampler)
    steps = check_number("The number of steps", steps, 1, model.T, integer=True, hint=f"(T = {model.T})")
    w = check_number("The guidance scale", guidance, 0, D.MAX_GUIDANCE, hint="0 means no guidance; 1-5 is typical.")
    eta = check_number("eta", eta, 0, 1)
    seed = check_seed(seed, random_seed)
    check_cost(steps, n, w)
    labels = [i % 10 for i in range(n)] if d == D.ONE_OF_EACH else [d] * n
    what = "digits 0-9" if d == D.ONE_OF_EACH else f"digit {d}"
    eta_text = f", eta = {eta:g}" if sampler == "ddim" else ""
    settings = (
        f"{what}, {n} image(s), {D.SAMPLERS[sampler]} with {steps} steps, guidance w = {w:g}{eta_text}, seed {seed}"
    )
    return Request(labels, sampler, steps, w, eta if sampler == "ddim" else 0.0, seed, settings)


def run(model: DemoModel, req: Request, progress: Progress | None = None) -> Iterator[dict]:
    """Sample, streaming pictures at most every ``model.stream_interval_s``; the last yield is the result
    (pictures, info, the trajectory). The downloads are written afterwards, by ``downloads``, so that
    the result is not kept waiting for the GIF."""
    n, steps = len(req.labels), req.steps
    nrow = min(n, 5)  # two grids side by side
    yield {"info": f"Sampling: {req.settings} ...", "timeline": Timeline(0, 0, False), "gif": None, "png": None}
    gen = torch.Generator(model.pipe.device).manual_seed(req.seed)
    xts, x0s, ts = [], [], []
    sent = time.monotonic()  # the first picture after one interval: a fast run streams nothing
    x = None
    for i, (t, x_t, x_next, pred_x0) in enumerate(
        model.sample(req.labels, req.sampler, steps, req.guidance, req.eta, generator=gen)
    ):
        x = x_next
        xts.append(to_u8(x_t))
        x0s.append(to_u8(pred_x0))
        ts.append(t)
        if progress is not None:
            progress(i + 1, steps)
        if i + 1 < steps and time.monotonic() - sent >= model.stream_interval_s:
            sent = time.monotonic()
            a, b = model.grids(xts[-1], x0s[-1], nrow=nrow)
            yield {"xt": a, "x0": b, "info": step_text(model, i, steps, t)}
    final = to_u8(x.clamp(-1, 1))
    traj = Trajectory(
        torch.stack(xts + [final]), torch.stack(x0s + [final]), ts + [0], req.labels, nrow, req.settings, req.seed
    )
    a, b = model.grids(final, final, nrow=nrow)
    yield {
        "xt": a,
        "x0": b,
        "info": step_info(model, traj, steps),
        "trajectory": traj,
        "timeline": Timeline(steps, steps, True),
    }


def downloads(model: DemoModel, traj: Trajectory | None) -> dict:
    """The GIF and PNG of the last run (None before any run)."""
    if not isinstance(traj, Trajectory):
        return {"gif": None, "png": None}
    if not traj.files:
        write_files(model, traj)
    return {"gif": traj.files["gif"], "png": traj.files["png"]}


def write_files(model: DemoModel, traj: Trajectory) -> None:
    """The final grid as PNG and the trajectory (x_t | predicted x_0 per step) as an animated GIF."""
    png = model.new_file(f"ddpm_digits_seed{traj.seed}.png")
    nrow = min(len(traj.labels), 10)
    grid(traj.xt[-1], nrow, D.DOWNLOAD_SCALE).save(png, format="PNG")
    n = traj.num_steps
    m = min(n, D.GIF_FRAMES)
    picks = sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)}) + [n]  # evenly spaced, then x_0
    frames = []
    for i in picks:
        a, b = model.grids(traj.xt[i], traj.x0[i], nrow=nrow, scale=2)
        caption = f"{i}/{n} steps done  {describe(model.schedule, traj.t[i])}" if i < n else f"{n}/{n} steps done: x_0"
        caption = caption.replace("ᾱ", "alpha_bar").replace("∞", "inf").replace("·", "|").replace("−", "-")
        frames.append(labelled([("x_t", a), ("predicted x_0", b)], caption))
    gif = model.new_file(f"ddpm_trajectory_seed{traj.seed}.gif")
    save_gif(frames, gif, duration_ms=80, final_hold_ms=1500)
    traj.files = {"png": str(png), "gif": str(gif)}


def step_info(model: DemoModel, traj: Trajectory, i: int) -> str:
    n = traj.num_steps
    if i >= n:
        return (
            f"**Done after {n} step(s)**: x_0, the final samples (t = 0, no noise left). {traj.settings}. "
            f"Move the timeline to replay the run."
        )
    return step_text(model, i, n, traj.t[i])


def step_text(model: DemoModel, i: int, n: int, t: int) -> str:
    """Timeline position i < n: i steps done; shown are x_t (the next step's input) and the model's x_0."""
    start = " (the start: pure noise)" if i == 0 and t == model.T else ""
    return (
        f"**{i} of {n} steps done**{start}: x_t and the model's prediction of x_0 from it · "
        f"{describe(model.schedule, t)}"
    )


def validate_step(traj: Trajectory | None, i) -> int:
    if traj is None:
        fail("Generate some digits first: the timeline replays the last run.")
    if not isinstance(traj, Trajectory):
        fail("The timeline has nothing to replay; generate some digits first.")
    return check_number("The timeline position", i, 0, traj.num_steps, integer=True)


def show_step(model: DemoModel, traj: Trajectory | None, i) -> dict:
    """The timeline: frame ``i`` (0 = the start, pure noise; n = the result) of the last run."""
    i = validate_step(traj, i)
    a, b = model.grids(traj.xt[i], traj.x0[i], nrow=traj.nrow)
    return {"xt": a, "x0": b, "info": step_info(model, traj, i)}
