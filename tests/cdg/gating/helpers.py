"""Shared builders of the cdg.gating tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.selection import build_gated_conv
from cdg.gating.spec import make_gate
from cdg.models.resnet import ConvSpec

METHODS = ("cdg", "cgnet", "fbs", "dgnet")


def spec_of(c_in=8, c_out=8, stride=1, k=3, name="layer1.0.conv1"):
    return ConvSpec(name, c_in, c_out, k, stride, k // 2, "conv")


def make(method="cdg", c_in=8, c_out=8, stride=1, **gate):
    torch.manual_seed(0)
    return build_gated_conv(spec_of(c_in, c_out, stride), make_gate(method, **gate))


def dense_out(layer, x):
    return F.conv2d(x, layer.weight, None, layer.stride, layer.padding)
