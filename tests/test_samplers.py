"""Samplers checked against exact noise predictors for data distributions with known answers."""

import math

import pytest
import torch

from ddpmlib.samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    SamplingOptions,
    guided_model_output,
    make_sampler,
    sample,
    sample_iter,
)
from ddpmlib.schedules import NoiseSchedule

T = 1000
SCHED = NoiseSchedule.from_name("linear", T)


class SingleImagePredictor(torch.nn.Module):
    """The exact eps for data that is one fixed image x*: eps*(x_t, t) = (x_t - sqrt(ab_t) x*) / sqrt(1 - ab_t)."""

    def __init__(self, x_star):
        super().__init__()
        self.register_buffer("x_star", x_star)
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # so sample() can find the device

    def forward(self, x, t, y=None):
        ab = SCHED.alpha_bars[t].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x_star) / (1 - ab).sqrt()


class GaussianPredictor(torch.nn.Module):
    """The optimal eps for data x_0 ~ N(mu, s^2 I): since x_t ~ N(sqrt(ab) mu, ab s^2 + 1 - ab),
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        ab = SCHED.alpha_bars[t].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.mu) / (ab * self.s**2 + 1 - ab)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("steps", [1000, 100, 10, 1])
def test_ddim_eta0_recovers_single_image(steps):
    x_star = torch.rand(1, 1, 4, 4, generator=gen(3)) * 2 - 1
    model = SingleImagePredictor(x_star)
    sampler = DDIMSampler(SCHED, eta=0.0)
    sampler.set_timesteps(steps)
    out = sample(model, sampler, (5, 1, 4, 4), generator=gen())
    torch.testing.assert_close(out, x_star.expand(5, -1, -1, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_recovers_single_image(variance):
    x_star = torch.rand(1, 1, 4, 4, generator=gen(4)) * 2 - 1
    sampler = DDPMSampler(SCHED, variance=variance)
    sampler.set_timesteps(100)
    out = sample(SingleImagePredictor(x_star), sampler, (3, 1, 4, 4), generator=gen())
    torch.testing.assert_close(out, x_star.expand(3, -1, -1, -1), atol=1e-4, rtol=0)


# Gaussian data N(mu, s^2). With the optimal predictor every sampler step is linear in x, so the exact standard
# deviation of what a discretised sampler produces follows from a one-line recursion (``expected_std``); full-T
# sampling must reproduce s itself, while few steps shrink the variance (a real property of the discretisation,
# strongest for DDIM). 2000 x 4 samples: standard error of the mean ~ s / sqrt(8000) ~ 0.006, of the std ~ 0.8%.
MU, S = 0.3, 0.5


def expected_std(sampler, s):
    ab_all = SCHED.float64["alpha_bars"].tolist()
    ts = sampler.timesteps.tolist()
    var = 1.0  # x_T ~ N(0, 1)
    for i, t in enumerate(ts):
        ab, abp, last = ab_all[t], (ab_all[ts[i + 1]] if i + 1 < len(ts) else 1.0), i + 1 == len(ts)
        v = ab * s * s + 1 - ab  # Var[x_t] under the data distribution
        k, e = ab**0.5 * s * s / v, (1 - ab) ** 0.5 / v  # centred x0_hat = k x_t, eps_hat = e x_t
        if isinstance(sampler, DDIMSampler):
            sig2 = sampler.eta**2 * (1 - abp) / (1 - ab) * (1 - ab / abp)
            a = abp**0.5 * k + (1 - abp - sig2) ** 0.5 * e
        else:
            beta = 1 - ab / abp
            sig2 = beta if sampler.variance == "beta" else beta * (1 - abp) / (1 - ab)
            a = abp**0.5 * beta / (1 - ab) * k + (1 - beta) ** 0.5 * (1 - abp) / (1 - ab)
        var = a * a * var + (0.0 if last else sig2)
    return var**0.5


@pytest.mark.parametrize(
    "name,steps,kwargs",
    [
        ("ddpm", 1000, {"variance": "beta_tilde"}),
        ("ddpm", 1000, {"variance": "beta"}),
        ("ddpm", 100, {"variance": "beta_tilde"}),
        ("ddpm", 100, {"variance": "beta"}),
        ("ddim", 1000, {"eta": 0.0}),
        ("ddim", 50, {"eta": 0.0}),
        ("ddim", 100, {"eta": 1.0}),
    ],
)
def test_samplers_reproduce_gaussian_data(name, steps, kwargs):
    sampler = make_sampler(name, SCHED, steps, clip_x0=False, **kwargs)
    # the last x of sample_iter: sample() would clamp to the image range [-1, 1]
    *_, (_, out, _) = sample_iter(GaussianPredictor(MU, S), sampler, (2000, 1, 2, 2), generator=gen(7))
    assert out.mean().item() == pytest.approx(MU, abs=0.025)  # 4 standard errors
    assert out.std().item() == pytest.approx(expected_std(sampler, S), rel=0.03)
    if steps == SCHED.T:  # the full chain reproduces the data distribution itself
        assert out.std().item() == pytest.approx(S, rel=0.03)
    else:  # strided: within 10% of the data's standard deviation
        assert out.std().item() == pytest.approx(S, rel=0.10)


def test_ddim_eta1_equals_ddpm_beta_tilde_over_all_steps():
    model = GaussianPredictor(MU, S)
    ddpm = sample(model, DDPMSampler(SCHED, variance="beta_tilde"), (8, 1, 3, 3), generator=gen(11))
    ddim = sample(model, DDIMSampler(SCHED, eta=1.0), (8, 1, 3, 3), generator=gen(11))
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)


def test_set_timesteps_convention():
    s = DDIMSampler(SCHED)
    for n in (1, 2, 7, 50, 999, 1000):
        s.set_timesteps(n)
        ts = s.timesteps.tolist()
        assert len(ts) == n and ts[0] == T - 1, "sampling must start at paper step T (index T-1)"
        if n > 1:
            assert ts[-1] == 0, "sampling must end at paper step 1 (index 0)"
            assert all(a > b for a, b in zip(ts, ts[1:])), "timesteps must be strictly decreasing"
    s.set_timesteps(1000)
    assert s.timesteps.tolist() == list(range(999, -1, -1))
    s.set_timesteps(5, t_start=400)
    assert s.timesteps.tolist() == [400, 300, 200, 100, 0]


@pytest.mark.parametrize("bad", [0, -3, 1001, 2.5, "10", True, None])
def test_set_timesteps_rejects_invalid_counts(bad):
    s = DDPMSampler(SCHED)
    with pytest.raises(ValueError, match="number of sampling steps"):
        s.set_timesteps(bad)


def test_step_rejects_unknown_timestep():
    s = DDIMSampler(SCHED)
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="not one of this sampler's timesteps"):
        s.step(torch.zeros(1, 1, 2, 2), 500, torch.zeros(1, 1, 2, 2))


def test_invalid_sampler_settings():
    with pytest.raises(ValueError, match="eta"):
        DDIMSampler(SCHED, eta=1.5)
    with pytest.raises(ValueError, match="variance"):
        DDPMSampler(SCHED, variance="learned")
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", SCHED)


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_same_seed_same_samples(name):
    model = GaussianPredictor(MU, S)
    kw = {"eta": 0.5} if name == "ddim" else {}
    a = sample(model, make_sampler(name, SCHED, 20, **kw), (4, 1, 2, 2), generator=gen(5))
    b = sample(model, make_sampler(name, SCHED, 20, **kw), (4, 1, 2, 2), generator=gen(5))
    c = sample(model, make_sampler(name, SCHED, 20, **kw), (4, 1, 2, 2), generator=gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_guidance_formula_and_callback():
    class Cond(torch.nn.Module):
        null_label = 10

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y):
            return x * 0 + (y.float().view(-1, 1, 1, 1) == 10).float() * 2.0 + 1.0  # eps_c = 1, eps_u = 3

    model = Cond()
    x, t, y = torch.zeros(2, 1, 2, 2), torch.tensor([5, 5]), torch.tensor([1, 2])
    assert torch.equal(guided_model_output(model, x, t, y, 0.0, 10), torch.ones(2, 1, 2, 2))
    # (1 + w) eps_c - w eps_u with w = 2: 3 * 1 - 2 * 3 = -3; in the other convention s = 1 + w = 3: 3 + 3 (1 - 3) = -3
    assert torch.equal(guided_model_output(model, x, t, y, 2.0, 10), torch.full((2, 1, 2, 2), -3.0))
    seen = []
    sample(
        model,
        make_sampler("ddim", SCHED, 5),
        (2, 1, 2, 2),
        labels=y,
        guidance_scale=1.0,
        generator=gen(),
        callback=lambda i, t, xt, x0: seen.append((i, t, xt.shape, x0.shape)),
    )
    assert [s[:2] for s in seen] == [(0, 999), (1, 749), (2, 500), (3, 250), (4, 0)]
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        sample(model, make_sampler("ddim", SCHED, 5), (2, 1, 2, 2), labels=y, guidance_scale=-1.0)


@pytest.mark.parametrize("prediction_type", ["v", "x0"])
def test_eps_model_of_a_v_or_x0_network_samples_like_the_native_sampler(prediction_type):
    """pipe.eps_model() turns a v- (or x0-) network into eps_theta: the eps formulas then give the same samples."""
    from conftest import tiny_unet_config

    from ddpmlib.pipeline import DDPMPipeline
    from ddpmlib.unet import UNet

    torch.manual_seed(0)
    net = UNet(tiny_unet_config(image_size=8, num_classes=2))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sched = NoiseSchedule.from_name("linear", 50)
    pipe = DDPMPipeline(net, sched, prediction_type)
    eps_net = pipe.eps_model()
    assert eps_net.null_label == net.null_label and eps_net.config is net.config
    labels = torch.tensor([0, 1, 2])
    for name in ("ddpm", "ddim"):
        native = make_sampler(name, sched, 10, prediction_type=prediction_type)
        via_eps = make_sampler(name, sched, 10, prediction_type="eps")
        a = sample(net, native, (3, 1, 8, 8), labels, 1.5, generator=torch.Generator().manual_seed(3))
        b = sample(eps_net, via_eps, (3, 1, 8, 8), labels, 1.5, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert DDPMPipeline(net, sched, "eps").eps_model() is net


# --- DPM-Solver++(2M) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1000, 50, 10, 3, 2, 1])
def test_dpmpp_recovers_single_image(steps):
    x_star = torch.rand(1, 1, 4, 4, generator=gen(3)) * 2 - 1
    sampler = make_sampler("dpmpp", SCHED, steps)
    out = sample(SingleImagePredictor(x_star), sampler, (5, 1, 4, 4), generator=gen())
    torch.testing.assert_close(out, x_star.expand(5, -1, -1, -1), atol=1e-4, rtol=0)


def test_dpmpp_first_and_last_steps_are_first_order():
    """Step 1 (no previous prediction) and the steps into and out of index 0 are DDIM eta = 0 steps; the others
    are not (they use the previous step's x_0 prediction, Algorithm 2)."""
    model = GaussianPredictor(MU, S)
    dpm, ddim = DPMSolverPPSampler(SCHED, clip_x0=False), DDIMSampler(SCHED, eta=0.0, clip_x0=False)
    dpm.set_timesteps(6)
    ddim.set_timesteps(6)
    x = torch.randn(4, 1, 2, 2, generator=gen(1)).double()
    ts = dpm.timesteps.tolist()
    ab = SCHED.float64["alpha_bars"].tolist() + [1.0]  # ab[-1] = 1: after the last step

    def lam(t):
        return 0.5 * math.log(ab[t] / (1 - ab[t]))

    x0_prev = None
    for i, t in enumerate(ts):
        out = model(x, torch.full((4,), t))
        a, b = dpm.step(out, t, x), ddim.step(out, t, x)
        torch.testing.assert_close(a.pred_x0, b.pred_x0, atol=0, rtol=0)
        if i == 0 or i >= len(ts) - 2:
            torch.testing.assert_close(a.prev_sample, b.prev_sample, atol=1e-12, rtol=1e-12)
        else:  # Algorithm 2, written out: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i
            s, u, v = ts[i + 1], ts[i - 1], t
            h, h_prev = lam(s) - lam(v), lam(v) - lam(u)
            d = (1 + h / (2 * h_prev)) * a.pred_x0 - h / (2 * h_prev) * x0_prev
            expected = math.sqrt((1 - ab[s]) / (1 - ab[v])) * x - math.sqrt(ab[s]) * (math.exp(-h) - 1) * d
            torch.testing.assert_close(a.prev_sample, expected, atol=1e-12, rtol=1e-12)
            assert (a.prev_sample - b.prev_sample).abs().max() > 1e-5  # not the DDIM step
        x, x0_prev = a.prev_sample, a.pred_x0
    torch.testing.assert_close(x, a.pred_x0, atol=0, rtol=0)  # the last step returns the predicted x_0


def _gaussian_slope(schedule, name, steps):
    """The sampler with the exact predictor of N(MU, S^2) data is affine in x_T: out = A x_T + B, so the
    output's standard deviation for x_T ~ N(0, 1) is exactly |A|. Computed in float64 from x_T = 0 and 1."""

    class Exact(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x, t, y=None):
            ab = schedule.float64["alpha_bars"][t].view(-1, 1, 1, 1)
            return (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * S**2 + 1 - ab)

    sampler = make_sampler(name, schedule, steps, clip_x0=False)
    x_T = torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1, 1)
    *_, (_, out, _) = sample_iter(Exact(), sampler, (2, 1, 1, 1), x_start=x_T)
    return (out[1] - out[0]).item()


def _limit_slope(schedule):
    """|A| of the exact ODE from index T-1 to index 0 followed by the final first-order step to x_0, the limit
    of every deterministic sampler here: sqrt(ab_0) S^2 / sqrt(v_0 v_{T-1}), v_t = ab_t S^2 + 1 - ab_t."""
    ab = schedule.float64["alpha_bars"]
    v0, vT = ab[0] * S**2 + 1 - ab[0], ab[-1] * S**2 + 1 - ab[-1]
    return (ab[0].sqrt() * S**2 / (v0 * vT).sqrt()).item()


def test_dpmpp_converges_with_second_order():
    """Lu et al. (2022) prove global order 2 for DPM-Solver++(2M) when the steps h in lambda shrink like 1/n.
    On a schedule whose lambda = log(alpha / sigma) is linear in the tensor index, evenly spaced timesteps are
    evenly spaced in lambda, so doubling the steps must divide the error of the output's standard deviation by
    about 4 (DPM-Solver++) and 2 (DDIM, first order). At 10 steps h = 1.1 is not yet small (ratio 10 -> 20:
    1.45), so the ratios are checked from 20 steps on."""
    lam = torch.linspace(5.0, -5.0, T, dtype=torch.float64)
    ab = torch.sigmoid(2 * lam)  # alpha_bar = e^{2 lambda} / (1 + e^{2 lambda})
    sched = NoiseSchedule(1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]))
    limit = _limit_slope(sched)
    assert limit == pytest.approx(S, rel=1e-3)
    for name, order in (("dpmpp", 4.0), ("ddim", 2.0)):
        err = [_gaussian_slope(sched, name, n) - limit for n in (20, 40, 80)]
        ratios = [err[0] / err[1], err[1] / err[2]]
        assert ratios == pytest.approx([order, order], rel=0.1), (name, err)


def test_dpmpp_output_variance_converges_on_the_linear_schedule():
    """Evenly spaced timesteps of the linear schedule are not evenly spaced in lambda (the last interval stays
    long), so the clean ratios above do not apply; still, the output's standard deviation approaches the data's
    as steps grow, and faster than DDIM's: 10 steps 0.392 (DDIM 0.362), 20: 0.477 (0.430), 40: 0.4993 (0.465)."""
    limit = _limit_slope(SCHED)
    assert limit == pytest.approx(S, rel=1e-3)
    dpm = [abs(_gaussian_slope(SCHED, "dpmpp", n) - limit) for n in (10, 20, 40)]
    ddim = [abs(_gaussian_slope(SCHED, "ddim", n) - limit) for n in (10, 20, 40)]
    assert dpm[0] > dpm[1] > dpm[2] and dpm[2] < 0.002 * S
    assert all(a < b for a, b in zip(dpm, ddim)), (dpm, ddim)


def test_dpmpp_state_is_reset_and_steps_must_come_in_order():
    model = GaussianPredictor(MU, S)
    sampler = make_sampler("dpmpp", SCHED, 8)
    a = sample(model, sampler, (3, 1, 2, 2), generator=gen(2))
    b = sample(model, sampler, (3, 1, 2, 2), generator=gen(2))  # same sampler again: starts afresh
    assert torch.equal(a, b)
    sampler.set_timesteps(8)
    x = torch.zeros(1, 1, 2, 2)
    ts = sampler.timesteps.tolist()
    sampler.step(x, ts[0], x)
    with pytest.raises(ValueError, match="multistep method: call step for the timesteps in order"):
        sampler.step(x, ts[2], x)  # skipped ts[1]
    sampler.set_timesteps(8)
    with pytest.raises(ValueError, match="in order"):
        sampler.step(x, ts[1], x)  # not the first step


def test_dpmpp_with_guidance_and_labels():
    class Cond(torch.nn.Module):
        null_label = 10

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y):  # the exact eps of single images: one per label, x* = 0.1 y
            ab = SCHED.alpha_bars[t].view(-1, 1, 1, 1)
            return (x - ab.sqrt() * 0.1 * y.float().view(-1, 1, 1, 1)) / (1 - ab).sqrt()

    y = torch.tensor([1, 2, 3])
    out = sample(Cond(), make_sampler("dpmpp", SCHED, 10), (3, 1, 2, 2), labels=y, guidance_scale=0.5, generator=gen())
    # (1 + w) eps(x*_y) - w eps(x*_null) is the exact eps of x* = (1 + w) 0.1 y - w 0.1 * 10
    expected = (1.5 * 0.1 * y - 0.5).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


# --- SamplingOptions, make_sampler, the sampling loop's protocol -----------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sampler="euler"), "unknown sampler 'euler'; choose one of ddpm, ddim, dpmpp"),
        (dict(steps=0), "number of sampling steps must be a positive integer, got 0"),
        (dict(steps=2.5), "number of sampling steps must be a positive integer"),
        (dict(steps=True), "number of sampling steps must be a positive integer"),
        (dict(guidance_scale=-1), "guidance_scale must be a number >= 0"),
        (dict(guidance_scale=float("nan")), "guidance_scale must be a number >= 0"),
        (dict(guidance_scale="2"), "guidance_scale must be a number >= 0"),
        (dict(eta=1.5), "eta must be a number between 0 and 1"),
        (dict(sampler="ddpm", eta=0.5), "eta applies to the DDIM sampler only; DDPM got eta=0.5"),
        (dict(sampler="dpmpp", eta=0.5), r"eta applies to the DDIM sampler only; DPM-Solver\+\+\(2M\) got eta=0.5"),
        (dict(sampler="ddpm", variance="learned"), "variance must be 'beta' or 'beta_tilde'"),
        (dict(sampler="ddim", variance="beta"), "variance applies to the DDPM sampler only; DDIM got"),
        (dict(sampler="dpmpp", variance="beta_tilde"), "variance applies to the DDPM sampler only"),
        (dict(seed=-1), "seed must be an integer between 0 and"),
        (dict(seed=1.5), "seed must be an integer between 0 and"),
    ],
)
def test_sampling_options_reject_bad_and_inapplicable_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingOptions(**kwargs)


def test_sampling_options_and_make_sampler():
    import numpy as np

    o = SamplingOptions("ddim", np.int64(20), np.float32(0.5), eta=1, seed=np.int64(3))
    assert (o.steps, o.guidance_scale, o.eta, o.seed) == (20, 0.5, 1.0, 3)
    assert all(type(v) in (int, float) for v in (o.steps, o.guidance_scale, o.eta, o.seed))
    s = make_sampler(o, SCHED)
    assert isinstance(s, DDIMSampler) and s.eta == 1.0 and s.num_steps == 20
    s = make_sampler(SamplingOptions("ddpm", 7, variance="beta"), SCHED, prediction_type="v", clip_x0=False)
    assert isinstance(s, DDPMSampler) and s.variance == "beta" and s.prediction_type == "v" and not s.clip_x0
    assert make_sampler("ddpm", SCHED).variance == "beta_tilde" and make_sampler("ddpm", SCHED).num_steps == T
    assert isinstance(make_sampler("dpmpp", SCHED, 10), DPMSolverPPSampler)
    with pytest.raises(ValueError, match="eta applies to the DDIM sampler only"):
        make_sampler("ddpm", SCHED, 10, eta=0.3)  # used to be dropped silently
    with pytest.raises(ValueError, match="variance applies to the DDPM sampler only"):
        make_sampler("ddim", SCHED, 10, variance="beta")
    with pytest.raises(ValueError, match="either SamplingOptions or num_steps"):
        make_sampler(o, SCHED, 10)
    with pytest.raises(ValueError, match="between 1 and 1000"):
        make_sampler(SamplingOptions(steps=1001), SCHED)
    assert SamplingOptions.resolve(None, steps=5, seed=None) == SamplingOptions(steps=5)
    assert SamplingOptions.resolve(o) is o
    with pytest.raises(ValueError, match="not both"):
        SamplingOptions.resolve(o, steps=5)


def test_sample_iter_yields_the_start_then_every_step():
    model = GaussianPredictor(MU, S)
    sampler = make_sampler("ddim", SCHED, 4, eta=0.5)
    items = list(sample_iter(model, sampler, (3, 1, 2, 2), generator=gen(4)))
    assert len(items) == 5
    assert items[0].t is None and items[0].pred_x0 is None
    assert torch.equal(items[0].x, torch.randn((3, 1, 2, 2), generator=gen(4)))  # x_T from the same generator
    assert [it.t for it in items[1:]] == sampler.timesteps.tolist()
    steps_only = list(sample_iter(model, sampler, (3, 1, 2, 2), generator=gen(4), yield_start=False))
    assert len(steps_only) == 4 and all(torch.equal(a.x, b.x) for a, b in zip(items[1:], steps_only))
    x_start = torch.ones(3, 1, 2, 2)
    first = next(sample_iter(model, sampler, (3, 1, 2, 2), x_start=x_start))
    assert torch.equal(first.x, x_start)


class _TinyNet(torch.nn.Module):
    """A stand-in for the U-Net: eps = 0.1 x, and a record of how many of its past inputs are still alive."""

    def __init__(self):
        super().__init__()
        from conftest import tiny_unet_config

        self.config = tiny_unet_config(image_size=4, num_classes=3)
        self.null_label = 3
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.inputs, self.max_alive = [], 0

    def forward(self, x, t, y=None):
        import weakref

        self.inputs.append(weakref.ref(x))
        self.max_alive = max(self.max_alive, sum(r() is not None for r in self.inputs))
        return 0.1 * x


def test_pipeline_keywords_options_and_start():
    from ddpmlib.pipeline import DDPMPipeline

    pipe = DDPMPipeline(_TinyNet(), NoiseSchedule.from_name("linear", 50))
    a = pipe.generate([0, 1, 2], sampler="ddim", steps=5, guidance_scale=2.0, seed=7)
    b = pipe.generate([0, 1, 2], options=SamplingOptions("ddim", 5, 2.0, seed=7))
    assert torch.equal(a, b) and a.shape == (3, 1, 4, 4)
    items = list(pipe.generate_iter([0, 1, 2], sampler="dpmpp", steps=5, seed=7, yield_start=True))
    assert len(items) == 6 and items[0].t is None
    assert torch.equal(items[0].x, torch.randn((3, 1, 4, 4), generator=torch.Generator().manual_seed(7)))
    assert torch.equal(items[-1].x.clamp(-1, 1), pipe.generate([0, 1, 2], sampler="dpmpp", steps=5, seed=7))
    assert len(list(pipe.generate_iter([0], steps=5))) == 5  # default: one item per step, as before
    with pytest.raises(TypeError):
        pipe.generate_iter([0, 1], "ddim", 5)  # the options are keyword-only
    with pytest.raises(ValueError, match="not both"):
        pipe.generate([0], options=SamplingOptions(steps=5), steps=5)
    with pytest.raises(ValueError, match="either a seed or a generator"):
        pipe.generate([0], steps=5, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="eta applies to the DDIM sampler only"):
        pipe.generate([0], sampler="ddpm", steps=5, eta=0.5)


def test_generate_keeps_one_step_in_memory():
    """generate() keeps only the current step: the model's past inputs (the x_t of earlier steps) are freed.
    Collecting every step (``*_, last = generate_iter(...)``) keeps every one of them alive but x_T."""
    from ddpmlib.pipeline import DDPMPipeline

    net = _TinyNet()
    pipe = DDPMPipeline(net, NoiseSchedule.from_name("linear", 50))
    pipe.generate([0, 1], sampler="ddim", steps=30, seed=0)
    assert len(net.inputs) == 30 and net.max_alive <= 2
    net.inputs, net.max_alive = [], 0
    *_, last = pipe.generate_iter([0, 1], sampler="ddim", steps=30, seed=0)
    assert net.max_alive == 29  # the check above can fail: this is what it guards against


def test_dpmpp_from_a_partly_noised_start():
    """SDEdit-style: start at t_start < T-1 from x_start (the state resets at the first timestep)."""
    from ddpmlib.diffusion import q_sample

    x_star = torch.rand(1, 1, 4, 4, generator=gen(8)) * 2 - 1
    sampler = make_sampler("dpmpp", SCHED, 10)
    sampler.set_timesteps(5, t_start=400)
    x_t = q_sample(SCHED, x_star.expand(3, -1, -1, -1), torch.full((3,), 400), generator=gen(9))
    out = sample(SingleImagePredictor(x_star), sampler, (3, 1, 4, 4), x_start=x_t)
    torch.testing.assert_close(out, x_star.expand(3, -1, -1, -1), atol=1e-4, rtol=0)
