"""The Gradio demo: class-conditioned digits with slider-controlled timesteps.

    python demo/app.py                        # the shipped model, http://127.0.0.1:7860
    python demo/app.py --checkpoint runs/mnist_cpu/final --port 8000

Three tabs: Generate (sample digits, replay the trajectory with a timeline), Forward process (watch an
image dissolve into noise), Draw and denoise (noise your drawing, let the model denoise it toward a
digit). The app works offline: no analytics, no downloads, no public link unless --share is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if __package__ in (None, ""):  # run as a script: make `demo` and `ddpmlib` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from ddpmlib.checkpoint import CheckpointError  # noqa: E402
from ddpmlib.pipeline import SHIPPED_CHECKPOINT, DDPMPipeline, load_pipeline  # noqa: E402
from demo.handlers import (  # noqa: E402
    DIGIT_CHOICES,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_VARIATIONS,
    MAX_WORK,
    ONE_OF_EACH,
    SOURCES,
    DemoHandlers,
)

MODEL_CONCURRENCY = 1  # sampling requests at once: one request on all cores is fastest; the rest wait in the queue
QUEUE_SIZE = 32  # waiting requests beyond this are turned away with a message
CSS = ".pixelated img { image-rendering: pixelated; }"  # keep 28 x 28 digits sharp when enlarged

INTRO = """# Denoising diffusion on MNIST digits
A small class-conditional DDPM trained on a CPU, from the **ddpm-course** project. Everything runs on
this machine; nothing is sent anywhere."""

GENERATE_HELP = """A diffusion model draws by **starting from pure noise and removing a little of it at every
step**. At each step the network looks at the noisy image x_t and guesses the clean image x_0; the sampler
uses that guess to take one step towards less noise. **DDPM** adds fresh noise at every step; **DDIM** with
eta = 0 is deterministic and copes with far fewer steps. The **guidance scale** w pushes the images towards
the chosen digit: ε = (1 + w)·ε(x_t, digit) − w·ε(x_t, no digit). After a run, the **timeline** replays it."""

FORWARD_HELP = """Training needs noisy versions of real images, and the forward process gives them in one line:
**x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε** with ε drawn from a standard normal distribution. ᾱ_t falls from 1 (the
clean image) to almost 0 (pure noise); the **schedule** decides how fast. Draw a digit (or take one you
generated) and move t to watch it dissolve."""

DENOISE_HELP = """The reverse process does not have to start from pure noise. Here your image is **noised to step
t** and the model then **denoises it towards the digit you choose**. With a small t the result keeps the shape
of your drawing; with a large t little of it survives and the model draws mostly its own digit."""


def _source_inputs(prefix: str):
    """'Start from' radio, generated-image number and sketchpad, shared by the Forward and Draw tabs."""
    source = gr.Radio([(label, key) for key, label in SOURCES.items()], value="drawing", label="Start from")
    number = gr.Slider(
        1, MAX_IMAGES, value=1, step=1, label="Which generated image (from the Generate tab)", visible=False
    )
    sketch = gr.Sketchpad(
        label="Draw a digit: pick the brush on the left, then draw",
        type="numpy",
        image_mode="RGBA",
        canvas_size=(280, 280),
        fixed_canvas=True,
        layers=False,
        transforms=(),
        elem_id=f"{prefix}-sketch",
        brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
    )
    source.change(
        lambda s: (gr.Slider(visible=s == "generated"), gr.Sketchpad(visible=s == "drawing")),
        source,
        [number, sketch],
        queue=False,
        api_visibility="private",
    )
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


def build_demo(checkpoint: str | os.PathLike | DDPMPipeline = SHIPPED_CHECKPOINT, device=None) -> gr.Blocks:
    """The demo's interface around the model in ``checkpoint`` (a directory, or a loaded pipeline).

    The model is loaded once, here. Launch the result with ``launch(demo, ...)``."""
    pipe = checkpoint if isinstance(checkpoint, DDPMPipeline) else load_pipeline(checkpoint, device=device)
    h = DemoHandlers(pipe)
    T = h.T
    default_steps = min(25, T)

    with gr.Blocks(title="DDPM digits", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        traj = gr.State(None, time_to_live=3600)  # the last Generate run of this visitor
        gr.Markdown(INTRO)
        with gr.Tabs():
            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                gr.Markdown(GENERATE_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        digit = gr.Radio(DIGIT_CHOICES, value=ONE_OF_EACH, label="Digit", elem_id="digit")
                        n_images = gr.Slider(
                            1,
                            MAX_IMAGES,
                            value=10,
                            step=1,
                            label="Number of images",
                            info=f"'{ONE_OF_EACH}' cycles through 0-9",
                        )
                        sampler = gr.Radio([("DDIM", "ddim"), ("DDPM", "ddpm")], value="ddim", label="Sampler")
                        steps = gr.Slider(
                            1,
                            T,
                            value=default_steps,
                            step=1,
                            label="Sampling steps",
                            info=f"1 to T = {T}; images x steps at most {MAX_WORK}",
                        )
                        guidance = gr.Slider(
                            0, MAX_GUIDANCE, value=2.0, step=0.5, label="Guidance scale w", info="0 = no guidance"
                        )
                        eta = gr.Slider(
                            0, 1, value=0.0, step=0.1, label="DDIM eta", info="0 = deterministic, 1 = as random as DDPM"
                        )
                        with gr.Row():
                            seed = gr.Number(0, label="Seed", elem_id="seed")
                            random_seed = gr.Checkbox(False, label="random seed")
                        run = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Column(scale=2):
                        with gr.Row(equal_height=True):
                            xt_img = _image("x_t: the images being denoised", elem_id="xt-image", height=300)
                            x0_img = _image("the model's prediction of x_0", elem_id="x0-image", height=300)
                        info = gr.Markdown("Press **Generate**.", elem_id="step-info")
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
                sampler.change(
                    lambda s: gr.Slider(interactive=s == "ddim"), sampler, eta, queue=False, api_visibility="private"
                )
                run.click(
                    h.generate,
                    [digit, n_images, sampler, steps, guidance, eta, seed, random_seed],
                    [xt_img, x0_img, info, timeline, traj, seed, gif_btn, png_btn],
                    api_name="generate",
                    concurrency_id="model",
                    concurrency_limit=MODEL_CONCURRENCY,
                )
                timeline.input(
                    h.show_step,
                    [traj, timeline],
                    [xt_img, x0_img, info],
                    api_name="show_step",
                    show_progress="hidden",
                    trigger_mode="always_last",
                    concurrency_limit=4,
                )

            # ---------------------------------------------------------------- Forward process
            with gr.Tab("Forward process", id="forward"):
                gr.Markdown(FORWARD_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        f_source, f_number, f_sketch = _source_inputs("forward")
                        f_schedule = gr.Dropdown(list(h.schedules), value=h.default_schedule, label="Noise schedule")
                        f_t = gr.Slider(
                            0,
                            T,
                            value=T // 4,
                            step=1,
                            label="t (0 = the clean image, T = pure noise)",
                            elem_id="forward-t",
                        )
                    with gr.Column(scale=1):
                        f_xt = _image("x_t", height=260)
                        f_info = gr.Markdown()
                        f_plot = gr.Plot(label="ᾱ_t for each schedule")
                        f_strip = _image("from t = 0 to T")
                gr.on(
                    [f_source.change, f_number.change, f_sketch.change, f_schedule.change, f_t.change, demo.load],
                    h.forward,
                    [f_source, f_sketch, f_number, traj, f_schedule, f_t],
                    [f_xt, f_strip, f_plot, f_info],
                    api_name="forward",
                    show_progress="hidden",
                    trigger_mode="always_last",
                    concurrency_limit=4,
                )

            # ---------------------------------------------------------------- Draw and denoise
            with gr.Tab("Draw and denoise", id="denoise"):
                gr.Markdown(DENOISE_HELP)
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        d_source, d_number, d_sketch = _source_inputs("denoise")
                        d_digit = gr.Radio(DIGIT_CHOICES[:10], value="3", label="Denoise towards digit")
                        d_t = gr.Slider(
                            1,
                            T,
                            value=max(1, round(0.6 * T)),
                            step=1,
                            label="Noise level t",
                            info="how far into the forward process the image is pushed",
                        )
                        d_steps = gr.Slider(
                            1, T, value=default_steps, step=1, label="Denoising steps", info="at most t"
                        )
                        d_sampler = gr.Radio([("DDIM", "ddim"), ("DDPM", "ddpm")], value="ddim", label="Sampler")
                        d_guidance = gr.Slider(0, MAX_GUIDANCE, value=2.0, step=0.5, label="Guidance scale w")
                        with gr.Row():
                            d_n = gr.Slider(1, MAX_VARIATIONS, value=4, step=1, label="Variations")
                            d_seed = gr.Number(0, label="Seed")
                        d_run = gr.Button("Noise and denoise", variant="primary")
                    with gr.Column(scale=1):
                        d_seen = _image("your image as the model sees it (28 x 28)", height=200)
                        d_noised = _image("noised to t: x_t")
                        d_result = _image("denoised towards the chosen digit")
                        d_info = gr.Markdown()
                d_run.click(
                    h.denoise,
                    [d_source, d_sketch, d_number, traj, d_digit, d_t, d_steps, d_sampler, d_guidance, d_n, d_seed],
                    [d_seen, d_noised, d_result, d_info],
                    api_name="denoise",
                    concurrency_id="model",
                    concurrency_limit=MODEL_CONCURRENCY,
                )
    demo.queue(default_concurrency_limit=MODEL_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.handlers = h  # for tests and the benchmark
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
        demo = build_demo(args.checkpoint, device=args.device)
    except CheckpointError as e:
        sys.exit(f"error: {e}\nTrain a model with `python -m ddpmlib.train` or pass --checkpoint DIR.")
    launch(demo, host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
