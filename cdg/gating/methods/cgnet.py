"""Channel gating (CGNet; Hua et al., NeurIPS 2019): the gate method and its layer ``CGNetConv``.

The same base/conditional split as CDG (``cdg.gating.split``), one decision per output element::

    s = BN(Y_base)                     non-affine BatchNorm: batch statistics in training,
                                       running statistics in eval
    g = 1[s > Δ_c]                     Δ: learnable per output channel (shape C_out), straight-through
    Y = Y_base + g ⊙ conv(x[:, C_b:], W[:, C_b:])

Its regulariser is its own threshold penalty ρ Σ_layers mean_c (Δ_c − T)² (``layer.threshold_penalty``),
the threshold target T moved by the controller's feedback (T ← T + η (r_hard − t)) so that it reaches
the requested ratio.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwsim.trace.errors import UserError
from cdg.gating.accounting import conv_out_hw
from cdg.gating.base import ThresholdSettings, validate_threshold_settings
from cdg.gating.ops import straight_through_gate
from cdg.gating.spec import GateSpec, is_real
from cdg.gating.split import SplitGatedConv, SplitMethod
from cdg.models.resnet import ConvSpec


@dataclass(frozen=True)
class CGNetSettings(ThresholdSettings):
    bn_momentum: float = 0.1
    """Momentum of the running statistics of its non-affine BatchNorm on the base partial sum."""


class CGNet(SplitMethod):
    """Channel gating: threshold per output channel on the batch-normalised base partial sum."""

    name = "cgnet"
    Settings = CGNetSettings

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        validate_threshold_settings(gate.settings)
        momentum = gate.settings.bn_momentum
        if not is_real(momentum) or not 0.0 < momentum <= 1.0:
            raise UserError(f"gate.bn_momentum: must be in (0, 1], got {momentum!r}")
        super().validate(spec, gate)

    @classmethod
    def split_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """2 per output element: normalise with the BatchNorm statistics, compare."""
        out_hw = conv_out_hw(spec, *in_hw)
        return 2 * spec.out_channels * out_hw[0] * out_hw[1]

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """ρ Σ_layers mean_c (Δ_c − T)², T the controller's threshold target."""
        rho = controller.gate.reg_weight
        return rho * sum(layer.threshold_penalty(controller.threshold_target) / layer.threshold.numel()
                         for _, layer in controller.layers)

    @classmethod
    def integrate(cls, controller, step: float) -> None:
        controller.threshold_target += step


class CGNetConv(SplitGatedConv):
    """Channel gating conv (Hua et al. 2019). ``threshold``: Δ, shape C_out; ``running_mean/var``: its BN statistics."""

    impl = CGNet

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate, spec.out_channels)
        # A non-affine BatchNorm held as plain buffers (not an nn.BatchNorm2d submodule, which the
        # backbone's initialisation and SyncBatchNorm conversion would treat as one of its own).
        self.register_buffer("running_mean", torch.zeros(spec.out_channels))
        self.register_buffer("running_var", torch.ones(spec.out_channels))

    def normalise(self, y_base: torch.Tensor) -> torch.Tensor:
        """BN(Y_base) without affine: batch statistics in training (updating the running ones), running in eval."""
        return F.batch_norm(
            y_base.to(self.running_mean.dtype), self.running_mean, self.running_var, None, None,
            self.training, self.gate.settings.bn_momentum, 1e-5,
        )

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        return straight_through_gate(self.normalise(y_base), self.threshold.view(1, -1, 1, 1),
                                     self.gate.settings.sharpness)


CGNet.layer = CGNetConv
