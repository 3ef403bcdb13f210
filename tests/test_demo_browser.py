"""The demo in a real browser: headless Chromium (the system's, driven by Playwright) generates a digit,
scrubs the timeline and saves a screenshot; the page must not contact anything but the local server. A
second page draws on the sketchpad with the tool it starts with, on a phone-sized screen.

Needs `apt-get install -y chromium` and `pip install playwright` (the Python package only: no browser is
downloaded). Skipped with a reason otherwise. The screenshot goes to tests/artifacts/demo_browser.png.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

CHROMIUM = os.environ.get("DDPM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set DDPM_CHROMIUM)", allow_module_level=True
    )
pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")

from demo.testing import make_tiny_checkpoint, running_app  # noqa: E402

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_generate_and_scrub_the_timeline(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny", T=10)  # 10 sampling steps by default: quick on a busy CPU
    requests = []
    try:
        with running_app(ckpt) as (url, _), sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load", timeout=60_000)

            page.locator("#digit label").filter(has_text=re.compile(r"^\s*7\s*$")).click()
            page.locator("#generate-btn").click()
            info = page.locator("#step-info")
            sync_api.expect(info).to_contain_text("Done after 10 step(s)", timeout=120_000)
            sync_api.expect(info).to_contain_text("digit 7")
            image = page.locator("#xt-image img").first
            image.wait_for(state="visible", timeout=30_000)
            assert image.evaluate("img => img.complete && img.naturalWidth") > 0

            slider = page.locator("#timeline input[type=range]")
            sync_api.expect(slider).to_be_enabled(timeout=30_000)
            slider.focus()
            for _ in range(6):  # back from the result (position 10) to 4 steps done: a keyboard drag
                page.keyboard.press("ArrowLeft")
            sync_api.expect(info).to_contain_text("4 of 10 steps done", timeout=60_000)
            sync_api.expect(info).to_contain_text("SNR")
            assert image.evaluate("img => img.complete && img.naturalWidth") > 0

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "demo_browser.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            browser.close()
    finally:
        torch.set_num_threads(n)
    outside = [
        u for u in requests if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS
    ]
    assert requests and not outside, f"the page contacted other hosts: {outside}"


def test_draw_with_the_default_tool_on_a_small_screen(tmp_path):
    """On a 390 px wide screen all four tabs show; the sketchpad draws at once (no tool to pick first)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny", T=10)
    try:
        with running_app(ckpt) as (url, _), sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=False)
            page.goto(url, wait_until="load", timeout=60_000)
            tabs = page.get_by_role("tab")
            sync_api.expect(tabs).to_have_count(4, timeout=30_000)
            for i in range(4):
                sync_api.expect(tabs.nth(i)).to_be_visible()  # none hidden behind an overflow menu
            tabs.nth(1).click()
            info = page.locator("#forward-info")
            sync_api.expect(info).to_contain_text("The drawing is empty", timeout=60_000)
            canvas = page.locator("#forward-sketch canvas").first
            canvas.wait_for(state="visible", timeout=30_000)
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.25
            page.mouse.move(x, y)
            page.mouse.down()
            for k in range(1, 21):
                page.mouse.move(x, y + k * box["height"] * 0.025)
            page.mouse.up()
            sync_api.expect(info).to_contain_text("schedule", timeout=60_000)  # x_t of the drawing
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo_browser_small.png"), full_page=True)
            browser.close()
    finally:
        torch.set_num_threads(n)
