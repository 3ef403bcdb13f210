"""The demo's one loaded model and the things every tab shares: the schedules, the download folder, the
picture a tab starts from, and the single place where the demo asks ddpmlib for samples (``sample``).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ddpmlib.pipeline import DDPMPipeline
from ddpmlib.samplers import SamplingOptions
from ddpmlib.schedules import SCHEDULES, NoiseSchedule

from . import defaults as D
from .checks import check_choice, check_number, fail
from .images import drawing_to_x0, grid
from .steps import to_index, to_paper

SOURCES = {"drawing": "my drawing", "generated": "a generated image"}
Progress = Callable[[int, int], None]  # progress(steps done, steps in all)


class DemoModel:
    """One ``DDPMPipeline`` with what the tabs need around it; no Gradio here."""

    def __init__(self, pipe: DDPMPipeline, file_dir: str | Path | None = None):
        self.pipe = pipe
        self.T = pipe.T
        self.schedules: dict[str, NoiseSchedule] = {}  # every schedule with the model's T, for the Forward tab
        for name in SCHEDULES:
            try:
                self.schedules[name] = NoiseSchedule.from_name(name, pipe.T)
            except ValueError:  # a schedule that does not exist for this T is left out
                pass
        self.schedules.setdefault(pipe.schedule.name, pipe.schedule)
        self.default_schedule = pipe.schedule.name
        if file_dir is None:  # downloads go to a fresh folder, removed when the process exits
            file_dir = tempfile.mkdtemp(prefix="ddpm-demo-files-")
            atexit.register(shutil.rmtree, file_dir, ignore_errors=True)
        self.file_dir = Path(file_dir)
        self.stream_interval_s = D.STREAM_INTERVAL_S  # 0: send a picture after every step

    @property
    def schedule(self) -> NoiseSchedule:
        return self.pipe.schedule

    # ---- sampling: every tab's call into ddpmlib goes through here

    def sample(
        self,
        labels: list[int],
        sampler: str,
        steps: int,
        guidance: float,
        eta: float,
        generator: torch.Generator,
        x_start: torch.Tensor | None = None,
        t_start: int | None = None,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Run the reverse process; yield ``(t, x_t, x_next, pred_x0)`` per step, t the paper step of the
        step's input x_t (T down to 1), x_next its output, pred_x0 the model's estimate of x_0 from x_t.

        Without ``x_start`` ddpmlib draws the noise x_T from ``generator`` (and hands it over as its first
        item), so the result equals ``pipe.generate(labels, options=..., seed=...)``. With it, sampling
        starts from x_start at paper step ``t_start`` (SDEdit). ``eta`` is DDIM's and ignored otherwise."""
        try:
            options = SamplingOptions(
                sampler=sampler, steps=steps, guidance_scale=guidance, eta=eta if sampler == "ddim" else 0.0
            )
            it = self.pipe.generate_iter(
                labels,
                options=options,
                generator=generator,
                x_start=x_start,
                t_start=None if t_start is None else to_index(t_start),
                yield_start=True,
            )
            with torch.inference_mode():
                _, x, _ = next(it)  # the start: x_T as drawn by ddpmlib, or x_start
        except ValueError as e:  # ddpmlib's own checks; the demo's checks should have caught everything first
            fail(str(e))
        while True:
            try:
                with torch.inference_mode():  # per step: a generator's frame may resume on another thread
                    t, x_next, pred_x0 = next(it)
            except StopIteration:
                return
            except ValueError as e:
                fail(str(e))
            yield to_paper(t), x, x_next, pred_x0
            x = x_next

    # ---- the picture the Forward and Draw tabs start from

    def check_source(self, source, image_number, traj) -> None:
        """The checks that need no image: the source, and the generated image's number."""
        check_choice("'Start from'", source, list(SOURCES))
        if source == "generated":
            if traj is None or not hasattr(traj, "labels") or not hasattr(traj, "final"):  # a Trajectory
                fail("Generate some digits in the Generate tab first, or start from your drawing.")
            n = len(traj.labels)
            k = check_number("The image number", image_number, 1, D.MAX_IMAGES, integer=True)
            if k > n:
                fail(f"The last Generate run made {n} image(s); pick a number from 1 to {n}.")

    def source_image(self, source, drawing, image_number, traj) -> torch.Tensor | None:
        """x_0 (1, 1, 28, 28) chosen in the Forward or Draw tab; None for an empty drawing."""
        self.check_source(source, image_number, traj)
        if source == "generated":
            k = int(float(image_number))
            return traj.final[k - 1 : k]
        return drawing_to_x0(drawing)

    # ---- pictures and files

    def grids(self, *xs: torch.Tensor, nrow: int, scale: int = D.SCREEN_SCALE):
        return tuple(grid(x, nrow, scale) for x in xs)

    def new_file(self, name: str) -> Path:
        """A fresh path ``<file_dir>/<random>/<name>``; deletes downloads older than FILE_MAX_AGE_S."""
        now = time.time()
        for old in self.file_dir.glob("*"):
            try:
                if now - old.stat().st_mtime > D.FILE_MAX_AGE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        folder = self.file_dir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name
