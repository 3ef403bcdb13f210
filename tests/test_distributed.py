"""torchrun / DistributedDataParallel on the CPU (gloo), with two processes.

W processes with batch B must follow one process with batch W * B: they draw the same global batch, t, eps
and label dropout, and DDP averages their gradients. The only difference is the rounding of that average,
so the weights agree to TOLERANCE, not bit for bit.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from conftest import REPO
from test_train import read_log, tiny_config, tiny_data

from ddpmlib.checkpoint import read_tensors
from ddpmlib.train import train
from ddpmlib.unet import UNet, UNetConfig

TOLERANCE = 1e-5  # max |difference| of any weight after 8 steps (measured: 1.2e-7, float32 rounding)
B = 4  # per-process batch
CONFIG = dict(max_steps=8, checkpoint_every=4, log_every=2, precision="fp32", p_uncond=0.3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, root):
    """One of two processes: an uninterrupted run, then a run 'killed' after step 4 and resumed."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    cfg = tiny_config(batch_size=B, **CONFIG)
    train(cfg, f"{root}/full", data=tiny_data(), device="cpu", progress=False)
    train(cfg, f"{root}/split", data=tiny_data(), device="cpu", progress=False, stop_step=4)
    train(cfg, f"{root}/split", data=tiny_data(), device="cpu", progress=False, resume=True)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, free_port(), str(root)), nprocs=2, join=True)
    return root


def test_two_processes_with_batch_B_equal_one_process_with_batch_2B(two_processes, tmp_path):
    one = train(tiny_config(batch_size=2 * B, **CONFIG), tmp_path, data=tiny_data(), device="cpu", progress=False)
    a, b = read_tensors(one / "model.safetensors"), read_tensors(two_processes / "full/checkpoint/model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"max |difference| of a weight, 2 x B vs 1 x 2B: {worst:.2e}")
    assert worst <= TOLERANCE, worst
    torch.manual_seed(0)  # the initial weights (train.seed = 0): the weights moved much more than TOLERANCE
    start = UNet(UNetConfig(**tiny_config()["model"])).state_dict()
    assert max((a[f"model.{k}"] - v).abs().max().item() for k, v in start.items()) > 1000 * TOLERANCE
    torch.testing.assert_close(read_log(tmp_path), read_log(two_processes / "full"), rtol=0, atol=2e-5)


def test_a_killed_two_process_run_resumes_bit_for_bit(two_processes):
    full = read_tensors(two_processes / "full/checkpoint/model.safetensors")
    resumed = read_tensors(two_processes / "split/checkpoint/model.safetensors")
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    assert json.loads((two_processes / "split/checkpoint/config.json").read_text())["step"] == CONFIG["max_steps"]
    assert read_log(two_processes / "split") == read_log(two_processes / "full")
    assert not (two_processes / "full" / "samples").exists()  # rank 0 writes; sample_every=0 here


@pytest.mark.parametrize("timestep_sampling", ["uniform", "stratified"])
def test_the_shards_of_a_batch_average_to_the_loss_of_the_whole_batch(timestep_sampling):
    """diffusion_loss(shard=(r, W)) draws t, eps and label dropout for the global batch and uses slice r."""
    from ddpmlib.schedules import NoiseSchedule
    from ddpmlib.train import diffusion_loss

    torch.manual_seed(0)
    net = UNet(UNetConfig(**tiny_config()["model"])).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    schedule = NoiseSchedule.from_name("linear", 50)
    x, y = tiny_data(3 * B)
    kw = dict(p_uncond=0.3, null_label=2, timestep_sampling=timestep_sampling, weighting="min_snr")
    whole = diffusion_loss(net, schedule, x, y, torch.Generator().manual_seed(5), **kw)
    parts = [
        diffusion_loss(net, schedule, x[r * B : (r + 1) * B], y[r * B : (r + 1) * B], torch.Generator().manual_seed(5),
                       shard=(r, 3), **kw)
        for r in range(3)
    ]  # fmt: skip
    torch.testing.assert_close(sum(parts) / 3, whole, rtol=1e-6, atol=0)


def test_torchrun_command(tmp_path, mnist_root):
    """The documented command, end to end: torchrun, two CPU processes, gloo, two steps on MNIST."""
    overrides = [
        "model.base_channels=8",
        "model.channel_mults=[1,2]",
        "model.attention_resolutions=[]",
        "model.groups=4",
        "train.batch_size=2",
        "train.max_steps=2",
        "train.warmup_steps=1",
        "train.log_every=1",
        "train.sample_every=0",
        "train.snapshot_minutes=[]",
        "train.max_minutes=null",
        "train.num_threads=1",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port())]
    cmd += ["-m", "ddpmlib.train", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress"]
    cmd += ["--data-root", mnist_root, "--set", *overrides]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "processes=2" in r.stderr and r.stdout.count("checkpoint: ") == 1  # rank 0 alone reports
    assert json.loads((tmp_path / "run/checkpoint/config.json").read_text())["step"] == 2
    assert len(read_log(tmp_path / "run")) == 2
