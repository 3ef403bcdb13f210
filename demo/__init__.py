"""The Gradio demo of ddpm-course: ``python demo/app.py`` or ``python -m demo`` (see demo/README.md).

defaults.py   every default (sampler, steps, guidance, eta, ...) and every limit, in one place
steps.py      paper steps t = 1..T <-> ddpmlib's tensor indices, converted only here
checks.py     input checks and the cost model; ``DemoError`` carries the message for the visitor
images.py     images in (checked before decoding) and out: drawings -> x_0, grids, GIF frames, the plot
model.py      the loaded model, shared by the tabs; the one place the demo asks ddpmlib for samples
tabs/         one module per tab: validate(...) and run(...), results keyed by output name
files.py      the server's temporary folder, removed on exit and after a crash
app.py        the interface (``build_demo``), ``launch`` and the command line
testing.py    a tiny random checkpoint and the app on a free port, for the tests and benchmarks
"""
