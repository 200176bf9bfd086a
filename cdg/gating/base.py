"""What every gate method is: the ``GateMethod`` contract, the ``GatedConv`` layer base and the
``GateRecord`` each forward leaves.

Every gated layer is an ``nn.Conv2d`` subclass (``bias=False``) that owns the full weight
W (C_out x C_in x k x k, state_dict key ``weight``), so the backbone's conv initialisation,
checkpoints and tracers treat it like the dense conv it replaces; only ``forward`` differs.
Each forward stores a ``GateRecord`` in ``layer.record`` (overwritten by the next forward).

Notation: x is N x C_in x H_in x W_in, Y is N x C_out x H_out x W_out, C_b = ceil(C_in / G)
base input channels and C_c = C_in - C_b conditional ones, conv(x, W) the convolution with the
layer's stride and padding.

``layer.gating = False`` turns every gate on (dense conditional path, for dense warm-up and
one-branch ablations). The layer still computes the gate decisions it would have taken (so
``soft_density`` keeps its meaning and gradient), the record's ``mask`` says what was computed
(all ones), and the gate parameters stay in the autograd graph through a zero-valued bias, so
DDP without ``find_unused_parameters`` is happy. In eval mode the gates are the same hard
decisions, deterministic.

A gate method is one ``GateMethod`` subclass (``cdg/gating/methods/<name>.py``) registered by
one line in ``cdg.gating.registry``; the rest of the package asks it rather than its name.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.accounting import conv_out_hw, decision_block, decision_grid, dense_conv_macs, effective_macs
from cdg.gating.ops import block_weights, spatial_fraction
from cdg.gating.spec import GateSpec, is_real, validate_gate
from cdg.models.resnet import ConvSpec


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NoSettings:
    """Settings of a method that has none of its own."""


@dataclass(frozen=True)
class ThresholdSettings:
    """Settings of a method with straight-through threshold gates."""

    sharpness: float = 4.0
    """alpha of the straight-through surrogate sigmoid(alpha (s - Δ))."""
    init_threshold: float = -1.0
    """Initial Δ. CDG's saliency is standardised (zero mean, unit variance), so Δ = -1 keeps roughly
    84% of the gates on at the start; CGNet's is batch-normalised alike. DGNet initialises its
    predictor output biases to -init_threshold (= +1), so its gates also start mostly on."""


def validate_threshold_settings(settings: ThresholdSettings) -> None:
    if not is_real(settings.sharpness) or settings.sharpness <= 0:
        raise UserError(f"gate.sharpness: must be a finite number > 0, got {settings.sharpness!r}")
    if not is_real(settings.init_threshold):
        raise UserError(f"gate.init_threshold: must be a finite number, got {settings.init_threshold!r}")


# --------------------------------------------------------------------------- the method contract


class GateMethod:
    """One gate method: its layer, settings and every rule that differs between methods.

    Subclass it in ``cdg/gating/methods/<name>.py`` and add one line to ``cdg.gating.registry``.
    The defaults describe a method without base path, thresholds or block structure.
    """

    name: ClassVar[str] = ""
    layer: ClassVar[type]
    """Its ``GatedConv`` subclass, built as ``layer(conv_spec, gate_spec)``."""
    Settings: ClassVar[type] = NoSettings
    """Frozen dataclass of the method's own settings (``GateSpec.settings``)."""
    split: ClassVar[bool] = False
    """Base/conditional split with learnable thresholds Δ: reads ``groups``, has a base path."""
    channel_blocks: ClassVar[bool] = False
    """Reads ``channel_block`` (S output channels per decision); otherwise S must be 1."""
    spatial_blocks: ClassVar[bool] = False
    """Reads ``spatial_block`` (b x b pixels per decision); otherwise b must be 1."""
    target_by_shift: ClassVar[bool] = True
    """The MAC target is met by shifting the gates (``shift_gate``): integral control during training,
    calibration after it, and the check that the base path leaves room for the target."""
    static_removal: ClassVar[bool] = False
    """Its layer can run its base path alone with the gate always off (``gate.static_off``)."""
    gate_macs_per_output: ClassVar[int] = 0
    """Gate MAC-equivalents per computed output element, on top of ``fixed_gate_macs``."""
    zeroes_skipped_outputs: ClassVar[bool] = False
    """The layer's output (what its module returns, after any BatchNorm it adopted) is exactly 0
    wherever a decision is off (fbs, dgnet: nothing is computed there). The consumers of that
    output can then skip those input elements too (``GateRecord.zeroed_outputs``, the full
    accounting of ``cdg.tracing.input_credit``). False for cdg and cgnet: their base partial sum is
    always computed, so a skipped output is not zero."""

    @classmethod
    def integral_control(cls, gate_cfg) -> bool:
        """Whether the shared integral controller (and the calibration after training) drives this
        method under ``gate_cfg`` (a ``GateConfig``): methods that shift gates, unless
        ``gate.control: published`` leaves the target to the method's own regulariser."""
        return cls.target_by_shift and getattr(gate_cfg, "control", "shared") == "shared"

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        """Raise a one-line ``UserError`` naming ``gate.<field>`` for settings or structure that cannot gate ``spec``."""

    @classmethod
    def base_channels(cls, spec: ConvSpec, gate: GateSpec) -> int:
        """C_b, input channels of the always-computed base path (0: no base path)."""
        return 0

    @classmethod
    def decision_block(cls, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
        """(S, bh, bw): output channels and output pixels covered by one decision."""
        return 1, 1, 1

    @classmethod
    def fixed_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Per-image gate overhead that does not depend on the mask (``cdg.gating.accounting``)."""
        return 0

    @classmethod
    def predictor_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Per-image MACs of an auxiliary predictor."""
        return 0

    @classmethod
    def backbone_settings(cls, cfg) -> dict:
        """Settings derived from the whole run config (``cdg.config.Config``) before the backbone is
        built, passed to ``make_gate`` for every gated conv (e.g. FBS's keep ratio from the target)."""
        return {}

    @classmethod
    def adopt(cls, backbone: nn.Module) -> None:
        """Adjust the freshly built gated backbone (e.g. move the BatchNorms into the gated convs)."""

    @classmethod
    def begin_step(cls, controller, epoch: float) -> None:
        """Per-step schedule of the method's own (``GateController.begin_step``)."""

    @classmethod
    def regulariser(cls, controller, views: list[dict], cost: torch.Tensor, target: float) -> torch.Tensor:
        """The sparsity loss of one step. ``views``: per backbone call, the records by layer name;
        ``cost``: the soft network MAC ratio (hardware-priced under ``gate.hw_aware``); ``target``:
        the scheduled ratio; ``controller``: the ``GateController`` (its state, weights, layers).
        Every method defines it: there is no method-neutral sparsity loss."""
        raise TypeError(f"gate method {cls.__name__} defines no regulariser (a GateMethod hook, docs/architecture.md)")

    @classmethod
    def integrate(cls, controller, step: float) -> None:
        """After the gates were shifted by ``step``: update the controller state the regulariser uses."""


# --------------------------------------------------------------------------- record


@dataclass(eq=False)
class GateRecord:
    """What one forward of a gated layer did (overwritten by the next forward).

    mask
        Decision-level hard gate, {0, 1} float32, detached, N x D x H_d x W_d: cdg N x C_out/S x
        ceil(H_out/b) x ceil(W_out/b); cgnet N x C_out x H_out x W_out; fbs N x C_out x 1 x 1 (one
        decision per channel over the whole map); dgnet N x C_out x ceil(H_out/b) x ceil(W_out/b), the
        product of its channel and spatial gates (the factors are in ``extras``). It is what was
        computed: all ones when the layer ran with ``gating = False``.
    soft_density / soft_density_per_sample
        Differentiable fraction of the gated work kept (scalar / shape N): cdg, cgnet the fraction of
        conditional output elements computed; dgnet the fraction of output elements computed (the
        conv MAC ratio, for its FLOPs loss); fbs the fraction of channels kept (constant k / C_out).
        Straight-through: the forward value is the hard density of the gate decisions, the gradient
        that of the sigmoid surrogate. With ``gating = False`` it is the density the gates *would*
        have had, so regularisers and cross-branch terms still see the decisions.
    saliency_mean
        fbs: mean of the channel saliency π ≥ 0 over batch and channels (its L1 regulariser); None otherwise.
    decisions
        cdg, cgnet: the straight-through decision map g itself (same shape as ``mask``, in the
        autograd graph), for terms on where the gates are (``cdg.gating.cross_branch``); None for
        methods that do not keep it.
    extras
        Method-specific detached tensors: dgnet "channel" (N x C_out) and "spatial" (N x H_d x W_d)
        gates; fbs "saliency" (N x C_out).
    parts
        Method-specific differentiable densities its regulariser needs (dgnet: the block's
        straight-through "spatial" and "channel" densities, batch means); empty otherwise.
    macs
        Per-image effective MACs (int64, shape N): "base", "conditional", "gate", "predictor",
        "total" (see ``cdg.gating.accounting``); computed on first access.
    """

    mask: torch.Tensor
    soft_density: torch.Tensor
    soft_density_per_sample: torch.Tensor
    saliency_mean: torch.Tensor | None
    spec: ConvSpec
    gate: GateSpec
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    gated: bool
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    decisions: torch.Tensor | None = None

    @property
    def block(self) -> tuple[int, int, int]:
        """(S, bh, bw): output channels x pixels covered by one decision of ``mask``."""
        return decision_block(self.gate, self.out_hw)

    @property
    def dense_macs(self) -> int:
        return dense_conv_macs(self.spec, *self.in_hw)

    @functools.cached_property
    def macs(self) -> dict[str, torch.Tensor]:
        return effective_macs(self)

    @property
    def hard_density(self) -> torch.Tensor:
        """Per image, the fraction of output elements that got the conditional (fbs/dgnet: any) work."""
        s, bh, bw = self.block
        weights = block_weights(self.out_hw, bh, bw, self.mask.device)
        return spatial_fraction((self.mask != 0).float(), weights)

    def full_resolution(self) -> torch.Tensor:
        """``full_resolution_mask(self)``: N x C_out x H_out x W_out bool of what got the gated work."""
        return full_resolution_mask(self)

    def zeroed_outputs(self) -> torch.Tensor | None:
        """N x C_out x H_out x W_out bool of the layer's output elements that are exactly 0 because
        the gate switched them off (``GateMethod.zeroes_skipped_outputs``), or None when the method
        leaves no structural zero. What happens to them after the layer is the model's to say
        (``cdg.models.resnet.structural_input_zeros``)."""
        if not self.gate.impl.zeroes_skipped_outputs:
            return None
        return ~self.full_resolution()


def full_resolution_mask(
    record: GateRecord, spec: ConvSpec | None = None, out_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """N x C_out x H_out x W_out bool: which outputs got the conditional (fbs/dgnet: any) computation.

    ``spec`` and ``out_hw`` default to the record's own.
    """
    spec = spec or record.spec
    out_hw = tuple(out_hw or record.out_hw)
    s, bh, bw = decision_block(record.gate, out_hw)
    expected = decision_grid(spec, record.gate, out_hw)
    if tuple(record.mask.shape[1:]) != expected:
        raise ValueError(
            f"record mask {tuple(record.mask.shape)} does not match decision grid {expected} "
            f"of layer {spec.name} at output {out_hw}"
        )
    device = record.mask.device
    channels = torch.arange(spec.out_channels, device=device) // s
    rows = torch.arange(out_hw[0], device=device) // bh
    cols = torch.arange(out_hw[1], device=device) // bw
    on = record.mask != 0
    return on.index_select(1, channels).index_select(2, rows).index_select(3, cols)


# --------------------------------------------------------------------------- layer base


class GatedConv(nn.Conv2d):
    """Common base of the gated convolutions: a bias-free ``nn.Conv2d`` with a gate and a record.

    Attributes: ``spec`` (ConvSpec), ``gate`` (GateSpec), ``weight`` (C_out x C_in x k x k, the
    ``nn.Conv2d`` initialisation), ``gating`` (bool, default True), ``record`` (GateRecord of the
    last forward, or None).
    """

    impl: ClassVar[type[GateMethod]]
    """The method this layer implements."""

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        validate_gate(spec, gate)
        if gate.method != self.impl.name:
            raise ValueError(f"{type(self).__name__} implements method {self.impl.name!r}, got {gate.method!r}")
        super().__init__(
            spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, bias=False
        )
        self.spec = spec
        self.gate = gate
        self.gating = True
        self.record: GateRecord | None = None

    def dense_macs(self, h_in: int, w_in: int) -> int:
        """MACs of the dense conv this layer replaces, for one H_in x W_in image."""
        return dense_conv_macs(self.spec, h_in, w_in)

    def out_hw(self, h_in: int, w_in: int) -> tuple[int, int]:
        return conv_out_hw(self.spec, h_in, w_in)

    def shift_gate(self, delta: float) -> None:
        """Move this layer's gates toward 'off' by ``delta`` (no grad); no-op for gates without a
        threshold (``GateMethod.target_by_shift`` False)."""

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding)

    def _zero_bias(self, link: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A zero C_out bias that keeps ``link`` (and so the gate parameters) in the autograd graph."""
        return (link.reshape(()) * 0.0).to(dtype).expand(self.out_channels)

    def _record(self, **kwargs) -> None:
        self.record = GateRecord(spec=self.spec, gate=self.gate, **kwargs)

    def __getstate__(self):  # deepcopy / pickle: the record holds graph tensors, never copy it
        state = self.__dict__.copy()
        state["record"] = None
        return state

    def extra_repr(self) -> str:
        g, impl = self.gate, self.gate.impl
        parts = [super().extra_repr(), f"method={g.method}"]
        if impl.split:
            parts.append(f"G={g.groups}")
        if impl.channel_blocks:
            parts.append(f"S={g.channel_block}")
        if impl.spatial_blocks:
            parts.append(f"b={g.spatial_block}")
        if g.static_off:
            parts.append("static_off")
        return ", ".join(parts)


def gated_layers(model: nn.Module) -> list[tuple[str, GatedConv]]:
    """(module name, layer) of every gated conv in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GatedConv)]


def set_gating(model: nn.Module, enabled: bool) -> None:
    """Switch every gated conv of ``model`` between gated and all-on (dense warm-up)."""
    for _, layer in gated_layers(model):
        layer.gating = bool(enabled)


def collect_records(model: nn.Module) -> dict[str, GateRecord]:
    """Records of the last forward, by module name (layers that have not run yet are left out)."""
    return {name: layer.record for name, layer in gated_layers(model) if layer.record is not None}
