"""Sparse execution of the base/conditional split methods (cdg, cgnet).

The base partial sum is one dense conv on the first C_b input channels (``split``; CGNet's channel
grouping overrides it, ``cdg.sparse_exec.methods.cgnet``); the method's decisions come from it
(``decide``); the conditional partial sum runs only where a decision is on, by one of these paths
(``network.tune`` picks the fastest per layer on the real input):

- ``spatial_gather`` (S = C_out): the active decision cells' output pixels, their input patches
  gathered, one GEMM with all C_out conditional weight columns, scatter-add into the base output;
- ``tile_conv`` (S = C_out, b > 1): the active blocks' input tiles gathered, one dense conv over
  the batch of tiles, scatter-add (DynConv's form: a smaller gather than im2col's k^2 per pixel);
- ``union_gather`` (S < C_out): the same over the pixels where any channel block is on, the GEMM
  result masked per channel block before the scatter-add;
- ``channel_block_gather`` (S < C_out, at most ``MAX_BLOCK_LOOP`` blocks): one gather + GEMM per
  channel block over its own active pixels, with that block's S weight columns;
- ``dense_masked``: the dense conditional conv, added where the gate is on (no skipping).
"""
from __future__ import annotations

from typing import Callable

import torch

from cdg.sparse_exec.base import Executor
from cdg.sparse_exec.fixed import FixedMaskConv
from cdg.sparse_exec.gather import (
    active_pixels, conv_at, dense_conv, expand_blocks, gather_patches, gemm_weight, padded_nhwc, scatter_add, tile_conv,
)
from cdg.gating.ops import gated_addcmul, memory_format, spatial_gate

MAX_BLOCK_LOOP = 64
"""Channel-block loops longer than this are not offered: their per-block overhead alone exceeds the conv."""

Decide = Callable[[torch.nn.Module, torch.Tensor, tuple[int, int, int]], torch.Tensor]


class SplitExecutor(Executor):
    """Sparse cdg/cgnet layer; ``decide(layer, y_base, block)`` gives the bool N x D x H_d x W_d decisions."""

    def __init__(self, layer, decide: Decide, extra_paths: tuple[str, ...] = ()):
        s = layer.impl.decision_block(layer.gate, (1, 1))[0]
        d = layer.out_channels // s
        if layer.cond_channels == 0:
            paths = ["dense"]
        elif d == 1:
            b = layer.gate.spatial_block
            paths = ["spatial_gather", "dense_masked"] + (["tile_conv"] if b > 1 else [])
        else:
            paths = ["union_gather", "dense_masked"] + (["channel_block_gather"] if d <= MAX_BLOCK_LOOP else [])
        super().__init__(layer, paths + (list(extra_paths) if layer.cond_channels else []))
        self.decide = decide
        self.extra_paths = frozenset(extra_paths) & set(self.candidates)
        w_base, w_cond = self.split_weights()
        fmt = memory_format(layer.weight)  # keep the weight's layout: a channels_last conv reorders an NCHW weight each call
        self.register_buffer("w_base", w_base.detach().contiguous(memory_format=fmt), persistent=False)
        self.register_buffer("w_cond", w_cond.detach().contiguous(memory_format=fmt), persistent=False)
        self.register_buffer("w_gemm", gemm_weight(self.w_cond), persistent=False)
        self.decisions: torch.Tensor | None = None
        self.pixels_run = 0

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(base weight, conditional weight): the first C_b input channels of W and the rest."""
        c_b = self.layer.base_channels
        return self.layer.weight[:, :c_b], self.layer.weight[:, c_b:]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y_base, the conditional paths' input) of ``x``."""
        layer = self.layer
        c_b = layer.base_channels
        if layer.cond_channels == 0:
            return dense_conv(x, self.w_base, layer.stride[0], layer.padding[0]), x[:, c_b:]
        fmt = memory_format(x)  # a dense copy of the base slice: convs on strided slices are slow
        return dense_conv(x[:, :c_b].contiguous(memory_format=fmt), self.w_base, layer.stride[0], layer.padding[0]), x[:, c_b:]

    def extra_path(self, y, x_cond, g, block, out_hw) -> int:
        """A subclass's own conditional path (``extra_paths``): adds to ``y``, returns its MACs."""
        raise TypeError(f"{type(self).__name__} offers path {self.path!r} but does not implement it")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        fmt = memory_format(x)
        y, x_cond = self.split(x)
        n, c_out, h, w = y.shape
        out_hw = (h, w)
        self.dense_macs = self._conv_macs(n, out_hw, layer.in_channels, c_out)
        base_macs = self._conv_macs(n, out_hw, self.w_base.shape[1], c_out)
        if layer.cond_channels == 0:
            self.executed = base_macs
            return y
        block = layer.impl.decision_block(layer.gate, out_hw)
        if isinstance(layer, FixedMaskConv):
            g = layer.fixed_decisions(n, out_hw) != 0
        else:
            g = self.decide(layer, y, block)
        self.decisions = g
        self.block, self.out_hw = block, out_hw
        s, bh, bw = block
        per_pixel = x_cond.shape[1] * k * k  # conditional MACs per output element computed
        if self.path in self.extra_paths:
            self.executed = base_macs + self.extra_path(y, x_cond, g, block, out_hw)
            return y
        if self.path == "dense_masked":
            y = gated_addcmul(y, spatial_gate(g.to(y.dtype), y, block), dense_conv(x_cond.contiguous(memory_format=fmt), self.w_cond, stride, pad),
                              s, inplace=True)
            run = n * h * w * c_out
        elif self.path == "spatial_gather":
            pixels = active_pixels(expand_blocks(g[:, 0], bh, bw, out_hw))
            scatter_add(y, pixels, conv_at(x_cond, self.w_gemm, pixels, out_hw, k, stride, pad))
            run = pixels.numel() * c_out
        elif self.path == "tile_conv":
            cells = active_pixels(g[:, 0])
            pixels, values = tile_conv(x_cond, self.w_cond, cells, tuple(g.shape[-2:]), bh, out_hw, stride, pad)
            scatter_add(y, pixels, values)
            run = cells.numel() * bh * bw * c_out  # whole tiles are computed, ragged edges included
        else:
            on = expand_blocks(g, bh, bw, out_hw).permute(0, 2, 3, 1).reshape(n * h * w, -1)  # (pixel, block)
            pixels = active_pixels(on.any(dim=1))
            on = on.index_select(0, pixels)
            if self.path == "union_gather":
                values = conv_at(x_cond, self.w_gemm, pixels, out_hw, k, stride, pad)
                values = (values.view(len(pixels), -1, s) * on[:, :, None].to(values.dtype)).view(len(pixels), c_out)
                scatter_add(y, pixels, values)
                run = pixels.numel() * c_out
            else:
                run = self._block_loop(y, x_cond, pixels, on, out_hw, s)
        self.executed = base_macs + run * per_pixel
        return y

    def gate_density(self) -> float:
        """Fraction of the conditional output elements the last forward's gates switched on."""
        if self.decisions is None:
            return 1.0
        _, bh, bw = self.block
        return float(expand_blocks(self.decisions, bh, bw, self.out_hw).float().mean())

    def _block_loop(self, y, x_cond, pixels, on, out_hw, s) -> int:
        """channel_block_gather: one GEMM per channel block on its own active pixels; returns outputs computed."""
        layer = self.layer
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        cols = gather_patches(padded_nhwc(x_cond, pad), pixels, tuple(x_cond.shape[-2:]), out_hw, k, stride, pad)
        run = 0
        for j in range(on.shape[1]):
            rows = on[:, j].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            channels = torch.arange(j * s, (j + 1) * s, device=y.device)
            values = cols.index_select(0, rows) @ self.w_gemm[:, j * s : (j + 1) * s]
            scatter_add(y, pixels.index_select(0, rows), values, channels)
            run += rows.numel() * s
        return run
