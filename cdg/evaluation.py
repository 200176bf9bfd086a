"""Representation quality: weighted kNN monitor and a linear probe on frozen features.

Both work on features extracted once, without augmentation, from the backbone in
eval mode. kNN is the cosine-similarity, temperature-weighted vote of Wu et al. (2018)
used by most SSL code bases as a cheap training monitor. The linear probe trains a
linear classifier on standardised frozen features (no augmentation), which is fast
enough to run after every training job; it is deterministic under its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Features:
    x: torch.Tensor  # N x D float32 on CPU
    y: torch.Tensor  # N int64 on CPU


class RawPixels(nn.Module):
    """The normalised input pixels as features: the floor a learned encoder has to clear."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    source,
    transform: nn.Module,
    device: torch.device,
    batch_size: int,
    amp: bool = False,
    channels_last: bool = False,
) -> Features:
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    order = torch.arange(len(source))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        for images, target in source.iter_batches(batches, pin_memory=device.type == "cuda"):
            images = transform(images.to(device, non_blocking=True))
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = backbone(images)
            feats.append(out.float().cpu())
            labels.append(target.cpu())
    finally:
        backbone.train(was_training)
    return Features(torch.cat(feats), torch.cat(labels))


@torch.no_grad()
def knn_accuracy(
    train: Features, test: Features, num_classes: int, k: int = 200, temperature: float = 0.1, chunk: int = 1024
) -> float:
    """Top-1 of a similarity-weighted kNN vote (weights exp(cos / T)) over the train features."""
    bank = F.normalize(train.x, dim=1)
    k = min(k, bank.shape[0])
    correct = 0
    for start in range(0, test.x.shape[0], chunk):
        query = F.normalize(test.x[start : start + chunk], dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes)
        votes.scatter_add_(1, train.y[idx], weights)
        correct += (votes.argmax(1) == test.y[start : start + chunk]).sum().item()
    return correct / test.x.shape[0]


def linear_probe(
    train: Features,
    test: Features,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on standardised frozen features; return top-1/top-5 on ``test``."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = train.x.mean(0), train.x.std(0).clamp_min(1e-6)
    x_train, x_test = (train.x - mean) / std, (test.x - mean) / std
    classifier = nn.Linear(x_train.shape[1], num_classes)
    with torch.no_grad():
        bound = 1 / math.sqrt(x_train.shape[1])
        classifier.weight.uniform_(-bound, bound, generator=gen)
        classifier.bias.zero_()
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs * steps_per_epoch))
    for _ in range(epochs):
        perm = torch.randperm(x_train.shape[0], generator=gen)
        for start in range(0, perm.numel(), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(classifier(x_train[idx]), train.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        logits = classifier(x_test)
        top5 = logits.topk(min(5, num_classes), dim=1).indices
        return {
            "top1": (top5[:, 0] == test.y).float().mean().item(),
            "top5": (top5 == test.y[:, None]).any(1).float().mean().item(),
        }
