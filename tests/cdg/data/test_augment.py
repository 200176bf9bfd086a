"""Batched two-view SSL augmentation (kornia) and the deterministic evaluation transform."""
from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch

from cdg.config import AugmentConfig, build_config
from cdg.data.augment import (
    blur_kernel_size,
    build_eval_transform,
    build_two_view_augment,
    method_recipes,
)
from cdg.methods.registry import METHODS
from hwsim.trace.errors import UserError

MEAN = (0.5, 0.45, 0.4)
STD = (0.25, 0.2, 0.3)


def _images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _ops(aug, view: str, kind) -> list:
    return [m for m in getattr(aug, view) if isinstance(m, kind)]


@pytest.mark.parametrize("method", METHODS)
def test_views_shapes_dtypes_and_range(method):
    aug = build_two_view_augment(method, 16, MEAN, STD)
    x = _images()
    torch.manual_seed(0)
    v1, v2 = aug(x)
    lo = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    hi = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    for v in (v1, v2):
        assert v.shape == (8, 3, 16, 16) and v.dtype == torch.float32 and v.device == x.device
        assert torch.isfinite(v).all() and not v.requires_grad
        per_channel = v.transpose(0, 1).reshape(3, -1)
        assert (per_channel.min(dim=1).values >= lo - 1e-4).all()
        assert (per_channel.max(dim=1).values <= hi + 1e-4).all()
    assert not torch.allclose(v1, v2)
    assert x.dtype == torch.uint8  # input untouched


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_deterministic_under_manual_seed(method):
    aug = build_two_view_augment(method, 16, MEAN, STD)
    x = _images(16)
    torch.manual_seed(123)
    a1, a2 = aug(x)
    torch.manual_seed(123)
    b1, b2 = aug(x)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    torch.manual_seed(124)
    c1, _ = aug(x)
    assert not torch.equal(a1, c1)
    # a freshly built module draws the same parameters from the same seed
    torch.manual_seed(123)
    d1, d2 = build_two_view_augment(method, 16, MEAN, STD)(x)
    assert torch.equal(a1, d1) and torch.equal(a2, d2)


def test_per_sample_parameters():
    # the same image repeated gets different crops/colours per sample
    x = _images(1).expand(8, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    v1, _ = build_two_view_augment("simclr", 16, MEAN, STD)(x)
    assert len({tuple(v1[i].flatten()[:64].tolist()) for i in range(8)}) > 1


def test_output_size_from_other_stored_sizes():
    aug = build_two_view_augment("moco", 16, MEAN, STD)
    v1, v2 = aug(_images(4, size=32))  # CIFAR-size input, smaller network input
    assert v1.shape == v2.shape == (4, 3, 16, 16)
    aug = build_two_view_augment("simsiam", 28, MEAN, STD)
    v1, _ = aug(_images(4, size=32))  # ImageNet-style: stored 32 -> crops of 28
    assert v1.shape == (4, 3, 28, 28)


def test_normalisation_of_a_constant_image():
    # no colour change: crops and flips of a constant image keep its value
    cfg = AugmentConfig(jitter_prob=0.0, grayscale_prob=0.0, solarize="off")
    aug = build_two_view_augment("byol", 16, MEAN, STD, cfg)
    x = torch.full((4, 3, 20, 20), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    v1, v2 = aug(x)
    expected = ((128 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand_as(v1)
    assert torch.allclose(v1, expected, atol=1e-4) and torch.allclose(v2, expected, atol=1e-4)


def test_presets_follow_the_recipes():
    simclr1, simclr2 = method_recipes("simclr", 32)
    assert simclr1 == simclr2
    assert simclr1.crop_scale == (0.08, 1.0) and simclr1.hflip_prob == 0.5
    assert simclr1.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1)) and simclr1.jitter_prob == 0.8
    assert simclr1.grayscale_prob == 0.2 and simclr1.blur_prob == 0.0 and simclr1.solarize_prob == 0.0
    assert method_recipes("simclr", 224)[0].blur_prob == 0.5
    for method in ("moco", "simsiam"):
        r1, r2 = method_recipes(method, 224)
        assert r1 == r2 and r1.crop_scale == (0.2, 1.0) and r1.blur_prob == 0.5 and r1.blur_kernel == 23
    b1, b2 = method_recipes("byol", 224)
    assert b1.crop_scale == (0.08, 1.0) and b1.jitter == pytest.approx((0.4, 0.4, 0.2, 0.1))
    assert (b1.blur_prob, b1.solarize_prob) == (1.0, 0.0)
    assert (b2.blur_prob, b2.solarize_prob) == (0.1, 0.2)
    small1, small2 = method_recipes("byol", 32)
    assert small1.blur_prob == small2.blur_prob == 0.0 and small2.solarize_prob == 0.2


def test_blur_only_for_large_images_unless_forced():
    assert [blur_kernel_size(s) for s in (16, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]
    assert not _ops(build_two_view_augment("simclr", 32, MEAN, STD), "view1", K.RandomGaussianBlur)
    large = build_two_view_augment("simclr", 64, MEAN, STD)
    assert _ops(large, "view1", K.RandomGaussianBlur) and _ops(large, "view2", K.RandomGaussianBlur)
    forced = build_two_view_augment("simclr", 16, MEAN, STD, AugmentConfig(blur="on"))
    assert _ops(forced, "view2", K.RandomGaussianBlur)
    off = build_two_view_augment("byol", 64, MEAN, STD, AugmentConfig(blur="off"))
    assert not _ops(off, "view1", K.RandomGaussianBlur)


def test_large_images_run_with_blur_and_solarize():
    aug = build_two_view_augment("byol", 64, MEAN, STD)
    torch.manual_seed(0)
    v1, v2 = aug(_images(4, size=72))
    assert v1.shape == v2.shape == (4, 3, 64, 64)
    assert torch.isfinite(v1).all() and torch.isfinite(v2).all()


def test_solarize_inverts_bright_pixels():
    aug = build_two_view_augment("byol", 16, MEAN, STD)
    (solarize,) = [m for m in aug.view2 if type(m).__name__ == "_Solarize"]
    assert not [m for m in aug.view1 if type(m).__name__ == "_Solarize"]
    solarize.p = 1.0
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4).expand(2, 3, 1, 4)
    y = solarize(x)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0.1, 0.49, 0.5, 0.1]))
    assert not [
        m for m in build_two_view_augment("byol", 16, MEAN, STD, AugmentConfig(solarize="off")).view2
        if type(m).__name__ == "_Solarize"
    ]


def test_config_overrides():
    r1, _ = method_recipes("moco", 32, AugmentConfig(crop_min_scale=0.5, hflip=False, jitter_strength=0.5))
    assert r1.crop_scale == (0.5, 1.0) and r1.hflip_prob == 0.0
    assert r1.jitter == pytest.approx((0.2, 0.2, 0.2, 0.05))
    aug = build_two_view_augment("moco", 16, MEAN, STD, AugmentConfig(jitter_strength=0.0, grayscale_prob=0.0))
    assert not _ops(aug, "view1", K.ColorJitter) and not _ops(aug, "view1", K.RandomGrayscale)
    assert not _ops(build_two_view_augment("moco", 16, MEAN, STD, AugmentConfig(hflip=False)), "view1",
                    K.RandomHorizontalFlip)
    # hue stays within kornia's / torchvision's limit of 0.5
    assert method_recipes("simclr", 32, AugmentConfig(jitter_strength=8.0))[0].jitter[3] == 0.5


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"crop_min_scale": 0.0}, "aug.crop_min_scale"),
        ({"crop_min_scale": 1.5}, "aug.crop_min_scale"),
        ({"jitter_strength": -1.0}, "aug.jitter_strength"),
        ({"jitter_prob": 1.2}, "aug.jitter_prob"),
        ({"grayscale_prob": -0.1}, "aug.grayscale_prob"),
        ({"blur": "sometimes"}, "aug.blur"),
        ({"solarize": "on"}, "aug.solarize"),
        ({"hflip": "sometimes"}, "aug.hflip"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    # the one AugmentConfig is the config's ``aug`` section: bad values are config errors
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        build_config({"aug": kwargs})


def test_bad_arguments():
    with pytest.raises(UserError) as exc:
        build_two_view_augment("swav", 16, MEAN, STD)
    assert "swav" in str(exc.value) and all(m in str(exc.value) for m in METHODS)
    with pytest.raises(UserError, match="image_size"):
        build_two_view_augment("simclr", 0, MEAN, STD)
    with pytest.raises(UserError, match="std"):
        build_two_view_augment("simclr", 16, MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(UserError, match="3 values"):
        build_eval_transform(16, (0.5,), STD)


def test_eval_transform_identity_size():
    ev = build_eval_transform(16, MEAN, STD)
    x = _images(4)
    y = ev(x)
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert y.dtype == torch.float32 and torch.allclose(y, expected, atol=1e-5)
    assert torch.equal(ev(x), y)  # deterministic
    assert torch.allclose(ev(x.float() / 255), y, atol=1e-5)  # float [0, 1] input too


def test_eval_transform_centre_crop_like_imagenet():
    # stored 32 for a 28 network: 28 / 0.875 = 32, so only the centre crop (ImageNet: 256 -> 224)
    ev = build_eval_transform(28, MEAN, STD)
    x = _images(2, size=32)
    y = ev(x)
    assert y.shape == (2, 3, 28, 28)
    assert torch.allclose(y, build_eval_transform(28, MEAN, STD)(x[..., 2:30, 2:30].contiguous()), atol=1e-5)


def test_eval_transform_resizes_other_sizes():
    ev = build_eval_transform(16, MEAN, STD)
    assert ev(_images(2, size=32)).shape == (2, 3, 16, 16)
    assert ev(_images(2, size=8)).shape == (2, 3, 16, 16)
    plain = build_eval_transform(16, MEAN, STD, crop_fraction=1.0)
    constant = torch.full((1, 3, 32, 32), 51, dtype=torch.uint8)
    expected = ((51 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert torch.allclose(plain(constant), expected, atol=1e-4)
    with pytest.raises(UserError, match="crop_fraction"):
        build_eval_transform(16, MEAN, STD, crop_fraction=0.0)
