"""The Gradio demo of ddpm-course: ``python demo/app.py`` (see demo/README.md).

images.py    pictures in and out: sketchpad drawings -> x_0, grids, GIF frames, the alpha_bar plot
handlers.py  what each button and slider does; all sampling goes through ddpmlib
app.py       the interface (``build_demo``) and the command line
"""
