"""Dynamic-pruning baselines with an auxiliary predictor: FBS and DGNet.

Neither has a base path: an output element is either computed with all C_in input channels or
skipped. Both predict their gates from the layer input x (N x C_in x H_in x W_in).

**FBS** (``FBSConv``; Gao et al., ICLR 2019, feature boosting and suppression)::

    π    = ReLU(A · avgpool(x) + a)             A: C_out x C_in, a: C_out (bias initialised to 1,
                                                so π starts near 1: boosting ~ identity)
    keep = top-k(π) per sample, k = ceil(keep_ratio · C_out)
    Y    = (π ⊙ keep) ⊙ conv(x, W)              per-sample, per-channel scaling; suppressed
                                                channels are not computed

The top-k mask carries no gradient; π does (through the kept channels). Its regulariser is an
L1 penalty on π: ``record.saliency_mean`` is the mean of π. With ``gating = False`` all channels
are kept (k = C_out) and still scaled by π, so switching gating on does not change the function
of the kept channels.

**DGNet** (``DGNetConv``; Li et al., ICCV 2021, dynamic dual gating), with b = ``spatial_block``::

    spatial: z_s = v · adaptive_avgpool_{H_d x W_d}(x) + c      1x1 conv C_in -> 1 on the input pooled
             to the decision grid H_d x W_d = ceil(H_out / b) x ceil(W_out / b)
    channel: z_c = B2 · ReLU(B1 · avgpool(x) + b1) + b2           SE-like, hidden h = max(1, C_out // r)
    g_s = 1[z_s > 0], g_c = 1[z_c > 0]                         straight-through, sigmoid(α z) surrogate
    Y   = (g_c ⊗ g_s expanded to b x b pixels) ⊙ conv(x, W)

The output biases c and b2 start at -``init_threshold`` (= +1) so the gates start mostly on.
``soft_density`` is the straight-through fraction of output elements computed, i.e. the conv MAC
ratio of the layer, for DGNet's loss (ratio − target)². No randomness (no Gumbel noise): training
and eval use the same deterministic hard gates.

Predictor parameters are plain ``nn.Linear`` / ``nn.Parameter``, not ``nn.Conv2d``, so the
backbone's conv re-initialisation does not touch them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cdg.gating.accounting import dgnet_hidden
from cdg.gating.layers import (
    GatedConv,
    block_weights,
    expand_decisions,
    spatial_fraction,
    straight_through_gate,
    _gate_dtype,
    _match_layout,
)
from cdg.gating.spec import GateSpec
from cdg.models.resnet import ConvSpec


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x C, accumulated in float32 (no float32 copy of x under autocast)."""
    return torch.mean(x, dim=(2, 3), dtype=torch.float32)


class FBSConv(GatedConv):
    """Feature boosting and suppression. ``saliency``: the C_in -> C_out linear predictor."""

    method = "fbs"

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        self.saliency = nn.Linear(spec.in_channels, spec.out_channels)
        nn.init.ones_(self.saliency.bias)
        # k = ceil(keep_ratio C_out), rounded first so that e.g. 0.4 * 5 = 2.0000000000000004 gives 2
        self.keep = max(1, math.ceil(round(gate.keep_ratio * spec.out_channels, 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        pi = F.relu(self.saliency(_spatial_mean(x).to(self.saliency.weight.dtype))).float()  # N x C_out
        if self.gating and self.keep < self.out_channels:
            keep = torch.zeros_like(pi).scatter_(1, pi.detach().topk(self.keep, dim=1).indices, 1.0)
        else:
            keep = torch.ones_like(pi)
        y = self._conv(x, self.weight)
        y = y * (pi * keep).to(y.dtype)[:, :, None, None]
        density = keep.mean(dim=1)
        self._record(
            mask=keep[:, :, None, None],
            soft_density=density.mean(),
            soft_density_per_sample=density,
            threshold_term=None,
            saliency_mean=pi.mean(),
            in_hw=in_hw,
            out_hw=(y.shape[-2], y.shape[-1]),
            gated=self.gating,
            extras={"saliency": pi.detach()},
        )
        return y


class DGNetConv(GatedConv):
    """Dynamic dual gating: spatial (``spatial_weight``, ``spatial_bias``) and channel (``channel_fc1/2``) predictors."""

    method = "dgnet"

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        c_in, c_out = spec.in_channels, spec.out_channels
        bound = 1.0 / math.sqrt(c_in)
        self.spatial_weight = nn.Parameter(torch.empty(c_in).uniform_(-bound, bound))
        self.spatial_bias = nn.Parameter(torch.tensor(-float(gate.init_threshold)))
        hidden = dgnet_hidden(spec, gate)
        self.channel_fc1 = nn.Linear(c_in, hidden)
        self.channel_fc2 = nn.Linear(hidden, c_out)
        nn.init.constant_(self.channel_fc2.bias, -float(gate.init_threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        out_hw = self.out_hw(*in_hw)
        b = self.gate.spatial_block
        grid = (-(-out_hw[0] // b), -(-out_hw[1] // b))
        alpha = self.gate.sharpness
        pooled_grid = x if grid == in_hw else F.adaptive_avg_pool2d(x, grid)
        z_s = F.conv2d(pooled_grid, self.spatial_weight.view(1, -1, 1, 1).to(x.dtype),
                       self.spatial_bias.view(1).to(x.dtype))  # N x 1 x H_d x W_d
        hidden = F.relu(self.channel_fc1(_spatial_mean(x).to(self.channel_fc1.weight.dtype)))
        z_c = self.channel_fc2(hidden)  # N x C_out
        g_s = straight_through_gate(z_s.to(_gate_dtype(z_s)), 0.0, alpha)
        g_c = straight_through_gate(z_c.to(_gate_dtype(z_c)), 0.0, alpha)
        g = g_c[:, :, None, None] * g_s  # N x C_out x H_d x W_d
        density = g_c.mean(dim=1) * spatial_fraction(g_s, block_weights(out_hw, b, b, g.device))
        if self.gating:
            y = self._conv(x, self.weight)
            g_full = expand_decisions(g.to(y.dtype), 1, b, b, out_hw)
            y = y * _match_layout(g_full, y)
            mask = g.detach()
        else:
            y = self._conv(x, self.weight, self._zero_bias(density.sum(), x.dtype))
            mask = torch.ones_like(g)
        self._record(
            mask=mask,
            soft_density=density.mean(),
            soft_density_per_sample=density,
            threshold_term=None,
            saliency_mean=None,
            in_hw=in_hw,
            out_hw=out_hw,
            gated=self.gating,
            extras={"channel": g_c.detach(), "spatial": g_s.detach()[:, 0]},
        )
        return y
