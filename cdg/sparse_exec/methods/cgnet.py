"""CGNet for the sparse executor: its decisions (non-affine BatchNorm of the base partial sum, with
running statistics, against the per-channel thresholds; one decision per output element) and,
under channel grouping (``gate.grouping: shuffle``), its base and conditional paths as
``cdg.gating.methods.cgnet`` computes them.

Grouped layer: the base partial sum is the grouped conv it is (G groups of C_in / G shuffled input
channels, one per output group); output group i's conditional input channels are the complement
of its base ones. Paths: ``group_gather`` (per output group: its pixels where any of its channels
is on, im2col rows of its C_in − C_in / G conditional channels, one GEMM with that group's weight
columns, masked per channel, scatter-add) and the split executor's paths over all C_in channels
with the base taps zeroed in the conditional weight (``union_gather``, ``channel_block_gather``,
``dense_masked``: the zero taps are multiplied too, and counted in ``executed``).
``grouping: first`` (or G = 1) is the plain split of ``cdg.sparse_exec.split``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.methods.cgnet import base_mask
from cdg.sparse_exec.gather import active_pixels, expand_blocks, gather_patches, padded_nhwc, scatter_add
from cdg.sparse_exec.split import SplitExecutor


def decide(layer, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    return layer.normalise(y_base) > layer.threshold.detach().view(1, -1, 1, 1)


class GroupedCGNetExecutor(SplitExecutor):
    """Sparse CGNet layer under channel grouping with shuffle (``layer.grouped``)."""

    def __init__(self, layer):
        super().__init__(layer, decide, extra_paths=("group_gather",))
        groups = layer.gate.groups
        per_out = layer.out_channels // groups
        mask = base_mask(layer.in_channels, layer.out_channels, groups)  # C_out x C_in, True on the base path
        k = layer.kernel_size[0]
        gemms = []
        for i in range(groups):
            rows = slice(i * per_out, (i + 1) * per_out)
            cond = (~mask[i * per_out]).nonzero().squeeze(1)  # one output group shares its base inputs
            self.register_buffer(f"cond_in_{i}", cond, persistent=False)
            w = layer.weight.detach()[rows].index_select(1, cond)
            gemms.append(w.permute(2, 3, 1, 0).reshape(k * k * len(cond), per_out).contiguous())
        self.register_buffer("w_groups", torch.stack(gemms), persistent=False)  # G x (k²(C_in − C_in/G)) x C_out/G

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C_out x C_in/G weight of the grouped base conv, W with the base taps zeroed)."""
        layer = self.layer
        w = layer.weight.detach()
        groups = layer.gate.groups
        columns = layer.shuffle.view(groups, -1).repeat_interleave(layer.out_channels // groups, dim=0)  # C_out x C_in/G
        w_base = w.gather(1, columns[:, :, None, None].expand(-1, -1, *w.shape[2:]))
        return w_base, w * (1.0 - layer.base_weight_mask).to(w.dtype)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layer
        y = F.conv2d(x.index_select(1, layer.shuffle), self.w_base, None, layer.stride, layer.padding, groups=layer.gate.groups)
        return y, x

    def extra_path(self, y, x_cond, g, block, out_hw) -> int:
        """group_gather: one gather of the union's patches, then per output group its rows, its
        conditional input channels, one GEMM, masked per channel, scatter-add; returns MACs."""
        layer = self.layer
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        groups = layer.gate.groups
        per_out = layer.out_channels // groups
        n = y.shape[0]
        on = expand_blocks(g, block[1], block[2], out_hw)
        if block[0] > 1:
            on = on.repeat_interleave(block[0], dim=1)
        on = on.permute(0, 2, 3, 1).reshape(n * out_hw[0] * out_hw[1], groups, per_out)  # (pixel, group, channel)
        pixels = active_pixels(on.any(dim=2).any(dim=1))
        if pixels.numel() == 0:
            return 0
        on = on.index_select(0, pixels)
        cols = gather_patches(padded_nhwc(x_cond, pad), pixels, tuple(x_cond.shape[-2:]), out_hw, k, stride, pad)
        cols = cols.view(len(pixels), k * k, layer.in_channels)
        macs = 0
        for i in range(groups):
            rows = on[:, i].any(dim=1).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            cond = getattr(self, f"cond_in_{i}")
            part = cols.index_select(0, rows).index_select(2, cond).reshape(len(rows), -1)
            values = (part @ self.w_groups[i]) * on.index_select(0, rows)[:, i].to(y.dtype)
            channels = torch.arange(i * per_out, (i + 1) * per_out, device=y.device)
            scatter_add(y, pixels.index_select(0, rows), values, channels)
            macs += rows.numel() * per_out * part.shape[1]
        return macs


def executor(layer) -> SplitExecutor:
    if getattr(layer, "grouped", False):
        return GroupedCGNetExecutor(layer)
    return SplitExecutor(layer, decide)
