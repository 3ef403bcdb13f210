import math

import pytest
import torch

from ddpmlib.diffusion import q_sample, q_step
from ddpmlib.schedules import SCHEDULES, NoiseSchedule, extract, make_betas


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_basic_properties(name):
    s = NoiseSchedule.from_name(name, 1000)
    assert s.T == 1000 and s.betas.shape == (1000,)
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all(), "alpha_bar must decrease"
    assert s.alpha_bars[-1] < 1e-3, "x_T must be almost pure noise"
    assert s.alpha_bars_prev[0] == 1.0
    torch.testing.assert_close(s.alpha_bars_prev[1:], s.alpha_bars[:-1])
    assert torch.isfinite(s.posterior_log_variance_clipped).all()
    assert s.posterior_variance[0] == 0.0  # beta_tilde_1 = 0: the last reverse step is deterministic


def test_linear_schedule_matches_paper():
    betas = make_betas("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_cosine_schedule_matches_formula():
    T, s = 1000, 0.008
    sched = NoiseSchedule.from_name("cosine", T)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    mask = sched.float64["betas"] < 0.999  # away from the clipped end
    torch.testing.assert_close(sched.float64["alpha_bars"][mask], f[mask])


def test_posterior_variance_formula():
    s = NoiseSchedule.from_name("linear", 100)
    b, ab, abp = s.float64["betas"], s.float64["alpha_bars"], s.float64["alpha_bars_prev"]
    torch.testing.assert_close(s.float64["posterior_variance"], (1 - abp) / (1 - ab) * b)


def test_invalid_schedule_arguments():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_betas("exponential", 10)
    with pytest.raises(ValueError, match="positive integer"):
        make_betas("linear", 0)


def test_extract_broadcasts():
    a = torch.arange(10.0)
    out = extract(a, torch.tensor([3, 7]), (2, 1, 4, 4))
    assert out.shape == (2, 1, 1, 1) and out.flatten().tolist() == [3.0, 7.0]


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("t", [0, 9, 49])
def test_closed_form_matches_iterated_chain(name, t):
    """q(x_t | x_0) in closed form (Eq. 4) has the mean and variance of t+1 steps of q(x_s | x_{s-1}) (Eq. 2).

    Statistical test with N = 20000 draws per x_0 value: the mean must agree within 5 standard errors
    and the variance within 5% (the standard error of a sample variance is ~ sqrt(2/N) = 1%).
    """
    sched = NoiseSchedule.from_name(name, 50)
    N = 20000
    g = torch.Generator().manual_seed(1)
    x0 = torch.tensor([-1.0, 0.0, 0.7]).repeat(N, 1)  # (N, 3): three data values, N chains each
    x = x0.clone()
    for s in range(t + 1):
        x = q_step(sched, x, torch.full((N,), s), generator=g)
    closed = q_sample(sched, x0, torch.full((N,), t), generator=g)
    ab = sched.float64["alpha_bars"][t].item()
    mean_expected = math.sqrt(ab) * x0[0]
    se = math.sqrt((1 - ab) / N)
    for sample in (x, closed):
        assert (sample.mean(0) - mean_expected).abs().max() < 5 * se + 1e-6
        assert torch.allclose(sample.var(0), torch.full((3,), 1 - ab), rtol=0.05)
