"""A CDG layer whose decisions are given, not computed: the gated layer of synthetic models.

``FixedMaskConv`` is a ``CDGConv`` whose forward uses ``fixed_mask`` (M x D x H_d x W_d, image i
of a batch takes mask i mod M) instead of thresholding its saliency, so a synthetic network with
random weights runs a chosen workload in both the masked dense model (its own forward, which
also leaves the usual ``GateRecord`` for the trace) and the sparse executor.
"""
from __future__ import annotations

import torch

from cdg.gating.methods.cdg import CDGConv
from cdg.gating.ops import block_weights, gated_addcmul, spatial_fraction, spatial_gate
from cdg.gating.spec import GateSpec
from cdg.models.resnet import ConvSpec


class FixedMaskConv(CDGConv):
    """CDG conv with fixed decisions (``set_mask`` before the first forward)."""

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        self.fixed_mask: torch.Tensor | None = None  # None: every gate on

    def set_mask(self, mask: torch.Tensor) -> None:
        self.fixed_mask = mask.to(torch.float32)

    def fixed_decisions(self, n: int, out_hw: tuple[int, int]) -> torch.Tensor:
        """N x D x H_d x W_d float {0, 1}: mask i mod M for image i (all ones before ``set_mask``)."""
        s, bh, bw = self.impl.decision_block(self.gate, out_hw)
        grid = (self.out_channels // s, -(-out_hw[0] // bh), -(-out_hw[1] // bw))
        m = self.fixed_mask
        if m is None:
            return torch.ones((n, *grid), device=self.weight.device)
        if tuple(m.shape[1:]) != grid:
            raise ValueError(f"layer {self.spec.name}: fixed mask grid {tuple(m.shape[1:])} != decision grid {grid}")
        if m.device != self.weight.device:  # moved once (a plain attribute, not a buffer: .to() leaves it)
            m = self.fixed_mask = m.to(self.weight.device)
        return m.index_select(0, torch.arange(n, device=m.device) % m.shape[0])

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        return self.fixed_decisions(y_base.shape[0], tuple(y_base.shape[-2:]))

    def _gate_and_sum(self, y_base, y_cond, block):
        g = self._decide(y_base, block)
        y = gated_addcmul(y_base, spatial_gate(g, y_cond, block), y_cond, block[0])
        weights = block_weights(tuple(y_base.shape[-2:]), block[1], block[2], g.device)
        return y, g, spatial_fraction(g, weights)
