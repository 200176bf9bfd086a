"""Cross-checks of a trace that its manifest cannot give: a manifest recomputed over edited files
is self-consistent, so the reader also checks that the parts of a trace agree with each other.

- ``member_path``: a file a trace names (in ``MANIFEST.json`` or a layer's ``masks.file``) lies
  inside the trace directory: no absolute path, no ``..``, no symlink leading out.
- ``check_stats``: a layer's statistics agree with themselves and with its shape: effective MACs
  follow from the gate density (base MACs + density x outputs x conditional MACs per output,
  relative tolerance ``MACS_RTOL``), and the mean density lies inside its histogram's bins.
- ``check_stats_against_masks``: the gate masks of the mask sample (the first images of the set
  the statistics are over) agree with the statistics: no more images than the statistics, every
  image's density in a bin the histogram counts it in, and the sample mean within the exact
  bound ``std * sqrt((N - n) / n)`` of the overall mean (equal when n = N), up to ``DENSITY_TOL``.

Each failure is a :class:`~hwsim.trace.errors.HwsimError` naming the file and the field. The
checks read only the decision grid (one multiply-add per decision), so they stay cheap. numpy only.
"""
from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np

from hwsim.trace.errors import HwsimError
from hwsim.trace.schema import LayerSpec
from hwsim.trace.stats import HIST_BINS, LayerStats

MACS_RTOL = 1e-5      # relative: effective MACs vs gate density (float32 densities give ~1e-7)
DENSITY_TOL = 1e-6    # absolute, on densities in [0, 1]
_EDGES = np.linspace(0.0, 1.0, HIST_BINS + 1)


def member_path(root: Path, rel: object, src: str, fld: str) -> Path:
    """``root / rel`` for a relative POSIX path that stays inside ``root`` (symlinks resolved)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise HwsimError(src, fld, f"expected a relative path inside the trace, got {rel!r}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise HwsimError(src, fld, f"{rel!r} points outside the trace directory")
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise HwsimError(src, fld, f"{rel!r} cannot be resolved ({exc})") from None
    if not inside:
        raise HwsimError(src, fld, f"{rel!r} is a link that leads outside the trace directory")
    return path


def expected_effective_macs(spec: LayerSpec, density: float) -> float:
    """Mean effective MACs per image implied by a mean gate density (output-only convention)."""
    c, h, w = spec.out_shape
    return spec.base_macs() + density * c * h * w * spec.cond_macs_per_output()


def check_stats(spec: LayerSpec, stats: LayerStats, src: str) -> None:
    where = f"layer {spec.name!r}.stats"
    want = expected_effective_macs(spec, stats.gate_density_mean)
    if not math.isclose(stats.effective_macs, want, rel_tol=MACS_RTOL, abs_tol=1.0):
        raise HwsimError(src, f"{where}.effective_macs",
                         f"{stats.effective_macs:.6g} disagrees with gate_density_mean {stats.gate_density_mean:.6g} "
                         f"(which gives {want:.6g} of dense {spec.dense_macs}; relative tolerance {MACS_RTOL})")
    hist = np.asarray(stats.gate_density_hist, dtype=np.float64)
    if hist.size:
        low, high = float(hist @ _EDGES[:-1]) / stats.n_images, float(hist @ _EDGES[1:]) / stats.n_images
        if not (low - DENSITY_TOL <= stats.gate_density_mean <= high + DENSITY_TOL):
            raise HwsimError(src, f"{where}.gate_density_mean",
                             f"{stats.gate_density_mean:.6g} lies outside its histogram's range [{low:.6g}, {high:.6g}]")


def _block_weights(extent: int, block: int) -> np.ndarray:
    """Outputs each block covers along one axis (the last block is cropped)."""
    starts = np.arange(0, extent, block)
    return np.minimum(block, extent - starts).astype(np.float64)


def per_image_density(spec: LayerSpec, blocks: np.ndarray) -> np.ndarray:
    """Fraction of outputs computed per image, from the decision grid without expanding it."""
    assert spec.gate is not None
    c, h, w = spec.out_shape
    weights = (_block_weights(c, spec.gate.S)[:, None, None] * _block_weights(h, spec.gate.b)[None, :, None]
               * _block_weights(w, spec.gate.b)[None, None, :])
    flat = blocks.reshape(blocks.shape[0], -1)
    return (flat @ weights.reshape(-1)) / (c * h * w)


def _bins(values: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(_EDGES, values, side="right") - 1, 0, HIST_BINS - 1)


def check_stats_against_masks(spec: LayerSpec, stats: LayerStats, blocks: np.ndarray, src: str) -> None:
    """Refuse statistics that the layer's own gate masks contradict (see the module docstring)."""
    where = f"layer {spec.name!r}.stats"
    n, total = blocks.shape[0], stats.n_images
    if n > total:
        raise HwsimError(src, f"{where}.n_images", f"{total}, but the masks hold {n} images (a sample of them)")
    density = per_image_density(spec, blocks)
    if stats.gate_density_hist:
        low, high = _bins(density - DENSITY_TOL), _bins(density + DENSITY_TOL)
        certain = np.bincount(low[low == high], minlength=HIST_BINS)
        over = np.flatnonzero(certain > np.asarray(stats.gate_density_hist))
        if over.size:
            k = int(over[0])
            raise HwsimError(src, f"{where}.gate_density_hist",
                             f"bin [{_EDGES[k]:.1f}, {_EDGES[k + 1]:.1f}) counts {stats.gate_density_hist[k]} images, "
                             f"but {int(certain[k])} of the masks' images fall in it")
    bound = stats.gate_density_std * math.sqrt((total - n) / n) + DENSITY_TOL
    sample = float(density.mean())
    if abs(sample - stats.gate_density_mean) > bound:
        raise HwsimError(src, f"{where}.gate_density_mean",
                         f"{stats.gate_density_mean:.6g}, but the masks' {n} images have mean density {sample:.6g} "
                         f"(at most {bound:.3g} apart for a sample of {total} images with std {stats.gate_density_std:.3g})")
