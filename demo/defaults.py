"""Every default and every limit of the demo, in one place.

The defaults are what a visitor sees before touching anything; set them from measurements of the shipped
model (checkpoints/mnist/README.md), not by taste. The limits bound what one request may cost.
"""

from __future__ import annotations

ONE_OF_EACH = "one of each"

# ---------------------------------------------------------------- defaults (what the page starts with)
# offered samplers: ddpmlib name -> label (ddpmlib.samplers.SAMPLER_NAMES); the first is listed first
SAMPLERS = {"dpmpp": "DPM-Solver++(2M)", "ddim": "DDIM", "ddpm": "DDPM"}
SAMPLER = "dpmpp"  # second order: few steps suffice (Lu et al. 2022)
STEPS = 10  # capped at the model's T; the steps slider still reaches T (unguided: 97.7%, FD 0.95x, model card)
# w in eps = (1 + w) eps(x_t, y) - w eps(x_t, no digit): the smallest w of the model card's sweep (0, 0.25, 0.5, 1, 2;
# DPM-Solver++ 10 steps, 1,000 samples) with >= 99.5% of digits recognised: 100.0%, at FD 2.45x (w = 2: 11.6x)
GUIDANCE = 0.5
ETA = 0.0  # DDIM's eta (0 = deterministic); ignored by the other samplers
DIGIT = ONE_OF_EACH
N_IMAGES = 10
SEED = 0

FORWARD_T_FRACTION = 0.25  # Forward tab: t starts at T/4

DENOISE_DIGIT = "3"
DENOISE_T_FRACTION = 0.6  # Draw-and-denoise tab: noise level t starts at 0.6 T
N_VARIATIONS = 4

# Digit × position tab (the two-label model checkpoints/shifted_mnist, ddpmlib.shifted). Mode and w below come from
# `python scripts/shifted_table.py` on the shipped model (its eval/pairs.csv and model card), as the Generate
# defaults come from the main model card.
ANYWHERE = "anywhere"  # the position left out (its null label, ddpmlib.shifted.NULL_POSITION)
# how guidance is applied: key (ddpmlib.shifted.guidance_labels mode, or "compose" = ComposedLabels) -> label
COMPOSE_MODES = {"joint": "both labels", "position": "position only", "compose": "compose"}
COMPOSE_DIGIT = "7"  # with COMPOSE_POSITION a pair held out of training (data.holdout of configs/shifted_mnist.json)
COMPOSE_POSITION = "bottom left"
# measured on checkpoints/shifted_mnist (its model card; scripts/shifted_table.py, 100 samples per pair): the held-out
# 7s at the bottom are drawn as asked in 61.0% without guidance, 86.5% with joint guidance w = 1 and 96.0% composed
# with w = 1 (seen pairs: 82.5%, 98.4%, 96.1%); composition is the choice that works for held-out and seen pairs alike
COMPOSE_MODE = "compose"
COMPOSE_GUIDANCE = 1.0
COMPOSE_SAMPLER = "dpmpp"  # the sampler and steps of scripts/shifted_table.py's defaults (--sampler, --steps)
COMPOSE_STEPS = 20
COMPOSE_N_IMAGES = 8

# ---------------------------------------------------------------- limits (what one request may cost)
MAX_IMAGES = 20  # per Generate request
MAX_VARIATIONS = 8  # per Draw-and-denoise request
COMPOSE_MAX_IMAGES = 16  # per Digit × position request (a 4 x 4 grid)
MAX_GUIDANCE = 10.0
MAX_SEED = 2**32 - 1

# Cost of a sampling request in network evaluations of one 28 x 28 image ("image evaluations"):
#     cost = steps x (batch x (2 if guidance else 1) + STEP_COST)
# Guidance doubles the batch (the conditional and the unconditional prediction); composing the digit and the
# position (ddpmlib.shifted.ComposedLabels) triples it, with or without guidance; STEP_COST is the fixed
# per-step cost (the sampler's arithmetic, the recorded frame, framework overhead) in the same unit.
# Calibrated on the shipped model (0.69 M parameters) and a 2-core Intel Xeon, one thread: one image
# evaluation took 3.3 ms, a step of a batch of one 7.8 ms at load average 2 (the fixed part is about 1.5
# evaluations; 2 leaves a margin), which puts MAX_COST = 4000 at about 13-15 s. The machine was shared:
# at load 7 `python scripts/bench_demo.py --calibrate --threads 1` gave 5.1 ms per unit and 24-26 s for
# the largest accepted requests. Recalibrate on an idle machine (and after changing the model's size).
# The (digit, position) model of configs/shifted_mnist.json has the same size (0.69 M parameters) and took about
# as long per unit (6.6 ms against the shipped model's 7.3 ms, both at load average 7, with a 200-step stand-in
# of it), so the same unit serves the Digit × position tab.
STEP_COST = 2.0
MAX_COST = 4000
MAX_COST_SECONDS = 15  # what MAX_COST is meant to take, as stated in the page

# Images sent to the demo (the sketchpad, or any image an API client uploads). The pixel count is read
# from the file's header before anything is decoded; larger images are refused, smaller ones are decoded
# and shrunk to at most MAX_IMAGE_SIDE on their longer side (the canvas is 280 x 280).
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_IMAGE_SIDE = 560

# ---------------------------------------------------------------- streaming and files
STREAM_INTERVAL_S = 0.25  # while sampling, an intermediate picture is sent at most this often
GIF_FRAMES = 60  # at most this many frames (plus the final image) in the trajectory GIF
FILE_MAX_AGE_S = 3600  # downloads older than this are deleted
SCREEN_SCALE = 1  # on-screen grids are sent at 28 px per digit and enlarged by the browser (CSS, no blur)
DOWNLOAD_SCALE = 3  # the PNG and GIF downloads are enlarged 3x


def default_steps(T: int) -> int:
    return min(STEPS, T)
