"""Write and read trace directories: ``TraceWriter``, ``load_trace`` (-> ``Trace`` of ``TraceLayer``),
and the manifest (``verify_manifest``, ``sha256``). Layout in ``docs/trace-format.md``::

    trace/
      trace.json        format_version, meta, layer table, per-layer statistics, mask index
      masks/L003.npz    bit-packed gate decisions (and optional input-activation masks)
      MANIFEST.json     size + sha256 of every other file; written last

Writing goes to a sibling temporary directory that is renamed into place by
``TraceWriter.close()``, so a reader never sees a half-written trace. Reading checks the
manifest (sizes and checksums) before anything else and validates every field; any problem
raises :class:`~hwsim.trace.errors.HwsimError` naming the file and the field, and nothing partial
is returned. numpy only.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import shutil
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.trace.checks import check_stats, check_stats_against_masks, expected_effective_macs, member_path
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_write_bytes, atomic_write_json
from hwsim.trace.layout import MANIFEST, MASK_DIR, TRACE_JSON
from hwsim.trace.masks import expand_gate_blocks, pack_bits, reduce_gate_masks, unpack_bits
from hwsim.trace.schema import LayerSpec, layer_from_json, validate_layer, validate_layer_table
from hwsim.trace.stats import LayerStats, compute_stats, stats_from_json

FORMAT_VERSION = 2         # 2: each mask file names its layer (``layer``); 1 is still read
READABLE_VERSIONS = (1, 2)
MASK_ARRAYS = ("gate_bits", "gate_grid", "act_bits", "act_shape", "layer")


def sha256(path: Path) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks), as MANIFEST.json records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
def _remove_dead_writers_dirs(path: Path) -> None:
    """Remove ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` siblings whose writer process is gone
    (a kill mid-write leaves them; a live writer's directory is left alone)."""
    if not path.parent.is_dir():
        return
    for kind in ("tmp", "old"):
        for stale in path.parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # that writer is alive
            except ProcessLookupError:
                shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                continue  # alive, owned by someone else


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
        _remove_dead_writers_dirs(self.path)
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
            arrays["gate_bits"] = pack_bits(blocks)
            arrays["gate_grid"] = np.asarray(blocks.shape, dtype=np.int64)
        am = None
        if act_masks is not None:
            am = np.asarray(act_masks)
            if am.dtype != bool or am.ndim != 4 or am.shape[1:] != tuple(spec.in_shape) or am.shape[0] < 1:
                raise HwsimError(self.source, f"{where}.act_masks",
                                 f"expected bool (n,{','.join(map(str, spec.in_shape))}), got {am.dtype} {am.shape}")
            arrays["act_bits"] = pack_bits(am)
            arrays["act_shape"] = np.asarray(am.shape, dtype=np.int64)
        if stats is None:
            stats = compute_stats(spec, full, am)
        elif stats.effective_macs is None:
            stats = replace(stats, effective_macs=expected_effective_macs(spec, stats.gate_density_mean))
        stats = stats_from_json(stats.to_json(), spec, self.source)
        check_stats(spec, stats, self.source)
        if gate_masks is not None:
            check_stats_against_masks(spec, stats, blocks, self.source)
        entry["stats"] = stats.to_json()
        if arrays:
            arrays["layer"] = np.array(spec.name)  # the file's identity: a swapped file is refused
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
                files[rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
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
    except IsADirectoryError:
        raise HwsimError(str(path), what, "is a directory, not a file") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit int
        msg = getattr(exc, "msg", None) or " ".join(str(exc).split()) or type(exc).__name__
        raise HwsimError(str(path), what, f"not valid JSON ({msg})") from None


def _check_version(value: Any, src: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in READABLE_VERSIONS:
        raise HwsimError(src, "format_version",
                         f"trace format {value!r}, this hwsim reads {' and '.join(map(str, READABLE_VERSIONS))}")
    return int(value)


def verify_manifest(root: Path) -> dict:
    """Check sizes and checksums of every file listed in MANIFEST.json."""
    manifest = _read_json(root / MANIFEST, "manifest")
    src = str(root / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise HwsimError(src, "files", "missing or not an object")
    _check_version(manifest.get("format_version"), src)
    if TRACE_JSON not in manifest["files"]:
        raise HwsimError(src, f"files.{TRACE_JSON}", "not listed")
    for rel, info in manifest["files"].items():
        path = member_path(root, rel, src, f"files.{rel}")
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
            raise HwsimError(src, f"files.{rel}", "needs integer bytes and string sha256")
        if not path.is_file():
            raise HwsimError(str(path), "file", "listed in MANIFEST.json but missing")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise HwsimError(str(path), "bytes", f"{size} bytes, {MANIFEST} says {info['bytes']} (truncated or altered)")
        if sha256(path) != info["sha256"]:
            raise HwsimError(str(path), "sha256", f"checksum differs from the one in {MANIFEST} (corrupted)")
    return manifest


def _npz_budget(spec: LayerSpec, info: dict, n_mask: int) -> int:
    """Most bytes a layer's mask file may unpack to: its bits plus headers (a zip bomb is refused)."""
    bits = math.prod(spec.gate_grid(n_mask)) if spec.gate is not None else 0
    act = info.get("act_shape")
    if isinstance(act, list) and all(isinstance(v, int) and v >= 0 for v in act):
        bits += math.prod(act)
    return bits // 8 + 64 * 1024


def _read_npz(path: Path, limit: int) -> dict[str, np.ndarray]:
    """The arrays of one mask file; any decoding failure (a bad zip, a zlib stream, a pickled or
    oversized member) is one HwsimError naming the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(member.file_size for member in archive.infolist())
        if size > limit:
            raise HwsimError(str(path), "npz", f"unpacks to {size} bytes, more than a layer of this shape needs")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except HwsimError:
        raise
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes: every decoder error means "unreadable"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HwsimError(str(path), "npz", f"unreadable ({type(exc).__name__}: {reason})") from None
    for key, value in arrays.items():
        if key not in MASK_ARRAYS or not isinstance(value, np.ndarray):
            raise HwsimError(str(path), key, f"not an array of a mask file (those are {', '.join(MASK_ARRAYS)})")
    return arrays


def _load_masks(root: Path, entry: dict, spec: LayerSpec, listed: dict, n_mask: int, version: int) -> tuple:
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
    path = member_path(root, rel, src, f"{where}.file")
    if rel not in listed:
        raise HwsimError(src, f"{where}.file", f"{rel!r} is not in MANIFEST.json")
    arrays = _read_npz(path, _npz_budget(spec, info, n_mask))
    if version >= 2:
        name = arrays.get("layer")
        if name is None or name.dtype.kind != "U" or name.shape != () or str(name) != spec.name:
            found = "no layer name" if name is None else f"layer {str(name)!r}"
            raise HwsimError(str(path), "layer", f"holds the masks of {found}, not of {spec.name!r} (files swapped?)")
    gate = act = None
    if "gate_bits" in arrays:
        if spec.gate is None:
            raise HwsimError(str(path), "gate_bits", f"layer {spec.name!r} has no gate but the file has gate masks")
        grid = _shape_of(arrays, "gate_grid", path)
        expected = spec.gate_grid(n_mask)
        if grid != expected or info.get("gate_grid") != list(expected):
            raise HwsimError(str(path), "gate_grid",
                             f"{grid} disagrees with layer {spec.name!r} shape/gate (expected {expected})")
        if arrays["gate_bits"].dtype != np.uint8 or arrays["gate_bits"].size != math.ceil(np.prod(grid) / 8):
            raise HwsimError(str(path), "gate_bits", f"{arrays['gate_bits'].size} bytes for grid {grid}")
        gate = unpack_bits(arrays["gate_bits"], grid)
    elif spec.gate is not None and n_mask > 0:
        raise HwsimError(str(path), "gate_bits", f"missing for gated layer {spec.name!r}")
    elif info.get("gate_grid") is not None:
        raise HwsimError(src, f"{where}.gate_grid", f"{info['gate_grid']!r}, but {rel} holds no gate masks")
    if "act_bits" in arrays:
        shape = _shape_of(arrays, "act_shape", path)
        if len(shape) != 4 or shape[0] < 1 or shape[1:] != tuple(spec.in_shape) or info.get("act_shape") != list(shape):
            raise HwsimError(str(path), "act_shape", f"{shape} disagrees with layer {spec.name!r} in_shape {spec.in_shape}")
        if arrays["act_bits"].dtype != np.uint8 or arrays["act_bits"].size != math.ceil(np.prod(shape) / 8):
            raise HwsimError(str(path), "act_bits", f"{arrays['act_bits'].size} bytes for shape {shape}")
        act = unpack_bits(arrays["act_bits"], shape)
    elif info.get("act_shape") is not None or "act_shape" in arrays:
        raise HwsimError(str(path), "act_bits", f"missing, but an act_shape is given for layer {spec.name!r}")
    return gate, act


def _shape_of(arrays: dict, key: str, path: Path) -> tuple[int, ...]:
    value = arrays.get(key, np.zeros(0, dtype=np.int64))
    if value.dtype.kind not in "iu" or value.ndim != 1:
        raise HwsimError(str(path), key, f"must be a 1-D integer array, got {value.dtype} of shape {value.shape}")
    return tuple(int(v) for v in value)


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
    version = _check_version(doc.get("format_version"), src)
    if version != manifest["format_version"]:
        raise HwsimError(src, "format_version", f"{version}, but MANIFEST.json says {manifest['format_version']}")
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
    trace = Trace(root, version, meta, n_mask)
    for entry, spec in zip(raw_layers, specs):
        gate, act = _load_masks(root, entry, spec, manifest["files"], n_mask, version)
        stats = stats_from_json(entry.get("stats"), spec, src)
        check_stats(spec, stats, src)
        if gate is not None:
            check_stats_against_masks(spec, stats, gate, src)
        trace.layers.append(TraceLayer(spec, stats, gate, act))
    return trace
