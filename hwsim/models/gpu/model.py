"""The GPU as a ``hwsim.models`` model: a conv as an implicit-GEMM kernel of thread-block tiles.

A batch of ``cfg.batch`` images is one launch: GEMM rows are its output pixels ((image, y, x)
row-major), columns the output channels, the reduction K runs in steps of ``tile.k``. Each tile's
time is a roofline of its tensor-core work against its operand traffic at its SM's share of
L2 bandwidth, plus a pipeline latency; the block scheduler hands tiles, in issue order, to the
first free of ``sms x tiles_per_sm`` slots; a kernel takes the longer of that makespan and its
DRAM traffic at HBM bandwidth, plus a launch overhead. Gating is exploited per tile only: a
tile's conditional k-loop can be skipped when every output in the tile is off, so what a gated
network gains depends on how its gate blocks line up with the tiles. Equations, assumptions and
limits: docs/hwsim-gpu.md.

Modes (``sparse.mode``): ``dense`` ignores the gates; ``predicated`` is the dense grid with the
conditional k-loop skipped inside inactive tiles (they still take a slot); ``compact`` runs a
base kernel over every tile, a gather kernel that lists the active tiles, and a conditional
kernel over only those, scatter-adding partial sums. Per-image figures are the batch's / batch.

Absolute numbers (optional fields): rates scale with ``sustained_clock_mhz`` and
``tensor_efficiency``; with ``tactics`` each layer runs the fastest of several tiles and split-K
factors, as a tuned library picks its kernels; ``l2.model: smooth`` replaces the all-or-nothing
L2 re-read by a hit fraction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim import costs
from hwsim.figures import Figures, LossColumns
from hwsim.models.gpu.config import GPUConfig
from hwsim.models.gpu.direct import direct_figures, uses_direct_path
from hwsim.models.gpu.kernels import active_tiles, summarise
from hwsim.workload import LayerWorkload

COUNTERS = ("tiles", "tiles_active", "waves", "resident_per_sm", "idle_sm_fraction", "kernels",
            "l2_fits", "tile_compute_bound", "dram_bound", "tensor_macs", "direct_path")
SPLIT_PSUM_BYTES = 4   # split-K partial sums: FP32, the tensor-core accumulator type
# the skip unit is the thread-block tile's conditional k-loop: tiles / tiles with an output on
LOSS_COLUMNS = LossColumns(skip_units="tiles", units_run="tiles_active")


@dataclass(frozen=True)
class Grid:
    """One batch's tile grid and the layer sizes the traffic needs (bytes per batch)."""

    B: int
    rows: int          # GEMM rows = B * E
    cols: int          # GEMM columns = C_out (all groups)
    tm: int
    tn: int
    it_full: int       # k-steps of a whole reduction
    it_base: int       # k-steps of the base part (K_base first)
    it_cond: int       # k-steps of the conditional part alone (compact's second kernel)
    K: int
    K_base: int
    ifmap_base: float  # compulsory ifmap bytes of the base / conditional input channels
    ifmap_cond: float
    filter_base: float
    filter_cond: float
    ofmap: float
    l2_fits: bool
    hit: float         # fraction of a column pass's ifmap re-read served by L2 (step: 1 or 0)
    split: int = 1     # split-K slices per output tile (ungated dense layers, ``tactics.split_k``)

    @property
    def tiles(self) -> int:
        return self.tm * self.tn * self.split


def _l2_hit(cfg: GPUConfig, ifmap: float, filt: float, ofmap: float, tn: int) -> tuple[bool, float]:
    """(layer fits L2, hit fraction of a column pass's ifmap re-read). ``step``: the whole layer
    fits or every pass re-reads from DRAM. ``smooth``: between two passes over a row tile the
    L2 sees the ifmap plus one column's filter and outputs (the reuse distance D); a fraction
    min(1, L2 / D) of the re-read still hits (random-replacement estimate, no cliff)."""
    cap = cfg.l2.mb * 2**20
    fits = ifmap + filt + ofmap <= cap
    if cfg.l2.model == "step":
        return fits, 1.0 if fits else 0.0
    reuse = ifmap + (filt + ofmap) / tn
    return fits, min(1.0, cap / reuse)


def _grid(work: LayerWorkload, cfg: GPUConfig, split: int = 1) -> Grid:
    g, spec, t, wb = work.gemm, work.spec, cfg.tile, cfg.word_bytes
    B = cfg.batch
    groups = work.groups
    base_frac = spec.gate.base_channels / spec.in_shape[0] if work.gated else 1.0
    ifmap = B * g.ifmap_footprint() * groups * wb.ifmap
    filt = g.K * g.M * groups * wb.filter
    ofmap = B * g.E * g.M * groups * wb.ofmap
    tn = groups * math.ceil(g.M / t.n)
    fits, hit = _l2_hit(cfg, ifmap, filt, ofmap, tn)
    return Grid(
        B=B, rows=B * g.E, cols=g.M * groups, tm=math.ceil(B * g.E / t.m), tn=tn,
        it_full=math.ceil(math.ceil(g.K / t.k) / split), it_base=math.ceil(g.K_base / t.k),
        it_cond=math.ceil(g.K_cond / t.k),
        K=g.K, K_base=g.K_base, ifmap_base=ifmap * base_frac, ifmap_cond=ifmap * (1 - base_frac),
        filter_base=g.K_base * g.M * groups * wb.filter, filter_cond=(g.K - g.K_base) * g.M * groups * wb.filter,
        ofmap=ofmap, l2_fits=fits, hit=hit, split=split,
    )


def _residency(cfg: GPUConfig, tiles: int) -> int:
    """Tiles resident per SM: the scheduler spreads tiles over SMs first, up to ``tiles_per_sm``."""
    return max(1, min(cfg.tiles_per_sm, math.ceil(tiles / cfg.sms)))


def _tile_cycles(cfg: GPUConfig, resident: int, iters: int, extra_bytes: float) -> tuple[float, bool]:
    """Roofline of one tile on a slot (1/resident of an SM): tensor work vs operand + output
    bytes at the SM's share of L2 bandwidth, plus the pipeline latency. -> (cycles, compute-bound).
    Rates are per ``clock_mhz`` cycle: scaled by the sustained clock and the tensor efficiency."""
    t, wb, f = cfg.tile, cfg.word_bytes, cfg.clock_scale()
    compute = iters * t.m * t.n * t.k * resident / (cfg.tensor_macs_per_sm_cycle * cfg.tensor_efficiency * f)
    mem = (iters * t.k * (t.m * wb.ifmap + t.n * wb.filter) + extra_bytes) * resident * cfg.sms / (cfg.l2.bytes_per_cycle * f)
    return max(compute, mem) + cfg.tile_latency_cycles / f, compute >= mem


def _dram_bpc(cfg: GPUConfig) -> float:
    return cfg.dram.bandwidth_gb_s * 1e3 / cfg.clock_mhz      # bytes per SM clock


def _batches(n: int, B: int) -> np.ndarray:
    """(ceil(n/B), B) image indices; the last batch is filled up with images from the start, so
    every launch is full like the dense one (its extra images are not reported twice)."""
    nb = -(-n // B)
    return (np.arange(nb * B, dtype=np.int64) % n).reshape(nb, B)


def _figures_per_batch(grid: Grid, cfg: GPUConfig, flags: np.ndarray, decisions: int) -> list[Figures]:
    """Figures (per image, i.e. per launch / B) for each batch's (tn, tm) active-tile flags."""
    t, wb, sp = cfg.tile, cfg.word_bytes, cfg.sparse
    mode = sp.mode
    T = grid.tiles
    res = _residency(cfg, T)
    slots = cfg.sms * res
    out_tile = t.m * t.n * wb.ofmap
    split_psum = 2 * t.m * t.n * SPLIT_PSUM_BYTES if grid.split > 1 else 0   # split-K partials, read + write
    t_on, cb_on = _tile_cycles(cfg, res, grid.it_full, out_tile + split_psum)
    t_off, cb_off = _tile_cycles(cfg, res, grid.it_base, out_tile)
    if mode == "compact":
        t_on = t_off   # the first kernel runs the base part of every tile
    n_act, rows_act, cols_act, outs_act, span = summarise(
        flags, grid.rows, grid.cols, t.m, t.n, t_on, t_off, slots)
    bpc = _dram_bpc(cfg)
    launch = cfg.launch_us * cfg.clock_mhz
    op_bytes = t.k * (t.m * wb.ifmap + t.n * wb.filter)
    B = grid.B
    figs = []
    for j in range(flags.shape[0]):
        A = int(n_act[j])
        if cfg.l2.model == "step":
            reread = 1 if grid.l2_fits else grid.tn
            cond_share = rows_act[j] / grid.tm if grid.l2_fits else A / grid.tm
        else:
            reread = 1 + (grid.tn - 1) * (1 - grid.hit)
            cond_share = (grid.hit * rows_act[j] + (1 - grid.hit) * A) / grid.tm
        dram = {"dram_ifmap_read": grid.ifmap_base * reread + grid.ifmap_cond * cond_share,
                "dram_filter_read": grid.filter_base + grid.filter_cond * cols_act[j] / grid.tn,
                "dram_ofmap_write": grid.ofmap, "dram_mask_read": 0.0}
        l2 = {"l2_ofmap_write": grid.ofmap, "l2_psum": 0.0, "l2_index": 0.0}
        if mode == "compact":
            iters = T * grid.it_base + A * grid.it_cond
            # base kernel: every tile, base k-steps, writes every output
            k1 = costs.roofline(float(span[j]), grid.ifmap_base * reread + grid.filter_base + grid.ofmap, bpc)
            # gather: read the gate decisions (1 bit each), write one index per active tile
            mask_bytes = decisions / 8
            dram["dram_mask_read"] = mask_bytes
            gather = (mask_bytes + A * sp.index_bytes) / bpc
            res_c = _residency(cfg, A)
            psum_tile = 2 * t.m * t.n * sp.psum_bytes          # read-modify-write of partial sums
            t_c, _ = _tile_cycles(cfg, res_c, grid.it_cond, psum_tile + sp.index_bytes)
            span_c = math.ceil(A / (cfg.sms * res_c)) * t_c if A else 0.0
            l2["l2_psum"] = A * psum_tile
            l2["l2_index"] = 2 * A * sp.index_bytes
            dram_c = grid.ifmap_cond * cond_share + grid.filter_cond * cols_act[j] / grid.tn
            spill = (0.0 if grid.l2_fits else 1.0) if cfg.l2.model == "step" else 1 - grid.hit
            if spill:
                dram_c += spill * A * psum_tile
                dram["dram_ofmap_write"] += spill * A * psum_tile
            k3 = costs.roofline(span_c, dram_c, bpc)
            cycles = float(span[j]) + gather + span_c
            total = k1 + gather + k3 + 3 * launch
            dram_bound = float(k1 > span[j] or k3 > span_c)
            kernels = 3
            waves = math.ceil(T / slots) + (math.ceil(A / (cfg.sms * res_c)) if A else 0)
        else:
            iters = A * grid.it_full + (T - A) * grid.it_base
            dram_cycles = sum(dram.values()) / bpc
            cycles = float(span[j])
            total = max(cycles, dram_cycles) + launch
            dram_bound = float(dram_cycles > cycles)
            kernels = 1
            waves = math.ceil(T / slots)
        l2["l2_ifmap_read"] = iters * t.k * t.m * wb.ifmap
        l2["l2_filter_read"] = iters * t.k * t.n * wb.filter
        if grid.split > 1:
            l2["l2_psum"] = T * split_psum
            macs = float(grid.rows * grid.cols * grid.K)     # split-K runs ungated layers only
        else:
            macs = float(outs_act[j] * grid.K + (grid.rows * grid.cols - outs_act[j]) * grid.K_base)
        tensor_macs = float(iters * t.m * t.n * t.k)
        dram_total = sum(dram.values())
        l2_total = sum(l2.values())
        e = cfg.energy
        energy = {"mac": tensor_macs * e.mac_pj,
                  "smem": 2 * iters * op_bytes * e.smem_pj_per_byte,
                  "l2": l2_total * e.l2_pj_per_byte,
                  "dram": dram_total * 8 * e.dram_pj_per_bit,
                  "static": e.static_w * total / cfg.clock_mhz * 1e6}
        energy["total"] = sum(energy.values())
        traffic = {**dram, **l2}
        counters = {"tiles": float(T), "tiles_active": float(A), "waves": float(waves),
                    "resident_per_sm": float(res), "idle_sm_fraction": max(0.0, 1 - T / cfg.sms),
                    "kernels": float(kernels),
                    "l2_fits": float(grid.l2_fits) if cfg.l2.model == "step" else grid.hit,
                    "tile_compute_bound": float(cb_on if A else cb_off), "dram_bound": dram_bound,
                    "tensor_macs": tensor_macs / B, "direct_path": 0.0}
        figs.append(Figures(cycles=cycles / B, total_cycles=total / B, macs=macs / B,
                            energy_pj={k: v / B for k, v in energy.items()},
                            traffic_bytes={k: v / B for k, v in traffic.items()}, counters=counters,
                            skip_units=float(T), units_run=float(A)))
    return figs


def _all_on(grid: Grid) -> np.ndarray:
    return np.ones((1, grid.tn * grid.split, grid.tm), dtype=np.bool_)


def _dense_cfg(cfg: GPUConfig) -> GPUConfig:
    return cfg if cfg.sparse.mode == "dense" else cfg.model_copy(update={"sparse": cfg.sparse.model_copy(
        update={"mode": "dense"})})


def _tactic(work: LayerWorkload, cfg: GPUConfig) -> tuple[GPUConfig, int]:
    """The (tile, split-K) a tuned library would pick for this layer: the fastest dense one
    among ``tile`` and ``tactics`` (split-K only for ungated layers). -> (config with that tile, split)."""
    if cfg.tactics is None:
        return cfg, 1
    tiles = [cfg.tile] + [t for t in cfg.tactics.tiles if t != cfg.tile]
    splits = sorted(set(cfg.tactics.split_k) | {1}) if not work.gated else [1]
    dense_cfg = _dense_cfg(cfg)
    best, best_t = (cfg, 1), math.inf
    for tile in tiles:
        c = dense_cfg.model_copy(update={"tile": tile})
        for s in splits:
            grid = _grid(work, c, s)
            if s > 1 and grid.it_full * s - math.ceil(work.gemm.K / tile.k) >= grid.it_full:
                continue     # an empty slice: this split is no split
            t = _figures_per_batch(grid, c, _all_on(grid), 0)[0].total_cycles
            if t < best_t:
                best, best_t = (cfg.model_copy(update={"tile": tile}), s), t
    return best


def _decisions(work: LayerWorkload, B: int) -> int:
    return int(np.prod(work.spec.gate_grid(B))) if work.gated else 0


def dense(work: LayerWorkload, cfg: GPUConfig) -> Figures:
    """The plain implicit-GEMM kernel: every tile runs the whole reduction (narrow grouped convs:
    the direct CUDA-core kernel, ``direct.py``)."""
    if uses_direct_path(work, cfg):
        return direct_figures(work, cfg, COUNTERS)
    cfg, split = _tactic(work, cfg)
    dense_cfg = _dense_cfg(cfg)
    grid = _grid(work, dense_cfg, split)
    return _figures_per_batch(grid, dense_cfg, _all_on(grid), 0)[0]


def sparse(work: LayerWorkload, cfg: GPUConfig, gate_masks: np.ndarray | None,
           act_masks: np.ndarray | None = None, act_density: float | None = None) -> list[Figures]:
    """Per image, from the real gate masks (input zeros are not exploited: tensor cores multiply
    dense fragments, so ``act_masks`` / ``act_density`` are ignored)."""
    if gate_masks is None or cfg.sparse.mode == "dense":
        d = dense(work, cfg)
        return [d] * (1 if gate_masks is None else gate_masks.shape[0])
    cfg, _ = _tactic(work, cfg)      # gated layers: split 1, the tile the dense kernel uses
    grid = _grid(work, cfg)
    n = gate_masks.shape[0]
    masks = np.ascontiguousarray(gate_masks.reshape(n, gate_masks.shape[1], -1))
    idx = _batches(n, grid.B)
    flags = active_tiles(masks, idx, cfg.tile.m, cfg.tile.n)
    per_batch = _figures_per_batch(grid, cfg, flags, _decisions(work, grid.B))
    return [per_batch[i // grid.B] for i in range(n)]


def granularity(work: LayerWorkload, cfg: GPUConfig) -> str:
    t, mode = _tactic(work, cfg)[0].tile, cfg.sparse.mode
    if not work.gated:
        return "none (ungated)"
    if mode == "dense":
        return "none (dense kernel)"
    what = "predicated k-loop" if mode == "predicated" else "compacted tile list"
    return f"thread-block tile {t.m} px x {t.n} ch ({what})"
