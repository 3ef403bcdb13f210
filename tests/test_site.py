"""The course website in a real browser: build it with Sphinx (as `make site` does, warnings are errors), serve
it locally, and open every page in headless Chromium: the page loads with every request answered, its math is
typeset by the bundled MathJax, its images load, and every internal link points to a file (and anchor) of the
site. No request may leave the local server.

Needs the `site` extra (sphinx, myst-nb, sphinx-book-theme, jupyter-server-mathjax), `apt-get install -y
chromium` and `pip install playwright` (no browser download). Skipped with a reason otherwise.
"""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DDPM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# the math elements Sphinx writes (MathJax adds spans of class "math" inside them)
MATH = "span.math.notranslate, div.math.notranslate"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]
for module in ("sphinx", "myst_nb", "sphinx_book_theme", "jupyter_server_mathjax"):
    pytest.importorskip(module, reason=f"the site needs {module}: pip install -e '.[site]'")
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set DDPM_CHROMIUM)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", "site", "-W", "--keep-going", "-q", ".", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def pages(site: Path) -> list[str]:
    skip = {"search.html", "genindex.html"}
    return sorted(
        str(p.relative_to(site))
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_") and p.name not in skip
    )


def test_build_has_every_page_and_the_root_redirect(site):
    found = set(pages(site))
    expected = {"index.html", "site/index.html", "course/README.html", "README.html", "demo/README.html"}
    expected |= {f"notebooks/{nb}.html" for nb in NOTEBOOKS}
    for kind in ("exercises", "solutions"):
        expected |= {f"course/{kind}/{p.stem}.html" for p in (REPO / "course" / kind).glob("[0-9][0-9]_*.md")}
    assert expected <= found, f"missing pages: {sorted(expected - found)}"
    assert "site/index.html" in (site / "index.html").read_text()
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file(), "MathJax is bundled, not loaded from a CDN"


def test_navigation_follows_the_syllabus(site):
    html = (site / "site" / "index.html").read_text()
    order = [html.find(f"notebooks/{nb}.html") for nb in NOTEBOOKS]
    assert all(i >= 0 for i in order) and order == sorted(order), "notebooks 01..08 in syllabus order"
    exercises, solutions = html.find("course/exercises/01_"), html.find("course/solutions/01_")
    assert 0 <= exercises < solutions, "exercises and, separately, solutions"
    assert "demo/README.html" in html


def probe(url: str) -> bool:
    """MathJax 2's font detection: it asks for its own TeX fonts (and an about:blank font) before it settles on the
    STIX-Web fonts that jupyter-server-mathjax ships; those requests fail by design and change nothing on the page."""
    return url == "about:blank" or "/_static/mathjax/fonts/HTML-CSS/TeX/" in url


def aborted(request) -> bool:
    return (request.failure or "").startswith("net::ERR_ABORTED")


def _ids(path: Path) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', path.read_text(errors="replace")))


def test_every_page_in_a_browser(site, server):
    failures, outside, ids_cache = [], [], {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        bad = []
        page.on("response", lambda r: None if r.status < 400 or probe(r.url) else bad.append(f"{r.status} {r.url}"))
        # a request aborted because the test moves on to the next page is no failure; a missing file is a 404 above
        page.on("requestfailed", lambda r: None if probe(r.url) or aborted(r) else bad.append(f"failed {r.url}"))
        page.on("request", lambda r: None if r.url.startswith(server) or probe(r.url) else outside.append(r.url))
        for rel in pages(site):
            bad.clear()
            url = urljoin(server, rel)
            response = page.goto(url, wait_until="load", timeout=120_000)
            where = f"{rel}:"
            if response is None or response.status != 200:
                failures.append(f"{where} status {response and response.status}")
                continue
            if rel == "index.html":  # the root redirects to the course's start page, which is checked on its own
                page.wait_for_url("**/site/index.html", timeout=60_000)
                continue
            n_math = page.locator(MATH).count()
            if n_math:
                try:  # every math element rendered by MathJax
                    page.wait_for_function(
                        f"""() => [...document.querySelectorAll('{MATH}')].every(
                               e => e.querySelector('.MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG'))""",
                        timeout=120_000,
                    )
                except sync_api.TimeoutError:
                    failures.append(f"{where} math not typeset")
                errors = page.locator(".MathJax_Error, .merror").count()
                if errors:
                    failures.append(f"{where} {errors} MathJax errors")
            broken_images = page.evaluate(
                "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            failures += [f"{where} image does not load: {src}" for src in broken_images]
            if rel.startswith("notebooks/") and rel != "notebooks/04_unet.html":
                if not page.locator("img").count():
                    failures.append(f"{where} a notebook without its figures")
            for href in page.evaluate(
                "() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"
            ):
                if re.match(r"^[a-z]+:", href) or href.startswith("//"):
                    continue  # an external link (not followed: the machine may be offline)
                target = urlparse(urljoin(url, href))
                path = site / unquote(target.path.lstrip("/"))
                if path.is_dir():
                    path = path / "index.html"
                if not path.is_file():
                    failures.append(f"{where} broken link {href}")
                elif target.fragment and path.suffix == ".html":
                    ids = ids_cache.setdefault(path, _ids(path))
                    if unquote(target.fragment) not in ids:
                        failures.append(f"{where} link to a missing anchor {href}")
            failures += [f"{where} {b}" for b in bad]
        browser.close()
    assert not outside, f"requests left the local server: {sorted(set(outside))[:10]}"
    assert not failures, "\n".join(failures[:40])
