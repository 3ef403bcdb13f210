"""Checkpoints: safetensors weights plus a JSON config. No pickle is ever written or loaded.

A checkpoint is a directory:

    config.json          {"format_version", "model": UNetConfig, "diffusion": {...}, "train": {...}, "step"}
    model.safetensors    "ema.<name>" (the EMA weights, used for sampling) and, in training
                         checkpoints, "model.<name>" (the raw weights)
    optimizer.safetensors, optimizer.json   optimizer state, only in training checkpoints (for --resume)

Every file is written to a temporary name and renamed, so a killed process never leaves a half-written
checkpoint behind.
"""

from __future__ import annotations

import json
import os
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


def save_checkpoint(
    directory: str | os.PathLike,
    config: dict,
    ema_model: torch.nn.Module,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a checkpoint directory. ``model`` and ``optimizer`` are for resuming; an inference-only
    checkpoint holds just the EMA weights (optionally cast to ``dtype``, e.g. float16)."""
    directory = Path(directory)
    tensors = state_tensors("ema", ema_model, dtype)
    if model is not None:
        tensors.update(state_tensors("model", model, dtype))
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(tensors, tmp))
    if optimizer is not None:
        opt = optimizer.state_dict()
        flat = {f"{i}.{name}": v.detach().cpu().contiguous() for i, s in opt["state"].items() for name, v in s.items()}
        atomic_write(directory / "optimizer.safetensors", lambda tmp: save_file(flat, tmp))
        atomic_write_json(directory / "optimizer.json", {"param_groups": opt["param_groups"], "step": step})
    # config last: its step marks the checkpoint as complete
    atomic_write_json(directory / "config.json", {**config, "format_version": FORMAT_VERSION, "step": step})
    return directory


def read_config(directory: str | os.PathLike) -> dict:
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
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def load_optimizer(optimizer: torch.optim.Optimizer, directory: str | os.PathLike) -> None:
    directory = Path(directory)
    flat = read_tensors(directory / "optimizer.safetensors")
    try:
        meta = json.loads((directory / "optimizer.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {directory / 'optimizer.json'}: {e}") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
