"""Where a gated network computes, per stage, as small pictures from a trace's stored masks: the
one summary ``python -m cdg.masks`` (PNG overlays) and ``analysis``'s dashboard (heat maps) share.

A stage's gate map of an image is the fraction of output channels whose conditional part ran at
each output pixel, averaged over the stage's gated layers that share its output resolution (the
first one's; a stage's convs all have one in a ResNet). The input proxy is the fraction of the
first residual stage's input channels that are non-zero (post-ReLU stem output), the closest thing
to the image a trace stores.
"""
from __future__ import annotations

import numpy as np

from hwsim.trace.errors import UserError
from hwsim.trace.io import Trace


def stage_of(layer_name: str) -> str:
    """``layer3.1.conv2`` -> ``layer3``; a top-level conv (the stem) is its own stage."""
    return layer_name.split(".")[0]


def _need(trace: Trace, images: int) -> None:
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise UserError(f"images: must be an integer >= 1, got {images!r}")
    if images > trace.n_mask_images:
        raise UserError(f"{trace.path}: the trace stores masks of {trace.n_mask_images} images, {images} asked for "
                        "(re-trace with python -m cdg.trace --run RUN --images N)")


def stage_gate_maps(trace: Trace, images: int) -> dict[str, np.ndarray]:
    """Per stage with gated layers (in layer order): float32 images x H x W maps in [0, 1]."""
    _need(trace, images)
    sums: dict[str, list] = {}
    for layer in trace.layers:
        masks = layer.gate_masks()
        if masks is None:
            continue
        density = masks[:images].mean(axis=1, dtype=np.float32)
        entry = sums.setdefault(stage_of(layer.spec.name), [np.zeros_like(density), 0])
        if entry[0].shape == density.shape:
            entry[0] += density
            entry[1] += 1
    if not sums:
        raise UserError(f"{trace.path}: no gated layer with stored gate masks (a dense run, or gate.trace_images=0)")
    return {stage: total / count for stage, (total, count) in sums.items()}


def input_proxy(trace: Trace, images: int) -> np.ndarray | None:
    """float32 images x H x W: fraction of non-zero input channels of the first layer of a residual
    stage that has activation masks; None if the trace has none for that many images."""
    _need(trace, images)
    for layer in trace.layers:
        if stage_of(layer.spec.name) != layer.spec.name and layer.act_masks is not None:
            if layer.act_masks.shape[0] >= images:
                return layer.act_masks[:images].mean(axis=1, dtype=np.float32)
            return None
    return None
