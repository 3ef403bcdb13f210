import math

import pytest
import torch

from ddpmlib.diffusion import (
    model_output_to_x0_eps,
    predict_eps_from_x0,
    predict_x0_from_eps,
    q_posterior_mean_variance,
    q_sample,
    training_target,
    v_target,
)
from ddpmlib.schedules import NoiseSchedule


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_posterior_matches_bayes_rule_numerically(name, t):
    """q(x_{t-1} | x_t, x_0) from Eq. 7 equals prior x likelihood normalised on a fine 1-D grid.

    prior:      x_{t-1} | x_0 ~ N(sqrt(alpha_bar_{t-1}) x_0, 1 - alpha_bar_{t-1})
    likelihood: x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t)
    """
    sched = NoiseSchedule.from_name(name, 1000)
    f = sched.float64
    x0, xt = 0.6, -0.3
    ab_prev, alpha, beta = f["alpha_bars_prev"][t].item(), f["alphas"][t].item(), f["betas"][t].item()
    prior_mean, prior_var = math.sqrt(ab_prev) * x0, 1 - ab_prev
    mean, var, _ = q_posterior_mean_variance(
        NoiseSchedule(f["betas"], dtype=torch.float64),
        torch.tensor([[x0]], dtype=torch.float64),
        torch.tensor([[xt]], dtype=torch.float64),
        torch.tensor([t]),
    )
    sd = math.sqrt(var.item())
    grid = torch.linspace(mean.item() - 12 * sd, mean.item() + 12 * sd, 200001, dtype=torch.float64)
    log_p = -((grid - prior_mean) ** 2) / (2 * prior_var) - (xt - math.sqrt(alpha) * grid) ** 2 / (2 * beta)
    w = torch.exp(log_p - log_p.max())
    w = w / w.sum()
    num_mean = (w * grid).sum().item()
    num_var = (w * (grid - num_mean) ** 2).sum().item()
    assert mean.item() == pytest.approx(num_mean, abs=1e-6 * max(1, abs(num_mean)))
    assert var.item() == pytest.approx(num_var, rel=1e-4)


def test_posterior_mean_eps_form():
    """mu_tilde_t = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)  (Eq. 11)."""
    sched = NoiseSchedule.from_name("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    xt = q_sample(sched, x0, t, eps)
    mean, _, _ = q_posterior_mean_variance(sched, x0, xt, t)
    a = sched.alphas[t].view(-1, 1, 1, 1)
    b = sched.betas[t].view(-1, 1, 1, 1)
    sqrt_1m_ab = sched.sqrt_one_minus_alpha_bars[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(mean, (xt - b / sqrt_1m_ab * eps) / a.sqrt(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_prediction_conversions_round_trip(prediction_type):
    sched = NoiseSchedule.from_name("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(16, 1, 4, 4, generator=g), torch.randn(16, 1, 4, 4, generator=g)
    t = torch.randint(0, 990, (16,), generator=g)  # avoid the clipped last steps, where x_0 is unrecoverable
    xt = q_sample(sched, x0, t, eps)
    target = training_target(sched, x0, eps, t, prediction_type)
    x0_hat, eps_hat = model_output_to_x0_eps(sched, target, xt, t, prediction_type)
    torch.testing.assert_close(x0_hat, x0, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, eps, atol=2e-3, rtol=1e-3)


def test_eps_x0_inverse_and_v_definition():
    sched = NoiseSchedule.from_name("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 10, 100, 900])
    xt = q_sample(sched, x0, t, eps)
    torch.testing.assert_close(predict_x0_from_eps(sched, xt, t, eps), x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(predict_eps_from_x0(sched, xt, t, x0), eps, atol=1e-3, rtol=1e-3)
    ab = sched.alpha_bars[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v_target(sched, x0, eps, t), ab.sqrt() * eps - (1 - ab).sqrt() * x0)


def test_unknown_prediction_type():
    sched = NoiseSchedule.from_name("linear", 10)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        model_output_to_x0_eps(sched, x, x, torch.tensor([0]), "score")


def test_formulas_take_float_or_tensor_alpha_bars_and_clip_consistently():
    """The samplers call ddpmlib.diffusion's formulas with Python floats, the likelihood with tensors: same values."""
    from ddpmlib.diffusion import posterior_mean, posterior_variance, x0_eps_from_model_output

    sched = NoiseSchedule.from_name("linear", 1000)
    g = torch.Generator().manual_seed(2)
    xt, out = torch.randn(1, 1, 4, 4, generator=g), 3 * torch.randn(1, 1, 4, 4, generator=g)
    t = 400
    ab, ab_prev = sched.float64["alpha_bars"][t].item(), sched.float64["alpha_bars_prev"][t].item()
    for prediction_type in ("eps", "x0", "v"):
        x0_f, eps_f = x0_eps_from_model_output(out, xt, ab, prediction_type)
        x0_t, eps_t = model_output_to_x0_eps(sched, out, xt, torch.tensor([t]), prediction_type)
        torch.testing.assert_close(x0_f, x0_t, atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(eps_f, eps_t, atol=1e-5, rtol=1e-6)
        x0_c, eps_c = x0_eps_from_model_output(out, xt, ab, prediction_type, clip_x0=True)
        assert x0_c.abs().max() <= 1 and (x0_c != x0_f).any()  # out is large: some x_0 get clipped
        torch.testing.assert_close(ab**0.5 * x0_c + (1 - ab) ** 0.5 * eps_c, xt)  # the pair still gives x_t (Eq. 4)
    x0 = torch.rand(1, 1, 4, 4, generator=g) * 2 - 1
    mean, var, _ = q_posterior_mean_variance(sched, x0, xt, torch.tensor([t]))
    torch.testing.assert_close(posterior_mean(x0, xt, ab, ab_prev), mean, atol=1e-6, rtol=1e-6)
    assert posterior_variance(ab, ab_prev) == pytest.approx(sched.float64["posterior_variance"][t].item(), rel=1e-12)
