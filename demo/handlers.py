"""What the demo's buttons and sliders do. Every image comes from ddpmlib; this module checks the inputs,
records trajectories and turns tensors into pictures.

Timesteps: ddpmlib indexes steps by the tensor index t = 0..T-1, which is paper step t + 1 (see
ddpmlib/schedules.py). The interface shows paper steps: "t = 1000" is tensor index 999, and t = 0 is
the clean image x_0.

Bad input raises ``gr.Error`` with a message meant for the visitor; Gradio shows it in the page.
"""

from __future__ import annotations

import atexit
import math
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch

from ddpmlib.diffusion import q_sample
from ddpmlib.pipeline import DDPMPipeline
from ddpmlib.plotting import save_gif
from ddpmlib.samplers import SAMPLERS
from ddpmlib.schedules import SCHEDULES, NoiseSchedule

from .images import alpha_bar_figure, drawing_to_x0, from_u8, grid, labelled, to_u8

ONE_OF_EACH = "one of each"
DIGIT_CHOICES = [str(d) for d in range(10)] + [ONE_OF_EACH]
SOURCES = {"drawing": "my drawing", "generated": "a generated image"}
MAX_IMAGES = 20  # per Generate request
MAX_VARIATIONS = 8  # per Draw-and-denoise request
MAX_WORK = 2000  # images x sampling steps per request: bounds the time and memory one request can take
MAX_GUIDANCE = 10.0
MAX_SEED = 2**32 - 1
STREAM_INTERVAL_S = 0.25  # while sampling, an intermediate picture is sent at most this often (each costs time)
GIF_FRAMES = 60  # at most this many frames (plus the final image) in the trajectory GIF
FILE_MAX_AGE_S = 3600  # downloads older than this are deleted


def fail(message: str):
    """Stop the handler and show ``message`` in the interface (no traceback in the page or the log)."""
    raise gr.Error(message, print_exception=False)


# ---------------------------------------------------------------- input checks


def check_number(name: str, value, lo: float, hi: float, integer: bool = False, hint: str = ""):
    if value is None or isinstance(value, bool) or isinstance(value, str) and not value.strip():
        fail(f"Please enter a value for {name}.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        fail(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(x):
        fail(f"{name} must be a finite number, got {value!r}.")
    if integer and x != int(x):
        fail(f"{name} must be a whole number, got {value!r}.")
    if not lo <= x <= hi:
        fail(f"{name} must be between {lo:g} and {hi:g}, got {value!r}.{(' ' + hint) if hint else ''}")
    return int(x) if integer else x


def check_digit(digit) -> int | str:
    """A digit 0-9 (int) or ``ONE_OF_EACH``."""
    if digit == ONE_OF_EACH:
        return ONE_OF_EACH
    d = str(digit).strip() if digit is not None else ""
    if d.isdigit() and 0 <= int(d) <= 9:
        return int(d)
    fail(f"Pick a digit from 0 to 9 (or '{ONE_OF_EACH}'), got {digit!r}.")


def check_sampler(sampler) -> str:
    s = str(sampler).lower()
    if s not in SAMPLERS:
        fail(f"The sampler must be DDPM or DDIM, got {sampler!r}.")
    return s


def check_work(n: int, steps: int, what: str = "images") -> None:
    if n * steps > MAX_WORK:
        fail(
            f"{n} {what} x {steps} steps = {n * steps} denoising passes is more than this demo does per request "
            f"({MAX_WORK}). Use fewer {what} or fewer steps."
        )


def check_seed(seed, random_seed: bool = False) -> int:
    if random_seed:
        return secrets.randbelow(MAX_SEED + 1)
    return check_number("The seed", seed, 0, MAX_SEED, integer=True, hint="Or tick 'random seed'.")


# ---------------------------------------------------------------- the recorded trajectory


@dataclass
class Trajectory:
    """One Generate run, replayed by the timeline slider without recomputing.

    Frame i < n shows the model's input x_t at the i-th sampling step and its predicted x_0;
    frame n is the final sample. Images are uint8 (frames, B, 1, H, W).
    """

    xt: torch.Tensor
    x0: torch.Tensor
    t: list[int]  # tensor index of each step (paper step t + 1); -1 for the final frame
    labels: list[int]
    nrow: int  # images per row on screen
    settings: str
    files: dict[str, str] = field(default_factory=dict)  # "gif", "png" -> path

    @property
    def num_steps(self) -> int:
        return len(self.t) - 1

    @property
    def final(self) -> torch.Tensor:
        """The generated images (B, 1, H, W) in [-1, 1]."""
        return from_u8(self.xt[-1])


# ---------------------------------------------------------------- handlers


class DemoHandlers:
    """The demo's event handlers around one loaded ``DDPMPipeline``; no Gradio layout here."""

    def __init__(self, pipe: DDPMPipeline, file_dir: str | Path | None = None, scale: int = 3):
        self.pipe = pipe
        self.T = pipe.T
        self.scale = scale
        self.schedules = {}  # every schedule with the model's T, for the Forward tab
        for name in SCHEDULES:
            try:
                self.schedules[name] = NoiseSchedule.from_name(name, pipe.T)
            except ValueError:  # a schedule that does not exist for this T is left out
                pass
        self.schedules.setdefault(pipe.schedule.name, pipe.schedule)
        self.default_schedule = pipe.schedule.name
        if file_dir is None:  # downloads go to a fresh folder, removed when the process exits
            file_dir = tempfile.mkdtemp(prefix="ddpm-demo-")
            atexit.register(shutil.rmtree, file_dir, ignore_errors=True)
        self.file_dir = Path(file_dir)
        self.stream_interval_s = STREAM_INTERVAL_S  # 0: send a picture after every step

    # ---- helpers

    def t_text(self, t: int, schedule: NoiseSchedule | None = None) -> str:
        """'t = 917 of 1000 · alpha_bar_t = ... · SNR = ...' for tensor index t (-1: the clean image)."""
        s = schedule or self.pipe.schedule
        if t < 0:
            return "t = 0 (the clean image) · ᾱ = 1 · SNR = ∞"
        ab, snr = float(s.alpha_bars[t]), float(s.snr[t])
        return f"t = {t + 1} of {self.T} · ᾱ_t = {ab:.4g} · SNR = ᾱ_t / (1 − ᾱ_t) = {snr:.3g}"

    def frame(self, xt: torch.Tensor, x0: torch.Tensor, nrow: int, scale: int | None = None):
        """The pictures shown side by side: x_t and the predicted x_0, as grids."""
        scale = scale or self.scale
        return grid(xt, nrow, scale), grid(x0, nrow, scale)

    def _new_file(self, name: str) -> Path:
        """A fresh path ``<file_dir>/<random>/<name>``; deletes downloads older than an hour."""
        now = time.time()
        for old in self.file_dir.glob("*"):
            try:
                if now - old.stat().st_mtime > FILE_MAX_AGE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        folder = self.file_dir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def source_image(self, source, drawing, image_number, traj: Trajectory | None) -> tuple[torch.Tensor | None, str]:
        """x_0 (1, 1, H, W) chosen in the Forward or Draw tab, or (None, why not)."""
        if source == "generated":
            if traj is None:
                return None, "Generate some digits in the **Generate** tab first, or start from your drawing."
            n = len(traj.labels)
            k = check_number("The image number", image_number, 1, MAX_IMAGES, integer=True)
            if k > n:
                return None, f"The last Generate run made {n} image(s); pick a number from 1 to {n}."
            return traj.final[k - 1 : k], ""
        x0 = drawing_to_x0(drawing)
        if x0 is None:
            return None, "The drawing is empty: draw a digit on the canvas (or start from a generated image)."
        return x0, ""

    # ---- tab 1: Generate

    def generate(self, digit, n_images, sampler, steps, guidance, eta, seed, random_seed=False, progress=gr.Progress()):  # noqa: B008
        """Sample digits, streaming (x_t, predicted x_0) while sampling; yields the outputs of the Generate tab:
        x_t image, predicted-x_0 image, info, timeline slider, Trajectory, seed, GIF button, PNG button.
        The last two yields are the result, then the result with the downloads once the GIF and PNG are written."""
        d = check_digit(digit)
        n = check_number("The number of images", n_images, 1, MAX_IMAGES, integer=True)
        sampler = check_sampler(sampler)
        steps = check_number("The number of steps", steps, 1, self.T, integer=True, hint=f"(T = {self.T})")
        w = check_number("The guidance scale", guidance, 0, MAX_GUIDANCE, hint="0 means no guidance; 1-5 is typical.")
        eta = check_number("eta", eta, 0, 1)
        check_work(n, steps)
        seed = check_seed(seed, random_seed)
        labels = [i % 10 for i in range(n)] if d == ONE_OF_EACH else [d] * n
        nrow = min(n, 5)  # two grids side by side
        what = "digits 0-9" if d == ONE_OF_EACH else f"digit {d}"
        eta_text = f", eta = {eta:g}" if sampler == "ddim" else ""
        settings = (
            f"{what}, {n} image(s), {sampler.upper()} with {steps} steps, guidance w = {w:g}{eta_text}, seed {seed}"
        )
        yield (
            gr.skip(),
            gr.skip(),
            f"Sampling: {settings} ...",
            gr.Slider(interactive=False),
            gr.skip(),
            seed,
            gr.DownloadButton(interactive=False),
            gr.DownloadButton(interactive=False),
        )

        pipe = self.pipe
        cfg = pipe.model.config
        gen = torch.Generator(pipe.device).manual_seed(seed)
        # x_T drawn exactly as ddpmlib draws it from this generator, so the result equals
        # pipe.generate(labels, seed=seed, ...); we need it to show the first step's input
        x = torch.randn((n, cfg.image_channels, cfg.image_size, cfg.image_size), generator=gen, device=pipe.device)
        xts, x0s, ts = [], [], []
        sent = 0.0
        try:
            it = pipe.generate_iter(
                labels, sampler=sampler, steps=steps, guidance_scale=w, eta=eta, generator=gen, x_start=x
            )
            for i, (t, x_prev, pred_x0) in enumerate(it):
                xts.append(to_u8(x))
                x0s.append(to_u8(pred_x0))
                ts.append(t)
                x = x_prev
                progress((i + 1, steps), desc="denoising", unit="steps")
                if i + 1 < steps and time.monotonic() - sent >= self.stream_interval_s:
                    sent = time.monotonic()
                    a, b = self.frame(xts[-1], x0s[-1], nrow)
                    yield a, b, self.step_text(i, steps, t), *[gr.skip()] * 5
        except ValueError as e:  # ddpmlib's own checks; the ones above should catch everything first
            fail(str(e))
        final = to_u8(x.clamp(-1, 1))
        traj = Trajectory(torch.stack(xts + [final]), torch.stack(x0s + [final]), ts + [-1], labels, nrow, settings)
        a, b = self.frame(final, final, nrow)
        info = self.step_info(traj, steps)
        timeline = gr.Slider(minimum=0, maximum=steps, value=steps, step=1, interactive=False)
        yield a, b, info, timeline, traj, seed, gr.skip(), gr.skip()  # the result first, then the downloads
        self.write_files(traj, seed)
        timeline = gr.Slider(minimum=0, maximum=steps, value=steps, step=1, interactive=True)  # scrub from now on
        downloads = (gr.DownloadButton(value=traj.files[k], interactive=True) for k in ("gif", "png"))
        yield a, b, info, timeline, traj, seed, *downloads  # complete, for API clients (they see the last yield)

    def write_files(self, traj: Trajectory, seed: int) -> None:
        """The final grid as PNG and the trajectory (x_t | predicted x_0 per step) as an animated GIF."""
        png = self._new_file(f"ddpm_digits_seed{seed}.png")
        nrow = min(len(traj.labels), 10)
        grid(traj.xt[-1], nrow, self.scale).save(png, format="PNG")
        n = traj.num_steps
        m = min(n, GIF_FRAMES)
        picks = sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)}) + [n]  # evenly spaced, then x_0
        frames = []
        for i in picks:
            a, b = self.frame(traj.xt[i], traj.x0[i], nrow, scale=2)
            caption = f"{i}/{n} steps done  {self.t_text(traj.t[i])}" if i < n else f"{n}/{n} steps done: x_0"
            frames.append(
                labelled(
                    [("x_t", a), ("predicted x_0", b)],
                    caption.replace("ᾱ", "alpha_bar").replace("∞", "inf").replace("·", "|").replace("−", "-"),
                )
            )
        gif = self._new_file(f"ddpm_trajectory_seed{seed}.gif")
        save_gif(frames, gif, duration_ms=80, final_hold_ms=1500)
        traj.files = {"png": str(png), "gif": str(gif)}

    def step_info(self, traj: Trajectory, i: int) -> str:
        n = traj.num_steps
        if i >= n:
            return (
                f"**Done after {n} step(s)**: x_0, the final samples (t = 0, no noise left). {traj.settings}. "
                f"Move the timeline to replay the run."
            )
        return self.step_text(i, n, traj.t[i])

    def step_text(self, i: int, n: int, t: int) -> str:
        """Timeline position i < n: i steps done; shown are x_t (the next step's input) and the model's x_0."""
        start = " (the start: pure noise)" if i == 0 else ""
        return f"**{i} of {n} steps done**{start}: x_t and the model's prediction of x_0 from it · {self.t_text(t)}"

    def show_step(self, traj: Trajectory | None, i):
        """The timeline: frame ``i`` (0 = the start, pure noise; n = the result) of the last run."""
        if traj is None:
            fail("Generate some digits first: the timeline replays the last run.")
        i = check_number("The timeline position", i, 0, traj.num_steps, integer=True)
        a, b = self.frame(traj.xt[i], traj.x0[i], traj.nrow)
        return a, b, self.step_info(traj, i)

    # ---- tab 2: Forward process explorer

    def forward(self, source, drawing, image_number, traj, schedule, t):
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (closed form, Ho et al. 2020, Eq. 4) for paper
        step t (0 = the clean image). Returns x_t, a strip at t = 0, T/10, ..., T, the alpha_bar plot, info."""
        if schedule not in self.schedules:
            fail(f"Unknown noise schedule {schedule!r}; choose one of {', '.join(self.schedules)}.")
        t = check_number("t", t, 0, self.T, integer=True, hint=f"(T = {self.T})")
        s = self.schedules[schedule]
        fig = alpha_bar_figure(self.schedules, schedule, t)
        x0, why = self.source_image(source, drawing, image_number, traj)
        if x0 is None:
            return None, None, fig, why
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))  # the same noise at every t

        def noised(step: int) -> torch.Tensor:
            return x0 if step == 0 else q_sample(s, x0, torch.tensor([step - 1]), noise=eps)

        xt = noised(t)
        strip_steps = [round(k * self.T / 10) for k in range(11)]
        strip = grid(torch.cat([noised(k) for k in strip_steps]), nrow=11, scale=2)
        if t == 0:
            info = f"**{schedule} schedule**, t = 0: x_0 itself, no noise yet."
        else:
            ab = float(s.alpha_bars[t - 1])
            info = (
                f"**{schedule} schedule**, {self.t_text(t - 1, s)}\n\n"
                f"x_t = {math.sqrt(ab):.3f} · x_0 + {math.sqrt(1 - ab):.3f} · ε"
            )
        info += f"\n\nStrip below: the same image and noise at t = {', '.join(map(str, strip_steps))}."
        return grid(xt, 1, 8), strip, fig, info

    # ---- tab 3: Draw and denoise

    def denoise(
        self,
        source,
        drawing,
        image_number,
        traj,
        digit,
        t,
        steps,
        sampler,
        guidance,
        n_variations,
        seed,
        progress=gr.Progress(),  # noqa: B008
    ):
        """Noise the chosen image to paper step t, then run the reverse process from there toward ``digit``
        (SDEdit, Meng et al. 2022). Yields: x_0 as the model sees it, the noised x_t, the result, info."""
        d = check_digit(digit)
        if d == ONE_OF_EACH:
            fail("Pick one digit (0-9) to denoise toward.")
        t = check_number("The noise level t", t, 1, self.T, integer=True, hint=f"(T = {self.T})")
        steps = check_number("The number of steps", steps, 1, self.T, integer=True, hint=f"(T = {self.T})")
        sampler = check_sampler(sampler)
        w = check_number("The guidance scale", guidance, 0, MAX_GUIDANCE, hint="0 means no guidance; 1-5 is typical.")
        n = check_number("The number of variations", n_variations, 1, MAX_VARIATIONS, integer=True)
        seed = check_seed(seed)
        if steps > t:
            gr.Warning(f"From t = {t} there are only {t} steps down to x_0; using {t} steps instead of {steps}.")
            steps = t
        check_work(n, steps, "variations")
        x0, why = self.source_image(source, drawing, image_number, traj)
        if x0 is None:
            fail(why)

        pipe = self.pipe
        gen = torch.Generator(pipe.device).manual_seed(seed)
        x0 = x0.to(pipe.device).expand(n, -1, -1, -1)
        tt = torch.full((n,), t - 1, dtype=torch.long, device=pipe.device)
        xt = q_sample(pipe.schedule, x0, tt, generator=gen)  # a different noise draw for every variation
        nrow = min(n, 4)
        seen, noised = grid(x0[:1], 1, 8), grid(xt, nrow, self.scale)
        head = (
            f"Noised to {self.t_text(t - 1)}; denoising towards **{d}** with {sampler.upper()}, "
            f"{steps} step(s), w = {w:g}"
        )
        yield seen, noised, None, head + " ..."
        x = xt
        sent = 0.0
        try:
            it = pipe.generate_iter(
                [d] * n, sampler=sampler, steps=steps, guidance_scale=w, generator=gen, x_start=xt, t_start=t - 1
            )
            for i, (_, x, _) in enumerate(it):
                progress((i + 1, steps), desc="denoising", unit="steps")
                if i + 1 < steps and time.monotonic() - sent >= self.stream_interval_s:
                    sent = time.monotonic()
                    yield seen, noised, grid(x, nrow, self.scale), f"{head}: step {i + 1} of {steps}"
        except ValueError as e:
            fail(str(e))
        yield seen, noised, grid(x.clamp(-1, 1), nrow, self.scale), f"{head}: done (seed {seed})."
