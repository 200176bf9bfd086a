"""Calibration after training: one global gate shift, found by bisection, so that the measured
MAC ratio on held-out training images meets the target (``calibrate``), and the measured ratios
themselves (``measured_layer_macs``, ``measured_ratio``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdg.gating.base import gated_layers
from cdg.gating.controller import shift_gates
from cdg.tracing.input_credit import input_credit


@torch.no_grad()
def measured_layer_macs(backbone: nn.Module, images: torch.Tensor, infos: list, batch: int = 256,
                        full: bool = False) -> dict[str, float]:
    """Effective MACs of every conv of ``infos`` summed over ``images`` (eval mode, hard gates);
    ungated convs count their dense MACs. ``full``: minus the input-side credit of each conv
    (``cdg.tracing.input_credit``, the full accounting); otherwise output-only."""
    gated = dict(gated_layers(backbone))
    effective = dict.fromkeys((info.name for info in infos), 0.0)
    was_training = backbone.training
    backbone.eval()
    try:
        for start in range(0, images.shape[0], batch):
            chunk = images[start : start + batch]
            backbone(chunk)
            for info in infos:
                if info.name in gated and gated[info.name].record is not None:
                    effective[info.name] += float(gated[info.name].record.macs["total"].double().sum())
                else:
                    effective[info.name] += info.dense_macs * chunk.shape[0]
            if full:
                records = {name: layer.record for name, layer in gated.items() if layer.record is not None}
                for name, skipped in input_credit(backbone, records).items():
                    effective[name] -= float(skipped.double().sum())
    finally:
        backbone.train(was_training)
    return effective


def measured_ratio(backbone: nn.Module, images: torch.Tensor, infos: list, batch: int = 256, full: bool = False) -> float:
    """Network effective/dense MAC ratio on ``images`` (eval mode, hard gates; ``full``: the full accounting)."""
    dense_total = sum(i.dense_macs for i in infos)
    return sum(measured_layer_macs(backbone, images, infos, batch, full).values()) / (dense_total * images.shape[0])


@dataclass(frozen=True)
class Calibration:
    """Result of ``calibrate``: the gate shift, the measured ratio before and after, and the layers
    held at a different shift (``held``: name -> shift) because their gates jump together."""

    shift: float
    ratio_before: float
    ratio_after: float
    held: dict[str, float]


def calibrate(backbone: nn.Module, images: torch.Tensor, infos: list, target: float,
              tolerance: float = 0.005, iterations: int = 30, full: bool = False) -> Calibration:
    """Shift the gates so the measured ratio on ``images`` meets ``target`` (within ``tolerance``, relative);
    ``full``: the ratio of the full accounting (input-side credit included), else output-only.

    First one global shift, by bisection: the ratio falls monotonically as the shift grows, because
    every gate is a threshold on a score the shift does not change. The ratio can jump across the
    target, though, when many decisions share one score (a predictor whose output barely depends on
    the image, a layer with a 1x1 map): then the layers that jump most across the final bracket are
    held at its dense end and the others are bisected again from there, until the target is met,
    no layer explains the jump, or every layer is held. Whatever happens, the gates are left at the
    closest ratio seen.
    """
    names = [name for name, _ in gated_layers(backbone)]
    dense_total = sum(i.dense_macs for i in infos) * images.shape[0]
    applied = dict.fromkeys(names, 0.0)

    def close(ratio: float) -> bool:
        return abs(ratio - target) <= tolerance * target

    def move_to(shifts: dict[str, float]) -> None:
        shift_gates(backbone, 1.0, {name: shifts[name] - applied[name] for name in names})
        applied.update(shifts)

    def measure() -> tuple[float, dict[str, float]]:
        macs = measured_layer_macs(backbone, images, infos, full=full)
        return sum(macs.values()) / dense_total, macs

    before, macs = measure()
    best = (abs(before - target), dict(applied), before)
    held: dict[str, float] = {}
    start, ratio = 0.0, before
    while not close(best[2]):
        free = [name for name in names if name not in held]
        if not free:
            break

        def at(shift: float) -> tuple[float, dict[str, float]]:
            nonlocal best
            move_to({**applied, **dict.fromkeys(free, shift)})
            r, m = measure()
            best = min(best, (abs(r - target), dict(applied), r), key=lambda item: item[0])
            return r, m

        # bracket [dense side: ratio above target, sparse side: below] in the free layers' shift
        sides = {ratio > target: (start, macs)}
        direction = 1.0 if ratio > target else -1.0
        for reach in (4.0, 16.0, 64.0, 256.0):
            shift = start + direction * reach
            r, m = at(shift)
            sides[r > target] = (shift, m)
            if close(r) or len(sides) == 2:
                break
        if close(best[2]) or len(sides) < 2:  # met, or even the widest shift cannot reach the target
            break
        for _ in range(iterations):
            (dense_shift, _), (sparse_shift, _) = sides[True], sides[False]
            middle = 0.5 * (dense_shift + sparse_shift)
            if middle in (dense_shift, sparse_shift):  # bracket at float resolution
                break
            r, m = at(middle)
            if close(r):
                break
            sides[r > target] = (middle, m)
        if close(best[2]):
            break
        (dense_shift, dense_macs), (_, sparse_macs) = sides[True], sides[False]
        jumps = {name: dense_macs.get(name, 0.0) - sparse_macs.get(name, 0.0) for name in free}
        largest = max(jumps.values())
        if largest <= 0:  # no layer explains the jump
            break
        # Hold the jumping layers on the dense side: at the sparse side a layer whose decisions
        # share one score loses most of its work at once, while the others thin out gracefully.
        held.update({name: dense_shift for name, jump in jumps.items() if jump >= 0.5 * largest})
        move_to({**applied, **dict.fromkeys(free, dense_shift)})
        start, macs = dense_shift, dense_macs
        ratio = sum(macs.values()) / dense_total
    _, shifts, after = best
    move_to(shifts)
    free_shifts = [shifts[name] for name in names if name not in held] or [0.0]
    base = free_shifts[0]
    return Calibration(base, before, after, {name: s for name, s in shifts.items() if s != base})
