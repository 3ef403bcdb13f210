"""The Digit × position tab (demo/tabs/compose.py) on a tiny random (digit, position) checkpoint: its checks,
its results against ddpmlib, the held-out pairs, the app without that model, and the endpoint over HTTP."""

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from test_demo_api import client, path, url  # noqa: E402, F401 - the app of test_demo_api, with its shifted model

import demo.app as app  # noqa: E402
from ddpmlib.pipeline import DDPMPipeline  # noqa: E402
from ddpmlib.shifted import NULL_POSITION, ComposedLabels  # noqa: E402
from demo import defaults as D  # noqa: E402
from demo.checks import DemoError, cost  # noqa: E402
from demo.images import grid  # noqa: E402
from demo.model import ShiftedModel, Unavailable, load_shifted  # noqa: E402
from demo.tabs import compose  # noqa: E402
from demo.testing import make_tiny_checkpoint, make_tiny_shifted_checkpoint, running_app  # noqa: E402

T = 50  # as test_demo_api's app
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
COMPOSE = dict(
    digit="7", position="bottom left", mode="compose", guidance=1.0, n_images=3, steps=4, seed=0, random_seed=False
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)


@pytest.fixture(scope="module")
def shifted_ckpt(tmp_path_factory):
    return make_tiny_shifted_checkpoint(tmp_path_factory.mktemp("shifted"), T=T)


@pytest.fixture(scope="module")
def m(shifted_ckpt):
    model = load_shifted(shifted_ckpt, device="cpu")
    assert isinstance(model, ShiftedModel)
    return model


def req(m, **change):
    return compose.validate(m, *{**COMPOSE, **change}.values())


def result(m, **change):
    """The last yield of a request: every output."""
    return list(compose.run(m, req(m, **change)))[-1]


def pixels(img) -> np.ndarray:
    return np.asarray(img)


# ---------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "change, message",
    [
        ({"digit": "11"}, "Pick one digit from 0 to 9 to draw, got '11'"),
        ({"digit": "one of each"}, "Pick one digit from 0 to 9 to draw"),
        ({"digit": None}, "Pick one digit"),
        (
            {"position": "middle"},
            "The position must be one of 'top left', 'top right', 'bottom left', 'bottom right', ",
        ),
        ({"position": 4}, "The position must be one of"),
        ({"position": None}, "The position must be one of"),
        ({"mode": "digit"}, r"must be one of both labels \('joint'\), position only \('position'\), compose"),
        ({"guidance": -1}, "guidance scale must be between 0 and 10"),
        ({"guidance": "strong"}, "guidance scale must be a number"),
        ({"n_images": 0}, "number of images must be between 1 and 16"),
        ({"n_images": D.COMPOSE_MAX_IMAGES + 1}, "number of images must be between 1 and 16"),
        ({"n_images": 2.5}, "must be a whole number"),
        ({"steps": T + 1}, f"number of steps must be between 1 and {T}"),
        ({"seed": -1}, "seed must be between 0 and"),
        ({"random_seed": "yes"}, "'random seed' must be true or false"),
    ],
)
def test_validate_rejects_bad_input(m, change, message):
    with pytest.raises(DemoError, match=message):
        req(m, **change)


def test_validate_accepts_names_numbers_and_labels(m):
    r = req(m, position="Bottom-Left", mode="position only", guidance="2")
    assert (r.digit, r.position, r.mode, r.guidance) == (7, 2, "position", 2.0)
    assert req(m, position="3").position == 3 and req(m, position=1).position == 1
    assert req(m, position="anywhere").position is None and req(m, mode="both labels").mode == "joint"


def test_cost_limit_counts_three_passes_to_compose(m, monkeypatch):
    assert cost(10, 4, 0.0, compose=True) == cost(10, 4, 5.0, compose=True) == 10 * (12 + D.STEP_COST)
    monkeypatch.setattr(D, "MAX_COST", 100)
    req(m, steps=4, n_images=3, mode="joint", guidance=1.0)  # 4 x (6 + 2) = 32
    with pytest.raises(DemoError) as e:
        req(m, steps=10, n_images=3, mode="compose")  # 10 x (9 + 2) = 110
    msg = str(e.value)
    assert "10 steps × 3 images × 3 to compose is 110" in msg and "at most 9 steps" in msg
    assert "at most 2 images" in msg and "'both labels' with guidance 0" in msg
    with pytest.raises(DemoError, match="too big"):
        req(m, steps=10, n_images=5, mode="joint", guidance=1.0)  # 10 x 12 = 120


def test_the_worst_accepted_request_fits_the_limit():
    """The largest request the sliders allow with the shipped settings (T = 1000) is refused or within MAX_COST."""
    for steps in (D.COMPOSE_STEPS, 100, 1000):
        c = cost(steps, D.COMPOSE_MAX_IMAGES, 1.0, compose=True)
        assert (c <= D.MAX_COST) == (steps == D.COMPOSE_STEPS)
    assert cost(D.COMPOSE_STEPS, D.COMPOSE_N_IMAGES, D.COMPOSE_GUIDANCE, compose=True) <= D.MAX_COST  # the default


# ---------------------------------------------------------------- results


def test_run_streams_and_returns_a_grid_of_the_right_shape(m, monkeypatch):
    monkeypatch.setattr(m, "stream_interval_s", 0.0)
    done = []
    outs = list(compose.run(m, req(m, n_images=6, steps=4), progress=lambda i, n: done.append((i, n))))
    assert outs[0]["info"].startswith("Sampling") and "pair" in outs[0]
    assert len(outs) == 5 and all(set(o) == {"images", "info"} for o in outs[1:-1])  # 3 streamed steps
    last = outs[-1]
    assert set(last) == set(compose.OUTPUTS) and done == [(i, 4) for i in range(1, 5)]
    assert last["images"].size == (4 * 30 + 2, 2 * 30 + 2) and last["images"].mode == "L"  # 6 images, 4 per row
    assert "Done after 4 step(s)" in last["info"] and "digit 7 at bottom left" in last["info"]


@pytest.mark.parametrize("mode", ["joint", "position", "compose"])
def test_run_is_deterministic_and_equals_the_library(m, mode):
    a = result(m, mode=mode, guidance=2.0, seed=5)["images"]
    assert np.array_equal(pixels(a), pixels(result(m, mode=mode, guidance=2.0, seed=5)["images"]))
    assert not np.array_equal(pixels(a), pixels(result(m, mode=mode, guidance=2.0, seed=6)["images"]))
    labels = torch.tensor([[7, 2]] * 3)
    pipe, kw = m.pipe, dict(sampler=D.COMPOSE_SAMPLER, steps=4, seed=5)
    if mode == "compose":
        composed = DDPMPipeline(ComposedLabels(pipe.model, 2.0), pipe.schedule, pipe.prediction_type)
        ref = composed.generate(labels, **kw)
    elif mode == "position":
        ref = pipe.generate(labels, guidance_scale=2.0, uncond_labels=torch.tensor([[7, NULL_POSITION]] * 3), **kw)
    else:
        ref = pipe.generate(labels, guidance_scale=2.0, **kw)
    assert np.array_equal(pixels(a), pixels(grid(ref, 3, D.SCREEN_SCALE)))  # exactly what ddpmlib samples


def test_the_modes_differ(m):
    images = {mode: pixels(result(m, mode=mode, guidance=2.0)["images"]) for mode in D.COMPOSE_MODES}
    assert not np.array_equal(images["joint"], images["position"])
    assert not np.array_equal(images["joint"], images["compose"])


def test_anywhere_leaves_the_position_out(m):
    r = req(m, position="anywhere", mode="joint")
    assert r.pairs == [[7, NULL_POSITION]] * 3 and r.held_out is False and "digit 7 anywhere" in r.settings
    out = result(m, position="anywhere", mode="joint")
    ref = m.pipe.generate([[7, NULL_POSITION]] * 3, sampler=D.COMPOSE_SAMPLER, steps=4, guidance_scale=1.0, seed=0)
    assert np.array_equal(pixels(out["images"]), pixels(grid(ref, 3, D.SCREEN_SCALE)))
    assert not np.array_equal(pixels(out["images"]), pixels(result(m, position="top left", mode="joint")["images"]))
    assert (
        "position is left out" in out["pair"] and "never labelled at the bottom left or the bottom right" in out["pair"]
    )
    # guidance towards the position alone has nothing to push towards: w is set to 0, and the visitor told
    r = req(m, position="anywhere", mode="position", guidance=3.0)
    assert r.guidance == 0.0 and "no position to guide towards" in r.notes[0]


# ---------------------------------------------------------------- the held-out pairs


def test_held_out_pairs_are_marked(m):
    assert m.holdout == {(7, 2), (7, 3)}
    held = result(m, digit="7", position="bottom right")
    assert "⚠" in held["pair"] and "7 at bottom right was never in the training data" in held["pair"]
    assert "has to compose it" in held["pair"] and req(m, position="bottom right").held_out is True
    seen = result(m, digit="7", position="top left")
    assert "⚠" not in seen["pair"] and "7 at top left** was in the training data" in seen["pair"]
    assert req(m, digit="3", position="bottom left").held_out is False
    legend = compose.legend(m, "7", "bottom left")
    assert legend.count("never seen with 7") == 2 and "**▶ bottom left**" in legend
    assert "never seen" not in compose.legend(m, "3", "top left") and "**▶ top left**" in compose.legend(
        m, "3", "top left"
    )
    assert "never seen" not in compose.legend(m, None, "nowhere")  # the legend follows the picker and never raises


def test_holdout_comes_from_the_checkpoint(tmp_path):
    other = load_shifted(make_tiny_shifted_checkpoint(tmp_path / "a", T=10, holdout=[(3, 0)], holdout_rule="unlabel"))
    assert other.holdout == {(3, 0)} and other.held_out(3, 0) and not other.held_out(7, 2)
    text = compose.pair_text(other, 3, 0)
    assert "3 at top left was never labelled in the training data" in text and "placed there" in text
    unknown = load_shifted(make_tiny_checkpoint(tmp_path / "b", T=10, extra_labels=(4,)))  # no data section
    assert unknown.holdout is None and unknown.held_out(7, 2) is None
    assert "does not record which pairs were held out" in compose.pair_text(unknown, 7, 2)


# ---------------------------------------------------------------- without the (digit, position) model


@pytest.mark.parametrize("kind", ["missing", "corrupt", "one label"])
def test_unavailable_model_is_one_line(tmp_path, ckpt, kind):
    where = tmp_path / "shifted"
    if kind == "corrupt":
        make_tiny_shifted_checkpoint(where, T=10)
        (where / "model.safetensors").write_bytes(b"not safetensors")
    elif kind == "one label":
        make_tiny_checkpoint(where, T=10)
    shifted = load_shifted(where)
    assert isinstance(shifted, Unavailable) and "\n" not in shifted.reason and "--shifted-checkpoint" in shifted.reason
    assert {"missing": "there is none at", "corrupt": "could not be loaded", "one label": "1 label per image"}[
        kind
    ] in (shifted.reason)
    with pytest.raises(DemoError, match="--shifted-checkpoint"):
        compose.validate(shifted, *COMPOSE.values())
    assert compose.legend(shifted, "7", "top left") == ""


def test_app_starts_without_the_model_and_the_tab_explains(tmp_path, ckpt):
    demo = app.build_demo(str(ckpt), shifted_checkpoint=tmp_path / "nothing")
    assert isinstance(demo.shifted, Unavailable)
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert "there is none at" in props["compose-unavailable"]["value"] and props["compose-unavailable"]["visible"]
    run = next(d for d in demo.fns.values() if d.api_name == "compose")
    with pytest.raises(gr.Error, match="there is none at"):
        list(run.fn(*COMPOSE.values()))
    check = next(d for d in demo.fns.values() if d.fn.__name__ == "compose_check")
    with pytest.raises(gr.Error, match="there is none at"):
        check.fn(*COMPOSE.values())


def test_app_has_the_compose_endpoint_and_defaults(ckpt, shifted_ckpt):
    demo = app.build_demo(str(ckpt), shifted_checkpoint=shifted_ckpt)
    assert isinstance(demo.shifted, ShiftedModel)
    [run] = [d for d in demo.fns.values() if d.api_name == "compose"]
    assert [c.label for c in run.inputs][:2] == ["Digit", "Position"] and run.concurrency_id == "model"
    check = next(d for d in demo.fns.values() if d.fn.__name__ == "compose_check")
    assert not check.queue and not check.outputs  # validation first, unqueued, with no outputs
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert not props["compose-unavailable"]["visible"]
    assert (
        props["compose-position"]["value"] == D.COMPOSE_POSITION
        and "never seen with 7" in props["compose-legend"]["value"]
    )


def test_cli_flag(ckpt, shifted_ckpt, tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(shifted=demo.shifted))
    app.main(["--checkpoint", str(ckpt), "--shifted-checkpoint", str(shifted_ckpt)])
    assert isinstance(seen["shifted"], ShiftedModel) and capsys.readouterr().err == ""
    app.main(["--checkpoint", str(ckpt), "--shifted-checkpoint", str(tmp_path / "nothing")])
    assert isinstance(seen["shifted"], Unavailable)
    assert capsys.readouterr().err.startswith("note: the Digit × position tab is off. This tab needs")


# ---------------------------------------------------------------- over HTTP


def test_compose_endpoint_over_http(url):  # noqa: F811 - the fixture imported from test_demo_api
    c = client(url)
    params = [
        p["parameter_name"]
        for p in c.view_api(print_info=False, return_format="dict")["named_endpoints"]["/compose"]["parameters"]
    ]
    assert params == list(COMPOSE)
    images, info, pair = c.predict(**COMPOSE, api_name="/compose")
    assert path(images).is_file() and "Done after 4 step(s)" in info and "seed 0" in info
    assert "7 at bottom left was never in the training data" in pair
    with pytest.raises(gradio_client.exceptions.AppError, match="The position must be one of"):
        c.predict(**{**COMPOSE, "position": "middle"}, api_name="/compose")
    with pytest.raises(gradio_client.exceptions.AppError, match="number of images must be between 1 and 16"):
        c.predict(**{**COMPOSE, "n_images": 17}, api_name="/compose")


def test_compose_endpoint_without_the_model_over_http(ckpt, tmp_path):
    with running_app(ckpt, shifted_checkpoint=tmp_path / "nothing") as (base, _):
        with pytest.raises(gradio_client.exceptions.AppError, match="there is none at"):
            client(base).predict(**COMPOSE, api_name="/compose")
        info = client(base).predict(  # the other tabs work
            digit="3",
            n_images=1,
            sampler="ddim",
            steps=2,
            guidance=0.0,
            eta=0.0,
            seed=0,
            random_seed=False,
            api_name="/generate",
        )[2]
        assert "Done after 2 step(s)" in info


def test_random_seed_is_reported_and_reproducible(m):
    r = req(m, random_seed=True, seed=None)
    assert 0 <= r.seed <= D.MAX_SEED and f"seed {r.seed}" in r.settings
    again = result(m, seed=r.seed)["images"]
    assert np.array_equal(pixels(list(compose.run(m, r))[-1]["images"]), pixels(again))


def test_arbitrary_values_give_a_message_or_a_request(m):
    """What an API client may send: every combination ends in a Request or a DemoError, never another exception."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st
    from test_demo_fuzz import junk  # the same arbitrary API values as the other tabs' fuzz tests

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.lists(junk, min_size=8, max_size=8), st.sets(st.integers(0, 7), max_size=3))
    def check(values, keep):
        args = [v if i not in keep else list(COMPOSE.values())[i] for i, v in enumerate(values)]
        try:
            compose.validate(m, *args)
        except DemoError as e:
            assert "\n" not in str(e) and "**" not in str(e)
        compose.legend(m, args[0], args[1])  # never raises

    check()
