"""The micro-benchmarks: each returns its measured points (shape, median microseconds).

What is measured is what the cpu model prices (hwsim/models/cpu/model.py): the fixed cost of
one tiny op, ``torch.mm`` and ``conv2d`` over a grid of shapes, ``index_select`` row gathers and
``index_put_`` row scatter-adds into an NCHW output of several row counts and lengths, and
streaming copies that fit the level-2 cache, the last-level cache share, and neither. FP32, contiguous operands.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
import torch.nn.functional as F

from cdg.hwcal.timing import median_us

FLOAT_BYTES = 4
BEYOND_CACHE_BYTES = 256 * 2**20   # the smallest streaming copy taken as DRAM


@dataclass(frozen=True)
class Plan:
    """Shapes to measure (``quick``: a small set, for tests)."""

    gemm_m: tuple = (32, 256, 2048)
    gemm_n: tuple = (16, 64, 256)
    gemm_k: tuple = (72, 576, 2304)
    # (batch, input channels, output channels, size): C -> C convs and the C/4 -> C base convs of
    # gated layers, from 56 px maps down to 2 px
    conv: tuple = ((1, 16, 16, 32), (1, 64, 64, 16), (1, 128, 128, 8), (1, 256, 256, 4), (1, 512, 512, 2),
                   (4, 64, 64, 16), (4, 128, 128, 8), (1, 32, 32, 56), (8, 64, 64, 16), (1, 64, 64, 32),
                   (1, 16, 64, 16), (1, 32, 128, 8), (1, 64, 256, 4), (1, 128, 512, 2), (4, 16, 64, 16),
                   (1, 16, 64, 32), (4, 64, 256, 4), (1, 256, 512, 4))
    rows: tuple = (256, 1024, 4096, 32768)
    row_len: tuple = (16, 64, 256)
    budget_s: float = 0.05
    dram_bytes: int = BEYOND_CACHE_BYTES

    @classmethod
    def quick(cls) -> "Plan":
        return cls(gemm_m=(32, 256), gemm_n=(16, 64), gemm_k=(72, 576),
                   conv=((1, 16, 16, 8), (1, 32, 32, 8), (2, 16, 16, 16), (1, 8, 32, 8)),
                   rows=(256, 2048), row_len=(16, 64), budget_s=0.005, dram_bytes=16 * 2**20)


INDEX_SEQUENCE_OPS = 28


def _index_sequence(g: torch.Tensor) -> torch.Tensor:
    """The kind of small-op chain a sparse executor runs to turn a decision grid into patch
    indices (block expansion, nonzero, integer division, broadcast arithmetic): 28 torch calls,
    views included, on a 1 x 1 x 8 x 8 grid."""
    m = g.ne(0)
    e = m.repeat_interleave(2, dim=-2)[..., :16, :]
    e = e.repeat_interleave(2, dim=-1)[..., :16]
    p = e[:, 0].reshape(-1).nonzero().squeeze(1)
    n, r = p // 256, p % 256
    oy, ox = r // 16, r % 16
    base = n * 324 + oy * 18 + ox
    t = torch.arange(3)
    off = (t[:, None] * 18 + t[None, :]).reshape(-1)
    return (base[:, None] + off[None, :]).reshape(-1)


def op_overhead(plan: Plan) -> float:
    """Microseconds per call of a chain of small index-building ops (dispatch and call cost,
    almost no work): the median time of ``_index_sequence`` / its 28 calls."""
    g = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return median_us(lambda: _index_sequence(g), min_reps=50, max_reps=2000, budget_s=4 * plan.budget_s) / INDEX_SEQUENCE_OPS


def gemm_points(plan: Plan) -> list[tuple[tuple[int, int, int], float]]:
    out = []
    for m, n, k in product(plan.gemm_m, plan.gemm_n, plan.gemm_k):
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        out.append(((m, n, k), median_us(lambda: torch.mm(a, b, out=c), budget_s=plan.budget_s)))
    return out


def conv_points(plan: Plan) -> list[tuple[tuple[int, int, int, int], float]]:
    """3x3 stride-1 padded convs: ((M = batch*H*W, N = C_out, K = 9 C_in, input bytes), us)."""
    out = []
    with torch.inference_mode():
        for batch, c_in, c_out, size in plan.conv:
            x, w = torch.randn(batch, c_in, size, size), torch.randn(c_out, c_in, 3, 3)
            us = median_us(lambda: F.conv2d(x, w, padding=1), budget_s=plan.budget_s)
            out.append(((batch * size * size, c_out, 9 * c_in, x.numel() * FLOAT_BYTES), us))
    return out


def gather_points(plan: Plan) -> list[tuple[tuple[int, int], float]]:
    """``index_select`` of ``rows`` random rows of ``row_len`` floats: ((rows, row bytes), us)."""
    out = []
    for rows, length in product(plan.rows, plan.row_len):
        src = torch.randn(rows, length)
        idx = torch.randperm(rows)
        dst = torch.empty(rows, length)
        out.append(((rows, length * FLOAT_BYTES),
                    median_us(lambda: torch.index_select(src, 0, idx, out=dst), budget_s=plan.budget_s)))
    return out


def scatter_points(plan: Plan) -> list[tuple[tuple[int, int], float]]:
    """The executor's scatter-add: ``index_put_(accumulate=True)`` of ``rows`` rows of ``row_len``
    floats into distinct random pixels of an NCHW output seen as (N, pixels, C)."""
    out = []
    for rows, length in product(plan.rows, plan.row_len):
        dst = torch.zeros(1, length, rows, 1)
        view = dst.permute(0, 2, 3, 1).flatten(1, 2)
        src, pix = torch.randn(rows, length), torch.randperm(rows)
        img = torch.zeros(rows, dtype=torch.long)
        out.append(((rows, length * FLOAT_BYTES),
                    median_us(lambda: view.index_put_((img, pix), src, accumulate=True), budget_s=plan.budget_s)))
    return out


def scatter_cl_points(plan: Plan) -> list[tuple[tuple[int, int], float]]:
    """The executor's scatter-add into a channels_last output: ``index_add_`` of ``rows`` rows of
    ``row_len`` floats into distinct random rows of the (pixels, C) view."""
    out = []
    for rows, length in product(plan.rows, plan.row_len):
        src, dst = torch.randn(rows, length), torch.zeros(rows, length)
        idx = torch.randperm(rows)
        out.append(((rows, length * FLOAT_BYTES), median_us(lambda: dst.index_add_(0, idx, src), budget_s=plan.budget_s)))
    return out


def copy_point(nbytes: int, plan: Plan) -> float:
    """GB/s of a streaming copy of ``nbytes`` (read + write bytes counted, as the model counts operands)."""
    src = torch.randn(max(1, nbytes // FLOAT_BYTES))
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src), budget_s=plan.budget_s)
    return 2 * src.numel() * FLOAT_BYTES / (us * 1e3)
