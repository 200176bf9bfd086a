"""Forward MACs of the backbones in each training step: what the loop performs and what an executor
that skips would need (``TrainMacMeter``).

The training loop computes every gated conv densely and masks it (the conditional part of cdg and
cgnet, the whole conv of fbs and dgnet), so per image a backbone forward *performs*

    Σ_convs dense MACs + Σ_gated convs (gate and predictor overhead + the per-output gate work,
    e.g. FBS's scaling by π, on every output element)

whatever the masks (a conv under ``gate.static_off`` performs its base path only), in both
branches and in the momentum / target encoder of MoCo and BYOL (which is gated too unless
``gate.branches: one``). The *ideal* is the effective MACs of the same forwards
from their ``GateRecord``s (``cdg.gating.accounting``; ungated convs dense), in both conventions:
output-only and full (minus the input-side credit, ``cdg.tracing.input_credit``). Both come from
static per-layer counts and the records the forward leaves, so the meter adds no forward pass.

Counted: the backbone convs and their gates only (the MLP heads, BatchNorms and the loss are not),
forward only (the backward of the online encoder costs about twice its forward again; the target
encoder has none). Per process: the trainer sums over DDP ranks.
"""
from __future__ import annotations

from torch import nn

from cdg.gating.base import collect_records
from cdg.tracing.input_credit import input_credit
from cdg.tracing.inventory import conv_inventory

KEYS = ("performed", "ideal", "ideal_full", "dense")


def performed_macs_per_image(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    """(performed, dense) forward MACs of one training image through ``backbone``: gated convs run
    densely, plus every gate's and predictor's own work (see the module docstring)."""
    performed = dense = 0
    for info in conv_inventory(backbone, image_size):
        dense += info.dense_macs
        performed += info.dense_macs
        if info.gate is not None and getattr(info.gate, "static_off", False):  # gate.static_off: the loop runs the base path only
            performed -= info.gated_macs
        if info.gate is not None:
            outputs = info.out_shape[0] * info.out_shape[1] * info.out_shape[2]
            performed += info.overhead_macs + info.gate.impl.gate_macs_per_output * outputs
    return performed, dense


class TrainMacMeter:
    """Counts the forward MACs of ``model.backbone`` (and ``model.target_backbone`` when there is one)
    between ``begin_step`` and ``end_step``; forwards outside a step (kNN evaluation) are not counted."""

    def __init__(self, model: nn.Module, image_size: int):
        self.backbones = [model.backbone]
        target = getattr(model, "target_backbone", None)
        if target is not None:
            self.backbones.append(target)
        self.static = [performed_macs_per_image(b, image_size) for b in self.backbones]
        self.active = False
        self.step = dict.fromkeys(KEYS, 0.0)
        self._hooks = [b.register_forward_hook(lambda m, args, out, i=i: self._count(i, args[0].shape[0]))
                       for i, b in enumerate(self.backbones)]

    def _count(self, index: int, n: int) -> None:
        if not self.active:
            return
        backbone = self.backbones[index]
        performed, dense = self.static[index]
        records = collect_records(backbone)
        ideal = float(dense * n) - sum(float(r.dense_macs) * n for r in records.values())
        ideal += sum(float(r.macs["total"].double().sum()) for r in records.values())
        credit = sum(float(c.double().sum()) for c in input_credit(backbone, records).values())
        for key, value in zip(KEYS, (performed * n, ideal, ideal - credit, dense * n)):
            self.step[key] += float(value)

    def begin_step(self) -> None:
        self.step = dict.fromkeys(KEYS, 0.0)
        self.active = True

    def end_step(self) -> dict[str, float]:
        """This step's forward MACs: ``performed``, ``ideal`` (output-only), ``ideal_full``, ``dense``."""
        self.active = False
        return dict(self.step)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
