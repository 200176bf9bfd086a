"""SCNN's PT-IS-CP dataflow for ``packing: cartesian`` (Parashar et al., ISCA 2017).

Why a separate path: the ideal packing fills every multiplier with any MAC of the PE's outputs.
SCNN's PE instead holds an input tile (planar tiling) and, per input channel c, multiplies a
vector of F non-zero weights (of the step's output channels, all R x S positions, channel c) by
a vector of I non-zero activations (channel c, its tile): ``ceil(w_c / F) * ceil(a_c / I)``
cycles for ``w_c * a_c`` products. Partly filled vectors are the intra-PE fragmentation the
paper names (1x1 layers with Kc = 8 weights, small late-layer tiles, depthwise convs with one
output channel per input channel). Options on top: output halos exchanged with the neighbours
at each step (``halo``) and the scatter crossbar's bank conflicts (``crossbar``).

With masks the counts are exact; with a density (activations: ``act_density``; weights:
``weight_density``) each vector length is Binomial and the cycles are its exact expectation
E[ceil(X / F)] (iid zeros). Equations: docs/hwsim-sparse-pe.md, "SCNN switches".
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from hwsim.models.sparse_pe.config import SparsePEConfig
from hwsim.models.sparse_pe.kernels import cartesian_steps
from hwsim.workload import LayerWorkload


def _binom_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    if p >= 1.0:
        return (k == n).astype(float)
    lg = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in range(n + 1)])
    return np.exp(lg + k * math.log(p) + (n - k) * math.log1p(-p))


@lru_cache(maxsize=4096)
def expected_ceil(n: int, p: float, q: int) -> float:
    """E[ceil(X / q)] for X ~ Binomial(n, p): array cycles of a vector of n candidates each
    non-zero with probability p, q lanes wide."""
    if n == 0:
        return 0.0
    if p >= 1.0:
        return float(-(-n // q))
    k = np.arange(n + 1)
    return float(np.dot(_binom_pmf(n, p), -(-k // q)))


@lru_cache(maxsize=1024)
def expected_max_load(m: int, banks: int) -> float:
    """E[max bank load] of m products each sent to one of ``banks`` banks uniformly at random.

    Exact: P(max <= L) by a bank-by-bank recursion on the products left (the next bank of the b
    left takes Binomial(r, 1/b) of the r left, at most L), then E[max] = sum over L of
    P(max > L); P(max <= L) = 0 below ceil(m / banks) (pigeonhole)."""
    if m == 0:
        return 0.0
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, m + 1)))])      # log k!
    r = np.arange(m + 1)[:, None]
    j = np.arange(m + 1)[None, :]
    valid = j <= r
    log_c = np.where(valid, lf[r] - lf[j] - lf[np.clip(r - j, 0, None)], -np.inf)
    take = np.clip(r - j, 0, None)
    level = -(-m // banks)
    total = float(level)
    while True:
        f = np.zeros(m + 1)
        f[0] = 1.0
        for b in range(1, banks + 1):
            if b == 1:
                pmf = np.where(valid & (j == r), 1.0, 0.0)
            else:
                pmf = np.exp(log_c + j * math.log(1.0 / b) + (r - j) * math.log1p(-1.0 / b))
            pmf = np.where(valid & (j <= level), pmf, 0.0)
            f = (pmf * f[take]).sum(axis=1)
        tail = 1.0 - float(f[m])
        if tail < 1e-12 or level >= m:
            return total
        total += tail
        level += 1


def crossbar_table(cfg: SparsePEConfig) -> np.ndarray:
    """Cycles per multiplier-array cycle that issues p = 0..F*I products (index p).

    A bank accepts one product per cycle and ``queue_depth`` products wait in front of each, so
    over a window of Q + 1 array cycles the array stalls until the fullest bank has drained:
    ``max(1, E[max load of p (Q+1) products over the banks] / (Q+1))``; 1 for p = 0."""
    lanes = cfg.macs_per_pe
    out = np.ones(lanes + 1)
    if not cfg.crossbar:
        return out
    win = cfg.scatter.queue_depth + 1
    for p in range(1, lanes + 1):
        out[p] = max(1.0, expected_max_load(p * win, cfg.scatter.banks) / win)
    return out


def _tiles(size: int, parts: int) -> list[tuple[int, int]]:
    step = -(-size // parts)
    return [(min(size, a * step), min(size, (a + 1) * step)) for a in range(parts)]


def _phase_rows(i0: int, i1: int, stride: int, phase: int) -> np.ndarray:
    rows = np.arange(i0, i1)
    return rows[rows % stride == phase]


def _phases(work: LayerWorkload) -> list[tuple[int, int, int]]:
    """Stride phases (py, px, weight positions): an activation at row y meets only the weight
    rows r with (y + pad - r) % stride == 0, so for stride > 1 the PE pairs each phase of its
    activations with the weights of that phase (no product lands between outputs)."""
    spec = work.spec
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel, spec.stride, spec.padding
    out = []
    for py in range(sh):
        nr = sum(1 for r in range(kh) if r % sh == (py + ph) % sh)
        for px in range(sw):
            nc = sum(1 for c in range(kw) if c % sw == (px + pw) % sw)
            out.append((py, px, nr * nc))
    return out


def _act_tile_counts(work: LayerWorkload, cfg: SparsePEConfig, act_masks: np.ndarray | None,
                     act_density: float | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero activations (count, expected I-vector cycles) per image, input channel, stride
    phase, tile: (n_c, C, P, T) each; n_c = 1 when every image is alike."""
    spec = work.spec
    c_in, h, w = spec.in_shape
    sh, sw = spec.stride
    st = cfg.spatial_tile
    lanes = cfg.cartesian.acts
    cells = [[(_phase_rows(y0, y1, sh, py), _phase_rows(x0, x1, sw, px)) for y0, y1 in _tiles(h, st.rows)
              for x0, x1 in _tiles(w, st.cols)] for py, px, _ in _phases(work)]
    npx = np.array([[ys.size * xs.size for ys, xs in row] for row in cells], dtype=np.int64)   # (P, T)
    info = cfg.skip_zero_acts and (act_masks is not None or act_density is not None)

    def from_density(d: float):
        cnt = np.broadcast_to(npx * d, (1, c_in, *npx.shape)).copy()
        cyc = np.array([[expected_ceil(int(k), d, lanes) for k in row] for row in npx])
        return cnt, np.broadcast_to(cyc, (1, c_in, *npx.shape)).copy()

    if not info:
        return from_density(1.0)
    if act_masks is None:
        return from_density(float(act_density))
    acts = act_masks[:n]
    cnt = np.stack([np.stack([acts[:, :, ys][:, :, :, xs].sum(axis=(2, 3)) for ys, xs in row], axis=2)
                    for row in cells], axis=2).astype(float)
    cyc = np.ceil(cnt / lanes)
    if acts.shape[0] < n:
        if act_density is not None:
            x_cnt, x_cyc = from_density(float(act_density))
        else:
            x_cnt, x_cyc = cnt.mean(axis=0, keepdims=True), cyc.mean(axis=0, keepdims=True)
        extra = n - acts.shape[0]
        cnt = np.concatenate([cnt, np.repeat(x_cnt, extra, axis=0)])
        cyc = np.concatenate([cyc, np.repeat(x_cyc, extra, axis=0)])
    return cnt, cyc


def _halo_positions(work: LayerWorkload, cfg: SparsePEConfig) -> np.ndarray:
    """Per tile: output positions its input tile contributes to outside its own output tile
    (SCNN's output halo, sent to the neighbours as partial sums)."""
    spec = work.spec
    (_, h, w), (_, ho, wo) = spec.in_shape, spec.out_shape
    st = cfg.spatial_tile
    out = []

    def reach(i0: int, i1: int, k: int, s: int, p: int, size: int) -> tuple[int, int]:
        if i1 <= i0:
            return 0, 0
        lo = max(0, -(-(i0 + p - (k - 1)) // s))
        hi = min(size, (i1 - 1 + p) // s + 1)
        return lo, max(lo, hi)

    for (y0, y1), (oy0, oy1) in zip(_tiles(h, st.rows), _tiles(ho, st.rows)):
        for (x0, x1), (ox0, ox1) in zip(_tiles(w, st.cols), _tiles(wo, st.cols)):
            ry = reach(y0, y1, spec.kernel[0], spec.stride[0], spec.padding[0], ho)
            rx = reach(x0, x1, spec.kernel[1], spec.stride[1], spec.padding[1], wo)
            span = (ry[1] - ry[0]) * (rx[1] - rx[0])
            own = max(0, min(ry[1], oy1) - max(ry[0], oy0)) * max(0, min(rx[1], ox1) - max(rx[0], ox0))
            out.append(span - own)
    return np.array(out, dtype=float)


def _gate_tiles(work: LayerWorkload, cfg: SparsePEConfig, gate: np.ndarray) -> np.ndarray:
    """(n_g, C_out, T) bool: any gate of the channel on in the tile's output region."""
    _, ho, wo = work.spec.out_shape
    st = cfg.spatial_tile
    return np.ascontiguousarray(np.stack(
        [gate[:, :, y0:y1, x0:x1].any(axis=(2, 3)) for y0, y1 in _tiles(ho, st.rows) for x0, x1 in _tiles(wo, st.cols)],
        axis=2))


def _decisions(work: LayerWorkload, cfg: SparsePEConfig, chan: np.ndarray, px: np.ndarray) -> np.ndarray:
    """(steps, T) decision blocks whose anchor lies in the step's channels and the tile."""
    c_out, ho, wo = work.spec.out_shape
    st = cfg.spatial_tile
    cps = st.channels_per_step
    pxg = px.reshape(ho, wo)
    per_tile = np.array([pxg[y0:y1, x0:x1].sum() for y0, y1 in _tiles(ho, st.rows) for x0, x1 in _tiles(wo, st.cols)])
    steps = -(-c_out // cps)
    per_step = np.array([chan[s * cps:(s + 1) * cps].sum() for s in range(steps)])
    return np.outer(per_step, per_tile).astype(float)


def partition(work: LayerWorkload, cfg: SparsePEConfig, gate: np.ndarray | None, act_masks: np.ndarray | None,
              act_density: float | None, n: int, chan: np.ndarray, px: np.ndarray) -> dict:
    """Per image: cycles, busy PE-cycles, MACs (products), filter-word reads, halo words,
    crossbar stall cycles; plus steps and the idle PE fraction."""
    spec = work.spec
    c_in = spec.in_shape[0]
    c_out = spec.out_shape[0]
    st = cfg.spatial_tile
    cps = st.channels_per_step
    wd = 1.0 if cfg.weight_density is None else float(cfg.weight_density)
    f_lanes = cfg.cartesian.weights
    cnt, cyc = _act_tile_counts(work, cfg, act_masks, act_density, n)
    if work.gated:
        cb = spec.gate.base_channels
        bounds = np.array([0, cb], dtype=np.int64)       # one base group, the rest conditional
        m_group = c_out
    else:
        cb = c_in
        bounds = np.arange(0, c_in + 1, work.gemm.c_group, dtype=np.int64)
        m_group = int(work.gemm.M)
    g_cnt = np.stack([cnt[:, lo:hi].sum(axis=1) for lo, hi in zip(bounds[:-1], bounds[1:])], axis=1)
    g_cyc = np.stack([cyc[:, lo:hi].sum(axis=1) for lo, hi in zip(bounds[:-1], bounds[1:])], axis=1)
    c_cnt = cnt[:, cb:].sum(axis=1)
    c_cyc = cyc[:, cb:].sum(axis=1)
    wpos = [pos for _, _, pos in _phases(work)]
    wcnt = np.array([np.arange(cps + 1) * pos * wd for pos in wpos])
    wcyc = np.array([[expected_ceil(k * pos, wd, f_lanes) for k in range(cps + 1)] for pos in wpos])
    t = st.rows * st.cols
    gate_t = (_gate_tiles(work, cfg, gate) if gate is not None and work.gated
              else np.zeros((1, c_out, t), dtype=bool))
    dec = _decisions(work, cfg, chan, px) * float(cfg.gate_decision.cycles)
    halo_pos = _halo_positions(work, cfg) if cfg.halo else np.zeros(t)
    cycles, busy, macs, wreads, halo, stall = cartesian_steps(
        np.ascontiguousarray(g_cnt), np.ascontiguousarray(g_cyc), np.ascontiguousarray(c_cnt),
        np.ascontiguousarray(c_cyc), gate_t, bool(work.gated), m_group, n, c_out, cps, wcnt, wcyc,
        crossbar_table(cfg), dec, halo_pos, float(cfg.halo_words_per_cycle))
    steps = -(-c_out // cps)
    _, h, w = spec.in_shape
    th, tw = -(-h // st.rows), -(-w // st.cols)
    idle = 1.0 - (-(-h // th)) * (-(-w // tw)) / cfg.pes
    return {"cycles": cycles, "busy": busy, "macs": macs, "filter_reads": wreads, "halo_words": halo,
            "stall": stall, "steps": steps, "idle": idle}
