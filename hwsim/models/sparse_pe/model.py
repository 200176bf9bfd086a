"""The sparse-PE accelerator (SCNN / Eyeriss-v2 / SparTen family) as a ``hwsim.models`` model.

An array of ``pes`` PEs, each with ``macs_per_pe`` multipliers, computes every output element
(oc, pixel) from only the work it needs: the base MACs over the non-zero inputs of its window
(all of K_base when zero activations are not skipped) plus, if its gate is on, the conditional
MACs over the non-zero conditional inputs. What keeps it from the ideal speed-up, all from the
real masks of each image: the partition of outputs over PEs and the slowest PE of every
synchronisation step (load imbalance), the gate decisions, the metadata of the compressed
activations and of the gate masks, and the buffer traffic sparsity does not remove (outputs are
written for every element, filters are fetched whole from DRAM). Equations: docs/hwsim-sparse-pe.md.

``packing: cartesian`` (SCNN's F x I product per input channel, with optional halo exchange and
crossbar conflicts) replaces the partition step with ``cartesian.partition``; everything else
(metadata, traffic, energy) is shared.

``dense`` is this machine on the layer with every gate on and no activation known to be zero
(so it still decides gates and carries metadata): the contract's "all gates on and no
activation information equals dense" holds by construction, both go through the same kernels.
"""
from __future__ import annotations

import math

import numpy as np

from hwsim import costs
from hwsim.figures import Figures, LossColumns, mean_figures
from hwsim.models.sparse_pe import cartesian
from hwsim.models.sparse_pe.config import SparsePEConfig
from hwsim.models.sparse_pe.kernels import (dynamic_queue, output_channel_steps, run_length_entries,
                                            spatial_tile_steps, window_counts)
from hwsim.workload import LayerWorkload

COUNTERS = ("steps", "imbalance", "imbalance_cycles", "idle_pe_fraction", "decisions", "gate_meta_bits", "act_meta_bits",
            "ifmap_words_stored", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
            "index_bits", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes")
# no skip units (every output is its own unit); load imbalance is reported in cycles
LOSS_COLUMNS = LossColumns(imbalance_cycles="imbalance_cycles")


def _bits(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def _coord_bits(dims: tuple[int, ...]) -> int:
    """Bits of one (c, y, x) coordinate: one field per axis, at least one bit in all."""
    return max(1, sum(_bits(d) for d in dims))


# ---------------------------------------------------------------------------------------------
# per-pixel non-zero counts
# ---------------------------------------------------------------------------------------------
def _bounds(work: LayerWorkload) -> np.ndarray:
    """Channel ranges whose window counts are needed: (base, conditional) for a gated layer,
    one range per group otherwise."""
    c_in = work.spec.in_shape[0]
    if work.gated:
        return np.array([0, work.spec.gate.base_channels, c_in], dtype=np.int64)
    return np.arange(0, c_in + 1, work.gemm.c_group, dtype=np.int64)


def _window(work: LayerWorkload, act: np.ndarray) -> np.ndarray:
    spec = work.spec
    _, ho, wo = spec.out_shape
    return window_counts(np.ascontiguousarray(act, dtype=bool), _bounds(work), spec.kernel[0], spec.kernel[1],
                         spec.stride[0], spec.stride[1], spec.padding[0], spec.padding[1], ho, wo)


def _split(work: LayerWorkload, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, R, E) window counts -> base (n, groups, E), cond (n, E)."""
    if work.gated:
        return np.ascontiguousarray(counts[:, :1, :]), np.ascontiguousarray(counts[:, 1, :])
    return np.ascontiguousarray(counts), np.zeros((counts.shape[0], counts.shape[2]))


def _act_counts(work: LayerWorkload, cfg: SparsePEConfig, act_masks: np.ndarray | None,
                act_density: float | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image work counts and activation storage: base (n_c, groups, E), cond (n_c, E),
    stored ifmap words (n,), activation metadata bits (n,). n_c is 1 when every image is alike.

    Images beyond those with act masks use ``act_density`` x the in-bounds window if given,
    else the mean counts / storage of the images that have masks."""
    g = work.gemm
    spec = work.spec
    c_in, h_in, w_in = spec.in_shape
    size = c_in * h_in * w_in
    e = g.E
    info = cfg.skip_zero_acts and (act_masks is not None or act_density is not None)
    if not info:
        base = np.full((1, work.groups if not work.gated else 1, e), float(g.K_base))
        cond = np.full((1, e), float(g.K_cond))
        nnz = np.full(n, float(size))
        pad = np.zeros(n)
        if not cfg.skip_zero_acts:       # stored dense, no activation metadata
            return base, cond, nnz, np.zeros(n)
        return base, cond, nnz + pad, _act_meta(cfg, nnz, pad, size, spec.in_shape)

    def from_density(d: float):
        ones = np.ones((1, c_in, h_in, w_in), dtype=bool)
        b, c = _split(work, _window(work, ones) * d)
        nz = d * size
        if cfg.format == "run_length" and d > 0:
            q = (1.0 - d) ** (2 ** cfg.run_bits)   # P(zero run >= max_run + 1), iid zeros
            pd = nz * q / (1.0 - q) if q < 1.0 else 0.0
        else:
            pd = 0.0
        return b, c, nz, pd

    if act_masks is None:
        b, c, nz, pd = from_density(float(act_density))
        nnz, pad = np.full(n, nz), np.full(n, pd)
        return b, c, nnz + pad, _act_meta(cfg, nnz, pad, size, spec.in_shape)

    acts = act_masks[:n]
    na = acts.shape[0]
    b_m, c_m = _split(work, _window(work, acts))
    max_run = (2 ** cfg.run_bits - 1) if cfg.format == "run_length" else 1 << 62
    nz_m, pd_m = run_length_entries(acts.reshape(na, -1), max_run)
    nz_m, pd_m = nz_m.astype(float), (pd_m.astype(float) if cfg.format == "run_length" else np.zeros(na))
    if na < n:
        if act_density is not None:
            b_x, c_x, nz_x, pd_x = from_density(float(act_density))
        else:
            b_x, c_x = b_m.mean(axis=0, keepdims=True), c_m.mean(axis=0, keepdims=True)
            nz_x, pd_x = nz_m.mean(), pd_m.mean()
        b_m = np.concatenate([b_m, np.repeat(b_x, n - na, axis=0)])
        c_m = np.concatenate([c_m, np.repeat(c_x, n - na, axis=0)])
        nz_m = np.concatenate([nz_m, np.full(n - na, nz_x)])
        pd_m = np.concatenate([pd_m, np.full(n - na, pd_x)])
    return (np.ascontiguousarray(b_m), np.ascontiguousarray(c_m), nz_m + pd_m,
            _act_meta(cfg, nz_m, pd_m, size, spec.in_shape))


def _act_meta(cfg: SparsePEConfig, nnz: np.ndarray, pad: np.ndarray, size: int, shape) -> np.ndarray:
    if cfg.format == "bitmask":
        return np.full(nnz.shape, float(size))
    if cfg.format == "run_length":
        return (nnz + pad) * cfg.run_bits
    return nnz * _coord_bits(tuple(shape))


def _gate_meta(work: LayerWorkload, cfg: SparsePEConfig, gate: np.ndarray) -> tuple[int, np.ndarray]:
    """(decision blocks per image, gate-mask metadata bits per image) in the configured format."""
    s_blk, b_blk = work.spec.gate.S, work.spec.gate.b
    blocks = np.ascontiguousarray(gate[:, ::s_blk, ::b_blk, ::b_blk])
    n, mb, hb, wb = blocks.shape
    n_blk = mb * hb * wb
    if cfg.format == "bitmask":
        return n_blk, np.full(n, float(n_blk))
    max_run = (2 ** cfg.run_bits - 1) if cfg.format == "run_length" else 1 << 62
    on, pad = run_length_entries(blocks.reshape(n, -1), max_run)
    if cfg.format == "run_length":
        return n_blk, (on + pad).astype(float) * cfg.run_bits
    return n_blk, on.astype(float) * _coord_bits((mb, hb, wb))


# ---------------------------------------------------------------------------------------------
# partition: cycles, busy PE-cycles, MACs per image
# ---------------------------------------------------------------------------------------------
def _anchors(work: LayerWorkload) -> tuple[np.ndarray, np.ndarray]:
    """Decision anchors: a gate block's decision is taken by the PE holding its first output."""
    c_out, ho, wo = work.spec.out_shape
    if not work.gated:
        return np.zeros(c_out, dtype=bool), np.zeros(ho * wo, dtype=np.int64)
    s_blk, b_blk = work.spec.gate.S, work.spec.gate.b
    chan = (np.arange(c_out) % s_blk) == 0
    yy, xx = np.divmod(np.arange(ho * wo), wo)
    px = ((yy % b_blk == 0) & (xx % b_blk == 0)).astype(np.int64)
    return chan, px


def _partition(work: LayerWorkload, cfg: SparsePEConfig, gate: np.ndarray | None, base: np.ndarray,
               cond: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """(cycles, busy, macs) per image, sync steps, idle PE fraction."""
    c_out, ho, wo = work.spec.out_shape
    g_arr = gate if gate is not None else np.zeros((1, c_out, ho, wo), dtype=bool)   # cond is 0 then
    chan, px = _anchors(work)
    m_group = int(work.gemm.M)
    mpp = float(cfg.macs_per_pe)
    dec = float(cfg.gate_decision.cycles)
    p = int(cfg.pes)
    if cfg.partition == "output_channel":
        out = output_channel_steps(g_arr, base, cond, m_group, n, p, mpp, int(wo), chan, px, dec)
        steps = -(-c_out // p)
        idle = 1.0 - c_out / (steps * p)
    elif cfg.partition == "spatial_tile":
        st = cfg.spatial_tile
        out = spatial_tile_steps(g_arr, base, cond, m_group, n, int(st.rows), int(st.cols),
                                 int(st.channels_per_step), mpp, int(ho), int(wo), chan, px, dec)
        steps = -(-c_out // st.channels_per_step)
        th, tw = -(-ho // st.rows), -(-wo // st.cols)
        used = (-(-ho // th)) * (-(-wo // tw))
        idle = 1.0 - used / p
    else:
        dq = cfg.dynamic
        out = dynamic_queue(g_arr, base, cond, m_group, n, p, mpp, int(dq.unit_outputs),
                            float(dq.dispatch_cycles), int(wo), chan, px, dec)
        steps = 1
        units = c_out * -(-(ho * wo) // dq.unit_outputs)
        idle = max(0.0, 1.0 - units / p)
    cycles, busy, macs = out
    return cycles, busy, macs, steps, idle


def _weight_storage(work: LayerWorkload, cfg: SparsePEConfig, filters: float) -> tuple[float, float]:
    """(stored filter words, weight metadata bits) for ``weight_density``: the pruned weights are
    stored compressed in the configured format (iid zeros for the run-length padding)."""
    d = float(cfg.weight_density)
    nz = d * filters
    pad = 0.0
    if cfg.format == "run_length" and d < 1.0:
        q = (1.0 - d) ** (2 ** cfg.run_bits)
        pad = nz * q / (1.0 - q)
    spec = work.spec
    shape = (spec.out_shape[0], spec.in_shape[0] // work.groups, spec.kernel[0] * spec.kernel[1])
    meta = _act_meta(cfg, np.array([nz]), np.array([pad]), int(filters), shape)[0]
    return nz + pad, float(meta)


def _ifmap_passes(work: LayerWorkload, cfg: SparsePEConfig) -> int:
    """Times the (compressed) ifmap is read from SRAM and broadcast to the PEs: once per group
    of output channels the PEs hold at once (pes channels, or channels_per_step tiles)."""
    c_out = work.spec.out_shape[0]
    per = cfg.spatial_tile.channels_per_step if cfg.partition == "spatial_tile" else cfg.pes
    return -(-c_out // per)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _figures(work: LayerWorkload, cfg: SparsePEConfig, gate: np.ndarray | None,
             act_masks: np.ndarray | None, act_density: float | None, n: int) -> list[Figures]:
    g = work.gemm
    spec = work.spec
    base, cond, stored, act_meta = _act_counts(work, cfg, act_masks, act_density, n)
    extra = {}
    if cfg.packing == "cartesian":
        cart = cartesian.partition(work, cfg, gate, act_masks, act_density, n, *_anchors(work))
        cycles, busy, macs, steps, idle = (cart[k] for k in ("cycles", "busy", "macs", "steps", "idle"))
        sr_fl, halo = cart["filter_reads"], cart["halo_words"]
        extra = {"halo_words": halo, "crossbar_stall_cycles": cart["stall"]}
    else:
        if cfg.weight_density is not None:        # expected work over the unpruned weights
            base, cond = base * cfg.weight_density, cond * cfg.weight_density
        cycles, busy, macs, steps, idle = _partition(work, cfg, gate, base, cond, n)
        sr_fl, halo = macs, np.zeros(n)
    if gate is not None:
        n_dec, gate_meta = _gate_meta(work, cfg, gate)
    else:
        n_dec, gate_meta = 0, np.zeros(n)
    passes = _ifmap_passes(work, cfg)
    outputs = float(spec.out_shape[0] * g.E)
    filters = float(g.K * g.M * work.groups)
    wb = cfg.word_bytes
    sr_if = passes * stored
    idx_bits = passes * act_meta + 2.0 * gate_meta          # act metadata read with every pass; gates written + read once
    dram_if_b = stored * wb.ifmap + act_meta / 8.0
    dram_fl_b = filters * wb.filter
    if cfg.weight_density is not None:                      # compressed weights and their index, read once
        w_words, w_meta = _weight_storage(work, cfg, filters)
        dram_fl_b = w_words * wb.filter + w_meta / 8.0
        idx_bits = idx_bits + w_meta
    dram_of_b = outputs * wb.ofmap
    bpc = costs.bytes_per_cycle(cfg.dram.bandwidth_gb_s, cfg.clock_mhz)
    e = cfg.energy
    mean_busy = busy / cfg.pes
    imbalance = np.where(mean_busy > 0, cycles / np.where(mean_busy > 0, mean_busy, 1.0), 1.0)
    dec_pj = n_dec * (cfg.gate_decision.compare_pj + e.rf_access_pj)   # compare + read of the base psum
    out = []
    for i in range(n):
        acc = costs.Accesses(
            macs=macs[i], sram_ifmap_read=sr_if[i] * wb.ifmap, sram_filter_read=sr_fl[i] * wb.filter,
            sram_ofmap_write=(outputs + halo[i]) * wb.ofmap, sram_index_read=idx_bits[i] / 8.0,
            dram_ifmap_read=dram_if_b[i], dram_filter_read=dram_fl_b, dram_ofmap_write=dram_of_b,
            sram_ofmap_read=halo[i] * wb.ofmap)   # halo partial sums: read out, added into the neighbour
        total = costs.roofline(cycles[i], costs.dram_bytes(acc), bpc)
        energy = costs.energy_pj(acc, e, cfg.sram_kb, cfg.clock_mhz, total, gate_pj=dec_pj)
        traffic = costs.traffic_bytes(acc)
        imbalance_cycles = float(max(cycles[i] - mean_busy[i], 0.0))
        counters = {
            "steps": float(steps), "imbalance": float(imbalance[i]), "idle_pe_fraction": idle,
            # cycles beyond a perfectly balanced schedule (analysis.pareto's imbalance loss)
            "imbalance_cycles": imbalance_cycles,
            "decisions": float(n_dec), "gate_meta_bits": float(gate_meta[i]), "act_meta_bits": float(act_meta[i]),
            "ifmap_words_stored": float(stored[i]), "sram_ifmap_reads": float(sr_if[i]),
            "sram_filter_reads": float(sr_fl[i]), "sram_ofmap_writes": outputs, "index_bits": float(idx_bits[i]),
            "dram_ifmap_reads": float(dram_if_b[i] / wb.ifmap), "dram_filter_reads": filters if cfg.weight_density is None else float(w_words),
            "dram_ofmap_writes": outputs,
        }
        counters.update({k: float(v[i]) for k, v in extra.items()})
        out.append(Figures(cycles=float(cycles[i]), total_cycles=float(total), macs=float(macs[i]),
                           energy_pj=energy, traffic_bytes=traffic, counters=counters,
                           imbalance_cycles=imbalance_cycles))
    return out


def dense(work: LayerWorkload, cfg: SparsePEConfig) -> Figures:
    gate = np.ones((1, *work.spec.out_shape), dtype=bool) if work.gated else None
    return _figures(work, cfg, gate, None, None, 1)[0]


def sparse(work: LayerWorkload, cfg: SparsePEConfig, gate_masks: np.ndarray | None,
           act_masks: np.ndarray | None = None, act_density: float | None = None) -> list[Figures]:
    if gate_masks is not None:
        gate = np.ascontiguousarray(gate_masks, dtype=bool)
        n = gate.shape[0]
        return _figures(work, cfg, gate, act_masks, act_density, n)
    # no gate images to align with: one Figures, the exact mean over the act-mask images (the
    # API repeats a one-image layer for every image of the trace)
    gate = np.ones((1, *work.spec.out_shape), dtype=bool) if work.gated else None
    n = act_masks.shape[0] if (act_masks is not None and cfg.skip_zero_acts) else 1
    return [mean_figures(_figures(work, cfg, gate, act_masks, act_density, n))]


def granularity(work: LayerWorkload, cfg: SparsePEConfig) -> str:
    acts = "zero input activation (one MAC)" if cfg.skip_zero_acts else ""
    if not work.gated:
        return acts or "none (ungated)"
    return "output element's conditional part" + (f"; {acts}" if acts else "")
