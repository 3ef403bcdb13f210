"""The demo's temporary folder: Gradio's cache (every picture sent to the page) and the downloads.

``claim_temp_dir`` gives this server process its own folder ``<tmp>/ddpm-demo/<pid>``, removes it when the
process exits (normally, by Ctrl-C or by SIGTERM), and first removes the folders of earlier servers that
are no longer running (left behind by a crash or a kill -9). It must run before Gradio is imported,
because Gradio reads GRADIO_TEMP_DIR once, at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(tempfile.gettempdir()) / "ddpm-demo"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(root: Path = ROOT) -> list[Path]:
    """Remove ``root/<pid>`` folders whose process is gone; returns what was removed."""
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        if (
            folder.is_dir()
            and folder.name.isdigit()
            and int(folder.name) != os.getpid()
            and not _alive(int(folder.name))
        ):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def claim_temp_dir(root: Path = ROOT) -> Path:
    """Create this process's folder, point GRADIO_TEMP_DIR at it (unless the user set it) and clean up."""
    remove_stale(root)
    if os.environ.get("GRADIO_TEMP_DIR"):
        return Path(os.environ["GRADIO_TEMP_DIR"])
    folder = root / str(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the atexit handlers on `kill`
    return folder
