"""Dynamic dual gating (DGNet; Li et al., ICCV 2021): the gate method and ``DGNetConv``.

``DGNetConv`` (a ``PredictorGatedConv``, see ``cdg.gating.predictor``), with b = ``spatial_block``::

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

Its regulariser is its FLOPs-ratio loss ρ (r − t)²; the controller's feedback and the calibration
shift its predictor output biases (down = toward off).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdg.gating.accounting import conv_out_hw, decision_grid
from cdg.gating.base import ThresholdSettings, validate_threshold_settings
from cdg.gating.ops import block_weights, expand_decisions, gate_dtype, match_layout, spatial_fraction, straight_through_gate
from cdg.gating.predictor import PredictorGatedConv, PredictorMethod, input_scale, spatial_mean
from cdg.gating.spec import GateSpec, check_positive_int
from cdg.models.resnet import ConvSpec


@dataclass(frozen=True)
class DGNetSettings(ThresholdSettings):
    reduction: int = 4
    """Hidden width of the channel predictor is max(1, C_out // reduction)."""


def dgnet_hidden(spec: ConvSpec, gate: GateSpec) -> int:
    return max(1, spec.out_channels // gate.settings.reduction)


class DGNet(PredictorMethod):
    """Spatial and channel gates predicted from the pooled input, multiplied."""

    name = "dgnet"
    Settings = DGNetSettings
    spatial_blocks = True

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        check_positive_int("reduction", gate.settings.reduction)
        validate_threshold_settings(gate.settings)

    @classmethod
    def decision_block(cls, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
        return 1, gate.spatial_block, gate.spatial_block

    @classmethod
    def fixed_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """C_out + H_d W_d compares."""
        _, h_d, w_d = decision_grid(spec, gate, conv_out_hw(spec, *in_hw))
        return spec.out_channels + h_d * w_d

    @classmethod
    def predictor_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Spatial C_in H_in W_in (pool adds) + C_in H_d W_d (1x1 conv) + channel C_in H_in W_in
        (global pool adds) + C_in h + h C_out (two linears, h = max(1, C_out // reduction))."""
        c_in, c_out = spec.in_channels, spec.out_channels
        pool = c_in * in_hw[0] * in_hw[1]
        _, h_d, w_d = decision_grid(spec, gate, conv_out_hw(spec, *in_hw))
        hidden = dgnet_hidden(spec, gate)
        return pool + c_in * h_d * w_d + pool + c_in * hidden + hidden * c_out

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """DGNet's FLOPs-ratio loss ρ (r − t)²."""
        return controller.gate.reg_weight * (cost - target) ** 2


class DGNetConv(PredictorGatedConv):
    """Dynamic dual gating: spatial (``spatial_weight``, ``spatial_bias``) and channel (``channel_fc1/2``) predictors."""

    impl = DGNet

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        c_in, c_out = spec.in_channels, spec.out_channels
        bound = 1.0 / math.sqrt(c_in)
        self.spatial_weight = nn.Parameter(torch.empty(c_in).uniform_(-bound, bound))
        self.spatial_bias = nn.Parameter(torch.tensor(-float(gate.settings.init_threshold)))
        hidden = dgnet_hidden(spec, gate)
        self.channel_fc1 = nn.Linear(c_in, hidden)
        self.channel_fc2 = nn.Linear(hidden, c_out)
        nn.init.constant_(self.channel_fc2.bias, -float(gate.settings.init_threshold))
        self.norm: nn.Module | None = None  # the BatchNorm after this conv, see adopt_output_norms

    def shift_gate(self, delta: float) -> None:
        self.spatial_bias.sub_(delta)
        self.channel_fc2.bias.sub_(delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        out_hw = self.out_hw(*in_hw)
        b = self.gate.spatial_block
        grid = (-(-out_hw[0] // b), -(-out_hw[1] // b))
        alpha = self.gate.settings.sharpness
        pooled = spatial_mean(x)
        scale = input_scale(pooled)  # N x 1
        pooled_grid = x if grid == in_hw else F.adaptive_avg_pool2d(x, grid)
        pooled_grid = pooled_grid / scale[:, :, None, None].to(x.dtype)
        z_s = F.conv2d(pooled_grid, self.spatial_weight.view(1, -1, 1, 1).to(x.dtype),
                       self.spatial_bias.view(1).to(x.dtype))  # N x 1 x H_d x W_d
        hidden = F.relu(self.channel_fc1((pooled / scale).to(self.channel_fc1.weight.dtype)))
        z_c = self.channel_fc2(hidden)  # N x C_out
        g_s = straight_through_gate(z_s.to(gate_dtype(z_s)), 0.0, alpha)
        g_c = straight_through_gate(z_c.to(gate_dtype(z_c)), 0.0, alpha)
        g = g_c[:, :, None, None] * g_s  # N x C_out x H_d x W_d
        density = g_c.mean(dim=1) * spatial_fraction(g_s, block_weights(out_hw, b, b, g.device))
        if self.gating:
            y = self._conv(x, self.weight)
            if self.norm is not None:
                y = self.norm(y)
            g_full = expand_decisions(g.to(y.dtype), 1, b, b, out_hw)
            y = y * match_layout(g_full, y)
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
            saliency_mean=None,
            in_hw=in_hw,
            out_hw=out_hw,
            gated=self.gating,
            extras={"channel": g_c.detach(), "spatial": g_s.detach()[:, 0]},
        )
        return y


DGNet.layer = DGNetConv
