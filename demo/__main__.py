"""``python -m demo``: the same as ``python demo/app.py``."""

import runpy

runpy.run_module("demo.app", run_name="__main__", alter_sys=True)
