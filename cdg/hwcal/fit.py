"""Parameters of the cpu model from micro-benchmark points (numpy + scipy; no torch).

Each op's fixed call cost ``op_us`` is measured separately and taken off every point first, so
what is fitted is the work-proportional part. Only points whose operands fit in the cache and
whose time is well above the call cost are fitted: the model prices the rest with its memory
roofline and ``op_us``, and a point near the call cost has no resolvable work time. GEMM-shaped ops: peak rate and the three
half-saturation sizes of ``e(x) = x / (x + x_half)``, least squares on log time (relative
errors, so small and large shapes count alike). Row copies: per-row and per-byte cost,
non-negative least squares on relative errors.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares, nnls

FLOOR_US = 0.05     # a point faster than its call cost still carries a positive work time


MIN_CALLS = 3       # a fitted point takes at least this many call costs
MIN_POINTS = 3


def _work_us(times: Sequence[float], op_us: float) -> np.ndarray:
    return np.maximum(np.asarray(times, dtype=float) - op_us, FLOOR_US)


def usable(points: Sequence[tuple[tuple, float]], op_us: float, nbytes: Sequence[float], cache_bytes: float) -> list:
    """The points to fit: in cache and well above the call cost (all of them if fewer than
    ``MIN_POINTS`` qualify, as in a quick calibration)."""
    keep = [p for p, b in zip(points, nbytes) if b <= cache_bytes and p[1] >= MIN_CALLS * op_us]
    return keep if len(keep) >= MIN_POINTS else list(points)


def fit_throughput(points: Sequence[tuple[tuple, float]], op_us: float) -> dict:
    """points: ((M, N, K, ...), us) -> {peak_gflops, m_half, n_half, k_half}."""
    shapes = np.array([p[0][:3] for p in points], dtype=float)
    t = _work_us([p[1] for p in points], op_us)
    flops = 2 * shapes.prod(axis=1)
    best_gflops = float((flops / t / 1e3).max())

    def predict(x: np.ndarray) -> np.ndarray:
        peak, halves = math.exp(x[0]), np.exp(x[1:])
        eff = np.prod(shapes / (shapes + halves), axis=1)
        return flops / (peak * 1e3 * eff)

    x0 = np.array([math.log(best_gflops * 1.5), math.log(16.0), math.log(16.0), math.log(16.0)])
    res = least_squares(lambda x: np.log(predict(x)) - np.log(t), x0,
                        bounds=([math.log(best_gflops), -5, -5, -5], [math.log(best_gflops * 3), 15, 15, 15]))
    peak, m_h, n_h, k_h = (float(v) for v in np.exp(res.x))
    return {"peak_gflops": round(peak, 3), "m_half": round(m_h, 3), "n_half": round(n_h, 3), "k_half": round(k_h, 3)}


def fit_rowcopy(points: Sequence[tuple[tuple[int, int], float]], op_us: float) -> dict:
    """points: ((rows, row bytes), us) -> {gb_s, row_ns}: us = rows row_ns 1e-3 + rows bytes / (gb_s 1e3)."""
    rows = np.array([p[0][0] for p in points], dtype=float)
    nbytes = rows * np.array([p[0][1] for p in points], dtype=float)
    t = _work_us([p[1] for p in points], op_us)
    a = np.stack([rows / t, nbytes / t], axis=1)       # each equation divided by its time: relative error
    (per_row_us, per_byte_us), _ = nnls(a, np.ones_like(t))
    if per_byte_us <= 0:       # all cost per row: bandwidth not resolved, take the best observed
        per_byte_us = float((t / nbytes).min()) * 1e-3
    return {"gb_s": round(float(1.0 / (per_byte_us * 1e3)), 4), "row_ns": round(float(per_row_us * 1e3), 4)}


def fit_far(points: Sequence[tuple[tuple[int, int], float]], op_us: float, near: dict, cache_bytes: float,
            fallback_gb_s: float) -> float:
    """The per-byte rate of row copies whose tensor (rows x row bytes) exceeds the cache: median
    over those points of bytes / (time - call cost - per-row cost); ``fallback_gb_s`` (the
    streaming bandwidth beyond the cache) where no point is that large."""
    rates = []
    for (rows, row_bytes), t in points:
        nbytes = rows * row_bytes
        work = t - op_us - rows * near["row_ns"] * 1e-3
        if nbytes > cache_bytes and work > 0:
            rates.append(nbytes / (work * 1e3))
    rate = float(np.median(rates)) if rates else fallback_gb_s
    return round(min(rate, near["gb_s"]), 4)


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    """Median and worst |predicted / measured - 1| of a fit on its own points (reported, not used)."""
    r = np.abs(np.asarray(predicted) / np.asarray(measured) - 1)
    return {"median": round(float(np.median(r)), 4), "max": round(float(r.max()), 4)}


def predict_throughput(params: dict, shape: tuple, op_us: float) -> float:
    m, n, k = shape[:3]
    eff = (m / (m + params["m_half"])) * (n / (n + params["n_half"])) * (k / (k + params["k_half"]))
    return op_us + 2 * m * n * k / (params["peak_gflops"] * 1e3 * eff)


def predict_rowcopy(params: dict, shape: tuple, op_us: float) -> float:
    rows, row_bytes = shape
    return op_us + rows * params["row_ns"] * 1e-3 + rows * row_bytes / (params["gb_s"] * 1e3)
