"""The layer table of a trace: ``GateGrid`` (a gated conv's decision grid), ``LayerSpec`` (one row),
their construction (``make_layer``) and validation, from Python objects or ``trace.json``.

numpy only. Every problem raises :class:`~hwsim.trace.errors.HwsimError` naming the source
(file or API argument) and the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import numpy as np

from hwsim.trace.errors import HwsimError

OPS = ("conv", "linear")


# --------------------------------------------------------------------------------------------
def int_tuple(value: Any, n: int, src: str, fld: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n if n != 3 else None
    if value is None or not isinstance(value, (list, tuple)) or len(value) != n:
        raise HwsimError(src, fld, f"expected a list of {n} integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise HwsimError(src, fld, f"expected integers, got {value!r}")
        if int(v) < minimum:
            raise HwsimError(src, fld, f"values must be >= {minimum}, got {list(value)!r}")
        out.append(int(v))
    return tuple(out)


def positive_int(value: Any, src: str, fld: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise HwsimError(src, fld, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GateGrid:
    """Gate configuration of a gated conv (docs/algorithm.md, the gated convolution).

    ``G``: the base part is ``base_channels`` (default ``C_in // G``) of the input channels,
    always computed; ``S``: output channels per saliency block (one decision per S consecutive
    output channels); ``b``: spatial block edge (b x b output pixels share a decision).
    """

    G: int
    S: int
    b: int = 1
    base_channels: int | None = None

    def resolved(self, c_in: int) -> "GateGrid":
        base = self.base_channels if self.base_channels is not None else c_in // self.G
        return replace(self, base_channels=int(base))

    def to_json(self) -> dict:
        return {"G": self.G, "S": self.S, "b": self.b, "base_channels": self.base_channels}


@dataclass(frozen=True)
class LayerSpec:
    """One row of the layer table. Shapes are (C, H, W) per image, without the batch axis.

    ``padding`` is symmetric zero padding per side; ``inputs`` names the layers whose output
    tensor this layer reads (empty: the network input), giving the layer graph.
    """

    name: str
    op: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    gate: GateGrid | None = None
    inputs: tuple[str, ...] = ()

    @property
    def dense_macs(self) -> int:
        c_in, _, _ = self.in_shape
        c_out, h_out, w_out = self.out_shape
        return h_out * w_out * c_out * self.kernel[0] * self.kernel[1] * (c_in // self.groups)

    def base_macs(self) -> int:
        """MACs of the always-computed base part (all of them for an ungated layer)."""
        if self.gate is None:
            return self.dense_macs
        c_out, h_out, w_out = self.out_shape
        return h_out * w_out * c_out * self.kernel[0] * self.kernel[1] * self.gate.base_channels

    def cond_macs_per_output(self) -> int:
        """MACs of the conditional part per output element (0 for an ungated layer)."""
        if self.gate is None:
            return 0
        return self.kernel[0] * self.kernel[1] * (self.in_shape[0] - self.gate.base_channels)

    def gate_grid(self, n_images: int) -> tuple[int, int, int, int]:
        """Shape of the stored decision grid (n, ceil(C_out/S), ceil(H/b), ceil(W/b))."""
        assert self.gate is not None
        c, h, w = self.out_shape
        g = self.gate
        return (n_images, math.ceil(c / g.S), math.ceil(h / g.b), math.ceil(w / g.b))

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "groups": self.groups,
            "gate": None if self.gate is None else self.gate.to_json(),
            "inputs": list(self.inputs),
            "dense_macs": self.dense_macs,
        }


def make_layer(
    name: str,
    op: str,
    in_shape: Sequence[int],
    out_channels: int,
    kernel: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    gate: GateGrid | None = None,
    inputs: Iterable[str] = (),
    source: str = "make_layer",
) -> LayerSpec:
    """Build and validate a LayerSpec, computing the output shape (PyTorch floor convention)."""
    pair = lambda v: (v, v) if isinstance(v, (int, np.integer)) else tuple(v)  # noqa: E731
    in_shape = int_tuple(list(in_shape), 3, source, "in_shape", 1)
    k, s, p = pair(kernel), pair(stride), pair(padding)
    if op == "linear":
        k, s, p = (1, 1), (1, 1), (0, 0)
    _, h, w = in_shape
    for ax, size in ((0, h), (1, w)):
        if len(k) != 2 or len(s) != 2 or len(p) != 2:
            raise HwsimError(source, "kernel/stride/padding", "expected one or two integers each")
        if size + 2 * p[ax] < k[ax]:
            raise HwsimError(source, "kernel", f"kernel {k} larger than padded input {in_shape}")
    h_out = (h + 2 * p[0] - k[0]) // s[0] + 1
    w_out = (w + 2 * p[1] - k[1]) // s[1] + 1
    spec = LayerSpec(
        name=name, op=op, in_shape=in_shape, out_shape=(int(out_channels), h_out, w_out),
        kernel=tuple(k), stride=tuple(s), padding=tuple(p), groups=groups,
        gate=None if gate is None else gate.resolved(in_shape[0]), inputs=tuple(inputs),
    )
    return validate_layer(spec, source)


def _seq(value: Any) -> Any:
    """A shape given as a tuple or array, as a list; anything else as it is, for int_tuple to refuse."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else value


def validate_layer(spec: LayerSpec, source: str) -> LayerSpec:
    """Check every field of a LayerSpec; return it with ints normalised. Raises HwsimError."""
    where = f"layer {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name:
        raise HwsimError(source, "layers[].name", "must be a non-empty string")
    if spec.op not in OPS:
        raise HwsimError(source, f"{where}.op", f"must be one of {OPS}, got {spec.op!r}")
    in_shape = int_tuple(_seq(spec.in_shape), 3, source, f"{where}.in_shape", 1)
    out_shape = int_tuple(_seq(spec.out_shape), 3, source, f"{where}.out_shape", 1)
    kernel = int_tuple(_seq(spec.kernel), 2, source, f"{where}.kernel", 1)
    stride = int_tuple(_seq(spec.stride), 2, source, f"{where}.stride", 1)
    padding = int_tuple(_seq(spec.padding), 2, source, f"{where}.padding", 0)
    groups = positive_int(spec.groups, source, f"{where}.groups")
    c_in, h, w = in_shape
    c_out, h_out, w_out = out_shape
    if c_in % groups or c_out % groups:
        raise HwsimError(source, f"{where}.groups", f"{groups} does not divide C_in={c_in} and C_out={c_out}")
    if spec.op == "linear" and (kernel != (1, 1) or h_out != 1 or w_out != 1 or h != 1 or w != 1):
        raise HwsimError(source, f"{where}.in_shape", "a linear layer has in/out shapes (C,1,1) and kernel 1")
    exp_h = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    exp_w = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    if h + 2 * padding[0] < kernel[0] or w + 2 * padding[1] < kernel[1]:
        raise HwsimError(source, f"{where}.kernel", f"kernel {kernel} larger than padded input")
    if (h_out, w_out) != (exp_h, exp_w):
        raise HwsimError(source, f"{where}.out_shape",
                         f"H,W {h_out}x{w_out} disagree with input/kernel/stride/padding ({exp_h}x{exp_w})")
    gate = spec.gate
    if gate is not None:
        if isinstance(gate, dict):
            gate = GateGrid(**{k: gate.get(k) for k in ("G", "S", "b", "base_channels") if k in gate})
        g = positive_int(gate.G, source, f"{where}.gate.G")
        s_blk = positive_int(gate.S, source, f"{where}.gate.S")
        b_blk = positive_int(gate.b, source, f"{where}.gate.b")
        base = gate.base_channels if gate.base_channels is not None else c_in // g
        # 0 = no base path: the gate decides whether an output is computed at all (FBS, DGNet).
        base = positive_int(base, source, f"{where}.gate.base_channels", 0)
        if s_blk > c_out:
            raise HwsimError(source, f"{where}.gate.S", f"{s_blk} exceeds C_out={c_out}")
        if base >= c_in:
            raise HwsimError(source, f"{where}.gate.base_channels", f"{base} leaves no conditional channels (C_in={c_in})")
        if groups != 1:
            raise HwsimError(source, f"{where}.gate", "gated layers must have groups=1")
        gate = GateGrid(G=g, S=s_blk, b=b_blk, base_channels=base)
    inputs = spec.inputs
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(x, str) for x in inputs):
        raise HwsimError(source, f"{where}.inputs", "must be a list of layer names")
    return LayerSpec(spec.name, spec.op, in_shape, out_shape, kernel, stride, padding, groups, gate, tuple(inputs))


def layer_from_json(obj: Any, source: str, index: int) -> LayerSpec:
    if not isinstance(obj, dict):
        raise HwsimError(source, f"layers[{index}]", "must be an object")
    for key in ("name", "op", "in_shape", "out_shape"):
        if key not in obj:
            raise HwsimError(source, f"layers[{index}].{key}", "missing")
    gate = obj.get("gate")
    if gate is not None:
        if not isinstance(gate, dict) or "G" not in gate or "S" not in gate:
            raise HwsimError(source, f"layers[{index}].gate", "must be null or an object with G, S, b")
        gate = GateGrid(G=gate["G"], S=gate["S"], b=gate.get("b", 1), base_channels=gate.get("base_channels"))
    spec = LayerSpec(
        name=obj["name"], op=obj["op"], in_shape=obj["in_shape"], out_shape=obj["out_shape"],
        kernel=obj.get("kernel", [1, 1]), stride=obj.get("stride", [1, 1]),
        padding=obj.get("padding", [0, 0]), groups=obj.get("groups", 1), gate=gate,
        inputs=tuple(obj.get("inputs", [])) if isinstance(obj.get("inputs", []), list) else obj.get("inputs"),
    )
    spec = validate_layer(spec, source)
    if "dense_macs" in obj and obj["dense_macs"] != spec.dense_macs:
        raise HwsimError(source, f"layer {spec.name!r}.dense_macs",
                         f"{obj['dense_macs']} disagrees with the shapes ({spec.dense_macs})")
    return spec


def validate_layer_table(layers: Sequence[LayerSpec], source: str) -> None:
    """Unique names; every ``inputs`` entry names an earlier layer."""
    seen: set[str] = set()
    for spec in layers:
        if spec.name in seen:
            raise HwsimError(source, f"layer {spec.name!r}.name", "duplicate layer name")
        for producer in spec.inputs:
            if producer not in seen:
                raise HwsimError(source, f"layer {spec.name!r}.inputs", f"{producer!r} is not an earlier layer")
        seen.add(spec.name)
