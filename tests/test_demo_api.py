"""The demo over HTTP: gradio_client against the app launched on a free local port, and a small load test."""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from demo.testing import make_tiny_checkpoint, running_app  # noqa: E402

T = 50
# gradio's queue statistics use pandas, which warns on every request with pandas 3
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
GENERATE = dict(
    digit="one of each", n_images=4, sampler="ddim", steps=5, guidance=1.0, eta=0.0, seed=0, random_seed=False
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model; CI shares its two cores
    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), T=T)
    with running_app(ckpt) as (url, _):
        yield url
    torch.set_num_threads(n)


def client(url):
    """Files are not downloaded (the server is on this machine); outputs name them by their server path."""
    return gradio_client.Client(url, verbose=False, download_files=False, analytics_enabled=False)


def path(file) -> Path:
    return Path(file["path"] if "path" in file else file["value"]["path"])


def test_api_lists_the_endpoints(url):
    api = client(url).view_api(print_info=False, return_format="dict")
    assert {"/generate", "/show_step", "/forward", "/denoise"} <= set(api["named_endpoints"])


def test_generate_then_timeline_then_forward_and_denoise(url):
    c = client(url)
    xt, x0, info, timeline, seed, gif, png = c.predict(**GENERATE, api_name="/generate")
    assert path(xt).is_file() and path(x0).is_file() and "Done after 5 step(s)" in info
    assert timeline["maximum"] == timeline["value"] == 5 and seed == 0  # the timeline is set to the run
    gif, png = path(gif), path(png)  # download buttons come back as updates
    assert gif.name == "ddpm_trajectory_seed0.gif" and gif.read_bytes()[:6] == b"GIF89a"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the same session keeps the trajectory: the timeline replays it without sampling again
    xt, x0, info = c.predict(i=1, api_name="/show_step")
    assert path(xt).is_file() and "1 of 5 steps done" in info and "SNR" in info
    xt, strip, plot, info = c.predict(
        source="generated", drawing=None, image_number=3, schedule="cosine", t=25, api_name="/forward"
    )
    assert path(xt).is_file() and path(strip).is_file() and plot and "cosine schedule" in info
    seen, noised, result, info = c.predict(
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
        api_name="/denoise",
    )
    assert path(result).is_file() and "done" in info


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"n_images": 20, "guidance": 10.0}, None),  # the largest batch and guidance are allowed
        ({"digit": "11"}, "not in the list of choices"),  # Gradio's own check of the radio's choices
        ({"steps": T + 5}, "greater than maximum"),  # Gradio's own check of the slider's range
    ],
)
def test_validation_messages_reach_the_client(url, change, message):
    c = client(url)
    if message is None:
        assert "Done" in c.predict(**{**GENERATE, **change}, api_name="/generate")[2]
        return
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        c.predict(**{**GENERATE, **change}, api_name="/generate")


def test_timeline_before_generating(url):
    with pytest.raises(gradio_client.exceptions.AppError, match="Generate some digits first"):
        client(url).predict(i=0, api_name="/show_step")


def test_empty_drawing_message(url):
    c = client(url)
    with pytest.raises(gradio_client.exceptions.AppError, match="The drawing is empty"):
        c.predict(
            source="drawing",
            drawing=None,
            image_number=1,
            digit="3",
            t=30,
            steps=5,
            sampler="ddim",
            guidance=1.0,
            n_variations=1,
            seed=0,
            api_name="/denoise",
        )


def test_load_concurrent_clients(url):
    """Four visitors at once, each sending generate, timeline, generate, timeline: all answered, no errors."""

    def visitor(k):
        c = client(url)
        results = []
        for j in range(2):
            out = c.predict(**{**GENERATE, "n_images": 2, "seed": 10 * k + j}, api_name="/generate")
            results.append(out[4] == 10 * k + j and "Done" in out[2])
            results.append("0 of 5 steps done" in c.predict(i=0, api_name="/show_step")[2])
        return results

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(visitor, range(4)) for r in rs]
    assert len(results) == 4 * 4 and all(results)
