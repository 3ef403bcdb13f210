"""A real-vs-generated discriminator: can a small CNN tell the model's digits from MNIST?

The conditional accuracy of ``ddpmlib.evaluate`` asks whether a classifier recognises the digit; it
recognises ugly digits too, so models bunch together near 100%. A discriminator asks a harder question
(the two-sample classifier test of Lopez-Paz & Oquab 2017): train a classifier on equal numbers of real
training digits (label 1) and generated digits (label 0), then score it on held-out real and generated
digits it has not seen. Its held-out accuracy is

    50%   the two sets cannot be told apart (by this classifier, with this much data)
    100%  every generated digit gives itself away

and it comes with a Wilson interval, since it is a proportion of the held-out digits.

    from ddpmlib.discriminator import real_vs_generated
    result = real_vs_generated(real_images, generated_images, seed=0)   # both (N, 1, 28, 28) in [-1, 1]
    result["accuracy"], result["interval"]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion successes / n (95% for z = 1.96).

    Unlike the Wald interval p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not collapse to a
    point when p is 0 or 1 (Wilson 1927; Brown, Cai & DasGupta 2001).
    """
    if n <= 0:
        raise ValueError("the Wilson interval needs n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n = {n}, got {successes}")
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # the ends are exact at s = 0 and s = 1
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


class Discriminator(nn.Module):
    """A small CNN, (B, 1, 28, 28) in [-1, 1] -> one logit per image (real = positive)."""

    def __init__(self, channels: int = 1, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # 28 -> 14
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1),  # 14 -> 7
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _split(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    return perm[: n // 2], perm[n // 2 :]


def real_vs_generated(
    real: torch.Tensor,
    generated: torch.Tensor,
    steps: int = 400,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict:
    """Train ``Discriminator`` on half of each set and score it on the other halves.

    ``real`` and ``generated`` are (N, C, H, W) in [-1, 1]; the smaller set decides N, and the same number
    of images is taken from each, so a classifier that guesses scores 50%. Deterministic for a given seed
    on one device. Returns the held-out accuracy, its Wilson interval and the accuracy on each set.
    """
    n = min(len(real), len(generated))
    if n < 4:
        raise ValueError(f"the discriminator needs at least 4 images of each kind, got {n}")
    device = torch.device(device) if device is not None else real.device
    g = torch.Generator().manual_seed(seed)
    real = real[torch.randperm(len(real), generator=g)[:n]].float().cpu()
    generated = generated[torch.randperm(len(generated), generator=g)[:n]].float().cpu()
    r_train, r_test = _split(n, g)
    f_train, f_test = _split(n, g)
    x_train = torch.cat([real[r_train], generated[f_train]]).to(device)
    y_train = torch.cat([torch.ones(len(r_train)), torch.zeros(len(f_train))]).to(device)
    x_test = torch.cat([real[r_test], generated[f_test]]).to(device)
    y_test = torch.cat([torch.ones(len(r_test)), torch.zeros(len(f_test))]).to(device)

    torch.manual_seed(seed)  # the discriminator's initial weights
    model = Discriminator(real.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (min(batch_size, len(x_train)),), generator=g).to(device)
        loss = F.binary_cross_entropy_with_logits(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_test[i : i + 512]) for i in range(0, len(x_test), 512)]) > 0
    hit = (pred.float() == y_test).cpu()
    correct, total = int(hit.sum()), len(hit)
    real_mask = y_test.cpu() == 1
    return {
        "accuracy": correct / total,
        "interval": wilson_interval(correct, total),
        "correct": correct,
        "total": total,
        "accuracy_on_real": hit[real_mask].float().mean().item(),
        "accuracy_on_generated": hit[~real_mask].float().mean().item(),
        "num_train_per_set": len(r_train),
        "steps": steps,
        "seed": seed,
    }
