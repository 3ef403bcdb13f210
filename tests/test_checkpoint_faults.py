"""All-or-nothing checkpoints: a kill at any point of a save loses nothing, and resume is bit-identical."""

import json

import pytest
import torch
from test_train import read_log, tiny_config, tiny_data

import ddpmlib.checkpoint as ckpt_module
from ddpmlib.checkpoint import CheckpointError, read_config, read_tensors, save_checkpoint
from ddpmlib.pipeline import SHIPPED_CHECKPOINT, load_pipeline
from ddpmlib.train import train

# every point of the save sequence at which the hook fires, in order (see ddpmlib.checkpoint)
POINTS = [
    "pending/model.safetensors",
    "pending/optimizer.safetensors",
    "pending/optimizer.json",
    "pending/config.json",
    "pending/files.json",
    "commit",
    "moved/model.safetensors",
    "moved/optimizer.safetensors",
    "moved/optimizer.json",
    "moved/config.json",
    "done",
]
CONFIG = dict(max_steps=12, checkpoint_every=4, log_every=2)


class Killed(BaseException):
    """Raised by the hook: like SIGKILL, nothing on the way out catches it or cleans up."""


def checkpoint_state(directory):
    return read_tensors(directory / "model.safetensors"), read_tensors(directory / "optimizer.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    ckpt = train(tiny_config(**CONFIG), out, data=tiny_data(), progress=False)
    return checkpoint_state(ckpt), read_log(out)


def test_the_hook_sees_every_point_in_order(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(ckpt_module, "_fault_hook", seen.append)
    train(tiny_config(max_steps=10, checkpoint_every=10), tmp_path, data=tiny_data(), progress=False)
    assert seen == POINTS


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_point_of_a_save_then_resume_equals_an_uninterrupted_run(
    point, tmp_path, monkeypatch, uninterrupted
):
    saves = []

    def hook(p):
        if p == point and len(saves) == 1:  # during the second save (step 8); the one at step 4 is whole
            monkeypatch.setattr(ckpt_module, "_fault_hook", None)
            raise Killed(p)
        if p == "done":
            saves.append(p)

    monkeypatch.setattr(ckpt_module, "_fault_hook", hook)
    with pytest.raises(Killed):
        train(tiny_config(**CONFIG), tmp_path, data=tiny_data(), progress=False)
    ckpt = tmp_path / "checkpoint"
    committed = POINTS.index(point) >= POINTS.index("commit")
    assert read_config(ckpt)["step"] == (8 if committed else 4)  # never a mix: the old one or the new one
    resumed = train(tiny_config(**CONFIG), tmp_path, data=tiny_data(), progress=False, resume=True)
    (model_a, opt_a), log_a = uninterrupted
    model_b, opt_b = checkpoint_state(resumed)
    assert model_a.keys() == model_b.keys() and opt_a.keys() == opt_b.keys()
    for a, b in ((model_a, model_b), (opt_a, opt_b)):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert read_log(tmp_path) == log_a
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
    ]


def test_stale_temporary_files_are_removed_and_the_previous_checkpoint_survives(tmp_path, tiny_checkpoint):
    before = read_tensors(tiny_checkpoint / "model.safetensors")
    (tiny_checkpoint / ".model.safetensors.abc123.tmp").write_bytes(b"\0" * 1000)  # left by an older version
    (tiny_checkpoint / ".pending").mkdir()
    (tiny_checkpoint / ".pending" / "model.safetensors").write_bytes(b"half a file")  # a save killed in phase 1
    pipe = load_pipeline(tiny_checkpoint, device="cpu")  # a reader ignores the unfinished save
    assert all(torch.equal(before[f"ema.{k}"], v) for k, v in pipe.model.state_dict().items() if f"ema.{k}" in before)
    config = read_config(tiny_checkpoint)
    save_checkpoint(tiny_checkpoint, config, pipe.model, step=5)  # the next save cleans up
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == ["config.json", "model.safetensors"]
    assert read_config(tiny_checkpoint)["step"] == 5


def test_other_files_in_a_checkpoint_directory_are_kept(tiny_checkpoint):
    (tiny_checkpoint / "README.md").write_text("model card")
    config = read_config(tiny_checkpoint)
    save_checkpoint(tiny_checkpoint, config, load_pipeline(tiny_checkpoint, device="cpu").model, step=1)
    assert (tiny_checkpoint / "README.md").read_text() == "model card"


def test_non_finite_weights_are_never_saved_nor_loaded(tmp_path, tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint, device="cpu")
    config = read_config(tiny_checkpoint)
    with torch.no_grad():
        next(pipe.model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN or infinite values in 1 of"):
        save_checkpoint(tmp_path / "nan", config, pipe.model)
    assert not (tmp_path / "nan").exists()
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tiny_checkpoint, config, pipe.model, step=9)
    assert read_config(tiny_checkpoint)["step"] == 0  # the previous checkpoint is untouched
    # a file written by something else that holds an infinity: a clear error, not garbage samples
    from safetensors.torch import save_file

    tensors = read_tensors(tiny_checkpoint / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"NaN or infinite values .*e.g. {name.removeprefix('ema.')}"):
        load_pipeline(tiny_checkpoint, device="cpu")


def test_shipped_checkpoints_still_load():
    pipe = load_pipeline(SHIPPED_CHECKPOINT, device="cpu")
    assert pipe.T == 1000 and pipe.prediction_type == "v" and read_config(SHIPPED_CHECKPOINT)["step"] > 0
    from ddpmlib.classifier import SHIPPED_CLASSIFIER, load_classifier

    assert load_classifier(SHIPPED_CLASSIFIER).info["test_accuracy"] >= 0.99


def test_a_mixed_checkpoint_is_refused_on_resume(tmp_path):
    """A checkpoint whose optimizer.json and config.json name different steps (as an older version could leave)."""
    train(tiny_config(max_steps=10, checkpoint_every=10), tmp_path, data=tiny_data(), progress=False)
    path = tmp_path / "checkpoint" / "optimizer.json"
    meta = json.loads(path.read_text())
    meta["step"] = 20
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="from step 20 but config.json from step 10: a mixed checkpoint"):
        train(tiny_config(max_steps=20, checkpoint_every=10), tmp_path, data=tiny_data(), progress=False, resume=True)
