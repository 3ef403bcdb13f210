"""Math tests of ddpmlib.likelihood: the KL, the discretized decoder, the loss weight and the bound."""

import math

import pytest
import torch

from ddpmlib.diffusion import q_posterior_mean_variance, q_sample
from ddpmlib.likelihood import (
    discretized_gaussian_log_likelihood,
    loss_weight,
    model_log_variance,
    normal_kl,
    prior_term,
    variational_bound,
    vb_term,
)
from ddpmlib.schedules import NoiseSchedule


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_name("linear", 50)


def test_kl_of_identical_gaussians_is_zero():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(100, generator=g), torch.randn(100, generator=g)
    torch.testing.assert_close(normal_kl(mean, logvar, mean, logvar), torch.zeros(100))


def test_kl_matches_torch_distributions_and_is_nonnegative():
    g = torch.Generator().manual_seed(1)
    m1, m2, lv1, lv2 = (torch.randn(1000, generator=g, dtype=torch.float64) for _ in range(4))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    kl = normal_kl(m1, lv1, m2, lv2)
    torch.testing.assert_close(kl, ref)
    assert (kl >= 0).all()


def test_kl_matches_monte_carlo_estimate():
    # KL(p || q) = E_p[log p(x) - log q(x)], estimated with 10^6 samples of p
    g = torch.Generator().manual_seed(2)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(2.0)
    p = torch.distributions.Normal(m1, math.exp(0.5 * lv1))
    q = torch.distributions.Normal(m2, math.exp(0.5 * lv2))
    x = m1 + math.exp(0.5 * lv1) * torch.randn(1_000_000, generator=g, dtype=torch.float64)
    mc = (p.log_prob(x) - q.log_prob(x)).mean().item()
    exact = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, lv1, m2, lv2))).item()
    assert abs(mc - exact) < 3e-3, (mc, exact)


@pytest.mark.parametrize("mean", [-1.3, -1.0, -0.37, 0.0, 0.5, 0.999, 1.2])
@pytest.mark.parametrize("std", [1e-3, 0.02, 0.3, 3.0])
def test_discretized_likelihood_sums_to_one_over_256_bins(mean, std):
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 8-bit values in [-1, 1]
    log_p = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, 2 * math.log(std)))
    assert log_p.max() <= 1e-12
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-9, rtol=0)


def test_discretized_likelihood_is_density_times_bin_width_for_wide_gaussians():
    x = torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64)
    mean, std = torch.zeros_like(x), 0.5
    log_p = discretized_gaussian_log_likelihood(x, mean, torch.full_like(x, 2 * math.log(std)))
    approx = torch.distributions.Normal(mean, std).log_prob(x) + math.log(2 / 255)
    torch.testing.assert_close(log_p, approx, atol=1e-4, rtol=0)


def test_discretized_likelihood_far_tail_is_finite_and_accurate():
    # the middle bin right of the mean, far in the tail: computed without cancellation
    x, mean = torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    std = 0.05  # x is 10 standard deviations away
    log_p = discretized_gaussian_log_likelihood(x, mean, torch.full_like(x, 2 * math.log(std)))
    # reference: integrate the density over the bin numerically (the density changes a lot within it)
    edges = torch.linspace(0.5 - 1 / 255, 0.5 + 1 / 255, 20001, dtype=torch.float64)
    ref = torch.trapezoid(torch.distributions.Normal(0.0, std).log_prob(edges).exp(), edges).log()
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p, ref.reshape(1), atol=1e-4, rtol=0)  # ~ -52.7, not log(1e-12)


def test_model_log_variance_choices(schedule):
    s = schedule.float64
    small, large = model_log_variance(schedule, "beta_tilde"), model_log_variance(schedule, "beta")
    torch.testing.assert_close(small[1:], s["posterior_variance"][1:].log())
    torch.testing.assert_close(large[1:], s["betas"][1:].log())
    assert small[0] == large[0] == s["posterior_variance"][1].log()  # the decoder's sigma_1 (paper's code)
    assert (large >= small).all()  # beta_tilde_t <= beta_t
    with pytest.raises(ValueError, match="variance"):
        model_log_variance(schedule, "learned")


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_kl_term_is_weighted_eps_error(schedule, variance):
    """L_{t-1} = lambda_t ||eps - eps_theta||^2 + KL(posterior variance || sigma_t^2), without clipping."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 1, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_pred = eps + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 7, 25, 49])
    xt = q_sample(schedule, x0, t, eps)
    kl = vb_term(schedule, eps_pred, x0, xt, t, variance=variance, clip_x0=False)
    s = schedule.float64
    log_var_model = model_log_variance(schedule, variance)[t]
    log_var_true = s["posterior_variance"][t].log()
    const = 36 * normal_kl(torch.zeros(4), log_var_true, torch.zeros(4), log_var_model)  # variance mismatch only
    weighted = loss_weight(schedule, variance)[t] * (eps - eps_pred).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(kl, weighted + const, rtol=1e-4, atol=1e-6)


def test_loss_weight_values(schedule):
    s = schedule.float64
    lam = loss_weight(schedule, "beta")
    t = torch.arange(1, schedule.T)
    torch.testing.assert_close(lam[t], s["betas"][t] / (2 * s["alphas"][t] * (1 - s["alpha_bars"][t])))
    assert (loss_weight(schedule, "beta_tilde")[1:] >= lam[1:]).all()


def test_prior_term_closed_form(schedule):
    x0 = torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64)
    ab = schedule.float64["alpha_bars"][-1]
    per_dim = 0.5 * (ab * x0**2 + (1 - ab) - torch.log(1 - ab) - 1)
    torch.testing.assert_close(prior_term(schedule, x0), per_dim.sum(1))


def _exact_predictor(schedule, image):
    """The best possible eps prediction for a data set of one image: eps = (x_t - sqrt(ab) x*) / sqrt(1 - ab)."""

    def model(xt, t, y=None):
        ab = schedule.float64["alpha_bars"][t].reshape(-1, 1, 1, 1)
        return ((xt.double() - ab.sqrt() * image.double()) / (1 - ab).sqrt()).to(xt.dtype)

    return model


def test_bound_of_exact_predictor_for_single_image_data_set(schedule):
    g = torch.Generator().manual_seed(4)
    image = (torch.randint(0, 256, (1, 1, 8, 8), generator=g).double() / 127.5 - 1).float()
    x0 = image.expand(3, -1, -1, -1)
    model = _exact_predictor(schedule, image)
    exact = variational_bound(model, schedule, x0, generator=torch.Generator().manual_seed(0))
    # every KL term vanishes: the model's mean is the posterior mean and sigma_t^2 = beta_tilde_t
    assert exact.terms[:, 1:].abs().max() < 1e-6
    assert exact.prior.max() < 1e-3
    # what is left is L_0: the decoder N(x_0, sigma_1^2) integrated over the bins, in closed form
    log_var = model_log_variance(schedule)[0]
    l0 = -discretized_gaussian_log_likelihood(image.double(), image.double(), log_var.expand(1, 1, 8, 8))
    torch.testing.assert_close(exact.terms[:, 0], (l0.mean() / math.log(2)).expand(3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(exact.total, exact.prior + exact.terms.sum(1))
    assert exact.mse.max() < 1e-8
    # a model that always predicts eps = 0 has a much larger bound
    zero = variational_bound(
        lambda xt, t, y=None: torch.zeros_like(xt), schedule, x0, generator=torch.Generator().manual_seed(0)
    )
    assert (zero.total > exact.total + 1.0).all()


def test_bound_is_reproducible_with_a_generator_and_shapes(schedule):
    g = torch.Generator().manual_seed(5)
    x0 = torch.randint(0, 256, (5, 1, 4, 4), generator=g).float() / 127.5 - 1
    model = lambda xt, t, y=None: 0.5 * xt  # noqa: E731
    a = variational_bound(model, schedule, x0, generator=torch.Generator().manual_seed(1), batch_size=2)
    b = variational_bound(model, schedule, x0, generator=torch.Generator().manual_seed(1), batch_size=2)
    torch.testing.assert_close(a.total, b.total)
    assert a.terms.shape == a.mse.shape == (5, schedule.T) and a.total.shape == (5,)
    assert (a.terms >= -1e-9).all()  # KL terms and -log p are nonnegative


def test_vb_term_at_t0_is_the_decoder(schedule):
    x0 = torch.tensor([[[[-1.0, 0.2], [1.0, 0.6]]]])
    t = torch.zeros(1, dtype=torch.long)
    eps = torch.zeros_like(x0)
    xt = q_sample(schedule, x0, t, eps)
    nll = vb_term(schedule, eps, x0, xt, t)
    mean, _, _ = q_posterior_mean_variance(schedule, x0.double(), xt.double(), t)
    ref = -discretized_gaussian_log_likelihood(x0.double(), mean, model_log_variance(schedule)[0].expand(1, 1, 2, 2))
    torch.testing.assert_close(nll, ref.flatten(1).sum(1), rtol=1e-5, atol=1e-6)
