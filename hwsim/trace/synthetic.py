"""Seeded synthetic gated traces, for benchmarks and tests that need a trace of a given size but no
trained cdg model: gate every 3x3 conv of a layer table, draw decisions (blobby or i.i.d.) and
optional input-activation masks, write them with :class:`~hwsim.trace.io.TraceWriter`.

Draw order (fixed, so a seed gives the same trace): per layer in table order, the activation
masks of a conv (when ``act_images`` > 0), then the gate decisions of a gated layer.
numpy only.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from hwsim.trace.io import TraceWriter
from hwsim.trace.schema import GateGrid, LayerSpec

MaskFn = Callable[[tuple, np.random.Generator], np.ndarray]


def gate_3x3_convs(specs: Sequence[LayerSpec], gate: GateGrid, stem: str = "conv1") -> list[LayerSpec]:
    """``specs`` with every 3x3 conv except the stem gated by ``gate`` (base channels resolved)."""
    return [replace(s, gate=gate.resolved(s.in_shape[0])) if s.op == "conv" and s.kernel == (3, 3) and s.name != stem
            else s for s in specs]


def smooth_masks(grid: tuple[int, int, int, int], rng: np.random.Generator,
                 density_range: tuple[float, float] = (0.3, 0.7)) -> np.ndarray:
    """Spatially smooth random saliency (a 3-tap box filter twice per spatial axis: blobby), each
    image thresholded at the k-th smallest value so that a fraction drawn from ``density_range``
    of its decisions is on."""
    field = rng.random(grid)
    for axis in (2, 3):
        for _ in range(2):
            field = (np.roll(field, 1, axis) + field + np.roll(field, -1, axis)) / 3
    density = rng.uniform(*density_range, size=grid[0])
    flat = np.sort(field.reshape(grid[0], -1), axis=1)
    k = np.minimum(((1 - density) * flat.shape[1]).astype(int), flat.shape[1] - 1)
    return field >= flat[np.arange(grid[0]), k][:, None, None, None]


def iid_masks(density: float) -> MaskFn:
    """Independent decisions, each on with probability ``density``."""
    return lambda grid, rng: rng.random(grid) < density


def write_synthetic_trace(path: str | os.PathLike, specs: Sequence[LayerSpec], n_images: int,
                          rng: np.random.Generator, masks: MaskFn = smooth_masks, act_images: int = 0,
                          act_density: float = 0.5, meta: dict | None = None, overwrite: bool = False) -> None:
    """A trace of ``specs`` (gated layers as given, e.g. by :func:`gate_3x3_convs`) with
    ``n_images`` images of gate decisions from ``masks`` and, for every conv, i.i.d. input
    activation masks of ``act_density`` for the first ``min(n_images, act_images)`` images.
    ``meta`` gets ``synthetic: true`` unless it says otherwise."""
    meta = dict(meta or {})
    meta.setdefault("synthetic", True)
    with TraceWriter(path, meta=meta, overwrite=overwrite) as tw:
        for spec in specs:
            acts = None
            if act_images and spec.op == "conv":
                acts = rng.random((min(n_images, act_images), *spec.in_shape)) < act_density
            gm = masks(spec.gate_grid(n_images), rng) if spec.gate is not None else None
            tw.add_layer(spec, gate_masks=gm, act_masks=acts)
