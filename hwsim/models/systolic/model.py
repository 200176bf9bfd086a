"""The systolic array as a ``hwsim.models`` model: counts (``counts.py``) -> Figures (``hwsim.costs``).

Input-activation zeros are not exploited: a systolic array streams operands in lock step, so a
zero multiplies like any other value (``act_masks`` / ``act_density`` are ignored).
"""
from __future__ import annotations

import numpy as np

from hwsim import costs
from hwsim.figures import Figures, LossColumns
from hwsim.models.systolic.config import SystolicConfig
from hwsim.models.systolic.counts import Counts, dense_layer_counts, gated_layer_counts
from hwsim.workload import LayerWorkload

COUNTERS = ("folds", "folds_run", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
            "sram_ofmap_reads", "index_reads_bits", "dram_ifmap_reads", "dram_filter_reads",
            "dram_ofmap_writes", "dram_ofmap_reads")
# the skip unit is the fold: folds of the dense mapping / folds scheduled
LOSS_COLUMNS = LossColumns(skip_units="folds", units_run="folds_run")


def accesses(c: Counts, cfg: SystolicConfig) -> costs.Accesses:
    """Counts (words, bits) -> bytes per operand and level."""
    wb = cfg.word_bytes
    return costs.Accesses(
        macs=c.macs,
        sram_ifmap_read=c.sram_ifmap_reads * wb.ifmap,
        sram_filter_read=c.sram_filter_reads * wb.filter,
        sram_ofmap_write=c.sram_ofmap_writes * wb.ofmap,
        sram_index_read=c.index_reads_bits / 8.0,
        dram_ifmap_read=c.dram_ifmap_reads * wb.ifmap,
        dram_filter_read=c.dram_filter_reads * wb.filter,
        dram_ofmap_write=c.dram_ofmap_writes * wb.ofmap,
        sram_ofmap_read=c.sram_ofmap_reads * wb.ofmap,
        dram_ofmap_read=c.dram_ofmap_reads * wb.ofmap,
    )


def total_cycles(c: Counts, cfg: SystolicConfig) -> float:
    """Compute and DRAM transfers overlap (double buffering): the slower one sets the time (in
    ``bandwidth_mode: user`` the compute cycles already hold the interface stalls)."""
    bpc = costs.bytes_per_cycle(cfg.dram.bandwidth_gb_s, cfg.clock_mhz)
    return costs.roofline(c.cycles, costs.dram_bytes(accesses(c, cfg)), bpc)


def energy_pj(c: Counts, cfg: SystolicConfig, cycles: float | None = None) -> dict[str, float]:
    cycles = total_cycles(c, cfg) if cycles is None else cycles
    return costs.energy_pj(accesses(c, cfg), cfg.energy, cfg.sram_kb, cfg.clock_mhz, cycles)


def figures(c: Counts, cfg: SystolicConfig) -> Figures:
    t = total_cycles(c, cfg)
    counters = {k: getattr(c, k) for k in COUNTERS}
    if cfg.bandwidth_mode == "user":  # a column only where it can be non-zero (calc reports stay as they were)
        counters["stall_cycles"] = c.stall_cycles
    return Figures(cycles=c.cycles, total_cycles=t, macs=c.macs, energy_pj=energy_pj(c, cfg, t),
                   traffic_bytes=costs.traffic_bytes(accesses(c, cfg)),
                   counters=counters, skip_units=c.folds, units_run=c.folds_run)


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
