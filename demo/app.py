"""The Gradio demo: class-conditioned digits with slider-controlled timesteps.

    python demo/app.py                        # the shipped models, http://127.0.0.1:7860
    python demo/app.py --checkpoint runs/mnist_cpu/final --port 8000
    python demo/app.py --shifted-checkpoint runs/shifted_dev/export   # another (digit, position) model

Four tabs: Generate (sample digits, replay the trajectory with a timeline), Forward process (watch an
image dissolve into noise), Draw and denoise (noise your drawing, let the model denoise it toward a
digit), Digit × position (a second model draws a digit in a chosen quadrant; the pairs it never saw in
training are marked; without that model the tab says why in one line and the rest works). The app works
offline: no analytics, no downloads, no public link unless --share is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if __name__ == "__main__" and not __package__:  # python demo/app.py: run as the module demo.app of the clone
    import runpy

    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, not demo/
    runpy.run_module("demo.app", run_name="__main__", alter_sys=True)
    sys.exit()
if __name__ == "__main__":  # a server process: its own temporary folder, removed on exit (before gradio reads it)
    from .files import claim_temp_dir

    claim_temp_dir()

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gradio.data_classes import FileData  # noqa: E402
from PIL import Image  # noqa: E402

from ddpmlib.checkpoint import CheckpointError  # noqa: E402
from ddpmlib.pipeline import SHIPPED_CHECKPOINT, DDPMPipeline, load_pipeline  # noqa: E402

from . import defaults as D  # noqa: E402
from .checks import DemoError, limits_text  # noqa: E402
from .images import open_image  # noqa: E402
from .model import SHIFTED_CHECKPOINT, SOURCES, DemoModel, Unavailable, load_shifted  # noqa: E402
from .tabs import Timeline, compose, denoise, forward, generate  # noqa: E402

MODEL_CONCURRENCY = 1  # sampling requests at once: one request on all cores is fastest; the rest wait in the queue
QUEUE_SIZE = 32  # waiting requests beyond this are turned away with a message
# keep 28 x 28 digits sharp when enlarged: the grids are sent at their natural size and scaled up here
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#compose-position .wrap { display: grid; grid-template-columns: 1fr 1fr; }
"""  # the position picker: its quadrants as a 2 x 2 grid, then "anywhere"
CANVAS = 280
DIGIT_CHOICES = [str(d) for d in range(10)] + [D.ONE_OF_EACH]

INTRO = """# Denoising diffusion on MNIST digits
A small class-conditional DDPM trained on a CPU, from the **ddpm-course** project. Everything runs on
this machine; nothing is sent anywhere."""

GENERATE_HELP = """A diffusion model draws by **starting from pure noise and removing a little of it at every
step**. At each step the network looks at the noisy image x_t and guesses the clean image x_0; the sampler
uses that guess to take one step towards less noise. **DDPM** adds fresh noise at every step; **DDIM** with
eta = 0 is deterministic and copes with far fewer steps; **DPM-Solver++(2M)** is deterministic too and, as
a second-order solver that reuses the previous step's guess, needs fewer still. The **guidance scale** w
pushes the images towards the chosen digit: ε = (1 + w)·ε(x_t, digit) − w·ε(x_t, no digit). After a run,
the **timeline** replays it."""

FORWARD_HELP = """Training needs noisy versions of real images, and the forward process gives them in one line:
**x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε** with ε drawn from a standard normal distribution. ᾱ_t falls from 1 (the
clean image) to almost 0 (pure noise); the **schedule** decides how fast. Draw a digit (or take one you
generated) and move t to watch it dissolve."""

COMPOSE_HELP = """A second model was trained on **digits at half size in one of four quadrants**, labelled with the
pair (digit, position), and some pairs were **left out of its training** (marked ⚠ below). Asked for such a
pair, the model has to **compose** two things it learnt apart: the digit from the other positions, the
position from the other digits. **Guidance** of scale w is applied to **both labels**
(ε = (1 + w)·ε(x_t, d, p) − w·ε(x_t, ∅, ∅)), to the **position only** (ε = (1 + w)·ε(x_t, d, p) − w·ε(x_t, d, ∅)),
or the labels are **composed** (ε = ε(x_t) + (1 + w)·[(ε(x_t, d) − ε(x_t)) + (ε(x_t, p) − ε(x_t))], Liu et al.
2022: the pair never enters the network together). **Anywhere** leaves the position out."""

DENOISE_HELP = """The reverse process does not have to start from pure noise. Here your image is **noised to step
t** and the model then **denoises it towards the digit you choose**. With a small t the result keeps the shape
of your drawing; with a large t little of it survives and the model draws mostly its own digit."""


# ---------------------------------------------------------------- components


def _checked_image(pad: gr.Sketchpad, file, flatten_on_white: bool = False):
    """Replaces the sketchpad's image decoding: every image it receives (from the page or an API client)
    is checked before it is decoded, pixel count from the header, then decoded and shrunk
    (``demo.images.open_image``); other files and huge images get a one-line message instead of a
    traceback or gigabytes of memory. The canvas is RGBA, so nothing is flattened."""
    if file is None:
        return None
    try:
        im = open_image(file.path if isinstance(file, FileData) else bytes(file))
    except DemoError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return np.asarray(im.convert(pad.image_mode))


def drawing_pad(**kwargs) -> gr.Sketchpad:
    """A ``gr.Sketchpad`` whose image decoding is ``_checked_image`` (an instance attribute rather than a
    subclass: Gradio writes a .pyi stub next to the module of every component subclass)."""
    pad = gr.Sketchpad(**kwargs)
    pad.convert_and_format_image = types.MethodType(_checked_image, pad)
    return pad


def blank_canvas() -> dict:
    """An empty white canvas. The editor starts with the brush active only when it holds an image; an empty
    value (None) makes it start with the image tool, and the first strokes draw nothing."""
    return {"background": np.full((CANVAS, CANVAS, 3), 255, np.uint8), "layers": [], "composite": None}


def _source_inputs(prefix: str):
    """'Start from' radio, generated-image number and sketchpad, shared by the Forward and Draw tabs."""
    source = gr.Radio([(label, key) for key, label in SOURCES.items()], value="drawing", label="Start from")
    number = gr.Slider(
        1, D.MAX_IMAGES, value=1, step=1, label="Which generated image (from the Generate tab)", visible=False
    )
    sketch = drawing_pad(
        value=blank_canvas(),
        label="Draw a digit with the mouse or a finger",
        type="numpy",
        image_mode="RGBA",
        canvas_size=(CANVAS, CANVAS),
        fixed_canvas=True,
        layers=False,
        transforms=(),
        format="png",
        elem_id=f"{prefix}-sketch",
        brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
    )
    source.change(
        lambda s: (gr.update(visible=s == "generated"), gr.update(visible=s == "drawing")),
        source,
        [number, sketch],
        queue=False,
        api_visibility="private",
    )
    sketch.clear(blank_canvas, None, sketch, queue=False, api_visibility="private")  # keep the brush active
    return source, number, sketch


def _image(label: str, **kwargs) -> gr.Image:
    return gr.Image(
        label=label,
        type="pil",
        format="png",
        interactive=False,
        elem_classes="pixelated",
        buttons=["download", "fullscreen"],
        **kwargs,
    )


# ---------------------------------------------------------------- from the tabs' results to component updates


def _update(name: str, value):
    if isinstance(value, Timeline):
        return gr.update(maximum=max(value.maximum, 1), value=value.value, interactive=value.interactive)
    if name in ("gif", "png"):
        return gr.update(value=value, interactive=value is not None)
    return value


def _keyed(result: dict, components: dict) -> dict:
    return {components[k]: _update(k, v) for k, v in result.items()}


def _stream(results, components: dict):
    """Yield a tab's results as component updates; a ``DemoError`` becomes a message in the page."""
    try:
        for result in results:
            yield _keyed(result, components)
    except DemoError as e:
        raise gr.Error(str(e), print_exception=False) from None


def _checked(fn, *args):
    try:
        return fn(*args)
    except DemoError as e:
        raise gr.Error(str(e), print_exception=False) from None


def _drawing(pad: gr.Sketchpad, value):
    """The sketchpad's value, preprocessed here rather than by Gradio (the events take raw values, so that
    every input, the wrong-typed ones included, gets the demo's own message)."""
    if value is None:
        return None
    try:
        payload = pad.data_model.model_validate(value)
    except Exception:  # noqa: BLE001 - anything that is not a sketchpad value
        raise gr.Error(
            "The drawing must be a sketchpad value: {'background': ..., 'layers': [...], 'composite': ...}.",
            print_exception=False,
        ) from None
    return pad.preprocess(payload)


def _steps_progress(progress: gr.Progress, desc: str):
    return lambda i, n: progress((i, n), desc=desc, unit="steps")


# ---------------------------------------------------------------- the interface


def build_demo(
    checkpoint: str | os.PathLike | DDPMPipeline = SHIPPED_CHECKPOINT,
    device=None,
    shifted_checkpoint: str | os.PathLike | DDPMPipeline | None = SHIFTED_CHECKPOINT,
) -> gr.Blocks:
    """The demo's interface around the model in ``checkpoint`` (a directory, or a loaded pipeline), and the
    (digit, position) model in ``shifted_checkpoint`` for the Digit × position tab.

    The models are loaded once, here. The digit model must load (``CheckpointError`` otherwise); when the
    (digit, position) model cannot, its tab shows why in one line (``demo.shifted.reason``) and the rest works.
    Launch the result with ``launch(demo, ...)``."""
    pipe = checkpoint if isinstance(checkpoint, DDPMPipeline) else load_pipeline(checkpoint, device=device)
    model = DemoModel(pipe)
    shifted = load_shifted(shifted_checkpoint, device=device, file_dir=model.file_dir)
    Image.MAX_IMAGE_PIXELS = 2 * D.MAX_IMAGE_PIXELS  # PIL refuses to decode anything larger, whoever asks
    T = model.T
    steps_default = D.default_steps(T)
    samplers = [(label, key) for key, label in D.SAMPLERS.items()]

    with gr.Blocks(title="DDPM digits", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        traj = gr.State(None, time_to_live=3600)  # the last Generate run of this visitor
        gr.Markdown(INTRO)
        with gr.Tabs(overflow_behavior="wrap"):  # on a phone the tab names wrap onto two lines, none hidden
            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                gr.Markdown(GENERATE_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        digit = gr.Radio(DIGIT_CHOICES, value=D.DIGIT, label="Digit", elem_id="digit")
                        n_images = gr.Slider(
                            1,
                            D.MAX_IMAGES,
                            value=D.N_IMAGES,
                            step=1,
                            label="Number of images",
                            info=f"'{D.ONE_OF_EACH}' cycles through 0-9",
                        )
                        sampler = gr.Radio(samplers, value=D.SAMPLER, label="Sampler")
                        steps = gr.Slider(
                            1, T, value=steps_default, step=1, label="Sampling steps", info=f"1 to T = {T}"
                        )
                        guidance = gr.Slider(
                            0,
                            D.MAX_GUIDANCE,
                            value=D.GUIDANCE,
                            step=0.25,
                            label="Guidance scale w",
                            info="0 = no guidance",
                        )
                        eta = gr.Slider(
                            0,
                            1,
                            value=D.ETA,
                            step=0.1,
                            label="DDIM eta",
                            info="0 = deterministic, 1 = as random as DDPM",
                            interactive=D.SAMPLER == "ddim",
                        )
                        with gr.Row():
                            seed = gr.Number(
                                D.SEED, label="Seed", precision=0, minimum=0, maximum=D.MAX_SEED, elem_id="seed"
                            )
                            random_seed = gr.Checkbox(False, label="random seed")
                        run = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        gr.Markdown(limits_text(), elem_id="limits")
                    with gr.Column(scale=2):
                        with gr.Row(equal_height=True):
                            xt_img = _image("x_t: the images being denoised", elem_id="xt-image", height=300)
                            x0_img = _image("the model's prediction of x_0", elem_id="x0-image", height=300)
                        info = gr.Markdown("Press Generate.", elem_id="step-info")
                        timeline = gr.Slider(
                            0,
                            T,
                            value=0,
                            step=1,
                            interactive=False,
                            elem_id="timeline",
                            label="Timeline: steps done (0 = pure noise, the last = the result)",
                        )
                        with gr.Row():
                            gif_btn = gr.DownloadButton("Trajectory (GIF)", interactive=False, size="sm")
                            png_btn = gr.DownloadButton("Final images (PNG)", interactive=False, size="sm")
                G = dict(xt=xt_img, x0=x0_img, info=info, timeline=timeline, trajectory=traj, gif=gif_btn, png=png_btn)
                assert set(G) == set(generate.OUTPUTS)
                sampler.change(
                    lambda s: gr.update(interactive=s == "ddim"), sampler, eta, queue=False, api_visibility="private"
                )

                def generate_check(digit, n_images, sampler, steps, guidance, eta, seed, random_seed):
                    args = (digit, n_images, sampler, steps, guidance, eta, seed, random_seed)
                    _checked(generate.validate, model, *args)

                def generate_run(
                    digit,
                    n_images,
                    sampler,
                    steps,
                    guidance,
                    eta,
                    seed,
                    random_seed,
                    progress=gr.Progress(),  # noqa: B008
                ):
                    args = (digit, n_images, sampler, steps, guidance, eta, seed, random_seed)
                    req = _checked(generate.validate, model, *args)
                    yield from _stream(generate.run(model, req, _steps_progress(progress, "denoising")), G)

                def downloads_run(traj):
                    return _keyed(generate.downloads(model, traj), G)

                g_inputs = [digit, n_images, sampler, steps, guidance, eta, seed, random_seed]
                run.click(
                    generate_check, g_inputs, None, queue=False, api_visibility="private", preprocess=False
                ).success(
                    generate_run,
                    g_inputs,
                    [G[k] for k in generate.OUTPUTS],
                    api_name="generate",
                    preprocess=False,
                    concurrency_id="model",
                    concurrency_limit=MODEL_CONCURRENCY,
                    show_progress_on=[xt_img],
                ).success(
                    downloads_run,
                    traj,
                    [gif_btn, png_btn],
                    api_name="downloads",
                    show_progress="hidden",
                    concurrency_id="files",
                    concurrency_limit=2,
                )

                def timeline_run(traj, i):
                    return _keyed(_checked(generate.show_step, model, traj, i), G)

                timeline.input(
                    timeline_run,
                    [traj, timeline],
                    [xt_img, x0_img, info],
                    api_name="show_step",
                    preprocess=False,
                    show_progress="hidden",
                    trigger_mode="always_last",
                    concurrency_limit=4,
                )

            # ---------------------------------------------------------------- Forward process
            with gr.Tab("Forward", id="forward"):
                gr.Markdown(FORWARD_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        f_source, f_number, f_sketch = _source_inputs("forward")
                        f_schedule = gr.Dropdown(
                            list(model.schedules), value=model.default_schedule, label="Noise schedule"
                        )
                        f_t = gr.Slider(
                            0,
                            T,
                            value=round(D.FORWARD_T_FRACTION * T),
                            step=1,
                            label="t (0 = the clean image, T = pure noise)",
                            elem_id="forward-t",
                        )
                    with gr.Column(scale=1):
                        f_xt = _image("x_t", height=260)
                        f_info = gr.Markdown(elem_id="forward-info")
                        f_plot = gr.Plot(show_label=False)
                        f_strip = _image("from t = 0 to T")
                F = dict(xt=f_xt, strip=f_strip, plot=f_plot, info=f_info)
                assert set(F) == set(forward.OUTPUTS)

                def forward_check(source, image_number, traj, schedule, t):
                    _checked(forward.validate, model, source, image_number, traj, schedule, t)

                def forward_run(source, drawing, image_number, traj, schedule, t):
                    drawing = _drawing(f_sketch, drawing)
                    return _keyed(_checked(forward.run, model, source, drawing, image_number, traj, schedule, t), F)

                gr.on(
                    [
                        f_source.change,
                        f_number.change,
                        f_sketch.change,
                        f_sketch.input,
                        f_schedule.change,
                        f_t.change,
                        demo.load,
                    ],
                    forward_check,
                    [f_source, f_number, traj, f_schedule, f_t],
                    None,
                    queue=False,
                    api_visibility="private",
                    show_progress="hidden",
                    preprocess=False,
                ).success(
                    forward_run,
                    [f_source, f_sketch, f_number, traj, f_schedule, f_t],
                    list(F.values()),
                    api_name="forward",
                    preprocess=False,
                    show_progress="hidden",
                    trigger_mode="always_last",
                    concurrency_limit=4,
                )

            # ---------------------------------------------------------------- Draw and denoise
            with gr.Tab("Draw & denoise", id="denoise"):
                gr.Markdown(DENOISE_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        d_source, d_number, d_sketch = _source_inputs("denoise")
                        d_digit = gr.Radio(DIGIT_CHOICES[:10], value=D.DENOISE_DIGIT, label="Denoise towards digit")
                        d_t = gr.Slider(
                            1,
                            T,
                            value=max(1, round(D.DENOISE_T_FRACTION * T)),
                            step=1,
                            label="Noise level t",
                            info="how far into the forward process the image is pushed",
                        )
                        d_steps = gr.Slider(
                            1, T, value=steps_default, step=1, label="Denoising steps", info="at most t"
                        )
                        d_sampler = gr.Radio(samplers, value=D.SAMPLER, label="Sampler")
                        d_guidance = gr.Slider(0, D.MAX_GUIDANCE, value=D.GUIDANCE, step=0.25, label="Guidance scale w")
                        with gr.Row():
                            d_n = gr.Slider(1, D.MAX_VARIATIONS, value=D.N_VARIATIONS, step=1, label="Variations")
                            d_seed = gr.Number(D.SEED, label="Seed", precision=0, minimum=0, maximum=D.MAX_SEED)
                        d_run = gr.Button("Noise and denoise", variant="primary", elem_id="denoise-btn")
                        gr.Markdown(limits_text())
                    with gr.Column(scale=1):
                        d_seen = _image("your image as the model sees it (28 x 28)", height=200)
                        d_noised = _image("noised to t: x_t")
                        d_result = _image("denoised towards the chosen digit", elem_id="denoise-result")
                        d_info = gr.Markdown(elem_id="denoise-info")
                DN = dict(seen=d_seen, noised=d_noised, result=d_result, info=d_info)
                assert set(DN) == set(denoise.OUTPUTS)

                def denoise_check(source, image_number, traj, digit, t, steps, sampler, guidance, n_variations, seed):
                    args = (source, image_number, traj, digit, t, steps, sampler, guidance, n_variations, seed)
                    _checked(denoise.validate, model, *args)

                def denoise_run(
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
                    args = (source, image_number, traj, digit, t, steps, sampler, guidance, n_variations, seed)
                    req = _checked(denoise.validate, model, *args)
                    for note in req.notes:
                        gr.Warning(note)
                    drawing = _drawing(d_sketch, drawing)
                    results = denoise.run(
                        model, req, source, drawing, image_number, traj, _steps_progress(progress, "denoising")
                    )
                    yield from _stream(results, DN)

                d_run.click(
                    denoise_check,
                    [d_source, d_number, traj, d_digit, d_t, d_steps, d_sampler, d_guidance, d_n, d_seed],
                    None,
                    queue=False,
                    api_visibility="private",
                    preprocess=False,
                ).success(
                    denoise_run,
                    [d_source, d_sketch, d_number, traj, d_digit, d_t, d_steps, d_sampler, d_guidance, d_n, d_seed],
                    list(DN.values()),
                    api_name="denoise",
                    preprocess=False,
                    concurrency_id="model",
                    concurrency_limit=MODEL_CONCURRENCY,
                    show_progress_on=[d_result],
                )
            # ---------------------------------------------------------------- Digit × position
            with gr.Tab("Digit × position", id="compose"):
                gr.Markdown(COMPOSE_HELP)
                available = not isinstance(shifted, Unavailable)
                gr.Markdown(
                    "" if available else f"**Not available:** {shifted.reason}",
                    visible=not available,
                    elem_id="compose-unavailable",
                )
                c_T = shifted.T if available else T
                with gr.Row(visible=available):
                    with gr.Column(scale=1, min_width=300):
                        c_digit = gr.Radio(DIGIT_CHOICES[:10], value=D.COMPOSE_DIGIT, label="Digit")
                        c_position = gr.Radio(
                            compose.POSITION_CHOICES,
                            value=D.COMPOSE_POSITION,
                            label="Position",
                            info="a quadrant, or anywhere (the position left out)",
                            elem_id="compose-position",
                        )
                        c_legend = gr.Markdown(
                            compose.legend(shifted, D.COMPOSE_DIGIT, D.COMPOSE_POSITION), elem_id="compose-legend"
                        )
                        c_mode = gr.Radio(
                            [(label, key) for key, label in D.COMPOSE_MODES.items()],
                            value=D.COMPOSE_MODE,
                            label="Guidance applied to",
                        )
                        c_guidance = gr.Slider(
                            0,
                            D.MAX_GUIDANCE,
                            value=D.COMPOSE_GUIDANCE,
                            step=0.25,
                            label="Guidance scale w",
                            info="0 = none ('compose' still composes)",
                        )
                        c_n = gr.Slider(
                            1, D.COMPOSE_MAX_IMAGES, value=D.COMPOSE_N_IMAGES, step=1, label="Number of images"
                        )
                        c_steps = gr.Slider(
                            1,
                            c_T,
                            value=min(D.COMPOSE_STEPS, c_T),
                            step=1,
                            label=f"Sampling steps ({D.SAMPLERS[D.COMPOSE_SAMPLER]})",
                            info=f"1 to T = {c_T}",
                        )
                        with gr.Row():
                            c_seed = gr.Number(D.SEED, label="Seed", precision=0, minimum=0, maximum=D.MAX_SEED)
                            c_random_seed = gr.Checkbox(False, label="random seed")
                        c_run = gr.Button("Generate", variant="primary", elem_id="compose-btn")
                        gr.Markdown(limits_text(compose=True))
                    with gr.Column(scale=2):
                        c_pair = gr.Markdown(elem_id="compose-pair")
                        c_images = _image("samples", elem_id="compose-images", height=400)
                        c_info = gr.Markdown("Press Generate.", elem_id="compose-info")
                C = dict(images=c_images, info=c_info, pair=c_pair)
                assert set(C) == set(compose.OUTPUTS)

                gr.on(
                    [c_digit.change, c_position.change],
                    lambda digit, position: compose.legend(shifted, digit, position),
                    [c_digit, c_position],
                    c_legend,
                    queue=False,
                    api_visibility="private",
                    show_progress="hidden",
                    preprocess=False,
                )

                def compose_check(digit, position, mode, guidance, n_images, steps, seed, random_seed):
                    args = (digit, position, mode, guidance, n_images, steps, seed, random_seed)
                    _checked(compose.validate, shifted, *args)

                def compose_run(
                    digit,
                    position,
                    mode,
                    guidance,
                    n_images,
                    steps,
                    seed,
                    random_seed,
                    progress=gr.Progress(),  # noqa: B008
                ):
                    args = (digit, position, mode, guidance, n_images, steps, seed, random_seed)
                    req = _checked(compose.validate, shifted, *args)
                    for note in req.notes:
                        gr.Warning(note)
                    yield from _stream(compose.run(shifted, req, _steps_progress(progress, "denoising")), C)

                c_inputs = [c_digit, c_position, c_mode, c_guidance, c_n, c_steps, c_seed, c_random_seed]
                c_run.click(
                    compose_check, c_inputs, None, queue=False, api_visibility="private", preprocess=False
                ).success(
                    compose_run,
                    c_inputs,
                    list(C.values()),
                    api_name="compose",
                    preprocess=False,
                    concurrency_id="model",
                    concurrency_limit=MODEL_CONCURRENCY,
                    show_progress_on=[c_images],
                )
    demo.queue(default_concurrency_limit=MODEL_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.model = model  # for tests and the benchmark
    demo.shifted = shifted  # a ShiftedModel, or Unavailable with the reason
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs):
    """``demo.launch`` with the demo's settings: local only unless ``share``, no run history, no MCP/SSR/PWA."""
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        css=CSS,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        run_history=False,
        state_session_capacity=200,
        max_file_size="5mb",
        footer_links=["api", "settings"],
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT, help="checkpoint directory (default: the shipped model)")
    p.add_argument(
        "--shifted-checkpoint",
        default=SHIFTED_CHECKPOINT,
        help="the (digit, position) model of the Digit × position tab (default: checkpoints/shifted_mnist); "
        "without it that tab says why and the others work",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the local network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--share", action="store_true", help="also create a temporary public gradio.live link (off by default)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 can be faster when other programs keep the CPU busy)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        demo = build_demo(args.checkpoint, device=args.device, shifted_checkpoint=args.shifted_checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}\nTrain a model with `python -m ddpmlib.train` or pass --checkpoint DIR.")
    if isinstance(demo.shifted, Unavailable):
        print(f"note: the Digit × position tab is off. {demo.shifted.reason}", file=sys.stderr)
    try:
        launch(demo, host=args.host, port=args.port, share=args.share)
    except OSError as e:
        if "port" not in str(e).lower() and "address" not in str(e).lower():
            raise
        sys.exit(f"error: port {args.port} on {args.host} is in use (another demo?); pass --port N, e.g. --port 7861.")


if __name__ == "__main__":
    main()
