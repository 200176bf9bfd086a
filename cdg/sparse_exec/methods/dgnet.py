"""DGNet for the sparse executor: its spatial and channel predictors (as
``cdg.gating.methods.dgnet`` in eval), then the conv only at the active pixels and for the output
channels active anywhere in the batch, from the input channels that are not all zero; the
adopted BatchNorm is applied to the computed outputs only and the per-sample channel gate
multiplies them before the scatter.

Paths: ``spatial_channel_gather`` (gather, one GEMM, scatter) and ``dense_masked`` (dense conv,
BatchNorm, multiplied by the gate).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.ops import expand_decisions, gate_dtype, match_layout
from cdg.gating.predictor import input_scale, spatial_mean
from cdg.sparse_exec.base import Executor, norm_affine, output_like
from cdg.sparse_exec.gather import active_pixels, conv_at, dense_conv, expand_blocks, gemm_weight, scatter_add
from cdg.sparse_exec.methods.fbs import nonzero_channels


def decide(layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel gate N x C_out bool, spatial gate N x H_d x W_d bool)."""
    in_hw = (x.shape[-2], x.shape[-1])
    out_hw = layer.out_hw(*in_hw)
    b = layer.gate.spatial_block
    grid = (-(-out_hw[0] // b), -(-out_hw[1] // b))
    pooled = spatial_mean(x)
    scale = input_scale(pooled)
    pooled_grid = x if grid == in_hw else F.adaptive_avg_pool2d(x, grid)
    pooled_grid = pooled_grid / scale[:, :, None, None].to(x.dtype)
    z_s = F.conv2d(pooled_grid, layer.spatial_weight.view(1, -1, 1, 1).to(x.dtype), layer.spatial_bias.view(1).to(x.dtype))
    hidden = F.relu(layer.channel_fc1((pooled / scale).to(layer.channel_fc1.weight.dtype)))
    z_c = layer.channel_fc2(hidden)
    return z_c.to(gate_dtype(z_c)) > 0, z_s.to(gate_dtype(z_s))[:, 0] > 0


class DGNetExecutor(Executor):
    def __init__(self, layer):
        super().__init__(layer, ["spatial_channel_gather", "dense_masked"])
        self.register_buffer("weight", layer.weight.detach(), persistent=False)
        k = layer.kernel_size[0]
        self.register_buffer("w_gemm", gemm_weight(self.weight).view(k * k, layer.in_channels, layer.out_channels),
                             persistent=False)
        for name, value in zip(("scale", "shift"), norm_affine(layer.norm, layer.out_channels, self.weight)):
            self.register_buffer(name, value, persistent=False)
        self.gates: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        g_c, g_s = decide(layer, x)
        self.gates = (g_c, g_s)
        n = x.shape[0]
        out_hw = self.out_hw = layer.out_hw(x.shape[2], x.shape[3])
        b = layer.gate.spatial_block
        self.dense_macs = self._conv_macs(n, out_hw, layer.in_channels, layer.out_channels)
        if self.path == "dense_masked":
            y = dense_conv(x, self.weight, stride, pad)
            if layer.norm is not None:
                y = layer.norm(y)
            g = g_c.to(y.dtype)[:, :, None, None] * g_s.to(y.dtype)[:, None]
            self.executed = self.dense_macs
            return y * match_layout(expand_decisions(g, 1, b, b, out_hw), y)
        y = output_like(x, (n, layer.out_channels, *out_hw))
        out_idx = g_c.any(0).nonzero().squeeze(1)
        in_idx = nonzero_channels(x).any(0).nonzero().squeeze(1)
        pixels = active_pixels(expand_blocks(g_s, b, b, out_hw) & g_c.any(1)[:, None, None])
        self.executed = self._conv_macs(1, (1, len(pixels)), len(in_idx), len(out_idx))
        if len(out_idx) == 0 or len(pixels) == 0:
            return y
        w = self.w_gemm
        if len(in_idx) < layer.in_channels:
            w = w.index_select(1, in_idx)
            x = x.index_select(1, in_idx)
        if len(out_idx) < layer.out_channels:
            w = w.index_select(2, out_idx)
        values = conv_at(x, w.reshape(-1, len(out_idx)), pixels, out_hw, k, stride, pad)
        values = values * self.scale[out_idx] + self.shift[out_idx]
        sample = pixels // (out_hw[0] * out_hw[1])
        values = values * g_c.index_select(0, sample).index_select(1, out_idx).to(values.dtype)
        scatter_add(y, pixels, values, None if len(out_idx) == layer.out_channels else out_idx)
        return y

    def gate_density(self) -> float:
        if self.gates is None:
            return 1.0
        g_c, g_s = self.gates
        b = self.layer.gate.spatial_block
        spatial = expand_blocks(g_s, b, b, self.out_hw).float()
        return float((g_c.float().mean(1) * spatial.flatten(1).mean(1)).mean())


def executor(layer) -> DGNetExecutor:
    return DGNetExecutor(layer)
