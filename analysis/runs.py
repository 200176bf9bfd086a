"""Find cdg run directories, read their metadata and check that their trace belongs to them.

A run directory (``cdg/rundir.py``) holds ``config.yaml``, ``summary.json`` and ``trace/``.
This module reads them with plain YAML/JSON (no torch import: sweep workers stay light) and
raises :class:`~hwsim.trace.errors.HwsimError` naming the file and the field on any problem.

The trace/run check compares what both sides record independently:

- ``trace.json`` ``meta`` (``ssl_method``, ``gate_method``, ``dataset``, ``image_size``,
  ``model`` and, where a producer records it, ``run`` / ``run_name`` / ``run_dir``) against
  the run's ``config.yaml``;
- the trace's layer table against ``summary.json``: the sum of the layers' dense MACs must equal
  ``summary.dense_macs``, and the sum of the layers' effective MACs plus the gate overheads in
  ``meta.overhead_macs_per_image`` must equal ``summary.effective_macs`` (relative 1e-4), so a
  trace copied from another run, or re-measured after the summary was written, is refused.
"""
from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from analysis.experiment import experiment_key, gate_recipe
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import load_yaml
from hwsim.trace import Trace, load_trace
from hwsim.trace.io import sha256
from hwsim.trace.layout import CONFIG_FILE, MANIFEST, SUMMARY_FILE, TRACE_DIR, TRACE_JSON

MACS_RTOL = 1e-4
GLOB_CHARS = set("*?[")


@dataclass
class RunInfo:
    """What a sweep needs to know about one run (one row prefix of ``points.csv``)."""

    run: str                     # run directory name
    run_group: str               # its parent directory name (e.g. digits_gating)
    run_path: str                # absolute, resolved path of the run directory
    trace_path: str
    trace_digest: str            # sha256 of trace/MANIFEST.json (covers every trace file)
    backbone: str | None = None
    width: float | None = None
    dataset: str | None = None
    ssl_method: str | None = None
    gate_method: str | None = None
    gate_S: Any = None
    gate_b: Any = None
    gate_G: Any = None
    gate_branches: str | None = None
    gate_align_weight: float | None = None
    target_reduction: float | None = None
    gate_recipe: str | None = None   # digest of the other gate settings (analysis.experiment)
    seed: int | None = None
    experiment: str | None = None    # what seeds of one experiment share (analysis.experiment)
    image_size: int | None = None
    epochs: int | None = None        # summary.json (else train.epochs): the budget trained
    steps: int | None = None
    batch_size: int | None = None
    linear_top1: float | None = None
    knn_top1: float | None = None
    trained_reduction: float | None = None
    dense_macs: float | None = None
    effective_macs: float | None = None
    n_trace_layers: int = 0
    n_mask_images: int = 0
    extra: dict = field(default_factory=dict)

    def columns(self) -> dict:
        out = asdict(self)
        out.pop("extra")
        out.pop("trace_digest")
        out.pop("dense_macs")         # equal to the trace's (checked); the simulated total is the column
        out["trained_effective_macs"] = out.pop("effective_macs")
        return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "missing (has the run finished?)") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        raise HwsimError(str(path), "json", f"not valid JSON ({getattr(exc, 'msg', None) or type(exc).__name__})") from None


def _section(doc: dict, key: str, src: str) -> dict:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise HwsimError(src, key, "must be a mapping")
    return value


def _num(value: Any, src: str, fld: str, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number in [low, high] (JSON's NaN and Infinity are refused), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        where = "" if (low, high) == (-math.inf, math.inf) else f" in [{low:g}, {high:g}]"
        raise HwsimError(src, fld, f"expected a finite number{where}, got {value!r}")
    return float(value)


def _int(value: Any, src: str, fld: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise HwsimError(src, fld, f"expected an integer, got {value!r}")
    return value


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def find_run_dirs(patterns: Iterable[str]) -> list[Path]:
    """Expand ``--runs`` arguments: a run directory, a directory holding run directories (searched
    recursively, not inside runs), or a glob pattern of either. Unique, in argument order."""
    found: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            found.append(p)

    patterns = list(patterns)
    if not patterns:
        raise HwsimError("--runs", "runs", "no run directories given")
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if GLOB_CHARS & set(pattern) else [pattern]
        if not paths or not Path(paths[0]).exists():
            raise HwsimError("--runs", pattern, "no such file or directory (no runs matched)")
        for raw in paths:
            path = Path(raw)
            if is_run_dir(path):
                add(path)
                continue
            if not path.is_dir():
                continue      # a glob may match files next to run directories
            below = []
            for root, dirs, _files in os.walk(path):
                dirs.sort()
                if is_run_dir(Path(root)):
                    below.append(Path(root))
                    dirs[:] = []      # never look inside a run (checkpoints, trace)
            for p in below:
                add(p)
    if not found:
        raise HwsimError("--runs", " ".join(patterns), f"no runs matched (no directory with {CONFIG_FILE})")
    return found


def has_trace(run_dir: Path) -> bool:
    return (run_dir / TRACE_DIR / TRACE_JSON).is_file()


def read_run(run_dir: str | os.PathLike) -> RunInfo:
    """Metadata of one run (config.yaml + summary.json); the trace must exist (not loaded here)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HwsimError(str(run_dir), "run", "not a directory")
    if not has_trace(run_dir):
        raise HwsimError(str(run_dir / TRACE_DIR), "trace",
                         f"run {run_dir.name!r} has no trace (write one with python -m cdg.trace --run {run_dir}, "
                         f"or pass --skip-untraced)")
    cfg_src = str(run_dir / CONFIG_FILE)
    cfg = load_yaml(run_dir / CONFIG_FILE)
    if not isinstance(cfg, dict):
        raise HwsimError(cfg_src, "(top level)", "must be a mapping")
    summary_src = str(run_dir / SUMMARY_FILE)
    summary = _read_json(run_dir / SUMMARY_FILE)
    if not isinstance(summary, dict):
        raise HwsimError(summary_src, "(top level)", "must be a JSON object")
    manifest = run_dir / TRACE_DIR / MANIFEST
    if not manifest.is_file():
        raise HwsimError(str(manifest), "file", "missing (trace incomplete)")
    model = _section(cfg, "model", cfg_src)
    method = _section(cfg, "method", cfg_src)
    gate = _section(cfg, "gate", cfg_src)
    data = _section(cfg, "data", cfg_src)
    train = _section(cfg, "train", cfg_src)
    real = Path(os.path.realpath(run_dir))
    seed = train.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise HwsimError(cfg_src, "train.seed", f"expected an integer, got {seed!r}")
    return RunInfo(
        run=real.name, run_group=real.parent.name, run_path=str(real),
        trace_path=str(real / TRACE_DIR), trace_digest=sha256(manifest),
        backbone=model.get("arch"), width=_num(model.get("width"), cfg_src, "model.width"),
        dataset=data.get("dataset"), ssl_method=method.get("name"),
        gate_method=gate.get("method", "none" if not gate else None),
        gate_S=gate.get("channel_block"), gate_b=gate.get("spatial_block"), gate_G=gate.get("groups"),
        gate_branches=gate.get("branches"),
        gate_align_weight=_num(gate.get("align_weight"), cfg_src, "gate.align_weight"),
        target_reduction=_num(summary.get("target_reduction", gate.get("target_reduction")), summary_src,
                              "target_reduction"),
        gate_recipe=gate_recipe(cfg), seed=seed, experiment=experiment_key(cfg, summary),
        image_size=data.get("image_size"),
        epochs=_int(summary.get("epochs", train.get("epochs")), summary_src, "epochs"),
        steps=_int(summary.get("steps"), summary_src, "steps"), batch_size=train.get("batch_size"),
        linear_top1=_num(summary.get("linear_top1"), summary_src, "linear_top1", 0.0, 1.0),
        knn_top1=_num(summary.get("knn_top1"), summary_src, "knn_top1", 0.0, 1.0),
        trained_reduction=_num(summary.get("reduction"), summary_src, "reduction"),
        dense_macs=_num(summary.get("dense_macs"), summary_src, "dense_macs"),
        effective_macs=_num(summary.get("effective_macs"), summary_src, "effective_macs"),
        extra={"model_tag": f"{model.get('arch')}_{model.get('stem')}_x{model.get('width')}",
               "image_size": data.get("image_size")},
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=MACS_RTOL, abs_tol=1.0)


def check_trace(info: RunInfo, trace: Trace) -> None:
    """Refuse a trace that does not belong to the run (see the module docstring)."""
    src = str(Path(trace.path) / TRACE_JSON)
    meta = trace.meta
    expected = {"ssl_method": info.ssl_method, "gate_method": info.gate_method, "dataset": info.dataset,
                "image_size": info.extra.get("image_size"), "model": info.extra.get("model_tag")}
    for key, want in expected.items():
        if key in meta and want is not None and meta[key] != want:
            raise HwsimError(src, f"meta.{key}",
                             f"{meta[key]!r}, but run {info.run!r} config.yaml says {want!r} (trace of another run?)")
    for key in ("run", "run_name"):
        if key in meta and meta[key] != info.run:
            raise HwsimError(src, f"meta.{key}", f"names run {meta[key]!r}, not {info.run!r}")
    if "run_dir" in meta and os.path.realpath(str(meta["run_dir"])) != info.run_path:
        raise HwsimError(src, "meta.run_dir", f"names {meta['run_dir']!r}, not {info.run_path!r}")
    dense = float(sum(layer.spec.dense_macs for layer in trace.layers))
    if info.dense_macs is not None and not _close(dense, info.dense_macs):
        raise HwsimError(src, "layers.dense_macs",
                         f"sum {dense:.0f} disagrees with {SUMMARY_FILE} dense_macs {info.dense_macs:.0f} "
                         f"of run {info.run!r} (trace of another model?)")
    overheads = meta.get("overhead_macs_per_image") or {}
    if not isinstance(overheads, dict):
        raise HwsimError(src, "meta.overhead_macs_per_image", "must be an object")
    effective = float(sum(layer.stats.effective_macs for layer in trace.layers)) + float(sum(overheads.values()))
    if info.effective_macs is not None and not _close(effective, info.effective_macs):
        raise HwsimError(src, "layers.stats.effective_macs",
                         f"sum {effective:.0f} (with gate overheads) disagrees with {SUMMARY_FILE} effective_macs "
                         f"{info.effective_macs:.0f} of run {info.run!r} (trace re-measured or from another run?)")
    info.n_trace_layers = len(trace.layers)
    info.n_mask_images = trace.n_mask_images


def load_runs(run_dirs: Iterable[Path], skip_untraced: bool = False) -> tuple[list[RunInfo], list[str]]:
    """Read and check every run; returns (runs, skipped run paths)."""
    runs, skipped = [], []
    for run_dir in run_dirs:
        if skip_untraced and not has_trace(run_dir):
            skipped.append(str(run_dir))
            continue
        info = read_run(run_dir)
        check_trace(info, load_trace(info.trace_path))
        runs.append(info)
    if not runs:
        raise HwsimError("--runs", "runs", f"no runs with a trace matched ({len(skipped)} skipped without one)")
    return runs, skipped
