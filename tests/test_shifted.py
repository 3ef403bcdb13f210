"""Shifted digits (notebook 10) and labels of several kinds: dataset, conditioning, training, evaluation."""

import pytest
import torch
from conftest import tiny_unet_config

from ddpmlib.config import ConfigError, apply_overrides, build_configs, check_data_agreement, data_config
from ddpmlib.pipeline import DDPMPipeline, load_pipeline
from ddpmlib.samplers import guided_model_output, null_like
from ddpmlib.schedules import NoiseSchedule
from ddpmlib.shifted import (
    NULL_POSITION,
    ShiftedMNIST,
    crop,
    draw_positions,
    place,
    position_mass,
    quadrant_slices,
    shrink,
)
from ddpmlib.train import diffusion_loss, train
from ddpmlib.unet import UNet, UNetConfig


def test_quadrants_tile_the_canvas():
    covered = torch.zeros(28, 28, dtype=torch.long)
    for p in range(4):
        rows, cols = quadrant_slices(p, 28)
        covered[rows, cols] += 1
    assert torch.equal(covered, torch.ones(28, 28, dtype=torch.long))
    assert quadrant_slices(3, 28) == (slice(14, 28), slice(14, 28))
    with pytest.raises(ValueError, match="position must be 0..3"):
        quadrant_slices(4, 28)


def test_place_puts_each_digit_in_its_quadrant_and_crop_and_mass_read_it_back():
    g = torch.Generator().manual_seed(0)
    digits = torch.rand(8, 1, 14, 14, generator=g) * 2 - 1
    positions = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    canvas = place(digits, positions, 28)
    assert canvas.shape == (8, 1, 28, 28)
    for i, p in enumerate(positions.tolist()):
        rows, cols = quadrant_slices(p, 28)
        assert torch.equal(canvas[i, :, rows, cols], digits[i])
        outside = canvas[i].clone()
        outside[:, rows, cols] = -1
        assert torch.all(outside == -1)  # black everywhere else
    assert torch.allclose(position_mass(canvas, positions), torch.ones(8))
    assert torch.allclose(position_mass(canvas, (positions + 1) % 4), torch.zeros(8))
    assert torch.allclose(crop(canvas, positions, size=14), digits)  # the crop at the native size is the digit


def test_shrink_keeps_the_mean_ink():
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(shrink(x, 14).mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)


@pytest.mark.parametrize("rule", ["exclude", "unlabel"])
def test_held_out_pairs_are_never_labelled(rule):
    digits = torch.arange(10).repeat(400)
    positions, labels = draw_positions(digits, holdout=[(7, 2), (7, 3)], holdout_rule=rule, p_unlabel_position=0.5)
    sevens = digits == 7
    assert not torch.any(sevens & ((labels == 2) | (labels == 3)))  # never labelled together
    placed_low = sevens & (positions >= 2)
    if rule == "exclude":
        assert not placed_low.any()  # never even placed there
    else:
        assert placed_low.sum() > 100 and torch.all(labels[placed_low] == NULL_POSITION)
    others = ~sevens
    assert torch.equal(torch.bincount(positions[others], minlength=4) > 700, torch.ones(4, dtype=torch.bool))
    share = (labels[others] == NULL_POSITION).float().mean().item()
    assert 0.45 < share < 0.55  # about half of the position labels are left out
    labelled = labels != NULL_POSITION
    assert torch.equal(labels[labelled], positions[labelled])  # a given label is the true position
    again = draw_positions(digits, holdout=[(7, 2), (7, 3)], holdout_rule=rule, p_unlabel_position=0.5)
    assert torch.equal(again[0], positions) and torch.equal(again[1], labels)  # deterministic in the seed


def test_a_digit_with_every_position_held_out_is_refused():
    with pytest.raises(ValueError, match="leaves digit 1 no position"):
        draw_positions(torch.tensor([1, 2]), holdout=[(1, p) for p in range(4)])


def test_shifted_mnist_dataset(mnist_root):
    ds = ShiftedMNIST(mnist_root, train=False)
    assert len(ds) == 10_000
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and y.shape == (2,) and y.dtype == torch.long
    assert -1 <= x.min() and x.max() <= 1
    images, labels = ds.tensors()
    assert torch.allclose(position_mass(images[:200], ds.positions[:200]), torch.ones(200))
    sevens = labels[:, 0] == 7
    assert not torch.any(sevens & (ds.positions >= 2))


def test_multi_label_unet_embeds_each_label_and_keeps_single_label_checkpoints():
    single = UNet(tiny_unet_config())
    assert not any(k.startswith("extra_label_embs") for k in single.state_dict())  # shipped checkpoints load as before
    torch.manual_seed(0)
    model = UNet(tiny_unet_config(image_size=8, num_classes=3, extra_labels=(4,))).eval()
    assert model.null_labels == (3, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    out = model(x, t, torch.tensor([[0, 1], [0, 1]]))
    assert out.shape == x.shape
    # each label changes the output on its own, and None means "every label left out"
    assert not torch.allclose(out, model(x, t, torch.tensor([[1, 1], [1, 1]])))
    assert not torch.allclose(out, model(x, t, torch.tensor([[0, 2], [0, 2]])))
    assert torch.allclose(model(x, t, None), model(x, t, torch.tensor([[3, 4], [3, 4]])))
    with pytest.raises(ValueError, match="takes 2 labels per image"):
        model(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="extra_labels"):
        UNetConfig(extra_labels=(0,))


def test_guidance_with_several_labels_uses_one_null_per_column_or_the_given_unconditional_labels():
    labels = torch.tensor([[7, 3], [1, 0]])
    assert torch.equal(null_like(labels, (10, 4)), torch.tensor([[10, 4], [10, 4]]))
    with pytest.raises(ValueError, match="one null value per column"):
        null_like(labels, 10)
    seen = []

    def model(x, t, y):
        seen.append(y)
        return x + y[:, :1, None, None].float()

    x, t = torch.zeros(2, 1, 2, 2), torch.tensor([3, 3])
    out = guided_model_output(model, x, t, labels, 2.0, (10, 4))
    assert torch.equal(seen[-1][2:], torch.tensor([[10, 4], [10, 4]]))
    assert torch.allclose(out[:, 0, 0, 0], 3 * labels[:, 0].float() - 2 * 10)  # (1 + w) cond - w uncond
    position_only = torch.tensor([[7, 4], [1, 4]])
    guided_model_output(model, x, t, labels, 2.0, (10, 4), uncond_labels=position_only)
    assert torch.equal(seen[-1][2:], position_only)


def test_label_dropout_leaves_each_label_out_independently():
    schedule = NoiseSchedule.from_name("linear", 20)
    seen = []

    def model(x, t, y):
        seen.append(y.clone())
        return torch.zeros_like(x, requires_grad=True)

    labels = torch.tensor([[1, 2]]).repeat(4000, 1)
    diffusion_loss(model, schedule, torch.zeros(4000, 1, 2, 2), labels, torch.Generator().manual_seed(0),
                   p_uncond=0.3, null_label=(5, 4))  # fmt: skip
    y = seen[0]
    d0, d1 = y[:, 0] == 5, y[:, 1] == 4
    assert torch.all((y[:, 0] == 1) | d0) and torch.all((y[:, 1] == 2) | d1)
    assert abs(d0.float().mean() - 0.3) < 0.03 and abs(d1.float().mean() - 0.3) < 0.03
    assert abs((d0 & d1).float().mean() - 0.09) < 0.02  # independent: 0.3 * 0.3


def tiny_shifted_data(n=64):
    g = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 2, (n,), generator=g)
    positions, labels = draw_positions(digits, holdout=[(1, 3)], p_unlabel_position=0.5)
    blobs = -torch.ones(n, 1, 4, 4)
    blobs[digits == 1, :, 1:3, 1:3] = 1
    blobs[digits == 0, :, 0, :] = 1
    return place(blobs, positions, 8), torch.stack([digits, labels], 1)


def test_training_and_sampling_a_two_label_model(tmp_path):
    model = tiny_unet_config(image_size=8, num_classes=2, extra_labels=(4,), num_timesteps=20).to_dict()
    config = {
        "model": model,
        "diffusion": {"schedule": "linear", "T": 20},
        "train": dict(batch_size=8, max_steps=6, warmup_steps=1, log_every=3, sample_every=3, checkpoint_every=6),
        "data": {"dataset": "shifted_mnist", "holdout": [[1, 3]]},
    }
    ckpt = train(config, tmp_path / "run", data=tiny_shifted_data(), progress=False, device="cpu")
    assert (tmp_path / "run" / "samples" / "step_000003.png").is_file()  # the sample grid leaves labels 1.. out
    pipe = load_pipeline(ckpt, device="cpu")
    assert pipe.null_labels == (2, 4)
    x = pipe.generate([[1, 3], [0, 4]], sampler="ddim", steps=4, guidance_scale=1.0, seed=0)
    assert x.shape == (2, 1, 8, 8)
    assert torch.equal(x, pipe.generate([[1, 3], [0, 4]], sampler="ddim", steps=4, guidance_scale=1.0, seed=0))
    with pytest.raises(ValueError, match=r"label 1 \(column 1\) is 5, out of range"):
        pipe.generate([[1, 5]], steps=2)
    with pytest.raises(ValueError, match="takes 2 labels per image"):
        pipe.generate([1], steps=2)
    assert isinstance(pipe, DDPMPipeline)


def test_training_data_with_bad_label_columns_is_a_clear_error(tmp_path):
    model = tiny_unet_config(image_size=8, num_classes=2, extra_labels=(4,), num_timesteps=20).to_dict()
    config = {"model": model, "diffusion": {"T": 20}, "train": {"max_steps": 1}}
    images, labels = tiny_shifted_data()
    with pytest.raises(ConfigError, match="needs 2 labels per image"):
        train(config, tmp_path / "a", data=(images, labels[:, 0]), progress=False, device="cpu")
    labels[0, 1] = 9
    with pytest.raises(ConfigError, match="label column 1 goes from 0 to 9, outside 0..4"):
        train(config, tmp_path / "b", data=(images, labels), progress=False, device="cpu")


def test_data_section_is_checked():
    assert data_config({}).dataset == "mnist"
    with pytest.raises(ConfigError, match="data.dataset must be one of"):
        build_configs({"data": {"dataset": "imagenet"}})
    with pytest.raises(ConfigError, match="unknown setting data.size"):
        apply_overrides({}, ["data.size=3"])
    with pytest.raises(ConfigError, match="pairs"):
        data_config({"data": {"holdout": [[7]]}})
    shifted = data_config({"data": {"dataset": "shifted_mnist"}})
    with pytest.raises(ConfigError, match="set model.extra_labels=\\[4\\]"):
        check_data_agreement(UNetConfig(), shifted)
    check_data_agreement(UNetConfig(extra_labels=(4,)), shifted)
    with pytest.raises(ConfigError, match="needs model.image_channels=3, image_size=32"):
        check_data_agreement(UNetConfig(), data_config({"data": {"dataset": "cifar10"}}))
    with pytest.raises(ConfigError, match="leave model.extra_labels empty"):
        check_data_agreement(UNetConfig(extra_labels=(4,)), data_config({}))
    model, _, _ = build_configs({"model": {"extra_labels": [4]}, "data": {"dataset": "shifted_mnist"}})
    assert model.extra_labels == (4,)


def test_hflip_mirrors_about_half_of_each_batch_the_same_way_every_time(tmp_path):
    from ddpmlib.train import batch_indices, global_batch, setup

    model = tiny_unet_config(image_size=8, num_classes=2, num_timesteps=20).to_dict()
    images = torch.randn(64, 1, 8, 8)
    labels = torch.randint(0, 2, (64,))
    config = {"model": model, "diffusion": {"T": 20}, "train": {"batch_size": 32}, "data": {"hflip": True}}
    run = setup(config, tmp_path, data=(images, labels), device="cpu")
    x0, _ = global_batch(run, 3)
    plain = images[batch_indices(3, 64, 32, 0)]
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(x0, plain)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(x0, plain)])
    assert torch.all(flipped ^ kept) and 6 < flipped.sum() < 26
    assert torch.equal(global_batch(run, 3)[0], x0)


def test_composed_labels_add_the_separate_conditionals_and_equal_joint_conditioning_for_additive_labels():
    from ddpmlib.shifted import ComposedLabels

    a, b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([10.0, 20.0, 30.0, 40.0, 7.0])  # index 2 / 4: null

    class Additive(torch.nn.Module):
        config = tiny_unet_config(num_classes=2, extra_labels=(4,))
        null_label, null_labels = 2, (2, 4)

        def forward(self, x, t, y):
            return x + (a[y[:, 0]] + b[y[:, 1]])[:, None, None, None]

    x, t = torch.zeros(3, 1, 2, 2), torch.tensor([1, 1, 1])
    y = torch.tensor([[0, 1], [1, 3], [1, 0]])
    net = Additive()
    assert torch.allclose(ComposedLabels(net)(x, t, y), net(x, t, y))
    w = 2.0
    u = net(x, t, torch.tensor([[2, 4]] * 3))
    cd = net(x, t, torch.stack([y[:, 0], torch.full((3,), 4)], 1))
    cp = net(x, t, torch.stack([torch.full((3,), 2), y[:, 1]], 1))
    assert torch.allclose(ComposedLabels(net, w)(x, t, y), u + (1 + w) * ((cd - u) + (cp - u)))
