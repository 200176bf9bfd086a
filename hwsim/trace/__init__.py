"""Read, write and validate trace directories: the contract between cdg (training) and hwsim.

numpy only (plus hwsim.trace.fileio / hwsim.trace.errors, both torch-free), so a training script and
the simulator share exactly one implementation. The format is specified in
``docs/trace-format.md``; in short::

    trace/
      trace.json        format_version, meta, layer table, per-layer statistics, mask index
      masks/L003.npz    bit-packed gate decisions (and optional input-activation masks)
      MANIFEST.json     size + sha256 of every other file; written last

Writing goes to a sibling temporary directory that is renamed into place by
``TraceWriter.close()``, so a reader never sees a half-written trace. Reading checks the
manifest (sizes and checksums) before anything else and validates every field; any problem
raises :class:`~hwsim.trace.errors.HwsimError` naming the file and the field, and nothing partial
is returned.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hwsim.trace.layout import MANIFEST, MASK_DIR, TRACE_JSON
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_write_bytes, atomic_write_json

FORMAT_VERSION = 1
HIST_BINS = 10
OPS = ("conv", "linear")


# --------------------------------------------------------------------------------------------
# Layer table
# --------------------------------------------------------------------------------------------
def _int_tuple(value: Any, n: int, src: str, fld: str, minimum: int) -> tuple[int, ...]:
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


def _pos_int(value: Any, src: str, fld: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise HwsimError(src, fld, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GateGrid:
    """Gate configuration of a gated conv (DESIGN.md section 1).

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
    in_shape = _int_tuple(list(in_shape), 3, source, "in_shape", 1)
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


def validate_layer(spec: LayerSpec, source: str) -> LayerSpec:
    """Check every field of a LayerSpec; return it with ints normalised. Raises HwsimError."""
    where = f"layer {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name:
        raise HwsimError(source, "layers[].name", "must be a non-empty string")
    if spec.op not in OPS:
        raise HwsimError(source, f"{where}.op", f"must be one of {OPS}, got {spec.op!r}")
    in_shape = _int_tuple(list(spec.in_shape), 3, source, f"{where}.in_shape", 1)
    out_shape = _int_tuple(list(spec.out_shape), 3, source, f"{where}.out_shape", 1)
    kernel = _int_tuple(list(spec.kernel), 2, source, f"{where}.kernel", 1)
    stride = _int_tuple(list(spec.stride), 2, source, f"{where}.stride", 1)
    padding = _int_tuple(list(spec.padding), 2, source, f"{where}.padding", 0)
    groups = _pos_int(spec.groups, source, f"{where}.groups")
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
        g = _pos_int(gate.G, source, f"{where}.gate.G")
        s_blk = _pos_int(gate.S, source, f"{where}.gate.S")
        b_blk = _pos_int(gate.b, source, f"{where}.gate.b")
        base = gate.base_channels if gate.base_channels is not None else c_in // g
        # 0 = no base path: the gate decides whether an output is computed at all (FBS, DGNet).
        base = _pos_int(base, source, f"{where}.gate.base_channels", 0)
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


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerStats:
    """Per-layer statistics over the evaluation set (``n_images`` images)."""

    n_images: int
    gate_density_mean: float = 1.0
    gate_density_std: float = 0.0
    gate_density_hist: tuple[int, ...] = ()
    input_act_density: float | None = None
    effective_macs: float = 0.0

    def to_json(self) -> dict:
        return {
            "n_images": self.n_images,
            "gate_density_mean": self.gate_density_mean,
            "gate_density_std": self.gate_density_std,
            "gate_density_hist": list(self.gate_density_hist),
            "hist_edges": np.linspace(0.0, 1.0, HIST_BINS + 1).round(6).tolist(),
            "input_act_density": self.input_act_density,
            "effective_macs": self.effective_macs,
        }


def _frac(value: Any, src: str, fld: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise HwsimError(src, fld, f"expected a number in [0, 1], got {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise HwsimError(src, fld, f"expected a number in [0, 1], got {value!r}")
    return value


def stats_from_json(obj: Any, spec: LayerSpec, source: str) -> LayerStats:
    where = f"layer {spec.name!r}.stats"
    if not isinstance(obj, dict):
        raise HwsimError(source, where, "must be an object")
    n = _pos_int(obj.get("n_images"), source, f"{where}.n_images")
    mean = _frac(obj.get("gate_density_mean"), source, f"{where}.gate_density_mean")
    std = _frac(obj.get("gate_density_std"), source, f"{where}.gate_density_std")
    hist = obj.get("gate_density_hist", [])
    if not isinstance(hist, list) or (hist and (len(hist) != HIST_BINS or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in hist))):
        raise HwsimError(source, f"{where}.gate_density_hist", f"expected {HIST_BINS} non-negative counts")
    if hist and sum(hist) != n:
        raise HwsimError(source, f"{where}.gate_density_hist", f"counts sum to {sum(hist)}, not n_images={n}")
    act = _frac(obj.get("input_act_density"), source, f"{where}.input_act_density", allow_none=True)
    eff = obj.get("effective_macs")
    if isinstance(eff, bool) or not isinstance(eff, (int, float)) or not (0 <= eff <= spec.dense_macs * (1 + 1e-9)):
        raise HwsimError(source, f"{where}.effective_macs", f"expected a number in [0, dense_macs={spec.dense_macs}], got {eff!r}")
    if spec.gate is None and mean != 1.0:
        raise HwsimError(source, f"{where}.gate_density_mean", "an ungated layer has density 1")
    return LayerStats(n, mean, std, tuple(hist), act, float(eff))


def density_histogram(per_image: np.ndarray) -> tuple[int, ...]:
    counts, _ = np.histogram(np.clip(per_image, 0.0, 1.0), bins=HIST_BINS, range=(0.0, 1.0))
    return tuple(int(c) for c in counts)


def compute_stats(spec: LayerSpec, gate_masks: np.ndarray | None, act_masks: np.ndarray | None) -> LayerStats:
    """Statistics of one layer computed exactly from full-resolution masks."""
    if gate_masks is None:
        n = 1 if act_masks is None else int(act_masks.shape[0])
        act = None if act_masks is None else float(act_masks.mean())
        return LayerStats(n, 1.0, 0.0, density_histogram(np.ones(n)), act, float(spec.dense_macs))
    n = int(gate_masks.shape[0])
    per_image = gate_masks.reshape(n, -1).mean(axis=1)
    active = gate_masks.reshape(n, -1).sum(axis=1)
    eff = spec.base_macs() + active.astype(np.float64) * spec.cond_macs_per_output()
    act = None if act_masks is None else float(act_masks.mean())
    return LayerStats(n, float(per_image.mean()), float(per_image.std()), density_histogram(per_image),
                      act, float(eff.mean()))


# --------------------------------------------------------------------------------------------
# Mask packing
# --------------------------------------------------------------------------------------------
def expand_gate_blocks(blocks: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """Decision grid (n, ceil(C/S), ceil(H/b), ceil(W/b)) -> full-resolution (n, C, H, W) bool."""
    assert spec.gate is not None
    c, h, w = spec.out_shape
    s_blk, b_blk = spec.gate.S, spec.gate.b
    full = blocks.repeat(s_blk, axis=1).repeat(b_blk, axis=2).repeat(b_blk, axis=3)
    return np.ascontiguousarray(full[:, :c, :h, :w])


def reduce_gate_masks(masks: np.ndarray, spec: LayerSpec, source: str) -> np.ndarray:
    """Full-resolution masks -> decision grid; fails if masks are not constant per block."""
    assert spec.gate is not None
    s_blk, b_blk = spec.gate.S, spec.gate.b
    blocks = np.ascontiguousarray(masks[:, ::s_blk, ::b_blk, ::b_blk])
    if not np.array_equal(expand_gate_blocks(blocks, spec), masks):
        raise HwsimError(source, f"layer {spec.name!r}.gate_masks",
                         f"masks are not constant over gate blocks (S={s_blk}, b={b_blk})")
    return blocks


def _pack(arr: np.ndarray) -> np.ndarray:
    return np.packbits(arr.astype(bool, copy=False).reshape(-1))


def _unpack(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.unpackbits(bits, count=count).astype(bool).reshape(tuple(int(s) for s in shape))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------
class TraceWriter:
    """Write a trace directory; nothing appears at ``path`` until :meth:`close`.

    Typical use from a training script::

        with TraceWriter("runs/r1/trace", meta={"model": "resnet18_cifar"}) as tw:
            for spec, gates, acts in layers:
                tw.add_layer(spec, gate_masks=gates, act_masks=acts)

    ``gate_masks``: bool array (n_images, C_out, H_out, W_out), 1 = conditional part computed,
    or already at decision granularity (n_images, ceil(C_out/S), ceil(H/b), ceil(W/b)).
    ``act_masks``: optional bool array (n_sample, C_in, H_in, W_in), 1 = input activation != 0.
    ``stats``: optional LayerStats over a larger evaluation set; computed from the masks if omitted.
    """

    def __init__(self, path: str | os.PathLike, meta: dict | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.source = str(self.path)
        if self.path.exists() and not overwrite:
            raise HwsimError(self.source, "path", "already exists (pass overwrite=True to replace it)")
        try:
            json.dumps(meta or {})
        except (TypeError, ValueError) as exc:
            raise HwsimError(self.source, "meta", f"not JSON-serialisable: {exc}") from None
        self.meta = dict(meta or {})
        self.overwrite = overwrite
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / MASK_DIR).mkdir(parents=True)
        self.layers: list[dict] = []
        self.specs: list[LayerSpec] = []
        self.n_mask_images: int | None = None
        self.closed = False

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_layer(self, spec: LayerSpec, gate_masks: np.ndarray | None = None,
                  act_masks: np.ndarray | None = None, stats: LayerStats | None = None) -> None:
        if self.closed:
            raise HwsimError(self.source, "add_layer", "writer already closed")
        spec = validate_layer(spec, self.source)
        validate_layer_table(self.specs + [spec], self.source)
        where = f"layer {spec.name!r}"
        entry: dict[str, Any] = spec.to_json()
        arrays: dict[str, np.ndarray] = {}
        full = None
        if spec.gate is None and gate_masks is not None:
            raise HwsimError(self.source, f"{where}.gate_masks", "an ungated layer has no gate masks")
        if gate_masks is not None:
            gm = np.asarray(gate_masks)
            if gm.dtype != bool:
                raise HwsimError(self.source, f"{where}.gate_masks", f"dtype must be bool, got {gm.dtype}")
            n = gm.shape[0] if gm.ndim == 4 else -1
            grid = spec.gate_grid(max(n, 0))
            if gm.ndim == 4 and gm.shape[1:] == tuple(spec.out_shape):
                full = gm
                blocks = reduce_gate_masks(gm, spec, self.source)
            elif gm.ndim == 4 and gm.shape == grid:
                blocks = gm
                full = expand_gate_blocks(gm, spec)
            else:
                raise HwsimError(self.source, f"{where}.gate_masks",
                                 f"shape {gm.shape} is neither (n,{','.join(map(str, spec.out_shape))}) nor the grid {grid}")
            if n < 1:
                raise HwsimError(self.source, f"{where}.gate_masks", "needs at least one image")
            if self.n_mask_images is None:
                self.n_mask_images = n
            elif n != self.n_mask_images:
                raise HwsimError(self.source, f"{where}.gate_masks",
                                 f"{n} images, but earlier layers have {self.n_mask_images}")
            arrays["gate_bits"] = _pack(blocks)
            arrays["gate_grid"] = np.asarray(blocks.shape, dtype=np.int64)
        am = None
        if act_masks is not None:
            am = np.asarray(act_masks)
            if am.dtype != bool or am.ndim != 4 or am.shape[1:] != tuple(spec.in_shape) or am.shape[0] < 1:
                raise HwsimError(self.source, f"{where}.act_masks",
                                 f"expected bool (n,{','.join(map(str, spec.in_shape))}), got {am.dtype} {am.shape}")
            arrays["act_bits"] = _pack(am)
            arrays["act_shape"] = np.asarray(am.shape, dtype=np.int64)
        if stats is None:
            stats = compute_stats(spec, full, am)
        stats = stats_from_json(stats.to_json(), spec, self.source)
        entry["stats"] = stats.to_json()
        if arrays:
            rel = f"{MASK_DIR}/L{len(self.layers):03d}.npz"
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write_bytes(self.tmp / rel, buf.getvalue())
            entry["masks"] = {
                "file": rel,
                "gate_grid": arrays["gate_grid"].tolist() if "gate_grid" in arrays else None,
                "act_shape": arrays["act_shape"].tolist() if "act_shape" in arrays else None,
            }
        else:
            entry["masks"] = None
        self.layers.append(entry)
        self.specs.append(spec)

    def close(self) -> Path:
        if self.closed:
            return self.path
        if not self.layers:
            self.abort()
            raise HwsimError(self.source, "layers", "a trace needs at least one layer")
        doc = {"format_version": FORMAT_VERSION, "meta": self.meta,
               "n_mask_images": self.n_mask_images or 0, "layers": self.layers}
        atomic_write_json(self.tmp / TRACE_JSON, doc)
        files = {}
        for p in sorted(self.tmp.rglob("*")):
            if p.is_file():
                rel = p.relative_to(self.tmp).as_posix()
                files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        atomic_write_json(self.tmp / MANIFEST, {"format_version": FORMAT_VERSION, "files": files})
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.closed = True
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.closed = True


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
@dataclass
class TraceLayer:
    spec: LayerSpec
    stats: LayerStats
    gate_blocks: np.ndarray | None = None   # decision grid, bool
    act_masks: np.ndarray | None = None     # (n_sample, C_in, H_in, W_in) bool

    def gate_masks(self) -> np.ndarray | None:
        """Full-resolution gate masks (n, C_out, H_out, W_out), 1 = conditional part computed."""
        if self.gate_blocks is None:
            return None
        return expand_gate_blocks(self.gate_blocks, self.spec)


@dataclass
class Trace:
    path: Path
    format_version: int
    meta: dict
    n_mask_images: int
    layers: list[TraceLayer] = field(default_factory=list)

    @property
    def specs(self) -> list[LayerSpec]:
        return [layer.spec for layer in self.layers]

    def layer(self, name: str) -> TraceLayer:
        for layer in self.layers:
            if layer.spec.name == name:
                return layer
        raise KeyError(name)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwsimError(str(path), what, "file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HwsimError(str(path), what, f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None


def verify_manifest(root: Path) -> dict:
    """Check sizes and checksums of every file listed in MANIFEST.json."""
    manifest = _read_json(root / MANIFEST, "manifest")
    src = str(root / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise HwsimError(src, "files", "missing or not an object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise HwsimError(src, "format_version",
                         f"trace format {manifest.get('format_version')!r}, this hwsim reads {FORMAT_VERSION}")
    if TRACE_JSON not in manifest["files"]:
        raise HwsimError(src, f"files.{TRACE_JSON}", "not listed")
    for rel, info in manifest["files"].items():
        path = root / rel
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
            raise HwsimError(src, f"files.{rel}", "needs integer bytes and string sha256")
        if not path.is_file():
            raise HwsimError(str(path), "file", "listed in MANIFEST.json but missing")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise HwsimError(str(path), "bytes", f"{size} bytes, manifest says {info['bytes']} (truncated or altered)")
        if _sha256(path) != info["sha256"]:
            raise HwsimError(str(path), "sha256", "checksum mismatch (corrupted)")
    return manifest


def _load_masks(root: Path, entry: dict, spec: LayerSpec, listed: dict, n_mask: int) -> tuple:
    where = f"layer {spec.name!r}.masks"
    src = str(root / TRACE_JSON)
    info = entry.get("masks")
    if info is None:
        if spec.gate is not None and n_mask > 0:
            raise HwsimError(src, where, "gated layer without gate masks")
        return None, None
    if not isinstance(info, dict) or not isinstance(info.get("file"), str):
        raise HwsimError(src, where, "must be null or an object with 'file'")
    rel = info["file"]
    if rel not in listed:
        raise HwsimError(src, f"{where}.file", f"{rel!r} is not in MANIFEST.json")
    path = root / rel
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise HwsimError(str(path), "npz", f"unreadable ({exc})") from None
    gate = act = None
    if "gate_bits" in arrays:
        if spec.gate is None:
            raise HwsimError(str(path), "gate_bits", f"layer {spec.name!r} has no gate but the file has gate masks")
        grid = tuple(int(v) for v in arrays.get("gate_grid", np.zeros(0)))
        expected = spec.gate_grid(n_mask)
        if grid != expected or info.get("gate_grid") != list(expected):
            raise HwsimError(str(path), "gate_grid",
                             f"{grid} disagrees with layer {spec.name!r} shape/gate (expected {expected})")
        if arrays["gate_bits"].dtype != np.uint8 or arrays["gate_bits"].size != math.ceil(np.prod(grid) / 8):
            raise HwsimError(str(path), "gate_bits", f"{arrays['gate_bits'].size} bytes for grid {grid}")
        gate = _unpack(arrays["gate_bits"], grid)
    elif spec.gate is not None and n_mask > 0:
        raise HwsimError(str(path), "gate_bits", f"missing for gated layer {spec.name!r}")
    if "act_bits" in arrays:
        shape = tuple(int(v) for v in arrays.get("act_shape", np.zeros(0)))
        if len(shape) != 4 or shape[1:] != tuple(spec.in_shape) or info.get("act_shape") != list(shape):
            raise HwsimError(str(path), "act_shape", f"{shape} disagrees with layer {spec.name!r} in_shape {spec.in_shape}")
        if arrays["act_bits"].dtype != np.uint8 or arrays["act_bits"].size != math.ceil(np.prod(shape) / 8):
            raise HwsimError(str(path), "act_bits", f"{arrays['act_bits'].size} bytes for shape {shape}")
        act = _unpack(arrays["act_bits"], shape)
    return gate, act


def load_trace(path: str | os.PathLike) -> Trace:
    """Validate and load a whole trace directory. Raises HwsimError; never returns partial data."""
    root = Path(path)
    if not root.is_dir():
        raise HwsimError(str(root), "trace", "not a directory")
    manifest = verify_manifest(root)
    src = str(root / TRACE_JSON)
    doc = _read_json(root / TRACE_JSON, "trace")
    if not isinstance(doc, dict):
        raise HwsimError(src, "trace", "must be a JSON object")
    if doc.get("format_version") != FORMAT_VERSION:
        raise HwsimError(src, "format_version", f"trace format {doc.get('format_version')!r}, this hwsim reads {FORMAT_VERSION}")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise HwsimError(src, "meta", "must be an object")
    n_mask = doc.get("n_mask_images", 0)
    if isinstance(n_mask, bool) or not isinstance(n_mask, int) or n_mask < 0:
        raise HwsimError(src, "n_mask_images", f"expected a non-negative integer, got {n_mask!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise HwsimError(src, "layers", "must be a non-empty list")
    specs = [layer_from_json(obj, src, i) for i, obj in enumerate(raw_layers)]
    validate_layer_table(specs, src)
    trace = Trace(root, FORMAT_VERSION, meta, n_mask)
    for entry, spec in zip(raw_layers, specs):
        stats = stats_from_json(entry.get("stats"), spec, src)
        gate, act = _load_masks(root, entry, spec, manifest["files"], n_mask)
        trace.layers.append(TraceLayer(spec, stats, gate, act))
    return trace
