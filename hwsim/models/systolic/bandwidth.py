"""Bandwidth stalls of a dense layer (``bandwidth_mode: user``), as SCALE-Sim v3's USER mode
computes them: the read SRAMs prefetch their operand in a fixed order over an interface of
``interface_words_per_cycle`` words per cycle, and the array waits when a demanded word is not
yet on chip (``bandwidth_kernels.py`` walks the demand; this module builds the prefetch order
and the index of which SRAM line holds which word). Docs: docs/hwsim.md, "Bandwidth stalls".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.models.systolic.bandwidth_kernels import line_csr, user_bandwidth_run
from hwsim.models.systolic.config import SystolicConfig
from hwsim.models.systolic.kernels import im2col_offsets
from hwsim.workload import Gemm

KIND = {"os": 0, "ws": 1, "is": 2}


@dataclass(frozen=True)
class UserBandwidth:
    """One dense GEMM in USER mode: ``cycles`` counts (SCALE-Sim's total + 1), stalls included."""

    cycles: int
    stall_cycles: int
    dram_ifmap_reads: int      # words prefetched, SCALE-Sim's count (whole interface lines)
    dram_filter_reads: int
    dram_ofmap_writes: int


def _blocks(n_folds: int, width: int, rows: int, extent: int, value) -> np.ndarray:
    """Stack ``n_folds`` blocks of ``rows`` x ``width``: block f, element (i, w) = value(i, f*width + w)
    where f*width + w < extent, else -1."""
    i = np.arange(rows)[None, :, None]
    col = np.arange(n_folds)[:, None, None] * width + np.arange(width)[None, None, :]
    out = np.where(col < extent, value(i, np.minimum(col, extent - 1)), -1)
    return out.reshape(n_folds * rows, width)


def _diagonal(mat: np.ndarray) -> np.ndarray:
    """Anti-diagonals in order, each from its bottom row up (SCALE-Sim's skewed prefetch order)."""
    m, n = mat.shape
    r, c = np.divmod(np.arange(m * n), n)
    return mat.reshape(-1)[np.argsort((r + c) * m + (m - 1 - r), kind="stable")]


def prefetch_orders(g: Gemm, df: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(ifmap, filter) prefetch orders: word ids (ifmap = input address, filter = j * M + m) with
    -1 for the padding of partial folds."""
    pix, win = im2col_offsets(g.E, g.K, g.out_w, g.sh, g.sw, g.kw, g.c_group, g.in_w_used)

    def ifm(p, j):
        return pix[p] + win[j]

    E, M, K = g.E, g.M, g.K
    if df == "os":   # folds of R pixels over the reduction; folds of C filters
        fi = _diagonal(_blocks(math.ceil(E / rows), rows, K, E, lambda t, p: ifm(p, t)))
        ff = _diagonal(_blocks(math.ceil(M / cols), cols, K, M, lambda t, m: t * M + m))
    elif df == "ws":  # folds of R reduction rows over the pixels; filters fold by C, row-major
        fi = _diagonal(_blocks(math.ceil(K / rows), rows, E, K, lambda p, j: ifm(p, j)))
        ff = _blocks(math.ceil(M / cols), cols, K, M, lambda j, m: j * M + m).reshape(-1)
    else:            # pixels fold by C, row-major; folds of R reduction rows over the filters
        fi = _blocks(math.ceil(E / cols), cols, K, E, lambda j, p: ifm(p, j)).reshape(-1)
        ff = _diagonal(_blocks(math.ceil(K / rows), rows, M, K, lambda m, j: j * M + m))
    return fi.astype(np.int64), ff.astype(np.int64)


def line_index(order: np.ndarray, space: int, words: int, bandwidth: int):
    """The read SRAM's view of a prefetch order: (starts, lines) = for each word id the sorted
    lines holding it (CSR); par = [lines, active lines, prefetch lines, cycles per prefetch];
    and the words of the first fill (whole interface lines)."""
    per_line = math.ceil(words / 100)
    active = math.ceil(words * 0.5)
    prefetch = words - active
    starts, lines, n_lines = line_csr(order, space, per_line)
    nact = min(n_lines, math.ceil(active / per_line))
    npf = min(n_lines - nact, math.ceil(prefetch / per_line))
    par = np.array([n_lines, nact, npf, math.ceil(prefetch / bandwidth) + 1], dtype=np.int64)
    first = min(math.ceil(active / bandwidth), math.ceil(order.size / bandwidth)) * bandwidth
    return starts, lines, par, first


def ifmap_ids(g: Gemm, given: tuple[int, int] | None) -> np.ndarray:
    """Input address -> word id; with ``given`` = (rows, cols) of the input SCALE-Sim was given,
    the words beyond it are holes (-1): SCALE-Sim neither prefetches nor demands them."""
    ids = np.arange(g.in_h_used * g.in_w_used * g.c_group, dtype=np.int64)
    if given is not None:
        y, x = np.divmod(ids // g.c_group, g.in_w_used)
        ids[(y >= given[0]) | (x >= given[1])] = -1
    return ids


def user_bandwidth(g: Gemm, cfg: SystolicConfig, final_only: bool = False,
                   given: tuple[int, int] | None = None) -> UserBandwidth:
    """Cycles, stalls and DRAM words of one dense GEMM with ``cfg.interface_words_per_cycle``.
    ``final_only``: only the last row fold's outputs leave the OFMAP SRAM (faithful WS/IS).
    ``given``: SCALE-Sim's input extent when it is smaller than the one the layer reads (a
    topology row whose (H - kh) is not a multiple of the stride; ``ifmap_ids``)."""
    rows, cols, df = cfg.array.rows, cfg.array.cols, cfg.dataflow
    bw = cfg.interface_words_per_cycle
    fi, ff = prefetch_orders(g, df, rows, cols)
    ids = ifmap_ids(g, given)
    fi = np.where(fi >= 0, ids[np.maximum(fi, 0)], -1)
    space_if = ids.size
    if_starts, if_lines, if_par, if_first = line_index(fi, space_if, cfg.sram_words("ifmap"), bw)
    fl_starts, fl_lines, fl_par, fl_first = line_index(ff, g.K * g.M, cfg.sram_words("filter"), bw)
    pix, win = im2col_offsets(g.E, g.K, g.out_w, g.sh, g.sw, g.kw, g.c_group, g.in_w_used)
    stalls, total, n_if, n_fl, written = user_bandwidth_run(
        KIND[df], g.E, g.M, g.K, rows, cols, pix, win, ids, if_starts, if_lines, if_par,
        fl_starts, fl_lines, fl_par, cfg.sram_words("ofmap"), bw, final_only)
    per_prefetch = lambda words: math.ceil((words - math.ceil(words * 0.5)) / bw) * bw  # noqa: E731
    return UserBandwidth(
        cycles=int(total) + 1, stall_cycles=int(stalls),
        dram_ifmap_reads=if_first + int(n_if) * per_prefetch(cfg.sram_words("ifmap")),
        dram_filter_reads=fl_first + int(n_fl) * per_prefetch(cfg.sram_words("filter")),
        dram_ofmap_writes=int(written))
