"""The systolic array as a ``hwsim.models`` model: counts (systolic.py) -> Figures (energy.py).

Input-activation zeros are not exploited: a systolic array streams operands in lock step, so a
zero multiplies like any other value (``act_masks`` / ``act_density`` are ignored).
"""
from __future__ import annotations

import numpy as np

from hwsim.config import SystolicConfig
from hwsim.energy import energy_pj, total_cycles, traffic_bytes
from hwsim.models import Figures
from hwsim.systolic import Counts, dense_layer_counts, gated_layer_counts
from hwsim.workload import LayerWorkload

COUNTERS = ("folds", "folds_run", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
            "index_reads_bits", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes")


def figures(c: Counts, cfg: SystolicConfig) -> Figures:
    t = total_cycles(c, cfg)
    return Figures(cycles=c.cycles, total_cycles=t, macs=c.macs, energy_pj=energy_pj(c, cfg, t),
                   traffic_bytes=traffic_bytes(c, cfg), counters={k: getattr(c, k) for k in COUNTERS})


def dense(work: LayerWorkload, cfg: SystolicConfig) -> Figures:
    return figures(dense_layer_counts(work, cfg), cfg)


def sparse(work: LayerWorkload, cfg: SystolicConfig, gate_masks: np.ndarray | None,
           act_masks: np.ndarray | None = None, act_density: float | None = None) -> list[Figures]:
    if gate_masks is None:
        return [dense(work, cfg)]
    return [figures(c, cfg) for c in gated_layer_counts(work, cfg, gate_masks)]


def granularity(work: LayerWorkload, cfg: SystolicConfig) -> str:
    rows, cols, mode = cfg.array.rows, cfg.array.cols, cfg.sparse.mode
    if work.spec.gate is None:
        return "none (ungated)"
    if mode == "gate":
        return "none (clock-gated MACs only, no cycles)"
    if cfg.dataflow == "os":
        return f"fold of {rows}x{cols} outputs" if mode == "skip" else f"output pixel within a {cols}-filter tile"
    what = "filters" if cfg.dataflow == "ws" else "pixels"
    return f"conditional fold of {cols} {what}" if mode == "skip" else f"streamed element of a {cols}-{what} tile"
