import csv
import math

import pytest

from ddpmlib.study import (
    BASELINE_VALUES,
    STUDY_GRID,
    effects,
    mean_and_interval,
    read_results,
    setting_by_name,
    study_config,
    summarise,
    welch_interval,
)


def test_grid_is_one_factor_at_a_time_with_unique_names():
    names = [s.name for s in STUDY_GRID]
    assert len(names) == len(set(names))
    assert STUDY_GRID[0].name == "baseline" and STUDY_GRID[0].overrides == {}
    for s in STUDY_GRID[1:]:
        assert s.factor in BASELINE_VALUES, s
        assert s.overrides, s
    factors = {s.factor for s in STUDY_GRID}
    for required in ("T", "batch size", "base channels", "kernel size", "dropout", "time embedding", "loss",
                     "target", "normalisation", "attention"):  # fmt: skip
        assert required in factors


def test_every_setting_builds_a_valid_config():
    from ddpmlib.train import build_configs
    from ddpmlib.unet import UNet, UNetConfig

    for s in STUDY_GRID:
        raw = study_config(s, seed=2, budget_images=25_600)
        model_cfg, diff_cfg, train_cfg = build_configs(raw)
        assert train_cfg.seed == 2
        assert train_cfg.max_steps * train_cfg.batch_size == 25_600, "equal images seen"
        assert train_cfg.checkpoint_every == train_cfg.max_steps
        assert model_cfg.num_timesteps == diff_cfg.T, "the scalar time features must use the diffusion's T"
        UNet(UNetConfig(**raw["model"]))
    assert study_config(setting_by_name("batch32"), 0, 25_600)["train"]["max_steps"] == 800
    assert study_config(setting_by_name("T250"), 0, 6400)["diffusion"]["T"] == 250
    with pytest.raises(ValueError, match="unknown study setting"):
        setting_by_name("nope")


def test_mean_and_interval_matches_a_hand_computation():
    r = mean_and_interval([1.0, 2.0, 3.0])
    assert r["mean"] == 2.0 and r["n"] == 3
    assert r["se"] == pytest.approx(1 / math.sqrt(3))
    assert r["high"] - r["mean"] == pytest.approx(4.303 / math.sqrt(3))  # t_{0.975, 2} = 4.303
    one = mean_and_interval([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["se"])


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_summarise_and_effects(tmp_path):
    rows = []
    for name, acc in (("baseline", [0.5, 0.6, 0.7]), ("eps", [0.1, 0.2, 0.3]), ("ch32", [0.55, 0.6, 0.65])):
        s = setting_by_name(name)
        for seed, a in enumerate(acc):
            rows.append({"setting": name, "factor": s.factor, "value": s.value, "seed": seed, "accuracy": a,
                         "fd_ratio": 10 * (1 - a), "disc_accuracy": 0.9, "final_loss": 0.1, "wall_s": 1})  # fmt: skip
    _write(tmp_path / "s.csv", rows)
    summary = summarise(read_results(tmp_path / "s.csv"))
    assert [e["setting"] for e in summary] == ["baseline", "ch32", "eps"], "grid order"
    assert summary[0]["accuracy"]["mean"] == pytest.approx(0.6)
    assert summary[0]["seeds"] == [0, 1, 2]
    eff = effects(summary, "accuracy")
    assert eff[0]["setting"] == "eps" and eff[0]["effect"] == pytest.approx(-0.4)
    assert eff[0]["high"] < 0 < eff[1]["high"], "eps is clearly worse; ch32 is within the noise"


def test_committed_study_holds_the_full_grid_with_three_seeds():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "results" / "study" / "study.csv"
    rows = read_results(path)
    seeds = {}
    for r in rows:
        seeds.setdefault(r["setting"], set()).add(r["seed"])
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["disc_accuracy"] <= 1 and r["fd_ratio"] > 0
    assert set(seeds) == {s.name for s in STUDY_GRID}
    assert all(len(v) >= 3 for v in seeds.values())
    images = {int(r["images_seen"]) for r in rows}
    assert len(images) == 1, "every run saw the same number of training images"


def test_welch_interval_matches_scipy_and_checks_its_input():
    from scipy import stats

    a, b = [102.0, 96.2, 100.9], [137.9, 134.4, 145.1, 120.0]
    w = welch_interval(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert w["effect"] == pytest.approx(sum(a) / 3 - sum(b) / 4)
    assert w["df"] == pytest.approx(res.df)
    assert w["low"] == pytest.approx(ci.low) and w["high"] == pytest.approx(ci.high)
    ci90 = res.confidence_interval(0.90)
    w90 = welch_interval(a, b, level=0.90)
    assert w90["low"] == pytest.approx(ci90.low) and w90["high"] == pytest.approx(ci90.high)
    assert welch_interval([1.0, 1.0], [2.0, 2.0]) == {"effect": -1.0, "low": -1.0, "high": -1.0, "df": math.inf}
    with pytest.raises(ValueError, match="at least 2 values per side; got 1 and 3"):
        welch_interval([1.0], [1.0, 2.0, 3.0])


def test_committed_budget_check_holds_six_settings_with_three_seeds_at_five_times_the_pilot_budget():
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "results"
    pilot = read_results(results / "study" / "study.csv")
    rows = read_results(results / "study_96k" / "study.csv")
    seeds = {}
    for r in rows:
        seeds.setdefault(r["setting"], set()).add(r["seed"])
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["disc_accuracy"] <= 1 and r["fd_ratio"] > 0
    assert seeds == {n: {0, 1, 2} for n in ("baseline", "eps", "l1", "ch8", "batch32", "batch128")}
    assert {int(r["images_seen"]) for r in rows} == {5 * int(pilot[0]["images_seen"])}
    # the same evaluation as the pilot, so the two tables can be compared
    for key in ("sampler", "num_samples", "fd_baseline"):
        assert {r[key] for r in rows} == {r[key] for r in pilot}, key


def test_study_script_refuses_to_resume_a_csv_made_at_another_budget(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "study_script", Path(__file__).resolve().parent.parent / "scripts" / "study.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.csv").write_text("setting,seed,batch_size,images_seen\nbaseline,0,64,19200\nbatch128,1,128,19200\n")
    assert script.done_pairs(out / "study.csv", 19200) == {("baseline", 0), ("batch128", 1)}
    # a budget that batch 128 does not divide: 19,250 images is 150 steps of 128 = 19,200, still the same study
    assert len(script.done_pairs(out / "study.csv", 19250)) == 2
    with pytest.raises(SystemExit, match=r"holds runs at 19,200 training images, not 96,000; pass a new --out"):
        script.main(["--out", str(out), "--budget-images", "96000", "--seeds", "0"])
    assert script.done_pairs(tmp_path / "missing.csv", 96000) == set()
