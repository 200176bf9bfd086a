"""DGNet for the sparse executor, with its block-level masks (as ``cdg.gating.methods.dgnet`` in eval).

Leader (a block's first gated conv): its spatial (3x3 conv on the pooled decision grid) and channel
(bottleneck with BatchNorm) predictors give g_s and g_c; the conv runs only at the active pixels
and for the output channels active anywhere in the batch, from the input channels that are not
all zero; the adopted BatchNorm is applied to the computed outputs only and g_c multiplies them
per sample before the scatter. g_s and g_c are left on the leader layer (``shared_spatial``, as
the model does, and ``shared_channel``) for its followers.

Follower (reuses the leader's spatial mask, no predictor): the conv at the leader's active pixels,
every output channel; when it reads the leader's output directly (the next conv of the block),
the input channels the leader's channel mask zeroed in every sample of the batch are skipped
without looking at the input (they are exactly zero), otherwise the all-zero input channels are.

Paths: ``spatial_channel_gather`` (gather, one GEMM, scatter) and ``dense_masked`` (dense conv,
BatchNorm, multiplied by the gate).
"""
from __future__ import annotations

import re

import torch

from hwsim.trace.errors import UserError
from cdg.gating.ops import expand_decisions, gate_dtype, match_layout
from cdg.sparse_exec.base import Executor, norm_affine, output_like
from cdg.sparse_exec.gather import active_pixels, conv_at, dense_conv, expand_blocks, gemm_weight, scatter_add
from cdg.sparse_exec.methods.fbs import nonzero_channels


def decide(layer, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A leader's (channel gate N x C_out bool, spatial gate N x H_d x W_d bool)."""
    z_s, z_c = layer.logits(x, grid)
    return z_c.to(gate_dtype(z_c)) > 0, z_s.to(gate_dtype(z_s))[:, 0] > 0


def reads_leader_output(layer) -> bool:
    """Whether follower ``layer`` is the conv right after its leader in the block (convI -> convI+1),
    so that its input channels are the leader's gated output channels."""
    lead, own = re.fullmatch(r"(.*)conv(\d+)", layer.leader.spec.name), re.fullmatch(r"(.*)conv(\d+)", layer.spec.name)
    return (lead is not None and own is not None and lead[1] == own[1] and int(own[2]) == int(lead[2]) + 1
            and layer.leader.out_channels == layer.in_channels)


class DGNetExecutor(Executor):
    def __init__(self, layer):
        super().__init__(layer, ["spatial_channel_gather", "dense_masked"])
        self.register_buffer("weight", layer.weight.detach(), persistent=False)
        k = layer.kernel_size[0]
        self.register_buffer("w_gemm", gemm_weight(self.weight).view(k * k, layer.in_channels, layer.out_channels),
                             persistent=False)
        for name, value in zip(("scale", "shift"), norm_affine(layer.norm, layer.out_channels, self.weight)):
            self.register_buffer(name, value, persistent=False)
        self.follower = layer.is_follower
        self.direct = self.follower and reads_leader_output(layer)
        self.gates: tuple[torch.Tensor | None, torch.Tensor] | None = None

    def _gates(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(g_c or None for a follower (all on), g_s, live input channels N x C_in bool)."""
        layer = self.layer
        if not self.follower:
            g_c, g_s = decide(layer, x, grid)
            layer.shared_spatial, layer.shared_channel = g_s[:, None].to(torch.float32), g_c
            return g_c, g_s, nonzero_channels(x)
        leader = layer.leader
        g_s = leader.shared_spatial
        if g_s is None or tuple(g_s.shape[-2:]) != grid or g_s.shape[0] != x.shape[0]:
            raise UserError(f"DGNet follower {self.name}: its leader {leader.spec.name} gave no spatial mask of "
                            f"grid {grid} for this batch (the leader must run first)")
        live = getattr(leader, "shared_channel", None) if self.direct else None
        return None, g_s[:, 0] != 0, nonzero_channels(x) if live is None else live

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        n = x.shape[0]
        out_hw = self.out_hw = layer.out_hw(x.shape[2], x.shape[3])
        b = layer.gate.spatial_block
        g_c, g_s, live = self._gates(x, (-(-out_hw[0] // b), -(-out_hw[1] // b)))
        self.gates = (g_c, g_s)
        self.dense_macs = self._conv_macs(n, out_hw, layer.in_channels, layer.out_channels)
        if self.path == "dense_masked":
            y = dense_conv(x, self.weight, stride, pad)
            if layer.norm is not None:
                y = layer.norm(y)
            g = g_s.to(y.dtype)[:, None] if g_c is None else g_c.to(y.dtype)[:, :, None, None] * g_s.to(y.dtype)[:, None]
            self.executed = self.dense_macs
            return y * match_layout(expand_decisions(g, 1, b, b, out_hw), y)
        y = output_like(x, (n, layer.out_channels, *out_hw))
        spatial = expand_blocks(g_s, b, b, out_hw)
        if g_c is None:
            out_idx = torch.arange(layer.out_channels, device=x.device)
        else:
            out_idx = g_c.any(0).nonzero().squeeze(1)
            spatial = spatial & g_c.any(1)[:, None, None]
        in_idx = live.any(0).nonzero().squeeze(1)
        pixels = active_pixels(spatial)
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
        if g_c is not None:
            sample = pixels // (out_hw[0] * out_hw[1])
            values = values * g_c.index_select(0, sample).index_select(1, out_idx).to(values.dtype)
        scatter_add(y, pixels, values, None if len(out_idx) == layer.out_channels else out_idx)
        return y

    def gate_density(self) -> float:
        if self.gates is None:
            return 1.0
        g_c, g_s = self.gates
        b = self.layer.gate.spatial_block
        spatial = expand_blocks(g_s, b, b, self.out_hw).float().flatten(1).mean(1)
        return float(spatial.mean() if g_c is None else (g_c.float().mean(1) * spatial).mean())


def executor(layer) -> DGNetExecutor:
    return DGNetExecutor(layer)
