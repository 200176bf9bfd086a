"""The base/conditional split shared by the threshold methods (cdg, cgnet): ``SplitMethod`` and
``SplitGatedConv``.

The layer computes the base partial sum from the first C_b = ceil(C_in / G) input channels,
decides its gates from it (the subclass's ``_decide``) and adds the conditional partial sum of
the other C_c input channels where a gate is on::

    Y = Y_base + expand(g) ⊙ conv(x[:, C_b:], W[:, C_b:]),    g = 1[score(Y_base) > Δ]

The two partial convolutions run on disjoint input-channel slices of x and W (views, no copies
of W), so a training step costs the MACs of one dense conv plus the gate's elementwise work.
The hard gate is trained with a straight-through estimator (forward g, backward the derivative
of sigmoid(α (score − Δ)), α = ``sharpness``). The MAC target is met by shifting Δ.
"""
from __future__ import annotations

import abc

import torch
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.accounting import decision_grid
from cdg.gating.base import GatedConv, GateMethod, ThresholdSettings, validate_threshold_settings
from cdg.gating.ops import block_weights, gated_sum, memory_format, spatial_fraction
from cdg.gating.spec import GateSpec
from cdg.models.resnet import ConvSpec


class SplitMethod(GateMethod):
    """A method with a base path of ceil(C_in / G) input channels and learnable thresholds Δ."""

    Settings = ThresholdSettings
    split = True

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        validate_threshold_settings(gate.settings)
        if gate.groups > spec.in_channels:
            raise UserError(
                f"gate.groups={gate.groups} exceeds C_in={spec.in_channels} of layer {spec.name} "
                "(the base path needs at least one input channel per group)"
            )

    @classmethod
    def base_channels(cls, spec: ConvSpec, gate: GateSpec) -> int:
        return -(-spec.in_channels // gate.groups)

    @classmethod
    def fixed_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        if cls.base_channels(spec, gate) == spec.in_channels or gate.static_off:
            return 0  # G = 1: nothing to gate; static_off: no gate runs
        return cls.split_gate_macs(spec, gate, in_hw)

    @classmethod
    def split_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """The gate's own per-image MACs when the conditional path is not empty (each split method's own)."""
        raise TypeError(f"split gate method {cls.__name__} defines no split_gate_macs (docs/architecture.md)")


class SplitGatedConv(GatedConv, metaclass=abc.ABCMeta):
    """Shared base/conditional machinery of cdg and cgnet (subclasses define ``_decide`` and ``impl``)."""

    impl: type[SplitMethod]

    def __init__(self, spec: ConvSpec, gate: GateSpec, decisions: int):
        super().__init__(spec, gate)
        self.base_channels = self.impl.base_channels(spec, gate)
        self.cond_channels = spec.in_channels - self.base_channels
        self.threshold = nn.Parameter(torch.full((decisions,), float(gate.settings.init_threshold)))

    @abc.abstractmethod
    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        """Straight-through hard gate, float32 N x D x H_d x W_d, from the base partial sum."""

    def _gate_and_sum(self, y_base, y_cond, block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Y, g, ρ) with Y = Y_base + expand(g) ⊙ Y_cond and ρ = ``spatial_fraction(g)`` per sample."""
        g = self._decide(y_base, block)
        weights = block_weights(tuple(y_base.shape[-2:]), block[1], block[2], g.device)
        return gated_sum(y_base, y_cond, g, block), g, spatial_fraction(g, weights)

    def threshold_penalty(self, target: float) -> torch.Tensor:
        """Σ (Δ − target)² over this layer's thresholds (CGNet's regulariser)."""
        return ((self.threshold - target) ** 2).sum()

    def shift_gate(self, delta: float) -> None:
        if not self.gate.static_off:  # a statically removed path has no gate to move
            self.threshold.add_(delta)

    def _static_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``gate.static_off``: Y = Y_base, every decision off in training, warm-up and eval alike; no
        gate runs (its MACs are 0), and a zero bias keeps Δ in the graph (DDP)."""
        x_base = x[:, : self.base_channels]
        y_base = self._conv(x_base, self.weight[:, : self.base_channels])
        out_hw = (y_base.shape[-2], y_base.shape[-1])
        d, h_d, w_d = decision_grid(self.spec, self.gate, out_hw)
        mask = y_base.new_zeros((y_base.shape[0], d, h_d, w_d), dtype=torch.float32)
        density = mask.new_zeros(y_base.shape[0])
        y = y_base + self._zero_bias(self.threshold.sum(), y_base.dtype).view(1, -1, 1, 1)
        self._record(mask=mask, soft_density=density.mean(), soft_density_per_sample=density, saliency_mean=None,
                     in_hw=(x.shape[-2], x.shape[-1]), out_hw=out_hw, gated=self.gating)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate.static_off:
            return self._static_forward(x)
        in_hw = (x.shape[-2], x.shape[-1])
        c_b, c_c = self.base_channels, self.cond_channels
        if c_c == 0:
            x_base, w_base = x, self.weight
        else:  # disjoint input-channel slices of x and W: views, gradients re-joined by one cat
            x_base, x_cond = x.split((c_b, c_c), dim=1)
            w_base, w_cond = self.weight.split((c_b, c_c), dim=1)
            if torch.compiler.is_compiling():  # compiled convs on strided slices hit slow kernels
                fmt = memory_format(x)
                x_base, x_cond = x_base.contiguous(memory_format=fmt), x_cond.contiguous(memory_format=fmt)
                w_base, w_cond = w_base.contiguous(), w_cond.contiguous()
        y_base = self._conv(x_base, w_base)
        out_hw = (y_base.shape[-2], y_base.shape[-1])
        block = self.impl.decision_block(self.gate, out_hw)
        if c_c > 0 and self.gating:
            y_cond = self._conv(x_cond, w_cond)
            y, g, density = self._gate_and_sum(y_base, y_cond, block)
            mask = g.detach()
        else:  # all gates on (or nothing to gate): the decisions still feed soft_density
            g = self._decide(y_base, block)
            density = spatial_fraction(g, block_weights(out_hw, block[1], block[2], g.device))
        if c_c == 0:  # G = 1: Y = Y_base; a zero bias keeps Δ in the graph (DDP)
            y = y_base + self._zero_bias(density.sum(), y_base.dtype).view(1, -1, 1, 1)
            mask = torch.ones_like(g)
        elif not self.gating:
            y = y_base + self._conv(x_cond, w_cond, self._zero_bias(density.sum(), x_cond.dtype))
            mask = torch.ones_like(g)
        self._record(
            mask=mask,
            soft_density=density.mean(),
            soft_density_per_sample=density,
            saliency_mean=None,
            in_hw=in_hw,
            out_hw=out_hw,
            gated=self.gating,
            decisions=g,
        )
        return y
