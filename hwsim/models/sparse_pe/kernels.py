"""Numba kernels of the sparse-PE model: per-pixel non-zero counts, PE work per sync step,
the dynamic work queue, run-length entry counts, SCNN's Cartesian-product steps.

Every mask-level loop lives here (``@njit(cache=True)``) so a 1,000-image trace stays in the
seconds. Work of output (oc, p) = base[ci, oc // m_group, p] + gate[gi, oc, y, x] * cond[ci, p]
(MACs, branch-free: random masks would defeat branch prediction); ``ci`` / ``gi`` = i when the
counts / gates vary per image, else 0. A PE's cycles in a step are
ceil(work / macs_per_pe) plus its gate-decision cycles (its multipliers pack MACs of all the
outputs it holds in that step).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.models.kernel_helpers import heap_replace_root

EPS = 1e-9   # expected (float) work: 6.000000001 MACs must not cost an extra cycle


@njit(cache=True)
def window_counts(act, bounds, kh, kw, sh, sw, ph, pw, ho, wo):
    """Non-zero inputs in each output pixel's window, per channel range [bounds[r], bounds[r+1]).
    act: (n, C, H, W) bool. Returns (n, R, ho*wo) float64. Padding counts as zero."""
    n, _, h, w = act.shape
    nr = bounds.shape[0] - 1
    out = np.zeros((n, nr, ho * wo), dtype=np.float64)
    cs = np.zeros((h, w), dtype=np.int64)
    for i in range(n):
        for r in range(nr):
            cs[:, :] = 0
            for c in range(bounds[r], bounds[r + 1]):
                for y in range(h):
                    for x in range(w):
                        if act[i, c, y, x]:
                            cs[y, x] += 1
            for oy in range(ho):
                for ox in range(wo):
                    tot = 0
                    for dy in range(kh):
                        y = oy * sh - ph + dy
                        if y < 0 or y >= h:
                            continue
                        for dx in range(kw):
                            x = ox * sw - pw + dx
                            if 0 <= x < w:
                                tot += cs[y, x]
                    out[i, r, oy * wo + ox] = tot
    return out


@njit(cache=True)
def run_length_entries(masks, max_run):
    """Per row of masks (n, N) bool: (non-zeros, padding entries). A zero run of z before a
    non-zero needs z // (max_run + 1) extra entries (the run field holds at most max_run);
    trailing zeros need none (the row length is known)."""
    n, m = masks.shape
    nnz = np.zeros(n, dtype=np.int64)
    pad = np.zeros(n, dtype=np.int64)
    for i in range(n):
        run = 0
        for j in range(m):
            if masks[i, j]:
                nnz[i] += 1
                pad[i] += run // (max_run + 1)
                run = 0
            else:
                run += 1
    return nnz, pad


@njit(cache=True)
def output_channel_steps(gate, base, cond, m_group, n, pes, mpp, wo, chan_anchor, px_anchor, dec_cycles):
    """Step s: PE k computes every pixel of output channel s*pes + k. Returns per image
    (cycles = sum over steps of the slowest PE, busy PE-cycles, MACs)."""
    m = chan_anchor.shape[0]
    e = px_anchor.shape[0]
    steps = (m + pes - 1) // pes
    cycles = np.zeros(n)
    busy = np.zeros(n)
    macs = np.zeros(n)
    for i in range(n):
        ci = i if base.shape[0] > 1 else 0
        gi = i if gate.shape[0] > 1 else 0
        for s in range(steps):
            mx = 0.0
            for k in range(pes):
                oc = s * pes + k
                if oc >= m:
                    break
                g = oc // m_group
                w = 0.0
                dec = 0
                ho = e // wo
                for y in range(ho):
                    for x in range(wo):
                        p = y * wo + x
                        w += base[ci, g, p] + gate[gi, oc, y, x] * cond[ci, p]
                        dec += px_anchor[p] * chan_anchor[oc]
                c = np.ceil(w / mpp - EPS) + dec * dec_cycles
                macs[i] += w
                busy[i] += c
                if c > mx:
                    mx = c
            cycles[i] += mx
    return cycles, busy, macs


@njit(cache=True)
def spatial_tile_steps(gate, base, cond, m_group, n, rows, cols, cps, mpp, ho, wo,
                       chan_anchor, px_anchor, dec_cycles):
    """PEs form a rows x cols grid; PE (a, b) owns the output tile of ceil(ho/rows) x
    ceil(wo/cols) pixels at (a, b). Step s: every PE computes channels [s*cps, (s+1)*cps) of
    its tile. Returns per image (cycles = sum over steps of the slowest PE, busy PE-cycles, MACs)."""
    m = chan_anchor.shape[0]
    th = (ho + rows - 1) // rows
    tw = (wo + cols - 1) // cols
    steps = (m + cps - 1) // cps
    cycles = np.zeros(n)
    busy = np.zeros(n)
    macs = np.zeros(n)
    for i in range(n):
        ci = i if base.shape[0] > 1 else 0
        gi = i if gate.shape[0] > 1 else 0
        for s in range(steps):
            mx = 0.0
            for a in range(rows):
                for b in range(cols):
                    w = 0.0
                    dec = 0
                    for oc in range(s * cps, min(m, (s + 1) * cps)):
                        g = oc // m_group
                        for y in range(a * th, min(ho, (a + 1) * th)):
                            for x in range(b * tw, min(wo, (b + 1) * tw)):
                                p = y * wo + x
                                w += base[ci, g, p] + gate[gi, oc, y, x] * cond[ci, p]
                                dec += px_anchor[p] * chan_anchor[oc]
                    c = np.ceil(w / mpp - EPS) + dec * dec_cycles
                    macs[i] += w
                    busy[i] += c
                    if c > mx:
                        mx = c
            cycles[i] += mx
    return cycles, busy, macs


@njit(cache=True)
def dynamic_queue(gate, base, cond, m_group, n, pes, mpp, unit, dispatch, wo,
                  chan_anchor, px_anchor, dec_cycles):
    """Units = runs of ``unit`` consecutive pixels (raster order) of one output channel, queued
    channel-major; a free PE takes the next unit (greedy list scheduling, min-heap of PE finish
    times), paying ``dispatch`` cycles per unit. One sync step per layer: cycles = the last PE
    to finish. Shortening any unit never delays the finish (the sorted finish times are
    monotone in the unit times), so fewer gates on never costs cycles.
    Returns per image (cycles, busy PE-cycles, MACs)."""
    m = chan_anchor.shape[0]
    e = px_anchor.shape[0]
    cycles = np.zeros(n)
    busy = np.zeros(n)
    macs = np.zeros(n)
    heap = np.zeros(pes)
    for i in range(n):
        ci = i if base.shape[0] > 1 else 0
        gi = i if gate.shape[0] > 1 else 0
        heap[:] = 0.0
        for oc in range(m):
            g = oc // m_group
            for p0 in range(0, e, unit):
                w = 0.0
                dec = 0
                y = p0 // wo
                x = p0 - y * wo
                for p in range(p0, min(e, p0 + unit)):
                    w += base[ci, g, p] + gate[gi, oc, y, x] * cond[ci, p]
                    dec += px_anchor[p] * chan_anchor[oc]
                    x += 1
                    if x == wo:
                        x = 0
                        y += 1
                c = np.ceil(w / mpp - EPS) + dec * dec_cycles + dispatch
                macs[i] += w
                busy[i] += c
                heap_replace_root(heap, heap[0] + c)   # the earliest-free PE takes the unit
        cycles[i] = heap.max()
    return cycles, busy, macs


@njit(cache=True)
def _xbar(xb, products, cycles):
    """Crossbar factor at the mean products per array cycle (linear between integer loads)."""
    if cycles <= 0.0:
        return 1.0
    p = products / cycles
    lo = int(p)
    if lo >= xb.shape[0] - 1:
        return xb[xb.shape[0] - 1]
    return xb[lo] + (p - lo) * (xb[lo + 1] - xb[lo])


@njit(cache=True)
def cartesian_steps(g_cnt, g_cyc, c_cnt, c_cyc, gate_t, gated, m_group, n, m, cps, wcnt, wcyc, xb,
                    dec, halo_pos, halo_wpc):
    """SCNN's Cartesian-product PEs on planar tiles (``packing: cartesian``). Step s: every PE
    (tile t) multiplies, per input channel group and stride phase ph, the non-zero weights of
    the step's k output channels of that group (wcyc[ph, k] F-vectors, wcnt[ph, k] weights) by
    its non-zero activations of that phase (g_cyc I-vectors, g_cnt values; (n_c, G, P, T)); a
    gated layer's conditional channels (c_cnt, c_cyc: (n_c, P, T)) only for the step's channels
    with a gate on in the tile. PE cycles = array cycles x crossbar factor + decision
    cycles + halo words / halo_wpc; the step ends with the slowest PE.
    Returns per image (cycles, busy PE-cycles, products, filter-word reads, halo words, crossbar stall cycles)."""
    n_ph = g_cnt.shape[2]
    t_n = g_cnt.shape[3]
    steps = (m + cps - 1) // cps
    cycles = np.zeros(n)
    busy = np.zeros(n)
    macs = np.zeros(n)
    wreads = np.zeros(n)
    halo = np.zeros(n)
    stall = np.zeros(n)
    for i in range(n):
        ci = i if g_cnt.shape[0] > 1 else 0
        gi = i if gate_t.shape[0] > 1 else 0
        for s in range(steps):
            lo = s * cps
            hi = min(m, lo + cps)
            mx = 0.0
            for t in range(t_n):
                arr = 0.0
                stl = 0.0
                if gated:                              # base term (every step channel), conditional term
                    k_on = 0
                    for o in range(lo, hi):
                        if gate_t[gi, o, t]:
                            k_on += 1
                    n_terms = 2
                else:                                  # one term per group in the step (contiguous in oc)
                    n_terms = (hi - 1) // m_group - lo // m_group + 1
                for j in range(n_terms):
                    if gated:
                        k = hi - lo if j == 0 else k_on
                        g = 0
                    else:
                        g = lo // m_group + j
                        k = min(hi, (g + 1) * m_group) - max(lo, g * m_group)
                    for ph in range(n_ph):             # stride phases: weights meet the activations they reach
                        if gated and j == 1:
                            a_cnt = c_cnt[ci, ph, t]
                            a_cyc = c_cyc[ci, ph, t]
                        else:
                            a_cnt = g_cnt[ci, g, ph, t]
                            a_cyc = g_cyc[ci, g, ph, t]
                        c = wcyc[ph, k] * a_cyc
                        p = wcnt[ph, k] * a_cnt
                        f = _xbar(xb, p, c)
                        arr += c * f
                        stl += c * (f - 1.0)
                        macs[i] += p
                        wreads[i] += wcnt[ph, k] * a_cyc
                hw = (hi - lo) * halo_pos[t]
                pe = arr + dec[s, t] + hw / halo_wpc
                halo[i] += hw
                stall[i] += stl
                busy[i] += pe
                if pe > mx:
                    mx = pe
            cycles[i] += mx
    return cycles, busy, macs, wreads, halo, stall
