"""Build the pieces of a run from a resolved config: device, data sources, model, augmentations,
and a trained model rebuilt from its checkpoint (shared by the trainer, ``cdg.eval`` and tracing)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdg.config import Config, build_config, resolve, set_value
from cdg.data.augment import build_eval_transform, build_two_view_augment
from cdg.data.datasets import load_source
from cdg.methods.base import SSLMethod
from cdg.methods.registry import build_method
from cdg.run.checkpoint import load_checkpoint, load_model_state
from hwsim.trace.errors import UserError
from cdg.gating.selection import build_gated_backbone


@dataclass
class Sources:
    """``train`` feeds SSL training and the kNN/linear-probe memory bank; ``test`` is held out."""

    train: object
    test: object


def select_device(cfg: Config, local_rank: int = 0) -> torch.device:
    wanted = cfg.train.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available (use train.device=auto or cpu)")
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def load_sources(cfg: Config) -> Sources:
    data = cfg.data
    return Sources(
        train=load_source(data.dataset, "train", data.data_dir, data.image_size, data.download),
        test=load_source(data.dataset, "test", data.data_dir, data.image_size, data.download),
    )


def build_model(cfg: Config) -> SSLMethod:
    """The SSL method around a backbone whose selected convs are gated (``gate.method``)."""
    return build_method(cfg.method, build_gated_backbone(cfg))


def build_augment(cfg: Config, mean: tuple, std: tuple) -> nn.Module:
    """Two-view training augmentation for the configured method (runs on the training device)."""
    return build_two_view_augment(cfg.method.name, cfg.data.image_size, mean, std, cfg.aug)


def build_eval_augment(cfg: Config, mean: tuple, std: tuple) -> nn.Module:
    return build_eval_transform(cfg.data.image_size, mean, std)


@dataclass
class Trained:
    """A model rebuilt from a checkpoint, with the config it was trained with."""

    cfg: Config
    model: SSLMethod
    payload: dict
    device: torch.device


def build_untrained(cfg: Config) -> Trained:
    """The model of ``cfg`` with its seeded random initialisation and no checkpoint (baselines)."""
    cfg = resolve(cfg)
    torch.manual_seed(cfg.train.seed)
    return Trained(cfg, build_model(cfg), {"epoch": 0, "global_step": 0}, select_device(cfg))


def load_trained(checkpoint: Path, values: dict[str, Any] | None = None, weights: bool = True) -> Trained:
    """Rebuild the model a checkpoint was trained with (``cdg.eval``, ``cdg.trace``).

    ``values`` overrides config keys (e.g. ``{"train.device": "cpu"}``; None values are
    skipped). ``weights=False`` keeps the seeded random initialisation instead.
    """
    payload = load_checkpoint(checkpoint)
    tree = payload["config"]
    for key, value in (values or {}).items():
        if value is not None:
            tree = set_value(tree, key, value)
    cfg = resolve(build_config(tree, f"{checkpoint} (config)"))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg)
    if weights:
        load_model_state(model, payload["model"], checkpoint)
    return Trained(cfg, model, payload, select_device(cfg))
