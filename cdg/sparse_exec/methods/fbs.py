"""FBS for the sparse executor: its saliency predictor and top-k keep decisions (as
``cdg.gating.methods.fbs`` in eval), then only the kept output channels are computed, from the
input channels that are not all zero (a suppressed channel upstream is exactly zero).

Paths: ``channel_union`` (one conv over the union of kept channels of the batch, scaled per
sample), ``channel_slice`` (one conv per sample with its own channels; batch > 1) and
``dense_masked`` (the dense conv, scaled).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.predictor import input_scale, spatial_mean
from cdg.sparse_exec.base import Executor, norm_affine, output_like
from cdg.sparse_exec.gather import dense_conv


def decide(layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(π ⊙ keep, keep), each N x C_out float32."""
    pooled = spatial_mean(x)
    pooled = pooled / input_scale(pooled)
    pi = F.relu(layer.saliency(pooled.to(layer.saliency.weight.dtype))).float()
    k = layer.keep if layer.keep_now is None else layer.keep_now
    if layer.gating and k < layer.out_channels:
        keep = torch.zeros_like(pi).scatter_(1, pi.topk(k, dim=1).indices, 1.0)
    else:
        keep = torch.ones_like(pi)
    return pi * keep, keep


def nonzero_channels(x: torch.Tensor) -> torch.Tensor:
    """N x C bool: input channels with any non-zero value."""
    return x.ne(0).flatten(2).any(dim=2)


class FBSExecutor(Executor):
    def __init__(self, layer):
        super().__init__(layer, ["channel_union", "channel_slice", "dense_masked"])
        self.register_buffer("weight", layer.weight.detach(), persistent=False)
        for name, value in zip(("scale", "shift"), norm_affine(layer.norm, layer.out_channels, self.weight)):
            self.register_buffer(name, value, persistent=False)
        self.keep: torch.Tensor | None = None

    def _part(self, x, out_idx, in_idx):
        """norm(conv(x[:, in], W[out, in])) for the given output / input channel indices."""
        layer = self.layer
        w = self.weight.index_select(0, out_idx).index_select(1, in_idx)
        y = dense_conv(x.index_select(1, in_idx), w, layer.stride[0], layer.padding[0])
        return y * self.scale[out_idx].view(1, -1, 1, 1) + self.shift[out_idx].view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        factor, keep = decide(layer, x)
        self.keep = keep
        n = x.shape[0]
        out_hw = layer.out_hw(x.shape[2], x.shape[3])
        self.dense_macs = self._conv_macs(n, out_hw, layer.in_channels, layer.out_channels)
        factor = factor.to(x.dtype)
        if self.path == "dense_masked" or n == 0:
            y = dense_conv(x, self.weight, layer.stride[0], layer.padding[0])
            if layer.norm is not None:
                y = layer.norm(y)
            self.executed = self.dense_macs
            return y * factor[:, :, None, None]
        y = output_like(x, (n, layer.out_channels, *out_hw))
        live = nonzero_channels(x)
        on = keep != 0
        if self.path == "channel_union":
            out_idx, in_idx = on.any(0).nonzero().squeeze(1), live.any(0).nonzero().squeeze(1)
            part = self._part(x, out_idx, in_idx) * factor.index_select(1, out_idx)[:, :, None, None]
            y.index_copy_(1, out_idx, part)
            self.executed = self._conv_macs(n, out_hw, len(in_idx), len(out_idx))
            return y
        self.executed = 0
        for i in range(n):
            out_idx, in_idx = on[i].nonzero().squeeze(1), live[i].nonzero().squeeze(1)
            part = self._part(x[i : i + 1], out_idx, in_idx) * factor[i].index_select(0, out_idx)[None, :, None, None]
            y[i : i + 1].index_copy_(1, out_idx, part)
            self.executed += self._conv_macs(1, out_hw, len(in_idx), len(out_idx))
        return y

    def gate_density(self) -> float:
        return 1.0 if self.keep is None else float(self.keep.mean())


def executor(layer) -> FBSExecutor:
    return FBSExecutor(layer)
