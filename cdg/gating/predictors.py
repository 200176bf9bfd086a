"""Dynamic-pruning baselines with an auxiliary predictor: FBS and DGNet.

Neither has a base path: an output element is either computed with all C_in input channels or
skipped. Both predict their gates from the layer input x (N x C_in x H_in x W_in).

**FBS** (``FBSConv``; Gao et al., ICLR 2019, feature boosting and suppression)::

    p    = avgpool(x),  ŝ = p / rms_c(p)        per-sample scale of the predictor input removed
    π    = ReLU(A · ŝ + a)                      A: C_out x C_in, a: C_out (bias initialised to 1,
                                                so π starts near 1: boosting ~ identity)
    keep = top-k(π) per sample, k = ceil(keep_ratio · C_out)
    Y    = (π ⊙ keep) ⊙ BN(conv(x, W))          per-sample, per-channel scaling of the *normalised*
                                                output (the paper's π · (norm(conv) + β)); suppressed
                                                channels are not computed and are exactly 0

The top-k mask carries no gradient; π does (through the kept channels). Its regulariser is an
L1 penalty on π: ``record.saliency_mean`` is the mean of π. With ``gating = False`` all channels
are kept (k = C_out) and still scaled by π, so switching gating on does not change the function
of the kept channels. During training ``keep_now`` (set by the GateController) lowers k from
C_out to its final value along the target ramp.

**DGNet** (``DGNetConv``; Li et al., ICCV 2021, dynamic dual gating), with b = ``spatial_block``::

    σ_x = rms_c(avgpool(x))                                     per-sample input scale (N x 1)
    spatial: z_s = v · adaptive_avgpool_{H_d x W_d}(x) / σ_x + c  1x1 conv C_in -> 1 on the input pooled
             to the decision grid H_d x W_d = ceil(H_out / b) x ceil(W_out / b)
    channel: z_c = B2 · ReLU(B1 · avgpool(x) / σ_x + b1) + b2     SE-like, hidden h = max(1, C_out // r)
    g_s = 1[z_s > 0], g_c = 1[z_c > 0]                         straight-through, sigmoid(α z) surrogate
    Y   = (g_c ⊗ g_s expanded to b x b pixels) ⊙ BN(conv(x, W))  gate after the BatchNorm, as DGNet's code

The output biases c and b2 start at -``init_threshold`` (= +1) so the gates start mostly on.
``soft_density`` is the straight-through fraction of output elements computed, i.e. the conv MAC
ratio of the layer, for DGNet's loss (ratio − target)². No randomness (no Gumbel noise): training
and eval use the same deterministic hard gates.

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


def _input_scale(pooled: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample RMS over channels of the pooled input (N x C -> N x 1), float32.

    The predictors see their input divided by it (parameter-free, per sample): their logits no
    longer scale with the magnitude of x, which the gates upstream (FBS's boosting π, a skipped
    DGNet block) change from layer to layer and step to step; without it the gain compounds
    through the network (π · x feeds the next π) and the predictor outputs grow without bound.
    """
    return pooled.float().pow(2).mean(dim=1, keepdim=True).add(eps).sqrt()


class FBSConv(GatedConv):
    """Feature boosting and suppression. ``saliency``: the C_in -> C_out linear predictor."""

    method = "fbs"

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        self.saliency = nn.Linear(spec.in_channels, spec.out_channels)
        nn.init.ones_(self.saliency.bias)
        # k = ceil(keep_ratio C_out), rounded first so that e.g. 0.4 * 5 = 2.0000000000000004 gives 2
        self.keep = max(1, math.ceil(round(gate.keep_ratio * spec.out_channels, 9)))
        # k during the target ramp (set every step by the GateController); None: the final k
        self.keep_now: int | None = None
        self.norm: nn.Module | None = None  # the BatchNorm after this conv, see adopt_output_norms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        pooled = _spatial_mean(x)
        pooled = pooled / _input_scale(pooled)
        pi = F.relu(self.saliency(pooled.to(self.saliency.weight.dtype))).float()  # N x C_out
        k = self.keep if self.keep_now is None else self.keep_now
        if self.gating and k < self.out_channels:
            keep = torch.zeros_like(pi).scatter_(1, pi.detach().topk(k, dim=1).indices, 1.0)
        else:
            keep = torch.ones_like(pi)
        y = self._conv(x, self.weight)
        if self.norm is not None:
            y = self.norm(y)
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
        self.norm: nn.Module | None = None  # the BatchNorm after this conv, see adopt_output_norms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        out_hw = self.out_hw(*in_hw)
        b = self.gate.spatial_block
        grid = (-(-out_hw[0] // b), -(-out_hw[1] // b))
        alpha = self.gate.sharpness
        pooled = _spatial_mean(x)
        scale = _input_scale(pooled)  # N x 1
        pooled_grid = x if grid == in_hw else F.adaptive_avg_pool2d(x, grid)
        pooled_grid = pooled_grid / scale[:, :, None, None].to(x.dtype)
        z_s = F.conv2d(pooled_grid, self.spatial_weight.view(1, -1, 1, 1).to(x.dtype),
                       self.spatial_bias.view(1).to(x.dtype))  # N x 1 x H_d x W_d
        hidden = F.relu(self.channel_fc1((pooled / scale).to(self.channel_fc1.weight.dtype)))
        z_c = self.channel_fc2(hidden)  # N x C_out
        g_s = straight_through_gate(z_s.to(_gate_dtype(z_s)), 0.0, alpha)
        g_c = straight_through_gate(z_c.to(_gate_dtype(z_c)), 0.0, alpha)
        g = g_c[:, :, None, None] * g_s  # N x C_out x H_d x W_d
        density = g_c.mean(dim=1) * spatial_fraction(g_s, block_weights(out_hw, b, b, g.device))
        if self.gating:
            y = self._conv(x, self.weight)
            if self.norm is not None:
                y = self.norm(y)
            g_full = expand_decisions(g.to(y.dtype), 1, b, b, out_hw)
            y = y * _match_layout(g_full, y)
            mask = g.detach()
        else:
            y = self._conv(x, self.weight, self._zero_bias(density.sum(), x.dtype))
            if self.norm is not None:
                y = self.norm(y)
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


def adopt_output_norms(backbone: nn.Module) -> int:
    """Move the BatchNorm that follows every FBS/DGNet conv into the conv (``conv.norm``), so
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
            if isinstance(conv, (FBSConv, DGNetConv)) and conv.norm is None and isinstance(norm, nn.BatchNorm2d):
                conv.norm = norm
                setattr(module, norm_name, nn.Identity())
                moved += 1
    return moved
