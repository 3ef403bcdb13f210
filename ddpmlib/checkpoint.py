"""Checkpoints: safetensors weights plus a JSON config. No pickle is ever written or loaded.

A checkpoint is a directory:

    config.json          {"format_version", "model": UNetConfig, "diffusion": {...}, "train": {...}, "step"}
    model.safetensors    "ema.<name>" (the EMA weights, used for sampling) and, in training
                         checkpoints, "model.<name>" (the raw weights)
    optimizer.safetensors, optimizer.json   optimizer state, only in training checkpoints (for --resume)

A checkpoint is saved all or nothing, in three phases (a write-ahead scheme, as databases use):

1. every file, and ``files.json`` listing them, is written (and flushed to disk) into ``<dir>/.pending/``;
   the previous checkpoint is untouched;
2. ``.pending`` is renamed to ``.commit``: one atomic rename, the moment the new checkpoint exists;
3. the files are moved from ``.commit/`` into ``<dir>`` (config.json last), checkpoint files that the
   new checkpoint does not have are removed, and ``.commit`` is deleted.

A process killed in phase 1 leaves a ``.pending`` folder, which readers ignore and the next save (or
``--resume``) deletes: the previous checkpoint is still whole. Killed in phase 3, it leaves a ``.commit``
folder, which the next save, resume or load finishes moving (``recover``). So a reader sees either the
old checkpoint or the new one, never a mix. Other files in the directory (a README, evaluation results)
are left alone. Tensors that are not finite are never written and never loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, or does not fit the model."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(path, write)


def state_tensors(prefix: str, module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """``module``'s state as ``{prefix.name: tensor}`` on the CPU, floating tensors cast to ``dtype``."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[f"{prefix}.{k}"] = v.contiguous()
    return out


CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "config.json")
PENDING, COMMIT, MANIFEST = ".pending", ".commit", "files.json"  # MANIFEST: the new files

# Called with the name of each point of the save sequence just after it is reached ("pending/model.safetensors",
# ..., "commit", "moved/model.safetensors", ..., "done"). Tests set it to raise, which stops the save there
# as a killed process would (nothing is cleaned up on the way out).
_fault_hook = None


def _reached(point: str) -> None:
    if _fault_hook is not None:
        _fault_hook(point)


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk, so that a rename after it cannot outrun the data."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def _check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(
            f"{what} holds NaN or infinite values in {len(bad)} of {len(tensors)} tensors (e.g. {bad[0]})"
        )


def recover(directory: str | os.PathLike, writer: bool = True) -> None:
    """Finish or undo a save that was interrupted (see the module docstring); a no-op for a clean checkpoint.

    A reader (``writer=False``) only finishes a committed save; it leaves ``.pending`` alone, which may
    belong to a save in progress in another process."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    try:
        if writer:
            for stale in directory.glob(".*.tmp"):  # per-file temporary names of older versions and atomic_write
                if stale.is_file():
                    stale.unlink()
            if (directory / PENDING).exists():  # phase 1 never finished: the previous checkpoint is whole
                shutil.rmtree(directory / PENDING)
        commit = directory / COMMIT
        try:
            new_files = json.loads((commit / MANIFEST).read_text())["files"]
        except FileNotFoundError:
            return  # no interrupted save (or another process just finished it)
        except (ValueError, KeyError, TypeError):  # cannot happen after the commit point; be safe anyway
            new_files = CHECKPOINT_FILES
        for name in CHECKPOINT_FILES:  # phase 3 never finished: complete it
            if name not in new_files and (directory / name).exists():
                (directory / name).unlink()  # from the previous checkpoint, not part of the new one
        for name in CHECKPOINT_FILES:  # config.json last: it names the step
            if name in new_files and (commit / name).exists():  # (another process may have moved it)
                os.replace(commit / name, directory / name)
                _reached(f"moved/{name}")
        shutil.rmtree(commit, ignore_errors=not writer)
        _fsync(directory)
    except OSError as e:
        raise CheckpointError(f"cannot repair the interrupted save in {directory}: {e}") from None


def save_checkpoint(
    directory: str | os.PathLike,
    config: dict,
    ema_model: torch.nn.Module,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a checkpoint directory, all or nothing. ``model`` and ``optimizer`` are for resuming; an
    inference-only checkpoint holds just the EMA weights (optionally cast to ``dtype``, e.g. float16).

    Raises CheckpointError, writing nothing, if any tensor is not finite."""
    directory = Path(directory)
    tensors = state_tensors("ema", ema_model, dtype)
    if model is not None:
        tensors.update(state_tensors("model", model, dtype))
    _check_finite(tensors, f"the model to be saved in {directory}")
    files: dict[str, object] = {"model.safetensors": tensors}
    if optimizer is not None:
        opt = optimizer.state_dict()
        flat = {f"{i}.{name}": v.detach().cpu().contiguous() for i, s in opt["state"].items() for name, v in s.items()}
        _check_finite(flat, f"the optimizer state to be saved in {directory}")
        files["optimizer.safetensors"] = flat
        files["optimizer.json"] = {"param_groups": opt["param_groups"], "step": step}
    files["config.json"] = {**config, "format_version": FORMAT_VERSION, "step": step}
    files[MANIFEST] = {"files": [name for name in files], "step": step}

    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)  # finish or drop what an earlier, interrupted save left behind
    pending = directory / PENDING
    pending.mkdir()
    for name, content in files.items():  # 1. write everything next to the previous checkpoint
        path = pending / name
        if name.endswith(".safetensors"):
            save_file(content, str(path))
        else:
            path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        os.chmod(path, 0o644)
        _fsync(path)
        _reached(f"pending/{name}")
    _fsync(pending)
    os.replace(pending, directory / COMMIT)  # 2. the commit point
    _fsync(directory)
    _reached("commit")
    recover(directory)  # 3. move the files into place
    _reached("done")
    return directory


def read_config(directory: str | os.PathLike) -> dict:
    if (Path(directory) / COMMIT).is_dir():  # a save that was interrupted after its commit point
        recover(directory, writer=False)
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {directory}: {path} does not exist (a checkpoint is a directory with "
            f"config.json and model.safetensors, written by python -m ddpmlib.train)"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is corrupt") from None
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {version!r}; this ddpmlib reads version {FORMAT_VERSION}")
    for key in ("model", "diffusion"):
        if key not in config:
            raise CheckpointError(f"{path} has no {key!r} section; the checkpoint is incomplete")
    step = config.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path} has step {step!r}, not a count of training steps; the checkpoint is corrupt")
    return config


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated or corrupt"
        ) from None


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    """Copy ``prefix.*`` tensors into ``module``, with a clear error if names or shapes differ."""
    state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})"
            )
        raise CheckpointError(f"{source} does not fit the model described by its config.json: " + "; ".join(details))
    _check_finite(state, f"{source} ({prefix} weights)")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def load_optimizer(optimizer: torch.optim.Optimizer, directory: str | os.PathLike, step: int | None = None) -> None:
    """Restore the optimizer state of a training checkpoint; ``step``: the step its config.json names."""
    directory = Path(directory)
    flat = read_tensors(directory / "optimizer.safetensors")
    _check_finite(flat, str(directory / "optimizer.safetensors"))
    path = directory / "optimizer.json"
    try:
        meta = json.loads(path.read_text())
        groups = meta["param_groups"]
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: {directory} is not a training checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path} ({e}); the checkpoint is corrupt") from None
    except (KeyError, TypeError):
        raise CheckpointError(f"{path} has no param_groups; the checkpoint is corrupt") from None
    if step is not None and meta.get("step") != step:
        raise CheckpointError(
            f"{path} is from step {meta.get('step')!r} but config.json from step {step}: a mixed checkpoint"
        )
    state: dict[int, dict[str, torch.Tensor]] = {}
    try:
        for key, value in flat.items():
            i, name = key.split(".", 1)
            state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"the optimizer state in {directory} does not fit this model: {e}") from None
