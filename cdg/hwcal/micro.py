"""The micro-benchmarks: each returns its measured points (shape, median microseconds).

What is measured is what the cpu model prices (hwsim/models/cpu/model.py): the fixed cost of
one tiny op, ``torch.mm`` and ``conv2d`` over a grid of shapes, ``index_select`` row gathers and
``index_put_`` row scatter-adds into an NCHW output of several row counts and lengths, and
streaming copies that do and do not fit in the level-2 cache. FP32, contiguous operands.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
import torch.nn.functional as F

from cdg.hwcal.timing import median_us

FLOAT_BYTES = 4
BEYOND_CACHE_BYTES = 64 * 2**20   # the streaming copy that does not fit the (level-2) cache


@dataclass(frozen=True)
class Plan:
    """Shapes to measure (``quick``: a small set, for tests)."""

    gemm_m: tuple = (32, 256, 2048)
    gemm_n: tuple = (16, 64, 256)
    gemm_k: tuple = (72, 576, 2304)
    conv: tuple = ((1, 16, 32), (1, 64, 16), (1, 128, 8), (1, 256, 4), (4, 16, 32), (4, 64, 16),
                   (1, 64, 32), (4, 128, 8), (1, 32, 56), (8, 64, 16))     # (batch, channels, size)
    rows: tuple = (256, 1024, 4096, 32768)
    row_len: tuple = (16, 64, 256)
    budget_s: float = 0.05

    @classmethod
    def quick(cls) -> "Plan":
        return cls(gemm_m=(32, 256), gemm_n=(16, 64), gemm_k=(72, 576), conv=((1, 16, 8), (1, 32, 8), (2, 16, 16)),
                   rows=(256, 2048), row_len=(16, 64), budget_s=0.005)


def op_overhead(plan: Plan) -> float:
    """Median microseconds of a tiny in-place op (dispatch and call cost, no work)."""
    x = torch.zeros(1)
    return median_us(lambda: x.add_(0.0), min_reps=50, max_reps=2000, budget_s=plan.budget_s)


def gemm_points(plan: Plan) -> list[tuple[tuple[int, int, int], float]]:
    out = []
    for m, n, k in product(plan.gemm_m, plan.gemm_n, plan.gemm_k):
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        out.append(((m, n, k), median_us(lambda: torch.mm(a, b, out=c), budget_s=plan.budget_s)))
    return out


def conv_points(plan: Plan) -> list[tuple[tuple[int, int, int, int], float]]:
    """3x3 stride-1 padded convs C -> C: ((M = batch*H*W, N = C, K = 9C, input bytes), us)."""
    out = []
    with torch.inference_mode():
        for batch, c, size in plan.conv:
            x, w = torch.randn(batch, c, size, size), torch.randn(c, c, 3, 3)
            us = median_us(lambda: F.conv2d(x, w, padding=1), budget_s=plan.budget_s)
            out.append(((batch * size * size, c, 9 * c, x.numel() * FLOAT_BYTES), us))
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


def copy_point(nbytes: int, plan: Plan) -> float:
    """GB/s of a streaming copy of ``nbytes`` (read + write bytes counted, as the model counts operands)."""
    src = torch.randn(max(1, nbytes // FLOAT_BYTES))
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src), budget_s=plan.budget_s)
    return 2 * src.numel() * FLOAT_BYTES / (us * 1e3)
