"""Printed per-layer table and totals; CSV and JSON outputs (written atomically)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from hwsim.api import RunResult
from hwsim.trace.fileio import atomic_write_files

COLUMNS = (
    ("layer", "{:<24}", 24), ("cycles", "{:>12,.0f}", 12), ("total_cyc", "{:>12,.0f}", 12),
    ("time_us", "{:>10.2f}", 10), ("util", "{:>6.1%}", 6), ("energy_uJ", "{:>10.3f}", 10),
    ("dram_KB", "{:>10.1f}", 10), ("flops_x", "{:>8.3f}", 8), ("speedup", "{:>8.3f}", 8),
    ("realised", "{:>8.1%}", 8), ("e_save", "{:>7.1%}", 7),
)


def _cells(name: str, d: dict) -> list:
    return [name, d["cycles"], d["total_cycles"], d["time_us"], d["utilisation"], d["energy_pj"] / 1e6,
            d["dram_bytes"] / 1024, d["flops_reduction"], d["speedup"], d["zero_work_removed"], d["energy_saving"]]


def format_table(run: RunResult) -> str:
    head = " ".join(f"{title:>{w}}" if i else f"{title:<{w}}" for i, (title, _, w) in enumerate(COLUMNS))
    source = {"masks": "real masks", "stats": "per-layer statistics only (iid masks at the measured density)",
              "dense": "dense run", "none": "no masks"}[run.mask_source]
    lines = [f"accelerator {run.config}  ({run.mode})  {'dense' if run.dense_run else 'sparse'}  "
             f"images {run.n_images}  sparsity from: {source}",
             "figures per image; flops_x = dense/needed MACs, speedup/e_save vs the same layers with no "
             "sparsity exploited, realised = cycle saving / FLOPs-proportional saving",
             head, "-" * len(head)]
    for r in run.layers:
        lines.append(_line(_cells(r.name[:24], r.row())))
    lines.append("-" * len(head))
    lines.append(_line(_cells("TOTAL", run.totals())))
    return "\n".join(lines)


def _cell(fmt: str, width: int, v) -> str:
    """An undefined ratio (NaN: no gated-off work to realise) prints as ``-``; a rounding residue
    below the printed precision prints as zero, not ``-0.0%``."""
    if isinstance(v, float) and math.isnan(v):
        return f"{'-':>{width}}"
    text = fmt.format(v)
    if text.strip().startswith("-") and not text.strip().strip("-0.,%"):
        text = fmt.format(0.0)
    return text


def _line(cells: list) -> str:
    return " ".join(_cell(fmt, width, v) for (_, fmt, width), v in zip(COLUMNS, cells))


def format_granularity(run: RunResult) -> str:
    """Per layer: the unit of work this hardware can skip, and the share of the trace's gated-off
    work it turned into saved cycles (the granularity mapping)."""
    width = max(len(r.name) for r in run.layers)
    lines = [f"{'layer':<{width}}  {'flops_x':>8}  {'speedup':>8}  {'realised':>8}  skip granularity"]
    for r in run.layers:
        realised = "-" if math.isnan(r.zero_work_removed) else f"{r.zero_work_removed:.1%}"
        lines.append(f"{r.name:<{width}}  {r.flops_reduction:>8.3f}  {r.speedup:>8.3f}  {realised:>8}  {r.granularity}")
    return "\n".join(lines)


def _clean(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def write_outputs(run: RunResult, out_dir: str | Path, stem: str = "hwsim") -> tuple[Path, Path]:
    """``<stem>_layers.csv`` (one row per layer) and ``<stem>.json`` (layers + totals)."""
    out_dir = Path(out_dir)
    rows = [r.row() for r in run.layers]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / f"{stem}_layers.csv"
    json_path = out_dir / f"{stem}.json"
    doc = {
        "config": run.config, "model": run.model, "mode": run.mode, "mask_source": run.mask_source,
        "dense_run": run.dense_run, "n_images": run.n_images,
        "totals": {k: _clean(v) for k, v in run.totals().items()},
        "layers": [{k: _clean(v) for k, v in row.items()} for row in rows],
    }
    # the pair lands together or not at all: a full disk must not leave a new CSV beside an old JSON
    atomic_write_files({csv_path: buf.getvalue(), json_path: json.dumps(doc, indent=2) + "\n"})
    return csv_path, json_path
