"""Property-based fuzzing of every endpoint of the demo (the functions the app registers for /generate,
/downloads, /show_step, /forward and /denoise, and their validation steps), called with arbitrary values as an API
client may send them: each call ends in a valid result or in a one-line message for the visitor
(``gr.Error``), never in another exception. Example counts are small: the machine is slow."""

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import demo.app as app  # noqa: E402
from demo import defaults as D  # noqa: E402
from demo.tabs import generate  # noqa: E402
from demo.testing import make_tiny_checkpoint  # noqa: E402

T = 20
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return app.build_demo(str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)))


@pytest.fixture(scope="module")
def endpoints(demo):
    fns = {d.api_name or d.fn.__name__: d for d in demo.fns.values()}
    return {name: fns[name] for name in ("generate", "downloads", "show_step", "forward", "denoise")} | {
        name: next(d for d in demo.fns.values() if d.fn.__name__ == name)
        for name in ("generate_check", "forward_check", "denoise_check")
    }


@pytest.fixture(scope="module")
def traj(demo):
    m = demo.model
    return list(generate.run(m, generate.validate(m, "one of each", 3, "ddim", 2, 1.0, 0.0, 0)))[-1]["trajectory"]


@pytest.fixture(scope="module")
def png_file(tmp_path_factory):
    img = np.full((60, 60, 4), 255, np.uint8)
    img[10:50, 28:32, :3] = 0
    path = tmp_path_factory.mktemp("img") / "one.png"
    Image.fromarray(img).save(path)
    return str(path)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def number(lo, hi, integer=True):
    """In range, as a number or a numeric string."""
    good = st.integers(lo, hi) if integer else st.floats(lo, hi)
    return st.one_of(good, good.map(str))


def out_of_range(lo, hi):
    return st.one_of(st.integers(hi + 1, 10**12), st.integers(-(10**12), lo - 1), st.floats(lo + 0.1, hi - 0.1))


def request(data, fields):
    """A request whose fields are valid, except for up to two that get junk or near-misses: some examples
    are accepted and really sample, the others are refused for one or two reasons."""
    broken = data.draw(st.sets(st.integers(0, len(fields) - 1), max_size=2))
    return [data.draw(bad if i in broken else good) for i, (good, bad) in enumerate(fields)]


def field(good, near=None):
    return good, junk if near is None else st.one_of(junk, near)


def drawings(png_file):
    """Sketchpad values as the endpoint receives them (serialised, with file references), good and bad."""
    canvas = app.blank_canvas()
    return st.one_of(
        st.just({"background": None, "layers": [], "composite": None}),
        st.just({"background": {"path": png_file}, "layers": [], "composite": {"path": png_file}}),
        st.just({"background": None, "layers": [{"path": png_file}], "composite": {"path": __file__}}),
        st.just({"composite": {"path": "/nonexistent/x.png"}}),
        st.just({"background": canvas["background"].tolist()[:2], "layers": "x", "composite": 5}),
    )


def call(dep, *args):
    """The endpoint's result (all yields of a generator), or the message of a gr.Error."""
    try:
        out = dep.fn(*args)
        results = list(out) if hasattr(out, "__next__") else [out]
    except gr.Error as e:
        message = str(e.message if hasattr(e, "message") else e)
        assert message and "\n" not in message and "Traceback" not in message and len(message) < 500, message
        return message
    for r in results:
        assert r is None or isinstance(r, dict) and set(r) <= set(dep.outputs), r
    return results


@given(data=st.data())
@FUZZ
def test_fuzz_generate(endpoints, data):
    digits = [str(d) for d in range(10)] + [D.ONE_OF_EACH]
    args = request(
        data,
        [
            field(st.sampled_from(digits), st.sampled_from(["10", "-1", "one", " 7 "])),
            field(number(1, 6), out_of_range(1, D.MAX_IMAGES)),
            field(st.sampled_from(list(D.SAMPLERS)), st.sampled_from(["DDIM", "euler", ""])),
            field(number(1, 6), out_of_range(1, T)),  # few steps: an accepted example really samples
            field(number(0, D.MAX_GUIDANCE, integer=False), out_of_range(0, D.MAX_GUIDANCE)),
            field(number(0, 1, integer=False), st.floats(1.01, 1e300)),
            field(number(0, D.MAX_SEED), out_of_range(0, D.MAX_SEED)),
            field(st.booleans()),
        ],
    )
    a, b = call(endpoints["generate_check"], *args), call(endpoints["generate"], *args)
    assert isinstance(a, str) == isinstance(b, str)  # the check and the run agree
    if isinstance(a, str):
        assert a == b


@given(data=st.data())
@FUZZ
def test_fuzz_show_step(endpoints, traj, data):
    state, i = request(data, [field(st.just(traj)), field(number(0, 2), out_of_range(0, 2))])
    call(endpoints["show_step"], state, i)
    call(endpoints["downloads"], state)


@given(data=st.data())
@FUZZ
def test_fuzz_forward(endpoints, traj, png_file, data):
    source, number_, state, schedule, t, drawing = request(
        data,
        [
            field(st.sampled_from(["drawing", "generated"]), st.just("webcam")),
            field(number(1, 3), out_of_range(1, 3)),
            field(st.just(traj), st.none()),
            field(st.sampled_from(["linear", "cosine"])),
            field(number(0, T), out_of_range(0, T)),
            field(drawings(png_file)),
        ],
    )
    call(endpoints["forward_check"], source, number_, state, schedule, t)
    call(endpoints["forward"], source, drawing, number_, state, schedule, t)


@given(data=st.data())
@FUZZ
def test_fuzz_denoise(endpoints, traj, png_file, data):
    source, drawing, number_, state, *rest = request(
        data,
        [
            field(st.sampled_from(["drawing", "generated"]), st.just("webcam")),
            field(drawings(png_file)),
            field(number(1, 3), out_of_range(1, 3)),
            field(st.just(traj), st.none()),
            field(st.sampled_from([str(d) for d in range(10)]), st.just(D.ONE_OF_EACH)),
            field(number(1, T), out_of_range(1, T)),
            field(number(1, 4), out_of_range(1, T)),
            field(st.sampled_from(list(D.SAMPLERS))),
            field(number(0, D.MAX_GUIDANCE, integer=False), out_of_range(0, D.MAX_GUIDANCE)),
            field(number(1, 3), out_of_range(1, D.MAX_VARIATIONS)),
            field(number(0, D.MAX_SEED), out_of_range(0, D.MAX_SEED)),
        ],
    )
    a = call(endpoints["denoise_check"], source, number_, state, *rest)
    b = call(endpoints["denoise"], source, drawing, number_, state, *rest)
    if isinstance(a, str):
        assert b == a


def test_fuzzing_reaches_both_outcomes(endpoints, traj, png_file):
    """The strategies above produce accepted requests too, not only refusals (a sanity check of the fuzzing)."""
    drawing = {"background": None, "layers": [], "composite": {"path": png_file}}
    out = call(endpoints["denoise"], "drawing", drawing, 1, None, "3", 10, 3, "ddim", 1.0, 2, 0)
    assert isinstance(out, list) and "done" in out[-1][next(c for c in out[-1] if c.elem_id == "denoise-info")]
    out = call(endpoints["generate"], "7", 2, "ddpm", 3, 0.0, 0.0, 5, False)
    assert isinstance(out, list) and len(out) >= 2
    assert isinstance(call(endpoints["generate"], "7", "two", "ddpm", 3, 0.0, 0.0, 5, False), str)
