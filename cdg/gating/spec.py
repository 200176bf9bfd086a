"""What a gated convolution is: the ``GateSpec`` and its validation against a ``ConvSpec``.

A ``GateSpec`` is plain data (frozen, hashable) so configs, traces and factories can
carry it around. ``validate_gate`` checks it against the shape of one convolution and
raises a one-line ``UserError`` that names the offending field and the layer.

Which fields each method reads (the others are ignored, except that ``channel_block``
and ``spatial_block`` must stay at 1 for methods that have no such structure, so a
trace never claims a structure the layer does not have):

=========  ======  =============  =============  =========  ==============  ==========  =========
method     groups  channel_block  spatial_block  sharpness  init_threshold  keep_ratio  reduction
=========  ======  =============  =============  =========  ==============  ==========  =========
cdg        yes     yes            yes            yes        yes (Δ)         -           -
cgnet      yes     must be 1      must be 1      yes        yes (Δ)         -           -
fbs        -       must be 1      must be 1      -          -               yes         -
dgnet      -       must be 1      yes            yes        yes (biases)    -           yes
=========  ======  =============  =============  =========  ==============  ==========  =========
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.trace.errors import UserError
from cdg.models.resnet import ConvSpec

METHODS = ("cdg", "cgnet", "fbs", "dgnet")
THRESHOLD_METHODS = ("cdg", "cgnet")  # methods with a base/conditional split and learnable thresholds Δ


@dataclass(frozen=True)
class GateSpec:
    """Configuration of the gate of one convolution (see the module docstring for who reads what)."""

    method: str
    """"cdg" | "cgnet" | "fbs" | "dgnet"."""
    groups: int = 4
    """G: the base path uses the first ceil(C_in / G) input channels (cdg, cgnet). G = 1: base = all
    input channels, the conditional path is empty and nothing is gated."""
    channel_block: int = 1
    """S (cdg): S consecutive output channels share one decision; must divide C_out.
    S = 1 unstructured, 1 < S < C_out channel-slice x pixel blocks, S = C_out one decision per pixel."""
    spatial_block: int = 1
    """b (cdg, dgnet): b x b output pixels share one decision; ragged edge blocks are allowed."""
    sharpness: float = 4.0
    """alpha of the straight-through surrogate sigmoid(alpha (s - Δ))."""
    init_threshold: float = -1.0
    """Initial Δ (cdg, cgnet). The saliency is standardised (zero mean, unit variance), so Δ = -1 keeps
    roughly 84% of the gates on at the start. DGNet initialises its predictor output biases to
    -init_threshold (= +1), so its gates also start mostly on."""
    keep_ratio: float = 0.5
    """FBS: fraction of output channels kept per sample (top-k, k = ceil(keep_ratio * C_out))."""
    reduction: int = 4
    """DGNet: hidden width of the channel predictor is max(1, C_out // reduction)."""
    bn_momentum: float = 0.1
    """CGNet: momentum of the running statistics of its non-affine BatchNorm on the base partial sum."""

    @property
    def has_thresholds(self) -> bool:
        return self.method in THRESHOLD_METHODS


def base_channels(spec: ConvSpec, gate: GateSpec) -> int:
    """C_b = ceil(C_in / G) for cdg and cgnet; 0 (no base path) for fbs and dgnet."""
    if gate.method in THRESHOLD_METHODS:
        return -(-spec.in_channels // gate.groups)
    return 0


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_gate(spec: ConvSpec, gate: GateSpec) -> None:
    """Raise ``UserError`` naming the field (``gate.<field>``) if ``gate`` cannot gate conv ``spec``."""
    where = f"of layer {spec.name}"
    if gate.method not in METHODS:
        raise UserError(f"gate.method: unknown method {gate.method!r} (valid: {', '.join(METHODS)})")
    for field in ("groups", "channel_block", "spatial_block", "reduction"):
        value = getattr(gate, field)
        if not _is_int(value) or value < 1:
            raise UserError(f"gate.{field}: must be an integer >= 1, got {value!r}")
    if not _is_real(gate.sharpness) or gate.sharpness <= 0:
        raise UserError(f"gate.sharpness: must be a finite number > 0, got {gate.sharpness!r}")
    if not _is_real(gate.init_threshold):
        raise UserError(f"gate.init_threshold: must be a finite number, got {gate.init_threshold!r}")
    if not _is_real(gate.bn_momentum) or not 0.0 < gate.bn_momentum <= 1.0:
        raise UserError(f"gate.bn_momentum: must be in (0, 1], got {gate.bn_momentum!r}")
    if gate.method in THRESHOLD_METHODS and gate.groups > spec.in_channels:
        raise UserError(
            f"gate.groups={gate.groups} exceeds C_in={spec.in_channels} {where} "
            "(the base path needs at least one input channel per group)"
        )
    if gate.method == "cdg":
        if spec.out_channels % gate.channel_block:
            raise UserError(
                f"gate.channel_block={gate.channel_block} does not divide C_out={spec.out_channels} {where}"
            )
    elif gate.channel_block != 1:
        raise UserError(
            f"gate.channel_block={gate.channel_block}: only method 'cdg' has channel blocks "
            f"(method {gate.method!r}, layer {spec.name}); set it to 1"
        )
    if gate.method in ("cgnet", "fbs") and gate.spatial_block != 1:
        raise UserError(
            f"gate.spatial_block={gate.spatial_block}: method {gate.method!r} has no spatial blocks "
            f"(layer {spec.name}); set it to 1"
        )
    if gate.method == "fbs" and (not _is_real(gate.keep_ratio) or not 0.0 < gate.keep_ratio <= 1.0):
        raise UserError(f"gate.keep_ratio: must be in (0, 1], got {gate.keep_ratio!r} ({where})")
