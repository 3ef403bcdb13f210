"""ddpmlib: a small, readable implementation of Denoising Diffusion Probabilistic Models.

Modules, one concept each:
    schedules  noise schedules and the per-timestep constants (timestep convention documented there)
    diffusion  q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0), eps / x_0 / v conversions
    unet       the class-conditional U-Net eps_theta(x_t, t, y)
    samplers   DDPM (Algorithm 2), DDIM and DPM-Solver++(2M) samplers, classifier-free guidance, the sampling loop
    data       MNIST loading
    checkpoint safetensors + JSON checkpoints, saved all or nothing
    config     the run's model / diffusion / train settings, read from JSON and checked
    pipeline   a trained model plus its schedule: ``generate(...)`` in one call
    likelihood the variational bound (ELBO) in bits per dimension
    train      Algorithm 1 (``python -m ddpmlib.train``, or ``torchrun ... -m ddpmlib.train``)
    evaluate   classifier accuracy, Frechet distance, memorisation (``python -m ddpmlib.evaluate``)
"""

from .diffusion import q_posterior_mean_variance, q_sample
from .samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    SamplingOptions,
    make_sampler,
    sample,
    sample_iter,
)
from .schedules import NoiseSchedule, make_betas
from .unet import UNet, UNetConfig

__version__ = "0.1.0"

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPPSampler",
    "NoiseSchedule",
    "SamplingOptions",
    "UNet",
    "UNetConfig",
    "make_betas",
    "make_sampler",
    "q_posterior_mean_variance",
    "q_sample",
    "sample",
    "sample_iter",
]
