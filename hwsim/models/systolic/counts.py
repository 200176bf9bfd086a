"""Systolic-array counts: cycles, SRAM accesses and DRAM traffic for OS, WS and IS dataflows.

Dense layers follow SCALE-Sim v3's mapping and counting exactly (docs/hwsim.md has the
equations and the validation table); gated layers (conditional work per output) are modelled
on top, per image, from the real masks:

- ``gate``: every fold is scheduled as in the dense layer (cycles unchanged); MACs, operand
  reads and partial-sum writes that no active output needs are not performed (energy saved).
- ``skip``: like ``gate``, and a fold whose outputs all need no conditional work is not
  scheduled at all (cycles saved). Output stationary: a (pixel tile x filter tile) fold stops
  after the base part of the reduction. Weight/input stationary: a fold over conditional-only
  reduction rows is dropped when no output it feeds is active.
- ``compact``: active work is gathered into dense folds through an index (Sparseloop's
  skipping with a gather cost): OS packs active pixels into the conditional tiles, WS streams
  only active pixels, IS streams only needed filters; each executed compacted fold costs
  ``compact_overhead_cycles`` and each gathered element an index read of ``index_bits``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from hwsim.models.systolic import accumulation, bandwidth
from hwsim.models.systolic.config import SystolicConfig
from hwsim.models.systolic.kernels import dram_reads_stream, is_tile_activity, ofmap_write_buffer, os_tile_activity
from hwsim.workload import Gemm, LayerWorkload

STREAM_OS_IFMAP, STREAM_OS_FILTER, STREAM_WS_IFMAP, STREAM_IS_IFMAP, STREAM_IS_FILTER = range(5)


@dataclass
class Counts:
    """Access counts of one layer for one image (words, cycles, MACs)."""

    cycles: float = 0.0              # compute cycles (SCALE-Sim's total cycles + 1)
    macs: float = 0.0                # MACs performed
    folds: float = 0.0               # folds of the dense mapping
    folds_run: float = 0.0           # folds scheduled
    sram_ifmap_reads: float = 0.0
    sram_filter_reads: float = 0.0
    sram_ofmap_writes: float = 0.0
    sram_ofmap_reads: float = 0.0    # partial sums read back for accumulation (faithful WS/IS)
    index_reads_bits: float = 0.0    # gather-index metadata read (compact mode)
    dram_ifmap_reads: float = 0.0
    dram_filter_reads: float = 0.0
    dram_ofmap_writes: float = 0.0
    dram_ofmap_reads: float = 0.0    # spilled partial sums read back (faithful WS/IS)
    stall_cycles: float = 0.0        # bandwidth_mode user: cycles the array waited (in ``cycles``)

    def scaled(self, k: float) -> "Counts":
        return Counts(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Dense
# ----------------------------------------------------------------------------------------------
def fold_shape(g: Gemm, dataflow: str, rows: int, cols: int) -> tuple[int, int, int]:
    """(row folds, column folds, cycles per fold) of the dense mapping."""
    if dataflow == "os":
        return math.ceil(g.E / rows), math.ceil(g.M / cols), g.K + rows + cols - 2
    if dataflow == "ws":
        return math.ceil(g.K / rows), math.ceil(g.M / cols), 2 * rows + cols + g.E - 2
    return math.ceil(g.K / rows), math.ceil(g.E / cols), 2 * rows + cols + g.M - 2


def sram_counts_dense(g: Gemm, dataflow: str, rows: int, cols: int) -> tuple[int, int, int]:
    """(ifmap reads, filter reads, ofmap writes) of one dense GEMM, as SCALE-Sim counts them."""
    rf, cf, _ = fold_shape(g, dataflow, rows, cols)
    if dataflow == "os":
        # SCALE-Sim also counts rows+cols write slots per fold for the skewed output drain
        return cf * g.K * g.E, rf * g.K * g.M, g.E * g.M + rf * cf * (rows + cols)
    if dataflow == "ws":
        return cf * g.E * g.K, g.K * g.M, rf * g.E * g.M
    return g.E * g.K, cf * g.K * g.M, rf * g.E * g.M


def ofmap_drain(g: Gemm, cfg: SystolicConfig) -> tuple[int, int]:
    """(DRAM words written, stall cycles) of the OFMAP write buffer (kernels.ofmap_write_buffer):
    every output (OS) or partial-sum (WS, IS) write is drained, in lines of ``cols`` words."""
    kind = {"os": 0, "ws": 1, "is": 2}[cfg.dataflow]
    written, stalls, _ = ofmap_write_buffer(kind, g.E, g.M, g.K, cfg.array.rows, cfg.array.cols,
                                            cfg.sram_words("ofmap"))
    return int(written), int(stalls)


def dram_reads_dense(g: Gemm, cfg: SystolicConfig) -> tuple[int, int]:
    """DRAM words read for ifmap and filter under the working-set model (kernels.py)."""
    rows, cols, df = cfg.array.rows, cfg.array.cols, cfg.dataflow
    cap_if = 50 * (cfg.sram_words("ifmap") // 100)
    cap_fl = 50 * (cfg.sram_words("filter") // 100)
    fp_if, fp_fl = g.ifmap_footprint(), g.filter_footprint()
    space_if = g.in_h_used * g.in_w_used * g.c_group

    def run(kind: int, space: int, cap: int) -> int:
        return int(dram_reads_stream(kind, g.E, g.M, g.K, rows, cols, g.out_w, g.sh, g.sw, g.kw,
                                     g.c_group, g.in_w_used, space, cap))

    # a stream whose distinct addresses never fill a working set fetches each address once
    if fp_if < cap_if:
        d_if = fp_if
    else:
        d_if = run({"os": STREAM_OS_IFMAP, "ws": STREAM_WS_IFMAP, "is": STREAM_IS_IFMAP}[df], space_if, cap_if)
    if fp_fl < cap_fl or df == "ws":  # WS reads every filter word exactly once
        d_fl = fp_fl
    else:
        d_fl = run(STREAM_OS_FILTER if df == "os" else STREAM_IS_FILTER, fp_fl, cap_fl)
    return d_if, d_fl


def dense_gemm_counts(g: Gemm, cfg: SystolicConfig) -> Counts:
    rows, cols, df = cfg.array.rows, cfg.array.cols, cfg.dataflow
    rf, cf, per_fold = fold_shape(g, df, rows, cols)
    folds = rf * cf
    sr_if, sr_fl, sw_of = sram_counts_dense(g, df, rows, cols)
    d_if, d_fl = dram_reads_dense(g, cfg)
    d_of, stalls = ofmap_drain(g, cfg)
    c = Counts(
        cycles=folds * per_fold + stalls, macs=g.macs, folds=folds, folds_run=folds,
        sram_ifmap_reads=sr_if, sram_filter_reads=sr_fl, sram_ofmap_writes=sw_of,
        dram_ifmap_reads=d_if, dram_filter_reads=d_fl, dram_ofmap_writes=d_of,
    )
    if cfg.accumulation == "faithful":
        if df == "os":
            c.sram_ofmap_writes = c.dram_ofmap_writes = accumulation.os_sram_writes(g)
        else:
            c.cycles = folds * per_fold  # only final outputs and spills leave: the roofline prices them
            for key, value in accumulation.psum_traffic(g, cfg, float(rf * g.E * g.M)).items():
                setattr(c, key, value)
    if cfg.bandwidth_mode == "user":
        apply_user_bandwidth(c, g, cfg)
    return c


def apply_user_bandwidth(c: Counts, g: Gemm, cfg: SystolicConfig) -> None:
    """``bandwidth_mode: user``: cycles with SCALE-Sim USER mode's read and write stalls, and the
    read traffic of its prefetches. Faithful WS/IS only drain the final row fold's outputs (the
    partial sums stay in the OFMAP SRAM); SCALE-Sim's counting drains every fold's."""
    final_only = cfg.accumulation == "faithful" and cfg.dataflow != "os"
    u = bandwidth.user_bandwidth(g, cfg, final_only=final_only)
    c.cycles = u.cycles
    c.stall_cycles = u.stall_cycles
    c.dram_ifmap_reads = u.dram_ifmap_reads
    c.dram_filter_reads = u.dram_filter_reads
    if cfg.accumulation == "scalesim":
        c.dram_ofmap_writes = u.dram_ofmap_writes


def dense_layer_counts(work: LayerWorkload, cfg: SystolicConfig) -> Counts:
    """One image of a dense layer: its groups run one after another."""
    return dense_gemm_counts(work.gemm, cfg).scaled(work.groups)


# ----------------------------------------------------------------------------------------------
# Gated
# ----------------------------------------------------------------------------------------------
def gated_layer_counts(work: LayerWorkload, cfg: SystolicConfig, masks: np.ndarray) -> list[Counts]:
    """Per-image counts of a gated layer. ``masks``: bool (n, C_out, H_out, W_out), 1 = the
    output's conditional part is computed. Returns one Counts per image."""
    g = work.gemm
    n = masks.shape[0]
    mask = np.ascontiguousarray(masks.reshape(n, g.M, g.E))
    dense = dense_gemm_counts(g, cfg)
    rows, cols, df, sp = cfg.array.rows, cfg.array.cols, cfg.dataflow, cfg.sparse
    rf, cf, per_fold = fold_shape(g, df, rows, cols)
    stalls = dense.cycles - dense.folds * per_fold          # stalls of the dense run (write buffer; user mode: reads too)
    kb, kc = g.K_base, g.K_cond
    tiles, pix_fc, pix_any, filt_any, active = os_tile_activity(mask, g.E, g.M, rows, cols) if df == "os" \
        else os_tile_activity(mask, g.E, g.M, 1, cols)
    macs = g.E * g.M * kb + active.astype(np.float64) * kc
    # conditional data needed at least once: inputs of pixels with any active output, filters
    # with any active output (the working-set DRAM traffic of the conditional part scales with it)
    u_if = pix_any / g.E
    u_fl = filt_any / g.M
    base_share = kb / g.K
    dram_if = dense.dram_ifmap_reads * (base_share + (1 - base_share) * u_if)
    dram_fl = dense.dram_filter_reads * (base_share + (1 - base_share) * u_fl)
    out: list[Counts] = []
    used_r = np.minimum(rows, g.E - np.arange(math.ceil(g.E / rows)) * rows) if df == "os" else None
    used_c = np.minimum(cols, g.M - np.arange(math.ceil(g.M / cols)) * cols)
    if df == "os":
        any_t = tiles > 0                                                  # (n, rf, cf)
        n_cond_folds = any_t.sum(axis=(1, 2))
        sr_if_g = (used_r[None, :, None] * (kb + any_t * kc)).sum(axis=(1, 2))
        sr_fl_g = (used_c[None, None, :] * (kb + any_t * kc)).sum(axis=(1, 2))
        for i in range(n):
            c = Counts(folds=dense.folds, macs=macs[i], stall_cycles=dense.stall_cycles,
                       sram_ofmap_writes=dense.sram_ofmap_writes,
                       sram_ofmap_reads=dense.sram_ofmap_reads, dram_ofmap_reads=dense.dram_ofmap_reads,
                       dram_ofmap_writes=dense.dram_ofmap_writes, dram_ifmap_reads=dram_if[i],
                       dram_filter_reads=dram_fl[i])
            if sp.mode == "compact":
                packed = np.ceil(pix_fc[i] / rows)                         # per column tile
                c.cycles = rf * cf * (kb + rows + cols - 2) + packed.sum() * (kc + sp.compact_overhead_cycles) + stalls
                c.folds_run = dense.folds
                c.sram_ifmap_reads = cf * g.E * kb + pix_fc[i].sum() * kc
                c.sram_filter_reads = rf * kb * g.M + (packed * used_c).sum() * kc
                c.index_reads_bits = pix_fc[i].sum() * sp.index_bits
            else:
                c.cycles = dense.cycles if sp.mode == "gate" else dense.cycles - (dense.folds - n_cond_folds[i]) * kc
                c.folds_run = dense.folds
                c.sram_ifmap_reads = sr_if_g[i]
                c.sram_filter_reads = sr_fl_g[i]
            out.append(c)
        return out
    # WS and IS: row folds run over the reduction, base first; folds whose rows are all
    # conditional (start index >= K_b) only matter to active outputs
    j0 = np.arange(rf) * rows
    used_k = np.minimum(rows, g.K - j0)
    cond_only = j0 >= kb
    n_cond_rf = int(cond_only.sum())
    k_cond_only = int(used_k[cond_only].sum())                            # reduction rows in them
    k_mixed = g.K - k_cond_only
    if df == "ws":
        # column tile fc (filters); a cond-only fold streams E pixels, of which pix_fc are needed
        need = pix_fc                                                      # (n, cf)
        width = used_c                                                     # filters per tile
        stream_full = g.E
    else:
        need = is_tile_activity(mask, g.E, g.M, cols)                      # (n, cf) filters needed
        width = np.minimum(cols, g.E - np.arange(cf) * cols)               # pixels per tile
        stream_full = g.M
    for i in range(n):
        c = Counts(folds=dense.folds, macs=macs[i], dram_ifmap_reads=dram_if[i], dram_filter_reads=dram_fl[i],
                   stall_cycles=dense.stall_cycles)
        live = need[i] > 0                                                  # (cf,)
        n_live = int(live.sum())
        mixed_folds = (rf - n_cond_rf) * cf
        if df == "ws":
            # ifmap: stream of pixels x k rows; filter: k x width loaded once per fold; ofmap: pixel x width
            sr_if_mixed = cf * g.E * k_mixed
            sr_fl_mixed = k_mixed * g.M
            sw_of_mixed = (rf - n_cond_rf) * g.E * g.M
            sr_if_cond = (need[i] * k_cond_only).sum()
            sr_fl_cond = (live * width).sum() * k_cond_only
            sw_of_cond = (need[i] * width).sum() * n_cond_rf
        else:
            # ifmap: stationary k x width pixels loaded per fold; filter: stream of filters x k; ofmap: filter x width
            sr_if_mixed = g.E * k_mixed
            sr_fl_mixed = cf * k_mixed * g.M
            sw_of_mixed = (rf - n_cond_rf) * g.E * g.M
            sr_if_cond = (live * width).sum() * k_cond_only
            sr_fl_cond = (need[i] * k_cond_only).sum()
            sw_of_cond = (need[i] * width).sum() * n_cond_rf
        c.sram_ifmap_reads = sr_if_mixed + sr_if_cond
        c.sram_filter_reads = sr_fl_mixed + sr_fl_cond
        c.sram_ofmap_writes = sw_of_mixed + sw_of_cond
        if cfg.accumulation == "faithful":
            for key, value in accumulation.psum_traffic(g, cfg, float(c.sram_ofmap_writes)).items():
                setattr(c, key, value)
        else:
            # partial sums drained to DRAM in proportion to those written (exact when all are)
            c.dram_ofmap_writes = dense.dram_ofmap_writes * c.sram_ofmap_writes / dense.sram_ofmap_writes
        fold_fixed = per_fold - stream_full                                 # fill + drain of one fold
        if sp.mode == "gate":
            c.cycles = dense.cycles
            c.folds_run = dense.folds
        elif sp.mode == "skip":
            c.folds_run = mixed_folds + n_cond_rf * n_live
            c.cycles = dense.cycles - (dense.folds - c.folds_run) * per_fold
        else:
            live_need = need[i][live]
            c.folds_run = mixed_folds + n_cond_rf * n_live
            c.cycles = mixed_folds * per_fold + n_cond_rf * (
                n_live * (fold_fixed + sp.compact_overhead_cycles) + live_need.sum()) + stalls
            c.index_reads_bits = n_cond_rf * need[i].sum() * sp.index_bits
        out.append(c)
    return out
