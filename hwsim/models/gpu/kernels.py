"""Numba kernels of the GPU model: which thread-block tiles have an output on, and how long the
CTA scheduler takes to run a grid of tiles. Compiled once and cached (``cache=True``).

Tiles of a batch: GEMM rows are the batch's output pixels in (image, y, x) row-major order
(CUTLASS implicit GEMM, GEMM-M = N*P*Q), split into row tiles of ``bm``; GEMM columns are the
output channels, split into column tiles of ``bn``. Issue order: row tile fastest, then column
tile (CUTLASS's identity threadblock swizzle, blockIdx.x over GEMM-M).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.models.kernel_helpers import heap_replace_root


@njit(cache=True)
def active_tiles(masks, images, bm, bn):
    """(n, C, E) bool gate masks, (nb, B) image indices per batch -> (nb, tn, tm) bool:
    tile (column a, row t) of batch j has at least one output whose gate is on."""
    nb, n_b = images.shape
    c_out = masks.shape[1]
    e = masks.shape[2]
    tm = (n_b * e + bm - 1) // bm
    tn = (c_out + bn - 1) // bn
    out = np.zeros((nb, tn, tm), dtype=np.bool_)
    for j in range(nb):
        for b in range(n_b):
            img = images[j, b]
            r0 = b * e
            for c in range(c_out):
                a = c // bn
                p = 0
                while p < e:
                    t = (r0 + p) // bm
                    end = min(e, (t + 1) * bm - r0)
                    if not out[j, a, t]:
                        for q in range(p, end):
                            if masks[img, c, q]:
                                out[j, a, t] = True
                                break
                    p = end
    return out


@njit(cache=True)
def greedy_makespan(active, t_on, t_off, slots):
    """Finish time of a grid whose tiles, in issue order, each go to the first free slot (the
    hardware block scheduler). ``active`` (tn, tm) bool picks each tile's duration."""
    heap = np.zeros(slots)  # min-heap of slot free times
    tn, tm = active.shape
    for a in range(tn):
        for t in range(tm):
            heap_replace_root(heap, heap[0] + (t_on if active[a, t] else t_off))
    return heap.max()


@njit(cache=True)
def summarise(flags, rows, cols, bm, bn, t_on, t_off, slots):
    """Per batch: active tiles, row tiles and column tiles with an active tile, valid outputs in
    active tiles (``rows`` x ``cols`` GEMM, edge tiles partly valid), and the greedy makespan."""
    nb, tn, tm = flags.shape
    n_act = np.zeros(nb, dtype=np.int64)
    rows_act = np.zeros(nb, dtype=np.int64)
    cols_act = np.zeros(nb, dtype=np.int64)
    outs_act = np.zeros(nb, dtype=np.int64)
    span = np.zeros(nb)
    row_any = np.zeros(tm, dtype=np.bool_)
    for j in range(nb):
        row_any[:] = False
        for a in range(tn):
            cv = min(bn, cols - a * bn)
            col_any = False
            for t in range(tm):
                if flags[j, a, t]:
                    n_act[j] += 1
                    col_any = True
                    row_any[t] = True
                    outs_act[j] += min(bm, rows - t * bm) * cv
            if col_any:
                cols_act[j] += 1
        rows_act[j] = row_any.sum()
        span[j] = greedy_makespan(flags[j], t_on, t_off, slots)
    return n_act, rows_act, cols_act, outs_act, span
