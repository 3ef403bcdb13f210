"""Sphinx configuration of the course website (Sphinx + MyST-NB + sphinx-book-theme).

Build it with ``make site`` (``python -m sphinx -b html -c site . site/_build/html``): the source directory is the
repository root, restricted by ``include_patterns`` to the course pages. The notebooks are rendered with the outputs
they are committed with; nothing is executed. MathJax 2 is served from the copy that the ``jupyter-server-mathjax``
package ships, so the pages typeset their math offline, with no CDN.
"""

from pathlib import Path

import jupyter_server_mathjax

project = "DDPM from first principles"
author = "ddpm-course contributors"
copyright = "the ddpm-course contributors, MIT licence"

extensions = ["myst_nb"]
root_doc = "site/index"
include_patterns = [
    "site/index.md",
    "README.md",
    "course/README.md",
    "course/exercises/*.md",
    "course/solutions/*.md",
    "notebooks/[0-9][0-9]_*.ipynb",
    "checkpoints/mnist/README.md",
    "checkpoints/classifier/README.md",
    "checkpoints/*/README.md",
    "demo/README.md",
]
exclude_patterns = ["site/_build", ".venv", "**/.ipynb_checkpoints"]

# notebooks: the committed outputs, never re-executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# MathJax 2.7 from jupyter-server-mathjax, copied into _static/mathjax when the build finishes
MATHJAX_DIR = Path(jupyter_server_mathjax.__file__).parent / "static"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
myst_update_mathjax = False
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processClass": "math",
        "ignoreClass": ".*",  # typeset only the math elements that Sphinx writes, never code or outputs
        "processEscapes": False,
    },
    # TeX errors show as errors (which tests/test_site.py looks for), not as the raw TeX that noErrors would print
    "TeX": {
        "extensions": ["AMSmath.js", "AMSsymbols.js"],
        "noErrors": {"disabled": True},
        "noUndefined": {"disabled": True},
    },
    # the package ships the STIX-Web fonts only (the classic Jupyter Notebook configures MathJax the same way)
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
        "linebreaks": {"automatic": True},  # wide equations wrap instead of overflowing
    },
    "messageStyle": "none",
}

html_theme = "sphinx_book_theme"
html_title = "DDPM from first principles"
html_theme_options = {
    "show_navbar_depth": 2,
    "home_page_in_toc": True,
    "use_download_button": True,
}
html_copy_source = True  # the download button offers each notebook (.ipynb) and page source
html_extra_path = ["extra"]  # index.html at the root: a redirect to site/index.html (for GitHub Pages)
html_show_sourcelink = False
html_last_updated_fmt = None
# no web fonts or analytics from outside: the theme's own assets only
html_context = {"default_mode": "light"}


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    import shutil

    target = Path(app.outdir) / "_static" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(MATHJAX_DIR, target, dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
    app.set_html_assets_policy("always")  # MathJax on every page: the navigation has math in its titles
