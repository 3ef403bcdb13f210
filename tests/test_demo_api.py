"""The demo over HTTP: gradio_client against the app launched on a free local port, and concurrent clients."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from demo.testing import make_tiny_checkpoint, make_tiny_shifted_checkpoint, running_app  # noqa: E402

T = 50
# gradio's queue statistics use pandas, which warns on every request with pandas 3
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
GENERATE = dict(
    digit="one of each", n_images=4, sampler="ddim", steps=5, guidance=1.0, eta=0.0, seed=0, random_seed=False
)
DENOISE = dict(
    source="generated",
    drawing=None,
    image_number=2,
    digit="8",
    t=30,
    steps=5,
    sampler="ddim",
    guidance=1.0,
    n_variations=2,
    seed=1,
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model; CI shares its two cores
    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)
    shifted = make_tiny_shifted_checkpoint(tmp_path_factory.mktemp("shifted"), T=T)  # the Digit × position tab
    with running_app(ckpt, shifted_checkpoint=shifted) as (url, _):
        yield url
    torch.set_num_threads(n)


def client(url):
    """Files are not downloaded (the server is on this machine); outputs name them by their server path.
    A generous HTTP timeout: on a busy 2-core CI machine the server can take longer than httpx's default 5 s."""
    return gradio_client.Client(
        url, verbose=False, download_files=False, analytics_enabled=False, httpx_kwargs={"timeout": 120}
    )


def path(file) -> Path:
    return Path(file["path"] if "path" in file else file["value"]["path"])


def test_api_lists_the_endpoints(url):
    api = client(url).view_api(print_info=False, return_format="dict")
    assert {"/generate", "/downloads", "/show_step", "/forward", "/denoise", "/compose"} <= set(api["named_endpoints"])
    assert not any("check" in name for name in api["named_endpoints"])  # the validation steps are private
    params = [p["parameter_name"] for p in api["named_endpoints"]["/generate"]["parameters"]]
    assert params == list(GENERATE)


def test_generate_then_timeline_then_forward_and_denoise(url):
    c = client(url)
    xt, x0, info, timeline, *_ = c.predict(**GENERATE, api_name="/generate")
    assert path(xt).is_file() and path(x0).is_file() and "Done after 5 step(s)" in info and "seed 0" in info
    assert timeline["maximum"] == timeline["value"] == 5 and timeline["interactive"]  # the timeline is set to the run
    gif, png = (path(f) for f in c.predict(api_name="/downloads"))  # written after the result, for this session
    assert gif.name == "ddpm_trajectory_seed0.gif" and gif.read_bytes()[:6] == b"GIF89a"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the same session keeps the trajectory: the timeline replays it without sampling again
    xt, x0, info = c.predict(i=1, api_name="/show_step")
    assert path(xt).is_file() and "1 of 5 steps done" in info and "SNR" in info
    xt, strip, plot, info = c.predict(
        source="generated", drawing=None, image_number=3, schedule="cosine", t=25, api_name="/forward"
    )
    assert path(xt).is_file() and path(strip).is_file() and plot and "cosine schedule" in info
    seen, noised, result, info = c.predict(**DENOISE, api_name="/denoise")
    assert path(result).is_file() and "done" in info


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 2**32}, "4294967295"),  # the limit as an integer
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": None}, "enter a value for The seed"),
        ({"n_images": "ten"}, "number of images must be a number, got 'ten'"),
        ({"guidance": None}, "enter a value for The guidance scale"),
        ({"n_images": 20, "guidance": 10.0}, None),  # the largest batch and guidance are allowed
        ({"digit": "11"}, "Pick a digit from 0 to 9"),
        ({"steps": T + 5}, f"number of steps must be between 1 and {T}"),
        ({"eta": [0.5]}, "eta must be a number"),
    ],
)
def test_validation_messages_reach_the_client(url, change, message):
    c = client(url)
    if message is None:
        info = c.predict(**{**GENERATE, **change}, api_name="/generate")[2]
        assert "Done" in info
        return
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        c.predict(**{**GENERATE, **change}, api_name="/generate")


def test_timeline_before_generating(url):
    with pytest.raises(gradio_client.exceptions.AppError, match="Generate some digits first"):
        client(url).predict(i=0, api_name="/show_step")


def test_empty_drawing_message(url):
    info = client(url).predict(**{**DENOISE, "source": "drawing"}, api_name="/denoise")[3]
    assert "The drawing is empty" in info


def test_a_file_that_is_not_an_image(url, tmp_path):
    bad = tmp_path / "digit.png"
    bad.write_bytes(b"this is text, not a PNG")
    drawing = {"background": None, "layers": [], "composite": gradio_client.handle_file(str(bad))}
    with pytest.raises(gradio_client.exceptions.AppError, match="not an image the demo can read"):
        client(url).predict(**{**DENOISE, "source": "drawing", "drawing": drawing}, api_name="/denoise")


def test_concurrent_clients_all_finish(url):
    """Six visitors at once, each: generate, timeline, denoise; every request is answered, none fails."""

    def visitor(k):
        c = client(url)
        t0 = time.monotonic()
        out = c.predict(**{**GENERATE, "n_images": 2, "seed": k}, api_name="/generate")
        ok = [f"seed {k}" in out[2] and "Done" in out[2]]
        ok.append("0 of 5 steps done" in c.predict(i=0, api_name="/show_step")[2])
        ok.append("done" in c.predict(**{**DENOISE, "image_number": 1, "seed": k}, api_name="/denoise")[3])
        return ok, time.monotonic() - t0

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(visitor, range(6), timeout=300))
    assert [ok for ok, _ in results] == [[True] * 3] * 6
    assert max(dt for _, dt in results) < 120
