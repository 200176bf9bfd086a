"""What the predictor-gated methods (fbs, dgnet) share: no base path, the gate acts on the output
of the BatchNorm that follows the conv, and the predictors see a scale-free input.

Neither has a base path: an output element is either computed with all C_in input channels or
skipped. Both predict their gates from the layer input x (N x C_in x H_in x W_in).

Both gate the output of the BatchNorm that follows the conv: ``adopt_output_norms`` moves that
BatchNorm into the layer (``norm``). Gating before it, as an earlier version did, is unstable
without a base path: an output channel that is off for most of the batch has a batch variance
near 0, the BatchNorm divides by sqrt(var + eps), the gradients into the conv and, through the
straight-through gate, the predictor explode (DGNet's logits reached ~1e5 on digits), and
BN(0) = β − γ μ / σ leaks a non-zero value out of every skipped output. A layer built on its
own (no ``norm``) gates its raw conv output.

Predictor parameters are plain ``nn.Linear`` / ``nn.Parameter``, not ``nn.Conv2d``, so the
backbone's conv re-initialisation does not touch them.
"""
from __future__ import annotations

import torch
from torch import nn

from cdg.gating.base import GatedConv, GateMethod


class PredictorMethod(GateMethod):
    """A method whose gate is predicted from the layer input and multiplies the normalised output."""

    zeroes_skipped_outputs = True  # the gate multiplies the layer's (normalised) output: off = exactly 0

    @classmethod
    def adopt(cls, backbone: nn.Module) -> None:
        adopt_output_norms(backbone)  # their gates act on the BatchNorm output


class PredictorGatedConv(GatedConv):
    """A gated conv with no base path whose gate multiplies ``norm(conv(x))``; ``norm`` is the
    BatchNorm after this conv once ``adopt_output_norms`` moved it in (None: the raw conv output)."""

    norm: nn.Module | None


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x C, accumulated in float32 (no float32 copy of x under autocast)."""
    return torch.mean(x, dim=(2, 3), dtype=torch.float32)


def input_scale(pooled: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample RMS over channels of the pooled input (N x C -> N x 1), float32.

    The predictors see their input divided by it (parameter-free, per sample): their logits no
    longer scale with the magnitude of x, which the gates upstream (FBS's boosting π, a skipped
    DGNet block) change from layer to layer and step to step; without it the gain compounds
    through the network (π · x feeds the next π) and the predictor outputs grow without bound.
    """
    return pooled.float().pow(2).mean(dim=1, keepdim=True).add(eps).sqrt()


def adopt_output_norms(backbone: nn.Module) -> int:
    """Move the BatchNorm that follows every predictor-gated conv (FBS, DGNet) into the conv (``conv.norm``), so
    the gate multiplies the *normalised* output, as in both papers; the block gets an Identity
    in its place. Returns how many BatchNorms moved.

    Gating before the BatchNorm is unstable without a base path: a channel (or pixel) that is
    off for most of the batch has a batch variance near 0, the BatchNorm divides by
    sqrt(var + eps) and the gradients into the conv and, through the straight-through gate, the
    predictor explode. After the move the BatchNorm sees the dense conv output (it is computed
    densely in training anyway) and the gate zeroes skipped outputs of the block's output.
    """
    moved = 0
    for module in backbone.modules():
        pairs = [(str(i), str(i + 1)) for i in range(len(module) - 1)] if isinstance(module, nn.Sequential) else \
            [(f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, PredictorGatedConv) and conv.norm is None and isinstance(norm, nn.BatchNorm2d):
                conv.norm = norm
                setattr(module, norm_name, nn.Identity())
                moved += 1
    return moved
