"""A run's representation quality from its config: frozen features of the backbone, the kNN
monitor and the linear probe with the ``eval`` section's settings (used by the trainer and ``cdg.eval``)."""
from __future__ import annotations

import torch
from torch import nn

from cdg.config import Config
from cdg.evaluation import Features, extract_features, knn_accuracy, linear_probe
from cdg.run.builders import Sources, build_eval_augment


def features_for(cfg: Config, backbone: nn.Module, sources: Sources, device: torch.device) -> tuple[Features, Features]:
    transform = build_eval_augment(cfg, sources.train.mean, sources.train.std).to(device)
    cuda = device.type == "cuda"
    kwargs = dict(
        device=device,
        batch_size=cfg.eval.batch_size,
        amp=cuda and cfg.train.amp,
        channels_last=cuda and cfg.train.channels_last,
    )
    return (
        extract_features(backbone, sources.train, transform, **kwargs),
        extract_features(backbone, sources.test, transform, **kwargs),
    )


def knn_top1(cfg: Config, train: Features, test: Features, num_classes: int) -> float:
    return knn_accuracy(train, test, num_classes, cfg.eval.knn_k, cfg.eval.knn_temperature)


def linear_top1(cfg: Config, train: Features, test: Features, num_classes: int) -> dict[str, float]:
    return linear_probe(
        train,
        test,
        num_classes,
        epochs=cfg.eval.linear_epochs,
        lr=cfg.eval.linear_lr,
        weight_decay=cfg.eval.linear_weight_decay,
        batch_size=cfg.eval.linear_batch_size,
        seed=cfg.train.seed,
    )
