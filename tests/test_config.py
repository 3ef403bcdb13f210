"""ddpmlib.config: every bad setting gives one line naming the key and what it may be."""

import json

import pytest
from conftest import tiny_unet_config

from ddpmlib.checkpoint import CheckpointError
from ddpmlib.config import (
    ConfigError,
    DiffusionConfig,
    TrainConfig,
    apply_overrides,
    build_configs,
    checkpoint_configs,
    load_config_file,
)
from ddpmlib.pipeline import build_pipeline


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=abc", "train.lr must be a number > 0, got 'abc'"),
        ("train.lr=0", "train.lr must be a number > 0, got 0"),
        ("model.base_channels=abc", "model.base_channels must be an integer >= 1, got 'abc'"),
        ("model.base_channels=2.5", "model.base_channels must be an integer >= 1, got 2.5"),
        ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
        ("train.batch_size=-4", "train.batch_size must be an integer >= 1, got -4"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be an integer >= 1, got 0"),
        ("train.log_every=0", "train.log_every must be an integer >= 1, got 0"),
        ("train.max_steps=0", "train.max_steps must be an integer >= 1, got 0"),
        ("train.sample_every=-1", "train.sample_every must be an integer >= 0, got -1"),
        ("train.ema_decay=1", "train.ema_decay must be a number in [0, 1), got 1"),
        ("train.p_uncond=1.5", "train.p_uncond must be a number in [0, 1], got 1.5"),
        ("train.max_minutes=0", "train.max_minutes must be a number > 0 or null, got 0"),
        ("train.snapshot_minutes=[5,-1]", "train.snapshot_minutes must be a list of numbers > 0, got [5, -1]"),
        ("train.ema_warmup=1", "train.ema_warmup must be true or false, got 1"),
        ("train.loss=huber", "train.loss must be one of 'mse', 'l1', got 'huber'"),
        ("train.precision=fp16", "train.precision must be one of 'auto', 'fp32', 'bf16', got 'fp16'"),
        ("diffusion.T=0", "diffusion.T must be an integer >= 1, got 0"),
        ("diffusion.schedule=exp", "diffusion.schedule must be one of 'linear', 'cosine'"),
        ("diffusion.prediction_type=score", "diffusion.prediction_type must be one of 'eps', 'x0', 'v'"),
        ("model.channel_mults=[1,0]", "model.channel_mults must be a list of integers >= 1, got [1, 0]"),
        ("model.dropout=1", "model.dropout must be a number in [0, 1), got 1"),
        ("model.groups=3", "model: channels 32 are not divisible by groups=3"),  # UNetConfig's own check
        ("model.num_timesteps=500", "model.num_timesteps=500 but diffusion.T=1000: both name T and must agree"),
        ("model.schedule=cosine", "model.schedule='cosine' but diffusion.schedule='linear'"),
    ],
)
def test_bad_settings_name_the_key_and_the_allowed_range(override, message):
    with pytest.raises(ConfigError) as e:
        build_configs(apply_overrides({}, [override]))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_keys_and_sections():
    with pytest.raises(ConfigError, match=r"unknown setting train\.lrr; the train settings are: seed, batch_size"):
        apply_overrides({}, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        apply_overrides({}, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["lr=1"])
    with pytest.raises(ConfigError, match=r"unknown setting model\.width"):
        build_configs({"model": {"width": 3}})
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'"):
        build_configs({"optimizer": {}})


def test_values_are_converted_to_the_field_types():
    overrides = ["train.lr=1", "train.max_steps=1e3", "model.channel_mults=[1,2]", "train.max_minutes=null"]
    model, diffusion, train = build_configs(apply_overrides({}, overrides))
    assert isinstance(train.lr, float) and train.lr == 1.0
    assert train.max_steps == 1000 and isinstance(train.max_steps, int)
    assert model.channel_mults == (1, 2) and train.max_minutes is None
    with pytest.raises(ConfigError, match="train.batch_size must be an integer >= 1"):
        TrainConfig(batch_size=0)  # the dataclasses check themselves too
    with pytest.raises(ConfigError, match="diffusion.T"):
        DiffusionConfig(T=-1)


def test_model_takes_T_and_schedule_from_the_diffusion_section():
    model, diffusion, _ = build_configs({"diffusion": {"T": 50, "schedule": "cosine"}})
    assert (model.num_timesteps, model.schedule) == (50, "cosine") == (diffusion.T, diffusion.schedule)
    model, _, _ = build_configs({"model": {"num_timesteps": 50}, "diffusion": {"T": 50}})
    assert model.num_timesteps == 50


def test_checkpoint_configs_check_T_only_where_the_network_uses_it():
    sinusoidal = {"model": tiny_unet_config().to_dict(), "diffusion": {"T": 20}}  # num_timesteps 1000: unused
    assert checkpoint_configs(sinusoidal)[1].T == 20
    scalar = {"model": tiny_unet_config(time_embedding="scalar").to_dict(), "diffusion": {"T": 20}}
    with pytest.raises(ConfigError, match="model.num_timesteps=1000 but diffusion.T=20"):
        checkpoint_configs(scalar)
    bad = {"model": {**tiny_unet_config().to_dict(), "base_channels": "8"}, "diffusion": {"T": 20}}
    with pytest.raises(CheckpointError, match="does not describe a valid model: model.base_channels must be"):
        build_pipeline(bad, {}, "ckpt")


def test_shipped_configs_are_valid(tmp_path):
    for name in ("mnist_cpu.json", "mnist_gpu.json"):
        model, diffusion, _ = build_configs(load_config_file(f"configs/{name}"))
        assert model.num_timesteps == diffusion.T
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        load_config_file(tmp_path / "list.json")


def test_config_paths_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config_file("configs/mnist_cpu.json")["diffusion"]["T"] == 1000
