"""The SSL method registry: every method's name, class, config fields with their presets, optimiser
presets and augmentation preset, in one table (``METHOD_SPECS``).

The table is torch-free on purpose: ``cdg.config`` fills null ``method.*`` / ``optim.*`` fields from
it and validates ``method.name`` against it, and loading a config must not import torch. The class
is therefore named by a ``"module:attr"`` string and imported only when ``build_method`` runs.

Adding a method = one module holding its ``SSLMethod`` subclass + one ``MethodSpec`` entry here.
The presets follow the published recipes (SimCLR, MoCo v2, BYOL, SimSiam); the augmentation ones:

=========  ============  =====================  ===========  =========  ===================  ==============
method     crop scale    colour jitter (b,c,s,h) jitter p     grayscale  blur p (large images) solarize p
=========  ============  =====================  ===========  =========  ===================  ==============
simclr     (0.08, 1)     (0.4, 0.4, 0.4, 0.1)    0.8          0.2        0.5                  0
moco (v2)  (0.2, 1)      (0.4, 0.4, 0.4, 0.1)    0.8          0.2        0.5                  0
simsiam    (0.2, 1)      (0.4, 0.4, 0.4, 0.1)    0.8          0.2        0.5                  0
byol       (0.08, 1)     (0.4, 0.4, 0.2, 0.1)    0.8          0.2        1.0 / 0.1 (views)    0 / 0.2 (views)
=========  ============  =====================  ===========  =========  ===================  ==============

All methods flip horizontally with p = 0.5; blur is on by default only for images of at least 64 px
(``cdg.data.augment``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from hwsim.trace.errors import UserError


@dataclass(frozen=True)
class AugmentPreset:
    """A method's two-view augmentation recipe (``cdg.data.augment`` resolves it with ``aug.*``)."""

    scale: float
    """RandomResizedCrop minimum area (the crop scale is ``(scale, 1)``)."""
    jitter: tuple[float, float, float, float]
    """Colour-jitter magnitudes (brightness, contrast, saturation, hue)."""
    blur: tuple[float, float]
    """Gaussian-blur probability of view 1 and view 2 (when blur is on)."""
    solarize: tuple[float, float]
    """Solarize probability of view 1 and view 2."""


@dataclass(frozen=True)
class MethodSpec:
    """Everything the rest of the code knows about one SSL method."""

    target: str
    """``"module:Class"`` of the ``SSLMethod`` subclass, called as ``Class(backbone, **fields)``."""
    presets: dict[str, Any]
    """The ``method.*`` fields the class takes, in order, with the values used where they are null."""
    optim: dict[str, tuple[float, float]]
    """(lr per 256 images, weight decay) per ``optim.name``."""
    augment: AugmentPreset


# Keyed by ``method.name``; the order is the order error messages list the names in.
METHOD_SPECS: dict[str, MethodSpec] = {
    "simclr": MethodSpec(
        target="cdg.methods.simclr:SimCLR",
        presets={"proj_hidden_dim": 2048, "proj_dim": 128, "temperature": 0.5},
        optim={"lars": (0.3, 1e-6), "sgd": (0.3, 5e-4)},
        augment=AugmentPreset(scale=0.08, jitter=(0.4, 0.4, 0.4, 0.1), blur=(0.5, 0.5), solarize=(0.0, 0.0)),
    ),
    "moco": MethodSpec(
        target="cdg.methods.moco:MoCo",
        presets={"proj_hidden_dim": 2048, "proj_dim": 128, "temperature": 0.2, "queue_size": 4096, "momentum": 0.99},
        optim={"sgd": (0.06, 5e-4), "lars": (0.3, 1e-6)},
        augment=AugmentPreset(scale=0.2, jitter=(0.4, 0.4, 0.4, 0.1), blur=(0.5, 0.5), solarize=(0.0, 0.0)),
    ),
    "byol": MethodSpec(
        target="cdg.methods.byol:BYOL",
        presets={"proj_hidden_dim": 4096, "proj_dim": 256, "pred_hidden_dim": 4096, "momentum": 0.996,
                 "momentum_final": 1.0},
        optim={"lars": (1.0, 1.5e-6), "sgd": (0.2, 5e-4)},
        augment=AugmentPreset(scale=0.08, jitter=(0.4, 0.4, 0.2, 0.1), blur=(1.0, 0.1), solarize=(0.0, 0.2)),
    ),
    "simsiam": MethodSpec(
        target="cdg.methods.simsiam:SimSiam",
        presets={"proj_hidden_dim": 2048, "proj_dim": 2048, "pred_hidden_dim": 512},
        optim={"sgd": (0.05, 5e-4), "lars": (0.3, 1e-6)},
        augment=AugmentPreset(scale=0.2, jitter=(0.4, 0.4, 0.4, 0.1), blur=(0.5, 0.5), solarize=(0.0, 0.0)),
    ),
}

METHODS: tuple[str, ...] = tuple(METHOD_SPECS)
"""The shipped methods' names (``METHOD_SPECS`` may gain more at run time, e.g. from a test)."""


def method_class(name: str) -> type:
    """Import the ``SSLMethod`` subclass registered as ``name``."""
    module, _, attr = METHOD_SPECS[name].target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_method(cfg, backbone):
    """Wrap ``backbone`` (N x 3 x H x W -> N x ``feature_dim``) in the SSL method ``cfg.name``.

    ``cfg`` is the method section of the config (or anything with those attributes); only the
    fields the chosen method takes need to be set.
    """
    name = getattr(cfg, "name", None)
    if name not in METHOD_SPECS:
        raise UserError(f"method.name={name!r} is not a known method; choose one of {', '.join(METHOD_SPECS)}")
    if not isinstance(getattr(backbone, "feature_dim", None), int):
        raise TypeError("the backbone must expose an int attribute feature_dim")
    kwargs = {}
    for key in METHOD_SPECS[name].presets:
        value = getattr(cfg, key, None)
        if value is None:
            raise UserError(f"method.{key} must be set for method.name={name}")
        kwargs[key] = value
    return method_class(name)(backbone, **kwargs)
