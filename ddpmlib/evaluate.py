"""Evaluation of a class-conditional model: does it draw the digit it was asked for, do its digits
look like MNIST, and has it merely memorised the training set?

    python -m ddpmlib.evaluate --checkpoint checkpoints/mnist --sampler ddim --steps 50 --guidance 2.0 \\
        --num-samples 1000 --seed 0 [--eta 0.5 | --variance beta] [--json out.json] [--grid out.png]

``--sampler`` is ddpm, ddim or dpmpp (DPM-Solver++(2M)); ``--eta`` applies to DDIM only and ``--variance``
to DDPM only (anything else is an error, see ``ddpmlib.samplers.SamplingOptions``).

N samples are drawn with labels balanced over the 10 classes (label i % 10 for sample i), then:

1. Conditional accuracy s = n / N: the fraction that the MNIST classifier (``ddpmlib.classifier``,
   shipped in ``checkpoints/classifier``) recognises as the digit that was asked for, per class and
   overall. Real test digits score the classifier's own test accuracy (about 99%).
2. Frechet distance (the FID of Heusel et al. 2017, with the classifier's penultimate features in
   place of Inception's) between Gaussians fitted to the features of the samples and of the 10,000
   MNIST test images:  d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
   It depends on the feature extractor and, through the bias of the covariance estimate, on N, so it
   is always reported next to the real-vs-real baseline: N training images (balanced over the classes,
   like the samples) against the same test set; also at N = 10,000. A perfect model scores the baseline.
3. Real vs generated (``--discriminator``): the held-out accuracy of a small CNN trained to tell N/2
   generated digits from N/2 real training digits (``ddpmlib.discriminator``), with a Wilson interval:
   50% means it cannot tell them apart. Harder to fool than the classifier, which recognises ugly digits.
4. Memorisation: the L2 distance (pixels in [0, 1]) of every sample to its nearest training image,
   compared with the same distance for N (at most 5,000) test images, which the model has never
   seen. A ratio of medians well below 1, or distances near 0, mean the model copies training digits.

The real data and its feature statistics are loaded once per process (``load_reference``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, atomic_write_json
from .classifier import SHIPPED_CLASSIFIER, classify, load_classifier, read_classifier_config
from .data import MNISTNotFoundError, data_root, load_mnist
from .pipeline import SHIPPED_CHECKPOINT, DDPMPipeline, load_pipeline
from .samplers import SAMPLER_NAMES, SAMPLERS, VARIANCES, SamplingOptions, make_sampler

BASELINE_SEED = 0  # real-vs-real subsets do not change with --seed, so baselines stay comparable
FULL_BASELINE_N = 10_000
MAX_SAMPLES = 50_000  # the baseline at N needs N training images, balanced over the classes
MAX_TEST_QUERIES = 5_000  # test images whose nearest training image is the memorisation reference


# ---------------------------------------------------------------------------------------------------
# the three measures, as plain functions of tensors


def balanced_labels(n: int, num_classes: int = 10) -> torch.Tensor:
    """0, 1, ..., 9, 0, 1, ...: every class n // num_classes or one more times, every batch mixed."""
    return torch.arange(n) % num_classes


def conditional_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> dict:
    """s = n / N overall and per class (None for a class with no samples)."""
    preds, labels = torch.as_tensor(preds).cpu(), torch.as_tensor(labels).cpu()
    hit = preds == labels
    per_class = []
    for c in range(num_classes):
        mask = labels == c
        per_class.append(hit[mask].sum().item() / mask.sum().item() if mask.any() else None)
    return {
        "overall": hit.sum().item() / len(hit),
        "per_class": per_class,
        "correct": int(hit.sum()),
        "total": len(hit),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion k / n (95% for z = 1.96; Wilson 1927): unlike
    p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at k = n, where accuracies live.

        centre = (p + z^2 / 2n) / (1 + z^2 / n),  half-width = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the squared Frechet (Wasserstein-2)
    distance between two Gaussians; the usual FID code path, including its fallback for singular products."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        except scipy.linalg.LinAlgWarning:
            covmean = np.full_like(sigma1, np.nan)
    if not np.isfinite(covmean).all():  # singular product (e.g. fewer samples than features): regularise
        offset = np.eye(len(mu1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # rounding can leave tiny imaginary parts
    d = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return max(float(d), 0.0)  # a set against itself can come out at -1e-12


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor, reference: torch.Tensor, query_chunk: int = 512, ref_chunk: int = 8192, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every query (N, ...) the L2 distance to its nearest reference image (M, ...) and its index.

    |q - r|^2 = |q|^2 + |r|^2 - 2 q.r on (query_chunk x ref_chunk) blocks, so memory stays bounded;
    the winning distance is then recomputed directly, so an exact copy gives exactly 0.
    """
    device = torch.device(device) if device is not None else queries.device
    q_all = queries.reshape(len(queries), -1).float()
    r_all = reference.reshape(len(reference), -1).float()
    r_dev = r_all.to(device)
    r_sq = (r_dev * r_dev).sum(1)
    best_d = torch.empty(len(q_all))
    best_i = torch.empty(len(q_all), dtype=torch.long)
    for i in range(0, len(q_all), query_chunk):
        q = q_all[i : i + query_chunk].to(device)
        d_min = torch.full((len(q),), float("inf"), device=device)
        i_min = torch.zeros(len(q), dtype=torch.long, device=device)
        for j in range(0, len(r_all), ref_chunk):
            r = r_dev[j : j + ref_chunk]
            d2 = r_sq[j : j + ref_chunk][None, :] - 2 * q @ r.T  # (Q, R); |q|^2 is the same along a row
            d, k = d2.min(1)
            better = d < d_min
            d_min = torch.where(better, d, d_min)
            i_min = torch.where(better, k + j, i_min)
        best_i[i : i + len(q)] = i_min.cpu()
        best_d[i : i + len(q)] = (q.cpu().double() - r_all[i_min.cpu()].double()).norm(dim=1).float()
    return best_d, best_i


def memorisation(generated: torch.Tensor, train: torch.Tensor, test: torch.Tensor, device=None) -> dict:
    """Nearest-training-image distances of generated and of held-out test images (pixels in [0, 1])."""
    gen_d, gen_i = nearest_neighbours(generated, train, device=device)
    test_d, _ = nearest_neighbours(test, train, device=device)
    gen_d, test_d = gen_d / 2, test_d / 2  # images are in [-1, 1]: distances in [0, 1] pixel units
    p1 = torch.quantile(test_d, 0.01).item()
    return {
        "units": "L2 distance over 784 pixels in [0, 1]",
        "generated_median": gen_d.median().item(),
        "generated_mean": gen_d.mean().item(),
        "generated_min": gen_d.min().item(),
        "test_median": test_d.median().item(),
        "test_mean": test_d.mean().item(),
        "test_min": test_d.min().item(),
        "ratio_of_medians": gen_d.median().item() / max(test_d.median().item(), 1e-12),
        "fraction_below_test_p01": (gen_d < p1).float().mean().item(),  # about 0.01 for a model that does not copy
        "num_generated": len(gen_d),
        "num_test": len(test_d),
        "nearest_train_index_of_closest_sample": int(gen_i[gen_d.argmin()]),
    }


# ---------------------------------------------------------------------------------------------------
# the real data that samples are compared with


def balanced_subset(labels: torch.Tensor, n: int, seed: int = BASELINE_SEED, num_classes: int = 10) -> torch.Tensor:
    """Indices of n items whose labels are distributed like ``balanced_labels(n)``, chosen at random."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(balanced_labels(n, num_classes), minlength=num_classes)
    picked = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx) < counts[c]:
            raise ValueError(f"cannot pick {int(counts[c])} images of class {c}: the set has only {len(idx)}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[: counts[c]]])
    return torch.cat(picked).sort().values


class MNISTReference:
    """The classifier and the real MNIST images, with their feature statistics computed once."""

    def __init__(self, classifier, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]):
        self.classifier = classifier
        self.train_images, self.train_labels = train
        self.test_images, self.test_labels = test
        self._test_stats = None
        self._baselines: dict[int, float] = {}

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted labels and penultimate features."""
        return classify(self.classifier, images)

    def test_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._test_stats is None:
            self._test_stats = feature_statistics(self.classify(self.test_images)[1])
        return self._test_stats

    def frechet_to_test(self, features: torch.Tensor) -> float:
        return frechet_distance(*feature_statistics(features), *self.test_stats())

    def baseline(self, n: int) -> float:
        """Real-vs-real Frechet distance: n training images (balanced) against the test set."""
        if n not in self._baselines:
            idx = balanced_subset(self.train_labels, n)
            self._baselines[n] = self.frechet_to_test(self.classify(self.train_images[idx])[1])
        return self._baselines[n]


@functools.lru_cache(maxsize=2)
def _cached_reference(classifier_dir: str, root: str, device: str) -> MNISTReference:
    return MNISTReference(load_classifier(classifier_dir, device), load_mnist(True, root), load_mnist(False, root))


def load_reference(
    classifier_dir: str | os.PathLike = SHIPPED_CLASSIFIER,
    root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> MNISTReference:
    """The classifier plus MNIST (root as in ``ddpmlib.data``), cached for the life of the process."""
    return _cached_reference(str(Path(classifier_dir).resolve()), str(data_root(root).resolve()), str(device))


# ---------------------------------------------------------------------------------------------------
# generating and evaluating


def generate_samples(
    pipe: DDPMPipeline,
    num_samples: int,
    options: SamplingOptions | None = None,
    *,
    batch_size: int = 250,
    progress: bool = True,
    **option_keywords,
) -> tuple[torch.Tensor, torch.Tensor]:
    """N samples (CPU, in [-1, 1]) and their labels (balanced). The sampling options are ``options`` or
    its fields as keywords (``sampler``, ``steps``, ``guidance_scale``, ``eta``, ``variance``, ``seed``).
    One generator seeded by ``seed`` (default 0) feeds all batches, so the result is reproducible for a
    given seed, batch size and device."""
    options = SamplingOptions.resolve(options, **option_keywords)
    labels = balanced_labels(num_samples, pipe.num_classes)
    g = torch.Generator(pipe.device).manual_seed(0 if options.seed is None else options.seed)
    per_batch = dataclasses.replace(options, seed=None)  # the generator above draws everything
    batches = [labels[i : i + batch_size] for i in range(0, num_samples, batch_size)]
    out = []
    total = len(batches) * options.steps
    with tqdm(total=total, disable=not progress, desc=f"sampling {num_samples}", unit="step") as bar:
        for b, y in enumerate(batches):
            x = None
            for state in pipe.generate_iter(y, options=per_batch, generator=g, yield_start=False):
                x = state.x  # after the last step: x_0
                bar.update(1)
            out.append(x.clamp(-1, 1).cpu())
            bar.set_postfix(batch=f"{b + 1}/{len(batches)}")
    return torch.cat(out), labels


def evaluate_samples(
    images: torch.Tensor, labels: torch.Tensor, ref: MNISTReference, full_baseline: bool = True
) -> dict:
    """Accuracy, Frechet distance (with baselines) and memorisation for given images (N, 1, 28, 28) in [-1, 1]."""
    n = len(images)
    if n < 2:
        raise ValueError("the Frechet distance needs at least 2 samples")
    preds, feats = ref.classify(images)
    fd = ref.frechet_to_test(feats)
    sizes = sorted({n, FULL_BASELINE_N} if full_baseline else {n})
    baselines = {str(k): ref.baseline(k) for k in sizes}
    test_idx = balanced_subset(ref.test_labels, min(n, MAX_TEST_QUERIES))
    return {
        "accuracy": conditional_accuracy(preds, labels, ref.classifier.config.num_classes),
        "frechet_distance": {
            "generated": fd,
            "baseline": baselines,  # keyed by the number of training images
            "ratio_to_baseline": fd / max(baselines[str(n)], 1e-12),
        },
        "memorisation": memorisation(images, ref.train_images, ref.test_images[test_idx], device=ref.device),
    }


def evaluate(
    pipe: DDPMPipeline,
    ref: MNISTReference,
    num_samples: int = 1000,
    options: SamplingOptions | None = None,
    *,
    batch_size: int = 250,
    full_baseline: bool = True,
    progress: bool = True,
    **option_keywords,
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Generate and evaluate; returns (results, images, labels). Sampling options as in ``generate_samples``."""
    options = SamplingOptions.resolve(options, **option_keywords)
    seed = 0 if options.seed is None else options.seed
    t0 = time.time()
    images, labels = generate_samples(
        pipe, num_samples, dataclasses.replace(options, seed=seed), batch_size=batch_size, progress=progress
    )
    t1 = time.time()
    result = {
        "sampler": options.sampler,
        "steps": options.steps,
        "guidance_scale": options.guidance_scale,
        "eta": options.eta if options.sampler == "ddim" else None,
        "variance": (options.variance or "beta_tilde") if options.sampler == "ddpm" else None,
        "num_samples": num_samples,
        "seed": seed,
        "batch_size": batch_size,
        "device": str(pipe.device),
        "classifier_test_accuracy": getattr(ref.classifier, "info", {}).get("test_accuracy"),
    }
    result.update(evaluate_samples(images, labels, ref, full_baseline))
    t2 = time.time()
    result["timing_s"] = {"generation": t1 - t0, "evaluation": t2 - t1, "total": t2 - t0}
    return result, images, labels


def evaluate_discriminator(images: torch.Tensor, ref: MNISTReference, seed: int = 0, steps: int = 400) -> dict:
    """Real-vs-generated discriminator (``ddpmlib.discriminator``) against as many balanced training digits."""
    from .discriminator import real_vs_generated

    idx = balanced_subset(ref.train_labels, len(images), seed=BASELINE_SEED + 1)
    return real_vs_generated(ref.train_images[idx], images, steps=steps, seed=seed, device=ref.device)


def format_report(r: dict) -> str:
    acc, fd, mem = r["accuracy"], r["frechet_distance"], r["memorisation"]
    n = r["num_samples"]
    head = f"{r.get('checkpoint', 'model')}"
    if r.get("step") is not None:
        head += f" (step {r['step']})"
    eta = f", eta {r['eta']}" if r.get("eta") else ""
    eta += f", variance {r['variance']}" if r.get("variance") else ""
    per_class = "  ".join(f"{c}: {100 * a:.1f}" if a is not None else f"{c}: -" for c, a in enumerate(acc["per_class"]))
    real = r.get("classifier_test_accuracy")
    base = "; ".join(f"{v:.3f} at N={k}" for k, v in fd["baseline"].items())
    lines = [
        f"{head} | {r['sampler']} {r['steps']} steps, guidance {r['guidance_scale']}{eta} | "
        f"{n} samples, seed {r['seed']}",
        f"  conditional accuracy  {100 * acc['overall']:.2f}%  ({acc['correct']}/{acc['total']})"
        + (f"   real test digits: {100 * real:.2f}%" if real is not None else ""),
        f"    per class (%)       {per_class}",
        f"  Frechet distance      {fd['generated']:.3f}   real-vs-real baseline {base}; "
        f"ratio {fd['ratio_to_baseline']:.2f}x at N={n}",
        f"  nearest training image (L2, pixels in [0,1])  generated: median {mem['generated_median']:.3f} "
        f"mean {mem['generated_mean']:.3f} min {mem['generated_min']:.3f} | test: median {mem['test_median']:.3f} "
        f"mean {mem['test_mean']:.3f} | ratio of medians {mem['ratio_of_medians']:.3f}",
    ]
    if r.get("discriminator"):
        d = r["discriminator"]
        lo, hi = d["interval"]
        lines.append(
            f"  real vs generated     discriminator accuracy {100 * d['accuracy']:.1f}% "
            f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}; 50% = indistinguishable, {d['total']} held-out digits)"
        )
    lines += [
        f"  time                  generation {r['timing_s']['generation']:.1f} s, "
        f"evaluation {r['timing_s']['evaluation']:.1f} s",
    ]
    return "\n".join(lines)


def grid_by_class(
    images: torch.Tensor, labels: torch.Tensor, per_row: int = 10, num_classes: int = 10
) -> tuple[torch.Tensor, int]:
    """The first ``per_row`` samples of every class, one row per class (fewer if there are not enough),
    and the row length to pass to ``save_grid``."""
    per_row = min([per_row] + [int((labels == c).sum()) for c in range(num_classes)])
    return torch.cat([images[labels == c][:per_row] for c in range(num_classes)]), max(per_row, 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Evaluate a class-conditional DDPM: conditional accuracy, Frechet distance and memorisation."
    )
    p.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT, help="checkpoint directory (default: the shipped model)")
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="ddim",
        help="; ".join(f"{k}: {v}" for k, v in SAMPLER_NAMES.items()) + " (default: ddim)",
    )
    p.add_argument("--steps", type=int, default=50, help="sampling steps")
    p.add_argument("--guidance", type=float, default=0.0, help="guidance scale w: (1 + w) eps_cond - w eps_uncond")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM only: eta (0: deterministic)")
    p.add_argument("--variance", choices=VARIANCES, default=None, help="DDPM only: sigma_t^2 (default: beta_tilde)")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument(
        "--classifier", default=SHIPPED_CLASSIFIER, help="classifier directory (default: checkpoints/classifier)"
    )
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DDPM_DATA_ROOT or ./data)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--discriminator", action="store_true", help="also train a real-vs-generated discriminator and report it"
    )
    p.add_argument("--no-full-baseline", action="store_true", help=f"skip the baseline at N={FULL_BASELINE_N}")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--grid", default=None, metavar="PNG", help="also save 10 samples per class, one row per digit")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not 2 <= args.num_samples <= MAX_SAMPLES or args.batch_size < 1:
        p.error(f"--num-samples must be between 2 and {MAX_SAMPLES}, and --batch-size at least 1")
    if args.guidance < 0:
        p.error("--guidance must be >= 0 (0: no guidance)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        options = SamplingOptions(args.sampler, args.steps, args.guidance, args.eta, args.variance, args.seed)
        pipe = load_pipeline(args.checkpoint, device=args.device)
        make_sampler(options, pipe.schedule)  # --steps beyond the model's T fails now, before any work
        read_classifier_config(args.classifier)  # a missing classifier fails before the data is read
        ref = load_reference(args.classifier, args.data_root, pipe.device)
        result, images, labels = evaluate(
            pipe,
            ref,
            args.num_samples,
            options,
            batch_size=args.batch_size,
            full_baseline=not args.no_full_baseline,
            progress=not args.no_progress,
        )
        if args.discriminator:
            result["discriminator"] = evaluate_discriminator(images, ref, seed=args.seed)
    except (CheckpointError, MNISTNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    result = {
        "checkpoint": str(args.checkpoint),
        "step": pipe.config.get("step"),
        "classifier": str(args.classifier),
        **result,
    }
    print(format_report(result))
    if args.json:
        atomic_write_json(args.json, result)
        print(f"results: {args.json}", file=sys.stderr)
    if args.grid:
        from .plotting import save_grid

        grid, nrow = grid_by_class(images, labels, num_classes=pipe.num_classes)
        save_grid(grid, args.grid, nrow=nrow)
        print(f"grid: {args.grid}", file=sys.stderr)


if __name__ == "__main__":
    main()
