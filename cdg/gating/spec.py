"""What a gated convolution is: the ``GateSpec`` and its validation against a ``ConvSpec``.

A ``GateSpec`` is plain data (frozen, hashable) so configs, traces and factories can carry it
around. It holds what every method shares, the gate structure the trace records as its gate
grid (G, S, b), and the method's own ``settings`` (a frozen dataclass the method declares:
``GateMethod.Settings``). ``make_gate`` builds one from flat keyword values, handing each
method the values it declares and ignoring the others. ``validate_gate`` checks it against the
shape of one convolution and raises a one-line ``UserError`` that names the offending field and
the layer.

Structure fields a method has no use for must stay at 1 (``channel_block``, ``spatial_block``),
so a trace never claims a structure the layer does not have; ``groups`` is read only by methods
with a base path (``GateMethod.split``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hwsim.trace.errors import UserError
from cdg.gating import registry
from cdg.models.resnet import ConvSpec


@dataclass(frozen=True)
class GateSpec:
    """The gate of one convolution: method, decision structure and the method's own settings."""

    method: str
    """A name in ``cdg.gating.registry`` ("cdg" | "cgnet" | "fbs" | "dgnet")."""
    groups: int = 4
    """G: the base path uses the first ceil(C_in / G) input channels (methods with a base path).
    G = 1: base = all input channels, the conditional path is empty and nothing is gated."""
    channel_block: int = 1
    """S: S consecutive output channels share one decision; must divide C_out (methods with
    channel blocks). S = 1 unstructured, 1 < S < C_out channel-slice x pixel blocks, S = C_out
    one decision per pixel."""
    spatial_block: int = 1
    """b: b x b output pixels share one decision (methods with spatial blocks); ragged edge blocks
    are allowed."""
    settings: object = None
    """The method's own settings (an instance of its ``GateMethod.Settings``)."""
    static_off: bool = False
    """The conditional path is statically removed (``gate.static_off``): the gate is always off, the
    layer computes its base path only and runs no gate (methods with ``GateMethod.static_removal``)."""

    @property
    def impl(self):
        """The ``GateMethod`` class of ``method``."""
        return registry.method(self.method)

    @property
    def has_thresholds(self) -> bool:
        """Whether the method splits base/conditional paths with learnable thresholds Δ."""
        return self.impl.split

    def base_channels(self, conv: ConvSpec) -> int:
        """C_b: input channels of the always-computed base path (0 without one)."""
        return self.impl.base_channels(conv, self)

    def overhead_macs(self, conv: ConvSpec, in_hw: tuple[int, int]) -> int:
        """Per-image MACs of the gate and predictor that do not depend on the mask."""
        return self.impl.fixed_gate_macs(conv, self, in_hw) + self.impl.predictor_macs(conv, self, in_hw)


def make_gate(method: str, groups: int = 4, channel_block: int = 1, spatial_block: int = 1,
              static_off: bool = False, **values) -> GateSpec:
    """A ``GateSpec`` whose settings take from ``values`` the fields its method declares (the
    others are ignored, so one set of config values serves every method). An unknown method
    gives a spec that ``validate_gate`` rejects naming ``gate.method``."""
    if method not in registry.names():
        return GateSpec(method, groups, channel_block, spatial_block, static_off=static_off)
    settings_type = registry.method(method).Settings
    own = {f.name: values[f.name] for f in dataclasses.fields(settings_type) if f.name in values}
    return GateSpec(method, groups, channel_block, spatial_block, settings_type(**own), static_off)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(field: str, value) -> None:
    if not is_int(value) or value < 1:
        raise UserError(f"gate.{field}: must be an integer >= 1, got {value!r}")


def validate_gate(spec: ConvSpec, gate: GateSpec) -> None:
    """Raise ``UserError`` naming the field (``gate.<field>``) if ``gate`` cannot gate conv ``spec``."""
    method = registry.method(gate.method)  # UserError naming gate.method when unknown
    for field in ("groups", "channel_block", "spatial_block"):
        check_positive_int(field, getattr(gate, field))
    if not isinstance(gate.settings, method.Settings):
        raise TypeError(f"GateSpec of method {gate.method!r} needs {method.Settings.__name__} settings "
                        f"(build it with make_gate), got {gate.settings!r}")
    method.validate(spec, gate)
    if gate.static_off and not method.static_removal:
        having = " or ".join(repr(name) for name in registry.names() if registry.method(name).static_removal)
        raise UserError(f"gate.static_off: only method {having} can remove its conditional path statically "
                        f"(method {gate.method!r}, layer {spec.name})")
    if not method.channel_blocks and gate.channel_block != 1:
        having = " or ".join(repr(name) for name in registry.names() if registry.method(name).channel_blocks)
        raise UserError(
            f"gate.channel_block={gate.channel_block}: only method {having} has channel blocks "
            f"(method {gate.method!r}, layer {spec.name}); set it to 1"
        )
    if not method.spatial_blocks and gate.spatial_block != 1:
        raise UserError(
            f"gate.spatial_block={gate.spatial_block}: method {gate.method!r} has no spatial blocks "
            f"(layer {spec.name}); set it to 1"
        )
