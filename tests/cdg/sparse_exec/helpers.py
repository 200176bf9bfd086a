"""Builders of the sparse-executor tests: small gated backbones whose gates are about half on."""
from __future__ import annotations

import torch

from cdg.gating import registry
from cdg.gating.base import gated_layers
from cdg.gating.selection import default_selection, gated_conv_factory
from cdg.gating.spec import make_gate
from cdg.models.resnet import ResNet

# (method, gate structure): every method, and CDG's structures
CASES = [
    ("cdg", dict(channel_block="all", spatial_block=1)),   # per pixel
    ("cdg", dict(channel_block="all", spatial_block=2)),   # 2x2 blocks
    ("cdg", dict(channel_block="all", spatial_block=3)),   # 3x3 blocks, ragged edges
    ("cdg", dict(channel_block=4, spatial_block=1)),       # channel blocks
    ("cdg", dict(channel_block=4, spatial_block=2)),       # channel x pixel blocks
    ("cdg", dict(channel_block=1, spatial_block=1)),       # unstructured
    ("cgnet", dict(grouping="shuffle")),                   # published: grouped base path, shuffled input
    ("cgnet", dict(grouping="first")),                     # base = first C_in/G channels
    ("fbs", dict(keep_ratio=0.5)),
    ("dgnet", dict(spatial_block=1)),
    ("dgnet", dict(spatial_block=2)),
]


def case_named(name: str):
    """The case of ``CASES`` with id ``name``."""
    return next(c for c in CASES if case_id(c) == name)


def case_id(case) -> str:
    method, gate = case
    return method + "".join(f"-{k[0]}{v}" for k, v in gate.items())


def gated_backbone(method: str, channel_block=1, spatial_block=1, seed: int = 0, arch: str = "resnet18",
                   every_conv: bool = False, **settings) -> ResNet:
    """``arch`` (ResNet-18) at width 1/8 with ``method`` gates on its 3x3 block convs (``every_conv``:
    on all block convs, 1x1 included), eval mode, random BatchNorm statistics, gates shifted to
    about half on."""
    torch.manual_seed(seed)

    def select(spec):
        block = spec.out_channels if channel_block == "all" else channel_block
        gate = make_gate(method, channel_block=block, spatial_block=spatial_block, **settings)
        return (gate if spec.role == "conv" else None) if every_conv else default_selection(gate)(spec)

    net = ResNet(arch, "cifar", 0.125, gated_conv_factory(select))
    registry.method(method).adopt(net)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    with torch.no_grad():
        for _, layer in gated_layers(net):
            layer.shift_gate(1.0)  # cdg/cgnet: Δ from -1 to 0; dgnet: biases from +1 to 0
    return net.eval()
