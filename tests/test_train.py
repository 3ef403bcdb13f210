import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_unet_config

from ddpmlib.checkpoint import CheckpointError, read_tensors
from ddpmlib.config import ConfigError
from ddpmlib.data import MNISTNotFoundError, load_mnist
from ddpmlib.pipeline import load_pipeline
from ddpmlib.schedules import NoiseSchedule
from ddpmlib.train import (
    TrainConfig,
    diffusion_loss,
    export,
    loss_weights,
    lr_at,
    sample_timesteps,
    train,
    use_channels_last,
)


def tiny_data(n=32, seed=0):
    """Two 'classes' of 8x8 images: bright left half or bright right half, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    x = -torch.ones(n, 1, 8, 8)
    for i, y in enumerate(labels.tolist()):
        if y == 0:
            x[i, :, :, :4] = 1.0
        else:
            x[i, :, :, 4:] = 1.0
    return x + 0.05 * torch.randn(x.shape, generator=g), labels


def tiny_config(**train):
    model = tiny_unet_config(image_size=8, num_classes=2, num_timesteps=50).to_dict()
    t = dict(batch_size=8, max_steps=40, lr=3e-3, warmup_steps=5, log_every=5, sample_every=0, checkpoint_every=10)
    t.update(train)
    return {"model": model, "diffusion": {"schedule": "linear", "T": 50}, "train": t}


def read_log(path):
    lines = (path / "log.csv").read_text().splitlines()[1:]
    return [float(line.split(",")[1]) for line in lines]


def test_training_lowers_the_loss(tmp_path):
    train(tiny_config(max_steps=100, log_every=10), tmp_path, data=tiny_data(), progress=False)
    losses = read_log(tmp_path)
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:2]) / 2, losses


def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
    data = tiny_data()
    full = train(tiny_config(), tmp_path / "full", data=data, progress=False)
    train(tiny_config(), tmp_path / "split", data=data, progress=False, stop_step=20)  # "killed" after step 20
    assert json.loads((tmp_path / "split" / "checkpoint" / "config.json").read_text())["step"] == 20
    resumed = train(tiny_config(), tmp_path / "split", data=data, progress=False, resume=True)
    a, b = read_tensors(full / "model.safetensors"), read_tensors(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_log(tmp_path / "full") == read_log(tmp_path / "split")


def test_resume_rejects_a_different_model(tmp_path):
    train(tiny_config(max_steps=10), tmp_path, data=tiny_data(), progress=False)
    cfg = tiny_config(max_steps=20)
    cfg["model"]["base_channels"] = 16
    with pytest.raises(CheckpointError, match="another model"):
        train(cfg, tmp_path, data=tiny_data(), progress=False, resume=True)


def test_nan_loss_stops_without_writing_a_checkpoint(tmp_path):
    x, y = tiny_data()
    x[:] = float("nan")
    with pytest.raises(FloatingPointError) as e:
        train(tiny_config(precision="fp32"), tmp_path, data=(x, y), progress=False)
    assert str(e.value).startswith("the loss became nan at step 0 (fp32); stopped without writing a checkpoint: ")
    assert "this run has written no checkpoint yet" in str(e.value) and "precision=fp32" not in str(e.value)
    assert not (tmp_path / "checkpoint").exists()


def test_checkpoint_round_trip_and_export(tmp_path):
    ckpt = train(tiny_config(max_steps=10), tmp_path, data=tiny_data(), progress=False)
    pipe = load_pipeline(ckpt, device="cpu")
    a = pipe.generate([0, 1], sampler="ddim", steps=10, seed=3)
    b = load_pipeline(ckpt, device="cpu").generate([0, 1], sampler="ddim", steps=10, seed=3)
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8)
    out = export(ckpt, tmp_path / "export")
    tensors = read_tensors(out / "model.safetensors")
    assert all(k.startswith("ema.") for k in tensors) and all(v.dtype == torch.float16 for v in tensors.values())
    c = load_pipeline(out, device="cpu").generate([0, 1], sampler="ddim", steps=10, seed=3)
    torch.testing.assert_close(c, a, atol=2e-2, rtol=0)  # fp16 weights


def test_corrupt_and_mismatched_checkpoints(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_pipeline(tmp_path / "nowhere")
    weights = tiny_checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_pipeline(tiny_checkpoint)
    weights.write_bytes(data)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model"]["base_channels"] = 16
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_pipeline(tiny_checkpoint)
    (tiny_checkpoint / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pipeline(tiny_checkpoint)


def test_pipeline_rejects_bad_labels(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="class 11 is out of range"):
        pipe.generate([1, 11], steps=2)
    with pytest.raises(ValueError, match="number of sampling steps"):
        pipe.generate([1], steps=21)


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, lr_min_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_missing_data_error_names_the_fix(tmp_path):
    with pytest.raises(MNISTNotFoundError) as e:
        load_mnist(root=tmp_path, download=False)
    msg = str(e.value)
    assert "--data-root" in msg and "DDPM_DATA_ROOT" in msg and "train-images-idx3-ubyte" in msg


def test_cli_reports_missing_data_clearly(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddpmlib.train",
            "--out",
            str(tmp_path / "run"),
            "--data-root",
            str(tmp_path),
            "--set",
            "train.max_steps=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DDPM_OFFLINE": "1"},
        timeout=300,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "--data-root" in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: MNIST was not found under")
    assert list(tmp_path.iterdir()) == [], "no empty MNIST/raw folders (nor a run folder) left behind"


def test_mnist_loads(mnist_root):
    x, y = load_mnist(train=False, root=mnist_root, download=False)
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert x.min() == -1 and x.max() == 1
    assert torch.bincount(y).tolist()[:2] == [980, 1135]


def test_stratified_timesteps_cover_every_stratum_and_stay_uniform():
    g = torch.Generator().manual_seed(0)
    T, B = 1000, 20  # strata of 50 steps
    for _ in range(20):
        t = sample_timesteps(B, T, g, "stratified")
        assert sorted((t * B // T).tolist()) == list(range(B)), "one t per stratum of T/B steps"
    many = torch.cat([sample_timesteps(B, T, g, "stratified") for _ in range(4000)])
    counts = torch.bincount(many * 10 // T, minlength=10).float() / len(many)
    torch.testing.assert_close(counts, torch.full((10,), 0.1), atol=0.0, rtol=0.0)  # exact per stratum
    assert abs(many.float().mean().item() - (T - 1) / 2) < 2.0
    with pytest.raises(ValueError, match="timestep_sampling"):
        sample_timesteps(B, T, g, "sorted")


def test_min_snr_weights_agree_across_prediction_types():
    """Min-SNR-gamma weighs ||x0 - x0_hat||^2 by min(SNR, gamma); ||eps - eps_hat||^2 = SNR ||x0 - x0_hat||^2."""
    schedule = NoiseSchedule.from_name("linear", 1000)
    t = torch.tensor([0, 50, 120, 300, 999])
    snr = schedule.float64["snr"][t]
    gamma = 5.0
    w_eps = loss_weights(schedule, t, "min_snr", "eps", gamma).double()
    w_x0 = loss_weights(schedule, t, "min_snr", "x0", gamma).double()
    w_v = loss_weights(schedule, t, "min_snr", "v", gamma).double()
    torch.testing.assert_close(w_eps * snr, w_x0, rtol=1e-5, atol=0)
    torch.testing.assert_close(w_v * (snr + 1), w_x0, rtol=1e-5, atol=0)  # ||v - v_hat||^2 = (SNR+1) ||x0 - ...||^2
    assert (w_eps <= 1).all() and w_eps[-1] == 1 and w_eps[0] < 0.01  # only the near-clean steps are down-weighted
    assert loss_weights(schedule, t, "none", "eps") is None
    with pytest.raises(ValueError, match="loss_weighting"):
        loss_weights(schedule, t, "p2", "eps")


def test_weighted_loss_equals_the_weighted_mean_of_per_example_errors():
    schedule = NoiseSchedule.from_name("linear", 1000)
    model = tiny_unet_config(image_size=8, num_classes=2)
    from ddpmlib.unet import UNet

    net = UNet(model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x0, y = tiny_data(32)
    plain = diffusion_loss(net, schedule, x0, y, torch.Generator().manual_seed(1), null_label=2)
    weighted = diffusion_loss(net, schedule, x0, y, torch.Generator().manual_seed(1), null_label=2, weighting="min_snr")
    # redo the draws of diffusion_loss by hand to get t and the per-example errors
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 1000, (32,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    drop = torch.rand(32, generator=g) < 0.1
    labels = torch.where(drop, torch.full_like(y, 2), y)
    from ddpmlib.diffusion import q_sample

    err = (net(q_sample(schedule, x0, t, eps), t, labels) - eps).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(plain, err.mean())
    w = loss_weights(schedule, t, "min_snr", "eps")
    assert (w < 1).any(), "the batch should hold a near-clean step for this check to mean something"
    torch.testing.assert_close(weighted, (w * err).mean())


def test_channels_last_auto_follows_the_device_and_precision():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert use_channels_last("auto", cpu, None)  # fp32 on the CPU: faster with channels_last
    assert not use_channels_last("auto", cpu, torch.bfloat16)  # bf16 autocast on the CPU: slower with it
    assert use_channels_last("auto", cuda, torch.bfloat16)
    assert not use_channels_last("auto", mps, None)
    assert use_channels_last("on", cpu, torch.bfloat16)
    assert not use_channels_last("off", cuda, None)
    with pytest.raises(ValueError, match="channels_last must be auto, on or off"):
        use_channels_last("yes", cpu, None)


# --- the output directory ------------------------------------------------------------------------------------


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path):
    data = tiny_data()
    train(tiny_config(max_steps=4, checkpoint_every=2, log_every=2), tmp_path, data=data, progress=False)
    before = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(
        FileExistsError, match=r"already holds a training run \(a checkpoint at step 4\); pass --resume"
    ):
        train(tiny_config(max_steps=2), tmp_path, data=data, progress=False)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == before and len(read_log(tmp_path)) == 2
    train(tiny_config(max_steps=2, log_every=1), tmp_path, data=data, progress=False, overwrite=True)
    assert json.loads((tmp_path / "checkpoint" / "config.json").read_text())["step"] == 2
    assert len(read_log(tmp_path)) == 2  # a fresh log, not the old one continued


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="--resume: there is no checkpoint in"):
        train(tiny_config(), tmp_path / "new", data=tiny_data(), progress=False, resume=True)
    (tmp_path / "log.csv").write_text("step,loss,lr,images_per_s,elapsed_s\n")  # killed before its first checkpoint
    with pytest.raises(
        CheckpointError, match=r"no checkpoint in .* \(it holds log.csv\); start the run without --resume"
    ):
        train(tiny_config(), tmp_path, data=tiny_data(), progress=False, resume=True)
    with pytest.raises(ConfigError, match="give one of them"):
        train(tiny_config(), tmp_path, data=tiny_data(), progress=False, resume=True, overwrite=True)


@pytest.mark.parametrize(
    "file, edit, message",
    [
        ("config.json", lambda d: d.pop("step"), "has no step or train section"),
        ("config.json", lambda d: d.update(step="ten"), "has step 'ten'"),
        ("optimizer.json", lambda d: d.pop("param_groups"), "has no param_groups; the checkpoint is corrupt"),
    ],
)
def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(tmp_path, file, edit, message):
    train(tiny_config(max_steps=2, checkpoint_every=2), tmp_path, data=tiny_data(), progress=False)
    path = tmp_path / "checkpoint" / file
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match=message):
        train(tiny_config(max_steps=4), tmp_path, data=tiny_data(), progress=False, resume=True)


def test_resume_from_a_partial_checkpoint_is_a_clear_error(tmp_path):
    train(tiny_config(max_steps=2, checkpoint_every=2), tmp_path, data=tiny_data(), progress=False)
    (tmp_path / "checkpoint" / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors does not exist"):
        train(tiny_config(max_steps=4), tmp_path, data=tiny_data(), progress=False, resume=True)
    export(tmp_path / "checkpoint", tmp_path / "checkpoint")  # now an inference-only (EMA) checkpoint
    with pytest.raises(CheckpointError, match=r"holds only EMA weights \(an exported checkpoint\)"):
        train(tiny_config(max_steps=4), tmp_path, data=tiny_data(), progress=False, resume=True)


# --- non-finite and diverging training --------------------------------------------------------------------------


class InfiniteGradient(torch.autograd.Function):
    """Identity forward; an infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("inf"))


def patch_loss(monkeypatch, from_step, change):
    """Make ddpmlib.train's loss ``change(loss, model)`` from the ``from_step``-th call on."""
    import ddpmlib.train as tr

    real, calls = tr.diffusion_loss, []

    def loss(model, *args, **kwargs):
        calls.append(1)
        value = real(model, *args, **kwargs)
        return change(value, model) if len(calls) > from_step else value

    monkeypatch.setattr(tr, "diffusion_loss", loss)


def test_an_infinite_gradient_with_a_finite_loss_stops_before_the_update(tmp_path, monkeypatch):
    def inf_grad(loss, model):
        return loss + 0.0 * InfiniteGradient.apply(next(model.parameters())).sum()

    patch_loss(monkeypatch, 3, inf_grad)
    with pytest.raises(FloatingPointError) as e:
        train(
            tiny_config(max_steps=10, checkpoint_every=2, precision="fp32"), tmp_path, data=tiny_data(), progress=False
        )
    msg = str(e.value)
    assert msg.startswith("the gradient norm became inf (loss 0.") and "at step 3 (fp32)" in msg
    assert "the last checkpoint, from step 2, is in" in msg and "precision=fp32" not in msg  # already fp32
    tensors = read_tensors(tmp_path / "checkpoint" / "model.safetensors")  # the step-2 checkpoint, all finite
    assert json.loads((tmp_path / "checkpoint" / "config.json").read_text())["step"] == 2
    assert all(torch.isfinite(v).all() for v in tensors.values())


def test_a_diverging_loss_stops_the_run(tmp_path, monkeypatch):
    patch_loss(monkeypatch, 1, lambda loss, model: loss * 1e30)
    with pytest.raises(FloatingPointError) as e:
        train(tiny_config(max_steps=10, precision="bf16"), tmp_path, data=tiny_data(), progress=False)
    msg = str(e.value)
    assert msg.startswith("the loss reached ") and "e+30, above train.max_loss=10000: training diverged" in msg
    assert "at step 1 (bf16 autocast)" in msg
    assert msg.endswith("or train.precision=fp32.")  # suggested only when the run was not fp32


# --- the command line: one line per error, no traceback ----------------------------------------------------------


def cli_error(tmp_path, *args, config=None) -> str:
    from ddpmlib.train import main

    if config is not None:
        (tmp_path / "tiny.json").write_text(json.dumps(config))
        args = ("--config", str(tmp_path / "tiny.json"), *args)
    with pytest.raises(SystemExit) as e:
        main(["--no-progress", *args])
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    return msg


def test_cli_errors_are_one_line(tmp_path):
    out = str(tmp_path / "run")
    assert "train.lr must be a number > 0, got 'abc'" in cli_error(tmp_path, "--out", out, "--set", "train.lr=abc")
    assert "train.batch_size must be an integer >= 1, got -4" in cli_error(
        tmp_path, "--out", out, "--set", "train.batch_size=-4"
    )
    assert "--device 'foo' is not a device" in cli_error(tmp_path, "--out", out, "--device", "foo")
    if not torch.cuda.is_available():
        assert "--device cuda: no CUDA GPU is available here" in cli_error(tmp_path, "--out", out, "--device", "cuda")
    assert "does not exist" in cli_error(tmp_path, "--out", out, "--config", str(tmp_path / "nope.json"))
    assert "there is no checkpoint" in cli_error(tmp_path, "--out", out, "--resume")


def test_cli_errors_under_resume_are_one_line(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(max_steps=2, checkpoint_every=2), run, data=tiny_data(), progress=False)
    config = tiny_config(max_steps=4)
    assert "already holds a training run" in cli_error(tmp_path, "--out", str(run), config=config)
    (run / "checkpoint" / "optimizer.json").write_text("{not json")
    assert "optimizer.json (" in cli_error(tmp_path, "--out", str(run), "--resume", config=config)
    (run / "checkpoint" / "config.json").write_text('{"format_version": 1, "model": {}, "diffusion": {}}')
    assert "has no step or train section" in cli_error(tmp_path, "--out", str(run), "--resume", config=config)
    (run / "checkpoint" / "config.json").write_text("")
    assert "not valid JSON" in cli_error(tmp_path, "--out", str(run), "--resume", config=config)


def test_cli_works_from_another_directory(tmp_path):
    """The default config is found from any working directory; a bad setting is one line on stderr."""
    r = subprocess.run(
        [sys.executable, "-m", "ddpmlib.train", "--out", str(tmp_path / "run"), "--set", "train.log_every=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert r.returncode == 1 and r.stderr == "error: train.log_every must be an integer >= 1, got 0\n", r.stderr


def test_data_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    x, y = tiny_data()
    with pytest.raises(ConfigError, match=r"the labels go from 0 to 2, but model.num_classes=2 allows 0..1"):
        train(tiny_config(), tmp_path, data=(x, y.clamp(max=1) * 2), progress=False)
    with pytest.raises(ConfigError, match=r"the images are \(1, 4, 4\) but the model expects \(1, 8, 8\)"):
        train(tiny_config(), tmp_path, data=(x[:, :, :4, :4], y), progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_relative_data_root_means_the_same_folder_from_the_notebooks(tmp_path, monkeypatch):
    """DDPM_DATA_ROOT=../shared/data, set for `make test` in the repository, also works from notebooks/."""
    import ddpmlib.data as data

    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "MNIST").mkdir(parents=True)
    monkeypatch.setattr(data, "REPO_ROOT", repo)
    monkeypatch.setenv("DDPM_DATA_ROOT", "../shared/data")
    monkeypatch.chdir(repo)
    assert data.data_root() == tmp_path / "shared" / "data"
    monkeypatch.chdir(repo / "notebooks")
    assert data.data_root() == tmp_path / "shared" / "data"
    monkeypatch.delenv("DDPM_DATA_ROOT")
    assert data.data_root() == repo / "data"  # the default: data/ in the repository, wherever we are
