"""Unit tests of the demo's tabs and helpers (demo/) on a tiny random checkpoint; no server."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")

import demo.app as app  # noqa: E402
from ddpmlib.data import to_uint8  # noqa: E402
from ddpmlib.pipeline import load_pipeline  # noqa: E402
from demo import defaults as D  # noqa: E402
from demo import files, steps  # noqa: E402
from demo.checks import DemoError, check_cost, cost  # noqa: E402
from demo.images import drawing_to_x0, grid  # noqa: E402
from demo.model import DemoModel  # noqa: E402
from demo.tabs import Timeline, denoise, forward, generate  # noqa: E402
from demo.testing import make_tiny_checkpoint  # noqa: E402

T = 50
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)


@pytest.fixture(scope="module")
def m(ckpt, tmp_path_factory):
    return DemoModel(load_pipeline(ckpt, device="cpu"), file_dir=tmp_path_factory.mktemp("files"))


def run(m, digit="7", n=3, sampler="ddim", steps=5, w=1.0, eta=0.0, seed=0, random_seed=False):
    """All yields of a Generate request; the last one holds every result."""
    return list(generate.run(m, generate.validate(m, digit, n, sampler, steps, w, eta, seed, random_seed)))


def drawing(kind="transparent"):
    """A sketchpad value with a vertical stroke ("1"), as gr.Sketchpad passes it."""
    if kind == "transparent":  # black ink on a transparent RGBA canvas
        img = np.zeros((280, 280, 4), np.uint8)
        img[40:240, 120:150, 3] = 255
    else:  # black ink on white RGB
        img = np.full((280, 280, 3), 255, np.uint8)
        img[40:240, 120:150] = 0
    return {"background": None, "layers": [], "composite": img}


EMPTY = {"background": None, "layers": [], "composite": np.zeros((280, 280, 4), np.uint8)}


# ---------------------------------------------------------------- paper steps and indices


def test_paper_steps_and_indices():
    assert steps.to_index(1) == 0 and steps.to_index(T) == T - 1 and steps.to_paper(T - 1) == T
    with pytest.raises(ValueError):
        steps.to_index(0)  # t = 0 is the clean image: no tensor index
    s = load_pipeline.__globals__["NoiseSchedule"].from_name("linear", T)
    assert steps.alpha_bar(s, 0) == 1.0 and steps.alpha_bar(s, 1) == pytest.approx(float(s.alpha_bars[0]))
    assert f"t = {T} of {T}" in steps.describe(s, T) and "t = 0 (the clean image)" in steps.describe(s, 0)


def test_no_hand_written_index_shifts():
    """Paper step <-> index conversion lives in demo/steps.py only."""
    for path in (REPO / "demo").rglob("*.py"):
        if path.name == "steps.py":
            continue
        text = path.read_text()
        for bad in ("t - 1", "t + 1)", "t_start=t", "alpha_bars[t"):
            assert bad not in text, f"{path.name}: {bad!r}"


# ---------------------------------------------------------------- Generate


def test_generate_results_and_trajectory(m):
    outs = run(m, digit="7", n=3, steps=5)
    assert outs[0]["info"].startswith("Sampling") and outs[0]["timeline"] == Timeline(0, 0, False)
    assert outs[0]["gif"] is None and outs[0]["png"] is None  # the previous run's downloads are withdrawn
    done = outs[-1]
    assert set(done) == set(generate.OUTPUTS) - set(generate.DOWNLOADS)
    traj = done["trajectory"]
    assert done["xt"].size == done["x0"].size == (3 * 30 + 2, 32)  # natural size: the browser enlarges
    assert "Done after 5 step(s)" in done["info"] and "seed 0" in done["info"]
    assert done["timeline"] == Timeline(5, 5, True)
    assert traj.xt.shape == traj.x0.shape == (6, 3, 1, 28, 28) and traj.xt.dtype == torch.uint8
    assert traj.t[0] == T and traj.t[-2] >= 1 and traj.t[-1] == 0  # paper steps: starts at T, ends at x_0
    assert traj.t[:-1] == sorted(traj.t[:-1], reverse=True) and traj.labels == [7, 7, 7]
    assert not traj.files  # written afterwards, by generate.downloads
    files = generate.downloads(m, traj)
    assert Path(files["png"]).stat().st_size > 0 and Path(files["gif"]).name == "ddpm_trajectory_seed0.gif"
    assert generate.downloads(m, traj) == files  # written once
    assert generate.downloads(m, None) == {"gif": None, "png": None}
    with Image.open(files["gif"]) as im:
        assert im.n_frames == 6  # 5 steps + the final image


def test_generate_streams_intermediate_images(m, monkeypatch):
    monkeypatch.setattr(m, "stream_interval_s", 0.0)
    outs = run(m, steps=10)
    streamed = outs[1:-1]
    assert len(streamed) == 9 and all(set(o) == {"xt", "x0", "info"} for o in streamed)
    assert [o["info"].split(" steps done")[0] for o in streamed] == [f"**{i} of 10" for i in range(9)]
    monkeypatch.setattr(m, "stream_interval_s", 3600.0)
    assert len(run(m, steps=10)) == 2  # a fast run sends no intermediate picture


def test_generate_equals_library_and_is_deterministic(m):
    traj = run(m, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=123)[-1]["trajectory"]
    again = run(m, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=123)[-1]["trajectory"]
    other = run(m, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=124)[-1]["trajectory"]
    assert torch.equal(traj.xt, again.xt) and torch.equal(traj.x0, again.x0)
    assert not torch.equal(traj.xt[-1], other.xt[-1])
    ref = m.pipe.generate([0, 1, 2, 3], sampler="ddpm", steps=6, guidance_scale=2.0, seed=123)
    assert torch.equal(traj.xt[-1], to_uint8(ref))  # the demo shows exactly what ddpmlib samples


def test_dpmpp_is_the_default_and_equals_the_library(m):
    """The default sampler, with x_T handed over by ddpmlib (not drawn again by the demo)."""
    from ddpmlib.samplers import SamplingOptions

    assert D.SAMPLER == "dpmpp" and D.STEPS <= 15
    traj = run(m, digit="one of each", n=3, sampler="dpmpp", steps=4, w=1.0, seed=7)[-1]["trajectory"]
    ref = m.pipe.generate([0, 1, 2], options=SamplingOptions("dpmpp", steps=4, guidance_scale=1.0, seed=7))
    assert torch.equal(traj.xt[-1], to_uint8(ref))
    x_T = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    assert torch.equal(traj.xt[0], to_uint8(x_T)) and traj.t[0] == T


def test_random_seed_is_reported_and_reproducible(m):
    req = generate.validate(m, "7", 2, "ddim", 3, 1.0, 0.0, 0, True)
    assert 0 <= req.seed <= D.MAX_SEED and f"seed {req.seed}" in req.settings
    a = list(generate.run(m, req))[-1]["trajectory"]
    assert torch.equal(a.xt, run(m, n=2, steps=3, seed=req.seed)[-1]["trajectory"].xt)


def test_one_of_each_cycles_digits(m):
    assert run(m, digit="one of each", n=12, steps=1)[-1]["trajectory"].labels == list(range(10)) + [0, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digit": "11"}, "Pick a digit from 0 to 9"),
        ({"digit": None}, "Pick a digit"),
        ({"n": 0}, "number of images must be between 1 and 20"),
        ({"n": "ten"}, "number of images must be a number"),
        ({"n": None}, "enter a value for The number of images"),
        ({"steps": 0}, f"number of steps must be between 1 and {T}"),
        ({"steps": T + 1}, f"number of steps must be between 1 and {T}"),
        ({"steps": 2.5}, "must be a whole number"),
        ({"w": -1}, "guidance scale must be between 0 and 10"),
        ({"w": float("nan")}, "finite"),
        ({"w": [1]}, "guidance scale must be a number"),
        ({"eta": 1.5}, "eta must be between 0 and 1"),
        ({"sampler": "euler"}, r"must be one of DPM-Solver\+\+\(2M\) \('dpmpp'\), DDIM \('ddim'\), DDPM"),
        ({"sampler": None}, "The sampler must be one of"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": -3}, f"seed must be between 0 and {D.MAX_SEED}, got -3"),  # an integer, not 4.29497e+09
        ({"seed": "abc"}, "seed must be a number"),
        ({"seed": None}, "enter a value for The seed"),
        ({"seed": True}, "The seed must be a number, got True"),  # JSON true from an API client
        ({"random_seed": "yes"}, "'random seed' must be true or false"),
    ],
)
def test_generate_validation(m, kwargs, message):
    with pytest.raises(DemoError, match=message):
        run(m, **kwargs)


def test_cost_model_and_its_message(m, monkeypatch):
    assert cost(10, 4, 0.0) == 10 * (4 + D.STEP_COST) and cost(10, 4, 1.0) == 10 * (8 + D.STEP_COST)
    monkeypatch.setattr(D, "MAX_COST", 100)
    check_cost(10, 4, 0.0)  # 60: fine
    with pytest.raises(DemoError) as e:
        check_cost(10, 5, 1.0)  # 10 x (10 + 2) = 120
    msg = str(e.value)
    assert "120" in msg and "at most 8 steps" in msg and "at most 4 images" in msg and "guidance 0" in msg
    with pytest.raises(DemoError, match=r"Lower it to at most 2 steps\.$"):  # 100 // 42; nothing else helps
        check_cost(50, 20, 1.0)
    with pytest.raises(DemoError) as e:  # 20 x (2 x 2 + 2) = 120; 100 / 20 - 2 = 3 -> one guided image fits
        check_cost(20, 2, 1.0, what="variations")
    assert "at most 1 variation or" in str(e.value) and "variations or" not in str(e.value)
    with pytest.raises(DemoError, match="too big"):
        run(m, n=10, steps=5, w=1.0)  # 5 x 22 = 110 > 100: refused before any sampling
    run(m, n=8, steps=5, w=0.0)  # 5 x 10 = 50


def test_worst_accepted_request_costs_at_most_the_limit():
    """Every request the sliders allow either costs <= MAX_COST or is refused (T = 1000, the shipped model)."""
    for n in (1, D.MAX_IMAGES):
        for w in (0.0, 1.0):
            for s in (1, 10, 100, 1000):
                try:
                    check_cost(s, n, w)
                    assert cost(s, n, w) <= D.MAX_COST
                except DemoError:
                    assert cost(s, n, w) > D.MAX_COST


def test_timeline(m):
    traj = run(m, n=2, steps=4)[-1]["trajectory"]
    out = generate.show_step(m, traj, 0)
    assert out["xt"].size == out["x0"].size and "**0 of 4 steps done** (the start: pure noise)" in out["info"]
    assert f"t = {T} of {T}" in out["info"] and "SNR" in out["info"]
    assert "Done" in generate.show_step(m, traj, 4)["info"]
    with pytest.raises(DemoError, match="between 0 and 4"):
        generate.show_step(m, traj, 5)
    with pytest.raises(DemoError, match="Generate some digits first"):
        generate.show_step(m, None, 0)


def test_messages_have_no_markdown():
    """Error messages appear in popups that show text as it is: no **bold**."""
    for path in (REPO / "demo").rglob("*.py"):
        for line in path.read_text().splitlines():
            if "fail(" in line or "DemoError(" in line:
                assert "**" not in line, f"{path.name}: {line.strip()}"


# ---------------------------------------------------------------- drawings and images sent to the demo


@pytest.mark.parametrize("kind", ["transparent", "white"])
def test_drawing_to_x0_is_mnist_like(kind):
    x = drawing_to_x0(drawing(kind))
    assert x.shape == (1, 1, 28, 28) and x.min() == -1 and x.max() == 1
    ink = (x[0, 0] + 1) / 2
    rows = torch.nonzero(ink.sum(1) > 0.1).flatten()
    assert rows.max() - rows.min() + 1 in (20, 21)  # scaled to the 20-pixel box
    ys = torch.arange(28.0)
    assert abs(float((ink.sum(1) * ys).sum() / ink.sum()) - 13.5) <= 1  # centred by its centre of mass
    assert ink[:, :4].max() == 0 and ink[:, -4:].max() == 0  # a thin stroke in the middle


def test_empty_drawing_is_none():
    assert drawing_to_x0(EMPTY) is None and drawing_to_x0(None) is None and drawing_to_x0({"composite": None}) is None
    assert drawing_to_x0(app.blank_canvas()) is None  # the canvas the page starts with
    assert drawing_to_x0(app.blank_canvas()["background"]) is None


def test_images_are_checked(tmp_path):
    big = np.zeros((3000, 3000), np.uint8)
    with pytest.raises(DemoError, match="3000 x 3000 pixels"):
        drawing_to_x0(big)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DemoError, match="not an image"):
        drawing_to_x0(str(tmp_path / "notes.txt"))
    with pytest.raises(DemoError, match="must be an image"):
        drawing_to_x0({"composite": np.zeros((5, 5, 7))})
    img = np.full((1200, 1000, 3), 255, np.uint8)  # accepted, and shrunk before any float conversion
    img[200:1000, 450:550] = 0
    Image.fromarray(img).save(tmp_path / "one.png")
    x = drawing_to_x0(str(tmp_path / "one.png"))
    assert x.shape == (1, 1, 28, 28) and x.max() == 1
    assert torch.equal(drawing_to_x0(img), x)


def test_drawing_pad_refuses_what_is_not_an_image(tmp_path):
    from gradio.data_classes import FileData

    pad = app.drawing_pad(type="numpy", image_mode="RGBA")
    (tmp_path / "a.png").write_bytes(b"GIF89a but not really")
    with pytest.raises(gr.Error, match="not an image"):
        pad.convert_and_format_image(FileData(path=str(tmp_path / "a.png")))
    Image.new("L", (600, 400), 255).save(tmp_path / "b.png")
    arr = pad.convert_and_format_image(FileData(path=str(tmp_path / "b.png")))
    assert arr.shape == (373, 560, 4)  # shrunk to MAX_IMAGE_SIDE, in the pad's mode
    assert pad.get_block_name() == "imageeditor" and not (REPO / "demo" / "app.pyi").exists()


# ---------------------------------------------------------------- Forward process


def test_forward_from_drawing(m):
    out = forward.run(m, "drawing", drawing(), 1, None, "cosine", 10)
    assert set(out) == set(forward.OUTPUTS)
    assert out["xt"].size == (28 * 8, 28 * 8) and out["strip"].size == ((11 * 30 + 2) * 2, 32 * 2)
    assert out["plot"].axes and "cosine schedule" in out["info"] and f"t = 10 of {T}" in out["info"]
    clean = forward.run(m, "drawing", drawing(), 1, None, "linear", 0)["xt"]
    assert np.array_equal(np.asarray(clean), np.asarray(grid(drawing_to_x0(drawing()), 1, 8)))  # t = 0 is x_0


def test_forward_plot_note_stays_inside_the_axes(m):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for t in (0, 1, T // 2, T):
        fig = forward.run(m, "drawing", drawing(), 1, None, "linear", t)["plot"]
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        ax = fig.axes[0]
        note = [c for c in ax.texts if c.get_text().startswith("t = ")][0]
        box, axes_box = note.get_window_extent(canvas.get_renderer()), ax.get_window_extent(canvas.get_renderer())
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1


def test_forward_from_generated_image(m):
    traj = run(m, n=3, steps=2)[-1]["trajectory"]
    out = forward.run(m, "generated", None, 3, traj, "linear", 5)
    assert out["xt"] is not None and "linear schedule" in out["info"]
    with pytest.raises(DemoError, match="made 3 image"):
        forward.run(m, "generated", None, 4, traj, "linear", 5)
    with pytest.raises(DemoError, match="Generate some digits in the Generate tab first"):
        forward.validate(m, "generated", 1, None, "linear", 5)


def test_forward_messages(m):
    out = forward.run(m, "drawing", EMPTY, 1, None, "linear", 5)
    assert out["xt"] is None and out["plot"] is not None and "The drawing is empty" in out["info"]
    with pytest.raises(DemoError, match="noise schedule must be one of"):
        forward.validate(m, "drawing", 1, None, "wiggly", 5)
    with pytest.raises(DemoError, match=f"t must be between 0 and {T}"):
        forward.validate(m, "drawing", 1, None, "linear", T + 1)


# ---------------------------------------------------------------- Draw and denoise


def den(m, source="drawing", image=None, number=1, traj=None, digit="3", t=30, steps=5, sampler="ddim", w=1.0, n=2):
    image = drawing() if image is None else image
    req = denoise.validate(m, source, number, traj, digit, t, steps, sampler, w, n, 0)
    return req, list(denoise.run(m, req, source, image, number, traj))


def test_denoise_results_and_determinism(m):
    _, outs = den(m, n=3)
    out = outs[-1]
    assert set(out) == set(denoise.OUTPUTS) and "done" in out["info"] and "towards **3**" in out["info"]
    assert out["seen"].size == (28 * 8, 28 * 8) and out["noised"].size == out["result"].size == (3 * 30 + 2, 32)
    assert np.array_equal(np.asarray(out["result"]), np.asarray(den(m, n=3)[1][-1]["result"]))


def test_denoise_clamps_steps_to_t(m):
    req, outs = den(m, t=5, steps=20, sampler="ddpm")
    assert req.steps == 5 and "using 5 steps instead of 20" in req.notes[0] and "5 step(s)" in outs[-1]["info"]


def test_denoise_from_generated_image(m):
    traj = run(m, n=2, steps=2)[-1]["trajectory"]
    assert "done" in den(m, source="generated", image=EMPTY, number=2, traj=traj)[1][-1]["info"]


def test_denoise_empty_drawing_is_a_message(m):
    _, outs = den(m, image=EMPTY)
    assert outs == [{"info": denoise.EMPTY}]  # the previous pictures stay


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digit": "one of each"}, "Pick one digit from 0 to 9 to denoise towards"),
        ({"digit": None}, "Pick one digit from 0 to 9 to denoise towards"),  # no 'one of each' suggested
        ({"digit": "12"}, "Pick one digit from 0 to 9"),
        ({"t": 0}, f"noise level t must be between 1 and {T}"),
        ({"n": 9}, "number of variations must be between 1 and 8"),
        ({"w": -0.5}, "guidance scale must be between 0 and 10"),
        ({"source": "webcam"}, "'Start from' must be one of drawing, generated"),
    ],
)
def test_denoise_validation(m, kwargs, message):
    with pytest.raises(DemoError, match=message):
        den(m, **kwargs)


# ---------------------------------------------------------------- the app and its command line


def test_build_demo_has_named_api(ckpt):
    demo = app.build_demo(str(ckpt))
    names = {d.api_name for d in demo.fns.values() if d.api_name}
    assert {"generate", "show_step", "forward", "denoise"} <= names
    assert demo.model.T == T and demo.analytics_enabled is False
    # validation runs first, unqueued, with no outputs; sampling only after it succeeded
    checks = [d for d in demo.fns.values() if d.fn.__name__.endswith("_check")]
    assert {d.fn.__name__ for d in checks} == {"generate_check", "forward_check", "denoise_check", "compose_check"}
    assert all(not d.queue and not d.outputs for d in checks)
    seed = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "seed")
    assert all(seed not in d.outputs for d in demo.fns.values())  # the seed box never gets an error badge


def test_defaults_come_from_one_place(ckpt, monkeypatch):
    monkeypatch.setattr(D, "SAMPLER", "ddpm")
    monkeypatch.setattr(D, "STEPS", 7)
    monkeypatch.setattr(D, "GUIDANCE", 0.5)
    demo = app.build_demo(str(ckpt))
    cfg = demo.get_config_file()
    values = {(c["props"].get("label"), str(c["props"].get("value"))) for c in cfg["components"]}
    assert ("Sampler", "ddpm") in values and ("Sampling steps", "7") in values and ("Guidance scale w", "0.5") in values
    steps = next(c for c in cfg["components"] if c["props"].get("label") == "Sampling steps")
    assert steps["props"]["maximum"] == T  # the slider still reaches T


def test_cli_defaults_are_local(ckpt, monkeypatch):
    seen = {}
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(kw))
    app.main(["--checkpoint", str(ckpt)])
    assert seen == {"host": "127.0.0.1", "port": 7860, "share": False}
    app.main(["--checkpoint", str(ckpt), "--host", "0.0.0.0", "--port", "8001", "--share"])
    assert seen == {"host": "0.0.0.0", "port": 8001, "share": True}


def test_cli_missing_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at"):
        app.main(["--checkpoint", str(tmp_path / "nothing")])


def test_cli_port_in_use_is_one_line(ckpt):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "demo.app", "--checkpoint", str(ckpt), "--port", str(port), "--threads", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is in use (another demo?); pass --port N, e.g. --port 7861."
    )
    assert "Traceback" not in r.stderr


def test_temp_folder_of_a_dead_server_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / dead.stdout.strip()
    (stale / "cache").mkdir(parents=True)
    (stale / "cache" / "x.png").write_bytes(b"x")
    alive = tmp_path / str(os.getpid())
    alive.mkdir()
    assert files.remove_stale(tmp_path) == [stale] and not stale.exists() and alive.exists()


def test_server_temp_folder_is_removed_on_exit(tmp_path):
    """A server process claims <tmp>/ddpm-demo/<pid>, Gradio writes there, and it is gone after SIGTERM."""
    code = (
        "import os, signal, sys, time; from pathlib import Path\n"
        "from demo.files import claim_temp_dir\n"
        f"folder = claim_temp_dir(Path({str(tmp_path)!r}))\n"
        "(folder / 'picture.png').write_bytes(b'x' * 1000)\n"
        "print(folder, flush=True); time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    folder = Path(p.stdout.readline().strip())
    assert folder.parent == tmp_path and (folder / "picture.png").is_file()
    p.terminate()
    p.wait(timeout=30)
    assert not folder.exists()


def test_forward_figures_render_in_many_threads_at_once(m):
    """The Forward lane serves several requests at once and Gradio renders each figure in its own thread;
    matplotlib's mathtext parser is not thread-safe (ParseException under load), so no text may use it."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    def render(k: int) -> bytes:
        fig = forward.run(m, "drawing", drawing(), 1, None, ("linear", "cosine")[k % 2], k % (T + 1))["plot"]
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    with ThreadPoolExecutor(max_workers=8) as pool:
        pngs = list(pool.map(render, range(48)))
    assert len(pngs) == 48 and all(p.startswith(b"\x89PNG") for p in pngs)
    fig = forward.run(m, "drawing", drawing(), 1, None, "linear", 5)["plot"]
    texts = [fig.axes[0].title, fig.axes[0].yaxis.label, *fig.axes[0].texts]
    assert all("$" not in t.get_text() for t in texts)
