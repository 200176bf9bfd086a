"""Per-image adaptivity: how much a gated network's cost varies from image to image.

A dynamic network that spends about the same on every image is a static pruning in disguise;
the spread of the per-image MAC ratio (effective / dense MACs of the whole backbone, gates and
predictors included) over the evaluation set says how much the gates adapt to the input. It is
reported for every method, in both accounting conventions, in ``summary.json`` and the trace's
``meta`` (field ``per_image_mac_ratio``, docs/algorithm.md).
"""
from __future__ import annotations

import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HIST_BINS = 20


def ratio_distribution(ratios: np.ndarray) -> dict:
    """Mean, population std, min, max, quantiles (``QUANTILES``, linear interpolation) and a
    ``HIST_BINS``-bin histogram over [min, max] of per-image MAC ratios (one bin if all equal)."""
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    if r.size == 0 or not np.isfinite(r).all():
        raise ValueError(f"per-image MAC ratios must be a non-empty finite array, got {r.size} values")
    lo, hi = float(r.min()), float(r.max())
    bins = HIST_BINS if hi > lo else 1
    counts, edges = np.histogram(r, bins=bins, range=(lo, hi) if hi > lo else (lo, lo + 1e-12))
    return {
        "n_images": int(r.size),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "min": lo,
        "max": hi,
        "quantiles": {f"q{round(q * 100):02d}": float(np.quantile(r, q)) for q in QUANTILES},
        "hist_counts": counts.astype(int).tolist(),
        "hist_edges": [float(e) for e in edges],
    }


def per_image_ratios(conv: list[np.ndarray], overhead: list[np.ndarray], credit: list[np.ndarray],
                     dense_total: float) -> dict:
    """``ratio_distribution`` of the network MAC ratio per image, output-only and full (credit
    subtracted); each list holds one per-image array per layer (conv, gate + predictor, input credit)."""
    if dense_total <= 0:
        raise ValueError(f"dense MACs must be > 0, got {dense_total}")
    effective = np.sum(conv, axis=0) + np.sum(overhead, axis=0)
    return {"output": ratio_distribution(effective / dense_total),
            "full": ratio_distribution((effective - np.sum(credit, axis=0)) / dense_total)}
