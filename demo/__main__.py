"""``python -m demo``: the same as ``python demo/app.py``; ``main`` is the ``ddpm-demo`` command of an install."""

import runpy


def main(argv: list[str] | None = None) -> None:
    """The demo's command line (``ddpm-demo``): the server's temporary folder first (before gradio is imported)."""
    from .files import claim_temp_dir

    claim_temp_dir()
    from .app import main as app_main

    app_main(argv)


if __name__ == "__main__":
    runpy.run_module(f"{__package__}.app", run_name="__main__", alter_sys=True)
