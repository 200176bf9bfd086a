"""The interface shared by every SSL method, and the pieces they share.

A method wraps a backbone (any module mapping N x 3 x H x W images to N x D
pooled features, with an int ``feature_dim``) plus its heads. ``forward`` takes
two augmented views and returns the loss; ``momentum_update`` is called by the
training loop after every optimiser step (a no-op for methods without a
target network). Target (momentum) networks are registered submodules with
``requires_grad=False``, so they live in ``state_dict`` and are skipped by the
optimiser and by DDP's gradient reduction.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class MethodOutput:
    loss: torch.Tensor
    """Scalar, differentiable."""
    logs: dict[str, float] = field(default_factory=dict)
    """Extra detached scalars for logging (python floats)."""


class SSLMethod(nn.Module):
    """Base class: subclasses set ``name``, ``backbone`` and implement ``forward(view1, view2) -> MethodOutput``.

    ``backbone`` is the online encoder; kNN and linear-probe evaluation use it.
    """

    name: str = ""
    backbone: nn.Module

    @torch.no_grad()
    def momentum_update(self, progress: float) -> None:
        """Move target networks towards the online ones; ``progress`` = step / total steps in [0, 1]."""
        return None


def logs_to_floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Detach a dict of scalar tensors into python floats with one device sync."""
    if not values:
        return {}
    stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
    return dict(zip(values.keys(), stacked.tolist()))


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    *,
    batch_norm: bool = True,
    layers: int = 2,
    out_norm: bool = False,
) -> nn.Sequential:
    """``layers`` Linear layers with (BN +) ReLU between them.

    With ``batch_norm`` each hidden Linear is followed by BatchNorm1d (and has
    no bias, which BN would cancel). ``out_norm`` adds a non-affine BN after the
    output Linear (SimSiam's projector).
    """
    if layers < 2:
        raise ValueError("an MLP head needs at least 2 layers")
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            modules.append(nn.BatchNorm1d(hidden_dim))
        modules.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=not out_norm))
    if out_norm:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with ``requires_grad=False`` everywhere (a target / momentum network)."""
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter.

    Buffers (BN running statistics) are not averaged: the target network keeps
    the statistics of the batches it sees itself. One public ``Tensor.lerp_`` per
    parameter: bit-identical to the fused private ``torch._foreach_lerp_`` used
    before (both run ``at::native::lerp``; tests/cdg/methods/test_ema.py checks it).
    """
    target_params = list(target.parameters())
    online_params = [p.detach() for p in online.parameters()]
    if len(target_params) != len(online_params):
        raise RuntimeError("target and online networks have different parameter lists")
    if momentum >= 1.0:
        return
    for target_param, online_param in zip(target_params, online_params):
        target_param.lerp_(online_param, 1.0 - momentum)


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """BYOL's schedule: ``final - (final - base) * (cos(pi * progress) + 1) / 2``; ``base`` at 0, ``final`` at 1."""
    progress = min(max(float(progress), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
