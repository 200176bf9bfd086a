"""Shared builders of the cdg.gating tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.selection import build_gated_conv
from cdg.gating.spec import make_gate
from cdg.models.resnet import ConvSpec

from tests.cdg.helpers import TINY

METHODS = ("cdg", "cgnet", "fbs", "dgnet")


def spec_of(c_in=8, c_out=8, stride=1, k=3, name="layer1.0.conv1"):
    return ConvSpec(name, c_in, c_out, k, stride, k // 2, "conv")


def make(method="cdg", c_in=8, c_out=8, stride=1, **gate):
    torch.manual_seed(0)
    return build_gated_conv(spec_of(c_in, c_out, stride), make_gate(method, **gate))


def dense_out(layer, x):
    return F.conv2d(x, layer.weight, None, layer.stride, layer.padding)


def gated(tmp_path, name, *extra):
    """Overrides of a tiny gated run (3 epochs: 1 dense, 1 ramp) in ``tmp_path/name``."""
    return [*TINY, f"run.dir={tmp_path}", f"run.name={name}", "train.epochs=3", "gate.warmup_epochs=1",
            "gate.ramp_epochs=1", "gate.trace_images=8", *extra]
