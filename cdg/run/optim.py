"""Optimisers and learning-rate schedule for SSL pre-training.

LARS (You et al. 2017) is what SimCLR/BYOL use at large batch; SGD is what
MoCo/SimSiam use. Biases and BatchNorm parameters get neither weight decay nor
the LARS trust ratio (the usual SSL convention). The schedule is per step:
linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by eta * ||w|| / ||g + wd w||.

    Parameter groups with ``lars_exclude=True`` take a plain SGD step without weight decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"] != 0:
                        grad = grad.add(param, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(param)
                    grad_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (param_norm > 0) & (grad_norm > 0),
                        group["eta"] * param_norm / grad_norm,
                        torch.ones_like(param_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float, exclude_bias_bn: bool) -> list[dict]:
    """Split trainable parameters into (decayed weights, biases + norm parameters)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if exclude_bias_bn and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def peak_lr(cfg, global_batch: int) -> float:
    """Base lr is per 256 images; scaled linearly with the global batch unless disabled."""
    return cfg.lr * global_batch / 256 if cfg.lr_scaling == "linear" else cfg.lr


def build_optimizer(model: nn.Module, cfg, global_batch: int) -> torch.optim.Optimizer:
    lr = peak_lr(cfg, global_batch)
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_bn)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta)
    for group in groups:
        group.pop("lars_exclude")
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    """Multiplier of the peak lr at a given step (for ``LambdaLR``)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int, epochs: int) -> LambdaLR:
    total = steps_per_epoch * epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return LambdaLR(optimizer, warmup_cosine(total, warmup, cfg.min_lr_ratio))
