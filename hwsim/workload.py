"""Workload view: a layer lowered to the GEMM a systolic array runs.

A convolution with C_in input channels, C_out filters, kernel kh x kw, stride (sh, sw),
padding p and ``groups`` becomes, per group and per image, the GEMM

    ofmap[E x M] = ifmap[E x K] @ filter[K x M]
    E = H_out * W_out   (output pixels)      M = C_out / groups   (filters)
    K = kh * kw * C_in / groups              (reduction = convolution window)

with the im2col operand ifmap[p, j] = x_padded[c(j), oy(p)*sh + r(j), ox(p)*sw + s(j)].
Window index ``j`` runs (r, s, c) with c fastest, as in SCALE-Sim. A linear layer is the
1 x 1 case with E = 1. A gated layer (docs/algorithm.md) splits K into the base part
K_b = kh*kw*base_channels, always computed, and the conditional rest K_c = K - K_b, computed
only for outputs whose gate is on; the array orders the reduction base-first.

The padded input is what the array reads: ``in_h_used = (H_out-1)*sh + kh`` rows of it (the
last padded rows a strided window never touches are not part of the workload). SCALE-Sim takes
exactly this padded, used size.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.trace.errors import HwsimError
from hwsim.trace import GateGrid, LayerSpec, make_layer


@dataclass(frozen=True)
class Gemm:
    """One group's GEMM for one image, with the conv geometry needed for addresses."""

    E: int
    M: int
    K: int
    K_base: int
    out_w: int
    kh: int
    kw: int
    c_group: int
    sh: int
    sw: int
    in_h_used: int
    in_w_used: int

    @property
    def K_cond(self) -> int:
        return self.K - self.K_base

    @property
    def macs(self) -> int:
        return self.E * self.M * self.K

    def ifmap_footprint(self) -> int:
        """Distinct ifmap elements (of the padded input) the GEMM reads."""
        rows = self.in_h_used if self.kh >= self.sh else (self.E // self.out_w) * self.kh
        cols = self.in_w_used if self.kw >= self.sw else self.out_w * self.kw
        return rows * cols * self.c_group

    def filter_footprint(self) -> int:
        return self.K * self.M


@dataclass(frozen=True)
class LayerWorkload:
    spec: LayerSpec
    gemm: Gemm
    groups: int

    @property
    def dense_macs(self) -> int:
        return self.spec.dense_macs

    @property
    def gated(self) -> bool:
        return self.spec.gate is not None


def lower(spec: LayerSpec) -> LayerWorkload:
    """Lower a validated LayerSpec to its per-group GEMM."""
    c_in, _, _ = spec.in_shape
    c_out, h_out, w_out = spec.out_shape
    kh, kw = spec.kernel
    sh, sw = spec.stride
    cg = c_in // spec.groups
    k = kh * kw * cg
    k_base = kh * kw * spec.gate.base_channels if spec.gate is not None else k
    gemm = Gemm(
        E=h_out * w_out, M=c_out // spec.groups, K=k, K_base=k_base, out_w=w_out, kh=kh, kw=kw,
        c_group=cg, sh=sh, sw=sw, in_h_used=(h_out - 1) * sh + kh, in_w_used=(w_out - 1) * sw + kw,
    )
    return LayerWorkload(spec, gemm, spec.groups)


def conv_layer(
    in_h: int,
    in_w: int,
    in_channels: int,
    out_channels: int,
    kernel: int | tuple[int, int] = 3,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
    gate: GateGrid | None = None,
    name: str = "layer",
) -> LayerSpec:
    """A conv layer from its shape. ``padding=0`` means ``in_h``/``in_w`` are already padded
    (SCALE-Sim's convention); otherwise give the unpadded size and the padding per side."""
    for fld, val in (("in_h", in_h), ("in_w", in_w), ("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise HwsimError("conv_layer", fld, f"expected a positive integer, got {val!r}")
    return make_layer(name, "conv", (in_channels, in_h, in_w), out_channels, kernel, stride, padding,
                      groups, gate, source="conv_layer")


def linear_layer(in_features: int, out_features: int, name: str = "fc", gate: GateGrid | None = None) -> LayerSpec:
    for fld, val in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise HwsimError("linear_layer", fld, f"expected a positive integer, got {val!r}")
    return make_layer(name, "linear", (in_features, 1, 1), out_features, gate=gate, source="linear_layer")
