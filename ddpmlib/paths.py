"""Where the project's files are: the repository root, and the folder of the shipped checkpoints.

In a clone (or an editable install) the checkpoints are the repository's ``checkpoints/`` folder; an installed
wheel carries the default ones (mnist, classifier, shifted_mnist) as package data, ``ddpmlib/_checkpoints/``,
and the run configs of ``configs/`` as ``ddpmlib/_configs/``.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

# the clone's root (configs/, checkpoints/); in an installed wheel this is site-packages, which holds neither
REPO_ROOT = Path(__file__).resolve().parent.parent


def _shipped(package_data: str, clone_folder: str) -> Path:
    """``ddpmlib/<package_data>`` of an installed wheel if present, else the clone's ``<clone_folder>``."""
    packaged = files("ddpmlib").joinpath(package_data)
    if isinstance(packaged, os.PathLike) and packaged.is_dir():
        return Path(packaged)
    return REPO_ROOT / clone_folder


def shipped_checkpoints() -> Path:
    """The folder holding the shipped checkpoints (``mnist/``, ``classifier/``, ``shifted_mnist/``, ...).

    The package data of an installed wheel if present, else ``checkpoints/`` in the repository."""
    return _shipped("_checkpoints", "checkpoints")


def shipped_configs() -> Path:
    """The folder of the run configs (``mnist_cpu.json``, ...): package data in a wheel, else ``configs/``."""
    return _shipped("_configs", "configs")
