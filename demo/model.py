"""The demo's loaded models and the things every tab shares: the schedules, the download folder, the
picture a tab starts from, and the single place where the demo asks ddpmlib for samples (``sample``).

``DemoModel`` is the digit model of the first three tabs; ``ShiftedModel`` the (digit, position) model of the
Digit × position tab, loaded by ``load_shifted``, which returns ``Unavailable`` (the reason, one line) when it
cannot be loaded, so that the rest of the demo still starts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ddpmlib.checkpoint import CheckpointError
from ddpmlib.config import ConfigError, data_config
from ddpmlib.pipeline import SHIPPED_CHECKPOINT, DDPMPipeline, load_pipeline
from ddpmlib.samplers import SamplingOptions
from ddpmlib.schedules import SCHEDULES, NoiseSchedule
from ddpmlib.shifted import NUM_POSITIONS, ComposedLabels, guidance_labels

from . import defaults as D
from .checks import check_choice, check_number, fail
from .images import drawing_to_x0, grid
from .steps import to_index, to_paper

SOURCES = {"drawing": "my drawing", "generated": "a generated image"}
# the Digit × position tab's model: ``checkpoints/shifted_mnist`` next to the shipped digit model
SHIFTED_CHECKPOINT = os.path.join(os.path.dirname(SHIPPED_CHECKPOINT), "shifted_mnist")
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
        uncond_labels: torch.Tensor | None = None,
        pipe: DDPMPipeline | None = None,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Run the reverse process; yield ``(t, x_t, x_next, pred_x0)`` per step, t the paper step of the
        step's input x_t (T down to 1), x_next its output, pred_x0 the model's estimate of x_0 from x_t.

        Without ``x_start`` ddpmlib draws the noise x_T from ``generator`` (and hands it over as its first
        item), so the result equals ``pipe.generate(labels, options=..., seed=...)``. With it, sampling
        starts from x_start at paper step ``t_start`` (SDEdit). ``eta`` is DDIM's and ignored otherwise.
        ``uncond_labels`` replace the null labels of guidance's unconditional term (``pipe.generate_iter``);
        ``pipe`` is another pipeline around the same network (``ShiftedModel.sample_pairs``: a composed one)."""
        pipe = self.pipe if pipe is None else pipe
        try:
            options = SamplingOptions(
                sampler=sampler, steps=steps, guidance_scale=guidance, eta=eta if sampler == "ddim" else 0.0
            )
            it = pipe.generate_iter(
                labels,
                options=options,
                generator=generator,
                x_start=x_start,
                t_start=None if t_start is None else to_index(t_start),
                yield_start=True,
                uncond_labels=uncond_labels,
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


# ---------------------------------------------------------------- the (digit, position) model


@dataclass(frozen=True)
class Unavailable:
    """A model that could not be loaded: its tab shows ``reason`` (one line) and refuses requests with it."""

    reason: str


class ShiftedModel(DemoModel):
    """A (digit, position) model (``UNetConfig.extra_labels=(4,)``, ``ddpmlib.shifted``) and the pairs held out
    of its training, read from its config's data section (``holdout`` None: the checkpoint does not say)."""

    def __init__(
        self,
        pipe: DDPMPipeline,
        holdout: set[tuple[int, int]] | None = None,
        holdout_rule: str = "exclude",
        file_dir: str | Path | None = None,
    ):
        super().__init__(pipe, file_dir)
        self.holdout = holdout
        self.holdout_rule = holdout_rule

    def held_out(self, digit: int, position: int | None) -> bool | None:
        """Was the pair never labelled together in training? None where the checkpoint does not say."""
        if self.holdout is None:
            return None
        return position is not None and (digit, position) in self.holdout

    def sample_pairs(
        self, pairs: list[list[int]], mode: str, sampler: str, steps: int, guidance: float, generator: torch.Generator
    ):
        """``sample`` for labels (digit, position) (position ``NUM_POSITIONS`` = left out), with guidance of scale
        ``guidance`` applied as ``mode``: "joint" or "position" (``ddpmlib.shifted.guidance_labels``: the labels
        of the unconditional term), or "compose" (``ddpmlib.shifted.ComposedLabels``: digit and position
        conditioned separately and added, Liu et al. 2022; w = 0 composes without guidance)."""
        if mode == "compose":
            p = self.pipe
            composed = DDPMPipeline(ComposedLabels(p.model, guidance), p.schedule, p.prediction_type, p.config)
            return self.sample(pairs, sampler, steps, 0.0, 0.0, generator, pipe=composed)
        uncond = guidance_labels(torch.tensor(pairs), mode) if guidance else None
        return self.sample(pairs, sampler, steps, guidance, 0.0, generator, uncond_labels=uncond)


def load_shifted(
    path: str | os.PathLike | DDPMPipeline | None, device=None, file_dir: str | Path | None = None
) -> ShiftedModel | Unavailable:
    """The Digit × position tab's model from ``path`` (a checkpoint directory or a loaded pipeline), or
    ``Unavailable`` with the reason when there is none, it is corrupt, or it is not a (digit, position) model."""
    flag = "start the demo with --shifted-checkpoint DIR"
    if path is None:
        return Unavailable(f"This tab needs a (digit, position) model and none was given; {flag}.")
    if isinstance(path, DDPMPipeline):
        pipe, where = path, "the given pipeline"
    else:
        where = str(path)
        if not Path(path).exists():
            return Unavailable(
                f"This tab needs the (digit, position) model, and there is none at {where}: train one with "
                f"`python -m ddpmlib.train --config configs/shifted_mnist.json`, or {flag}."
            )
        try:
            pipe = load_pipeline(path, device=device)
        except CheckpointError as e:
            return Unavailable(f"The (digit, position) model could not be loaded: {e}. Fix it, or {flag}.")
        except Exception as e:  # noqa: BLE001 - whatever else a damaged checkpoint raises: the demo still starts
            return Unavailable(
                f"The (digit, position) model at {where} could not be loaded ({type(e).__name__}: {str(e)[:200]}); "
                f"{flag}."
            )
    if tuple(pipe.null_labels) != (10, NUM_POSITIONS):
        n = len(pipe.null_labels)
        return Unavailable(
            f"The model at {where} takes {n} label{'s' if n > 1 else ''} per image, not (digit, position) "
            f"(UNetConfig.extra_labels=(4,), as configs/shifted_mnist.json trains); {flag}."
        )
    holdout, rule = None, "exclude"
    if isinstance(pipe.config.get("data"), dict):  # training's data section: absent keys took their defaults
        try:
            data = data_config(pipe.config)
            holdout, rule = {(int(d), int(p)) for d, p in data.holdout}, data.holdout_rule
        except ConfigError:
            pass  # unreadable: the tab says that the checkpoint does not tell
    return ShiftedModel(pipe, holdout, rule, file_dir)
