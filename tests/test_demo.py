"""Unit tests of the demo's handlers (demo/handlers.py, demo/images.py) on a tiny random checkpoint."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

gr = pytest.importorskip("gradio")

import demo.app as app  # noqa: E402
import demo.handlers as H  # noqa: E402
from ddpmlib.data import to_uint8  # noqa: E402
from ddpmlib.pipeline import load_pipeline  # noqa: E402
from demo.images import drawing_to_x0  # noqa: E402
from demo.testing import make_tiny_checkpoint  # noqa: E402

T = 50


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and CI shares its two cores with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)


@pytest.fixture(scope="module")
def h(ckpt, tmp_path_factory):
    return H.DemoHandlers(load_pipeline(ckpt, device="cpu"), file_dir=tmp_path_factory.mktemp("files"))


def run(h, digit="7", n=3, sampler="ddim", steps=5, w=1.0, eta=0.0, seed=0, random_seed=False):
    """All yields of a Generate request; the last one holds the results."""
    return list(h.generate(digit, n, sampler, steps, w, eta, seed, random_seed))


def final(outs):
    """The outputs after all yields: per output, the last value that was not gr.skip()."""
    merged = list(outs[0])
    for out in outs[1:]:
        merged = [old if new == gr.skip() else new for old, new in zip(merged, out)]
    return merged


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


# ---------------------------------------------------------------- Generate


def test_generate_outputs_and_trajectory(h):
    outs = run(h, digit="7", n=3, steps=5)
    xt_img, x0_img, info, timeline, traj, seed, gif, png = final(outs)
    assert outs[-2][4] is traj and outs[-2][6] == gr.skip() and outs[-1][4] is traj  # the result, then downloads
    assert xt_img.size == x0_img.size == ((3 * 30 + 2) * 3, 32 * 3)
    assert "Done after 5 step(s)" in info and seed == 0
    assert traj.xt.shape == traj.x0.shape == (6, 3, 1, 28, 28) and traj.xt.dtype == torch.uint8
    assert traj.t[0] == T - 1 and traj.t[-2] == 0 and traj.t[-1] == -1  # starts at paper step T, ends at 1
    assert traj.t[:-1] == sorted(traj.t[:-1], reverse=True) and traj.labels == [7, 7, 7]
    assert Path(traj.files["png"]).stat().st_size > 0 and Path(traj.files["gif"]).stat().st_size > 0
    assert Path(gif.value["path"]).name == "ddpm_trajectory_seed0.gif" and gif.interactive
    assert timeline.maximum == 5 and timeline.value == 5 and timeline.interactive
    with Image.open(traj.files["gif"]) as im:
        assert im.n_frames == 6  # 5 steps + the final image


def test_generate_streams_intermediate_images(h, monkeypatch):
    monkeypatch.setattr(h, "stream_interval_s", 0.0)
    outs = run(h, steps=10)
    streamed = [o for o in outs[:-2] if isinstance(o[0], Image.Image)]  # before the result
    assert len(streamed) == 9  # every step but the last, which is the result
    assert [o[2].split(" steps done")[0] for o in streamed] == [f"**{i} of 10" for i in range(9)]


def test_generate_equals_library_and_is_deterministic(h):
    traj = final(run(h, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=123))[4]
    again = final(run(h, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=123))[4]
    other = final(run(h, digit="one of each", n=4, sampler="ddpm", steps=6, w=2.0, seed=124))[4]
    assert torch.equal(traj.xt, again.xt) and torch.equal(traj.x0, again.x0)
    assert not torch.equal(traj.xt[-1], other.xt[-1])
    ref = h.pipe.generate([0, 1, 2, 3], sampler="ddpm", steps=6, guidance_scale=2.0, seed=123)
    assert torch.equal(traj.xt[-1], to_uint8(ref))  # the demo shows exactly what ddpmlib samples


def test_random_seed_is_reported_and_reproducible(h):
    outs = run(h, seed=0, random_seed=True)
    seed = outs[0][5]
    assert final(outs)[5] == seed and 0 <= seed <= H.MAX_SEED
    assert torch.equal(final(outs)[4].xt, final(run(h, seed=seed))[4].xt)


def test_one_of_each_cycles_digits(h):
    assert final(run(h, digit="one of each", n=12, steps=1))[4].labels == list(range(10)) + [0, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digit": "11"}, "Pick a digit from 0 to 9"),
        ({"digit": None}, "Pick a digit"),
        ({"n": 0}, "number of images must be between 1 and 20"),
        ({"n": 21}, "number of images must be between 1 and 20"),
        ({"steps": 0}, f"number of steps must be between 1 and {T}"),
        ({"steps": T + 1}, f"number of steps must be between 1 and {T}"),
        ({"steps": 2.5}, "must be a whole number"),
        ({"w": -1}, "guidance scale must be between 0 and 10"),
        ({"w": 1e6}, "guidance scale must be between 0 and 10"),
        ({"w": float("nan")}, "finite"),
        ({"eta": 1.5}, "eta must be between 0 and 1"),
        ({"sampler": "euler"}, "must be DDPM or DDIM"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": -3}, "seed must be between 0"),
        ({"seed": "abc"}, "seed must be a number"),
        ({"seed": None}, "enter a value for The seed"),
    ],
)
def test_generate_validation(h, kwargs, message):
    with pytest.raises(gr.Error, match=message):
        run(h, **kwargs)


def test_work_per_request_is_bounded(h, monkeypatch):
    monkeypatch.setattr(H, "MAX_WORK", 40)
    with pytest.raises(gr.Error, match="10 images x 5 steps = 50 denoising passes"):
        run(h, n=10, steps=5)
    run(h, n=8, steps=5)  # 40 is fine


def test_timeline(h):
    traj = final(run(h, n=2, steps=4))[4]
    a, b, info = h.show_step(traj, 0)
    assert (
        a.size == b.size
        and "**0 of 4 steps done** (the start: pure noise)" in info
        and f"t = {T} of {T}" in info
        and "SNR" in info
    )
    assert "Done" in h.show_step(traj, 4)[2]
    with pytest.raises(gr.Error, match="between 0 and 4"):
        h.show_step(traj, 5)
    with pytest.raises(gr.Error, match="Generate some digits first"):
        h.show_step(None, 0)


# ---------------------------------------------------------------- drawings


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


# ---------------------------------------------------------------- Forward process


def test_forward_from_drawing(h):
    xt, strip, fig, info = h.forward("drawing", drawing(), 1, None, "cosine", 10)
    assert xt.size == (28 * 8, 28 * 8) and strip.size == ((11 * 30 + 2) * 2, 32 * 2)
    assert fig.axes and "cosine schedule" in info and f"t = 10 of {T}" in info and "x_t =" in info
    clean, *_ = h.forward("drawing", drawing(), 1, None, "linear", 0)
    from demo.images import grid

    assert np.array_equal(np.asarray(clean), np.asarray(grid(drawing_to_x0(drawing()), 1, 8)))  # t = 0 is x_0


def test_forward_from_generated_image(h):
    traj = final(run(h, n=3, steps=2))[4]
    xt, strip, fig, info = h.forward("generated", None, 3, traj, "linear", 5)
    assert xt is not None and "linear schedule" in info
    assert "made 3 image(s)" in h.forward("generated", None, 4, traj, "linear", 5)[3]
    assert "Generate some digits" in h.forward("generated", None, 1, None, "linear", 5)[3]


def test_forward_messages(h):
    xt, strip, fig, info = h.forward("drawing", EMPTY, 1, None, "linear", 5)
    assert xt is None and fig is not None and "The drawing is empty" in info
    with pytest.raises(gr.Error, match="Unknown noise schedule"):
        h.forward("drawing", drawing(), 1, None, "wiggly", 5)
    with pytest.raises(gr.Error, match=f"t must be between 0 and {T}"):
        h.forward("drawing", drawing(), 1, None, "linear", T + 1)


# ---------------------------------------------------------------- Draw and denoise


def denoise(
    h, source="drawing", image=None, number=1, traj=None, digit="3", t=30, steps=5, sampler="ddim", w=1.0, n=2, seed=0
):
    image = drawing() if image is None else image
    return list(h.denoise(source, image, number, traj, digit, t, steps, sampler, w, n, seed))


def test_denoise_outputs_and_determinism(h):
    outs = denoise(h, n=3)
    seen, noised, result, info = outs[-1]
    assert seen.size == (28 * 8, 28 * 8) and noised.size == result.size == ((3 * 30 + 2) * 3, 32 * 3)
    assert "done" in info and "towards **3**" in info
    assert np.array_equal(np.asarray(result), np.asarray(denoise(h, n=3)[-1][2]))
    assert not np.array_equal(np.asarray(result), np.asarray(denoise(h, n=3, seed=1)[-1][2]))


def test_denoise_clamps_steps_to_t(h):
    with pytest.warns(UserWarning, match="using 5 steps instead of 20"):  # gr.Warning outside a running app
        assert "5 step(s)" in denoise(h, t=5, steps=20, sampler="ddpm")[-1][3]


def test_denoise_from_generated_image(h):
    traj = final(run(h, n=2, steps=2))[4]
    assert "done" in denoise(h, source="generated", image=EMPTY, number=2, traj=traj)[-1][3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": EMPTY}, "The drawing is empty"),
        ({"digit": "one of each"}, "Pick one digit"),
        ({"digit": "12"}, "Pick a digit from 0 to 9"),
        ({"t": 0}, f"noise level t must be between 1 and {T}"),
        ({"n": 9}, "number of variations must be between 1 and 8"),
        ({"w": -0.5}, "guidance scale must be between 0 and 10"),
        ({"seed": 0.5}, "seed must be a whole number"),
    ],
)
def test_denoise_validation(h, kwargs, message):
    with pytest.raises(gr.Error, match=message):
        denoise(h, **kwargs)


# ---------------------------------------------------------------- the app and its command line


def test_build_demo_has_named_api(ckpt):
    demo = app.build_demo(str(ckpt))
    names = {d.api_name for d in demo.fns.values() if d.api_name}
    assert {"generate", "show_step", "forward", "denoise"} <= names
    assert demo.handlers.T == T and demo.analytics_enabled is False


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
