"""Batched two-view augmentation for self-supervised training, on the training device (kornia).

Sources yield uint8 batches; ``build_two_view_augment`` turns one batch into two independently
augmented, normalised float32 views, each sample with its own random parameters, drawn from the
global torch RNG (``torch.manual_seed`` makes it reproducible). The per-method presets (crop scale,
colour jitter, blur and solarize probabilities per view) follow the published recipes; they are the
``augment`` entries of ``cdg.methods.registry.METHOD_SPECS``.

All methods flip horizontally with p = 0.5. Gaussian blur (kernel about 10 % of the image side,
sigma in (0.1, 2.0)) is on only for images of at least 64 px by default: the CIFAR recipes of
SimCLR and its successors leave it out for 32 px images. The config's ``aug`` section
(``cdg.data.augment_config.AugmentConfig``) overrides the presets.

``build_eval_transform`` is the deterministic counterpart for evaluation: uint8 to float, a
centre crop (after a resize where needed) to the network size, normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from cdg.data.augment_config import AugmentConfig
from cdg.data.view_geometry import ViewGeometry
from cdg.methods.registry import METHOD_SPECS
from hwsim.trace.errors import UserError

__all__ = [
    "BLUR_MIN_SIZE",
    "ViewRecipe",
    "TwoViewAugment",
    "view_geometry",
    "EvalTransform",
    "method_recipes",
    "blur_kernel_size",
    "build_two_view_augment",
    "build_eval_transform",
]

#: Images at least this large (in px, the output side) get Gaussian blur when ``blur="auto"``.
BLUR_MIN_SIZE = 64

_BLUR_SIGMA = (0.1, 2.0)
_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_SOLARIZE_THRESHOLD = 0.5


@dataclass(frozen=True)
class ViewRecipe:
    """The resolved augmentation of one view (after presets, config and image size)."""

    crop_scale: tuple[float, float]
    hflip_prob: float
    jitter: tuple[float, float, float, float]
    jitter_prob: float
    grayscale_prob: float
    blur_prob: float
    blur_kernel: int
    solarize_prob: float


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian kernel of about 10 % of the image side (23 for 224), at least 3."""
    return max(3, (int(0.1 * image_size) // 2) * 2 + 1)


def _check_method(method: str) -> None:
    if method not in METHOD_SPECS:
        raise UserError(
            f"unknown SSL method {method!r} for augmentation: valid methods are {', '.join(METHOD_SPECS)}"
        )


def _check_size(image_size: object) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"data.image_size must be a positive integer, got {image_size!r}")
    return image_size


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_t) != 3 or len(std_t) != 3:
        raise UserError(f"normalisation mean and std need 3 values each, got {len(mean_t)} and {len(std_t)}")
    if not all(s > 0 for s in std_t):
        raise UserError(f"normalisation std must be positive, got {std_t}")
    return mean_t, std_t


def method_recipes(method: str, image_size: int, cfg: AugmentConfig | None = None) -> tuple[ViewRecipe, ViewRecipe]:
    """Resolve a method's preset and the overrides (validated by pydantic) into the recipes of view 1 and view 2."""
    _check_method(method)
    size = _check_size(image_size)
    cfg = AugmentConfig() if cfg is None else cfg
    preset = METHOD_SPECS[method].augment
    scale_min = preset.scale if cfg.crop_min_scale is None else float(cfg.crop_min_scale)
    s = float(cfg.jitter_strength)
    b, c, sat, hue = preset.jitter
    jitter = (b * s, c * s, sat * s, min(0.5, hue * s))
    blur_on = cfg.blur == "on" or (cfg.blur == "auto" and size >= BLUR_MIN_SIZE)
    recipes = []
    for view in (0, 1):
        recipes.append(
            ViewRecipe(
                crop_scale=(scale_min, 1.0),
                hflip_prob=0.5 if cfg.hflip else 0.0,
                jitter=jitter,
                jitter_prob=float(cfg.jitter_prob) if s > 0 else 0.0,
                grayscale_prob=float(cfg.grayscale_prob),
                blur_prob=preset.blur[view] if blur_on else 0.0,
                blur_kernel=blur_kernel_size(size),
                solarize_prob=preset.solarize[view] if cfg.solarize == "auto" else 0.0,
            )
        )
    return recipes[0], recipes[1]


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images N x 3 x H x W, got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


class _Normalize(nn.Module):
    """(x - mean) / std per channel, on whatever device the input is."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self._cache.get(x.device)
        if stats is None:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            inv_std = 1.0 / torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            stats = self._cache[x.device] = (mean, inv_std)
        return (x - stats[0]) * stats[1]

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class _Solarize(nn.Module):
    """BYOL's solarisation: with probability p per sample, x -> 1 - x where x >= 0.5."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = (torch.rand(x.shape[0], device=x.device) < self.p).view(-1, 1, 1, 1)
        return torch.where(chosen & (x >= _SOLARIZE_THRESHOLD), 1.0 - x, x)

    def extra_repr(self) -> str:
        return f"p={self.p}, threshold={_SOLARIZE_THRESHOLD}"


def _build_view(recipe: ViewRecipe, image_size: int) -> nn.Sequential:
    import kornia.augmentation as K

    ops: list[nn.Module] = [
        # "resample" crops the whole batch with one warp (no per-sample Python loop on GPU).
        K.RandomResizedCrop(
            (image_size, image_size), scale=recipe.crop_scale, ratio=_CROP_RATIO, cropping_mode="resample"
        )
    ]
    if recipe.hflip_prob > 0:
        ops.append(K.RandomHorizontalFlip(p=recipe.hflip_prob))
    if recipe.jitter_prob > 0 and any(v > 0 for v in recipe.jitter):
        ops.append(K.ColorJitter(*recipe.jitter, p=recipe.jitter_prob))
    if recipe.grayscale_prob > 0:
        ops.append(K.RandomGrayscale(p=recipe.grayscale_prob))
    if recipe.blur_prob > 0:
        ops.append(K.RandomGaussianBlur(recipe.blur_kernel, _BLUR_SIGMA, p=recipe.blur_prob))
    if recipe.solarize_prob > 0:
        ops.append(_Solarize(recipe.solarize_prob))
    return nn.Sequential(*ops)


def view_geometry(view: nn.Sequential, in_hw: tuple[int, int], image_size: int) -> ViewGeometry:
    """The crop box and flip of each sample in the last call of ``view`` (built by ``_build_view``:
    the crop first, the flip, if any, second), from the ``_params`` kornia keeps of its last call."""
    import kornia.augmentation as K

    crop = view[0]._params
    flip_module = view[1] if len(view) > 1 and isinstance(view[1], K.RandomHorizontalFlip) else None
    n = crop["src"].shape[0]
    if flip_module is None:
        flip = torch.zeros(n, dtype=torch.bool, device=crop["src"].device)
    else:
        flip = flip_module._params["batch_prob"].reshape(-1) > 0.5
    return ViewGeometry.from_corners(crop["src"], flip, in_hw, (image_size, image_size))


class TwoViewAugment(nn.Module):
    """uint8 N x 3 x H x W (any device) -> two normalised float32 views N x 3 x S x S.

    Random parameters are drawn per sample and per view from torch's global generator of the
    images' device (the module follows its input, as ``.to(device)`` would place it), and applied
    batched there; ``torch.manual_seed`` makes a run reproducible on a given device.

    ``last_geometry`` holds the two views' ``ViewGeometry`` (crop box and flip per sample) of the
    last call, read from the crop and flip modules' own parameters (no extra randomness, no copy of
    the images): CDG's cross-branch consistency maps one view's masks into the other with it.
    """

    def __init__(
        self,
        method: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        recipes: tuple[ViewRecipe, ViewRecipe],
    ) -> None:
        super().__init__()
        self.method = method
        self.image_size = image_size
        self.recipes = recipes
        self.view1 = _build_view(recipes[0], image_size)
        self.view2 = _build_view(recipes[1], image_size)
        self.normalize = _Normalize(mean, std)
        self._device = torch.device("cpu")
        self.last_geometry: tuple[ViewGeometry, ViewGeometry] | None = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.device != self._device:
            # kornia samples on the device its modules were moved to; keep that the images' device.
            self.to(images.device)
            self._device = images.device
        with torch.no_grad():
            x = _to_unit_float(images)
            view1, view2 = self.view1(x), self.view2(x)
            in_hw = tuple(x.shape[-2:])
            self.last_geometry = (view_geometry(self.view1, in_hw, self.image_size),
                                  view_geometry(self.view2, in_hw, self.image_size))
            return self.normalize(view1), self.normalize(view2)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, image_size={self.image_size}"


class EvalTransform(nn.Module):
    """Deterministic: uint8 -> float, resize/centre-crop to ``image_size`` when needed, normalise.

    Images already ``image_size`` square pass through. Otherwise the shorter side is brought to
    ``round(image_size / crop_fraction)`` (bilinear, antialiased; skipped when it is already that
    size, e.g. ImageNet stored at 256 for 224) and the centre ``image_size`` square is kept.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], crop_fraction: float) -> None:
        super().__init__()
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.normalize = _Normalize(mean, std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = _to_unit_float(images)
            h, w = x.shape[-2:]
            size = self.image_size
            if (h, w) != (size, size):
                short = int(round(size / self.crop_fraction))
                if min(h, w) != short:
                    if h <= w:
                        new_h, new_w = short, max(short, int(round(w * short / h)))
                    else:
                        new_h, new_w = max(short, int(round(h * short / w))), short
                    x = torch.nn.functional.interpolate(
                        x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
                    ).clamp_(0.0, 1.0)
                    h, w = new_h, new_w
                top, left = (h - size) // 2, (w - size) // 2
                x = x[..., top : top + size, left : left + size]
            return self.normalize(x.contiguous())

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, crop_fraction={self.crop_fraction}"


def build_two_view_augment(
    method: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    cfg: AugmentConfig | None = None,
) -> TwoViewAugment:
    """The two-view SSL augmentation of ``method`` (a name in ``METHOD_SPECS``) at ``image_size``."""
    recipes = method_recipes(method, image_size, cfg)
    mean_t, std_t = _check_stats(mean, std)
    return TwoViewAugment(method, image_size, mean_t, std_t, recipes)


def build_eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], crop_fraction: float = 0.875
) -> EvalTransform:
    """Deterministic evaluation transform to ``image_size`` (ImageNet: stored 256 -> centre 224)."""
    size = _check_size(image_size)
    mean_t, std_t = _check_stats(mean, std)
    if not 0.0 < crop_fraction <= 1.0:
        raise UserError(f"eval crop_fraction must be in (0, 1], got {crop_fraction!r}")
    return EvalTransform(size, mean_t, std_t, float(crop_fraction))
