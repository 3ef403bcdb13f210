"""Throughput of the default (shipped) model on this machine: training and sampling images per second.

    python scripts/bench.py [--config configs/mnist_cpu.json] [--threads N] [--precision fp32|bf16]

A benchmark, not a test: it prints figures to report, it asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from ddpmlib.pipeline import DDPMPipeline
from ddpmlib.schedules import NoiseSchedule
from ddpmlib.train import build_configs, diffusion_loss, load_config_file
from ddpmlib.unet import UNet, count_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/mnist_cpu.json")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = load_config_file(args.config)  # found from any working directory
    model_cfg, diff_cfg, train_cfg = build_configs(raw)
    bs = args.batch_size or train_cfg.batch_size
    schedule = NoiseSchedule.from_name(diff_cfg.schedule, diff_cfg.T)
    model = UNet(model_cfg)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = (torch.rand(bs, model_cfg.image_channels, model_cfg.image_size, model_cfg.image_size) * 2 - 1).to(
        memory_format=fmt
    )
    y = torch.randint(0, model_cfg.num_classes, (bs,))
    g = torch.Generator().manual_seed(0)
    amp = torch.bfloat16 if args.precision == "bf16" else None
    print(
        f"config={args.config} params={count_parameters(model) / 1e6:.2f}M threads={torch.get_num_threads()} "
        f"batch={bs} precision={args.precision} channels_last={args.channels_last}"
    )
    for i in range(3 + args.steps):
        if i == 3:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss = diffusion_loss(model, schedule, x, y, g, null_label=model_cfg.num_classes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_ips = args.steps * bs / (time.perf_counter() - t0)
    print(f"training: {train_ips:.0f} images/s")

    pipe = DDPMPipeline(copy.deepcopy(model).eval(), schedule)
    labels = list(range(10)) * 10
    for guidance in (0.0, 2.0):
        pipe.generate(labels[:10], steps=2, guidance_scale=guidance)  # warm-up
        t0 = time.perf_counter()
        pipe.generate(labels, sampler="ddim", steps=20, guidance_scale=guidance, seed=0)
        dt = time.perf_counter() - t0
        print(
            f"sampling (batch 100, guidance {guidance}): {100 * 20 / dt:.0f} image-steps/s, "
            f"{100 / dt:.1f} images/s with DDIM 20 steps, {100 * 20 / dt / 1000:.2f} images/s with DDPM 1000 steps"
        )


if __name__ == "__main__":
    main()
