"""Synthetic gated networks for measuring the executor where it can pay off: full width, larger
inputs, random weights and CDG-structured decisions drawn with a seeded generator.

Structures (``parse_structure``): ``pixel`` (S = C_out, b = 1), ``block<b>`` (S = C_out, b x b
pixel blocks), ``channel<S>`` (S output channels, b = 1), ``channel<S>_block<b>`` and
``unstructured`` (S = b = 1). Every image gets floor(density x cells) active decision cells per
layer, plus one with probability frac(density x cells) (so small grids keep the density in
expectation), at seeded random places of its decision grid (a block structure is spatially
coherent by construction: a cell is a b x b block).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.base import gated_layers
from cdg.gating.selection import default_selection
from cdg.gating.spec import make_gate, validate_gate
from cdg.models.resnet import ARCHS, ConvSpec, ResNet, dense_conv
from cdg.sparse_exec.fixed import FixedMaskConv
from cdg.tracing.inventory import conv_inventory

_PATTERN = re.compile(r"^(?:(pixel)|block(\d+)|channel(\d+)(?:_block(\d+))?|(unstructured))$")


def parse_structure(name: str) -> tuple[int | None, int]:
    """(S, b); S None means C_out (one decision per pixel or block)."""
    m = _PATTERN.match(name)
    if not m:
        raise UserError(f"--structure: unknown structure {name!r} "
                        "(pixel, block<b>, channel<S>, channel<S>_block<b>, unstructured)")
    if m.group(1):
        return None, 1
    if m.group(2):
        return None, _positive(m.group(2))
    if m.group(3):
        return _positive(m.group(3)), _positive(m.group(4) or "1")
    return 1, 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise UserError(f"--structure: block sizes must be >= 1, got {value}")
    return value


def build_synthetic(arch: str, width: float, stem: str, structure: str, groups: int, seed: int) -> ResNet:
    """A ResNet whose 3x3 residual convs are ``FixedMaskConv``s of ``structure`` (random weights,
    eval mode; call ``set_masks`` before running it)."""
    if arch not in ARCHS:
        raise UserError(f"--arch: unknown architecture {arch!r} (valid: {', '.join(ARCHS)})")
    s, b = parse_structure(structure)
    torch.manual_seed(seed)

    def factory(spec: ConvSpec) -> nn.Module:
        if default_selection(make_gate("cdg"))(spec) is None:
            return dense_conv(spec)
        gate = make_gate("cdg", groups=groups, channel_block=spec.out_channels if s is None else s, spatial_block=b)
        validate_gate(spec, gate)
        return FixedMaskConv(spec, gate)

    return ResNet(arch, stem, width, factory).eval()


def density_for_reduction(net: ResNet, image_size: int, reduction: float) -> float:
    """Conditional-path density at which the backbone's conv MACs fall ``reduction``-fold (gate
    overheads not counted): dense - (1 - d) x conditional = dense / reduction."""
    infos = conv_inventory(net, image_size)
    dense = sum(i.dense_macs for i in infos)
    conditional = sum(i.gated_macs for i in infos)
    density = 1.0 - (1.0 - 1.0 / reduction) * dense / max(conditional, 1)
    if not 0.0 <= density <= 1.0:
        raise UserError(f"--reduction {reduction}: not reachable with this base path (needs conditional "
                        f"density {density:.3f}; lower it or raise --groups)")
    return density


def draw_masks(net: ResNet, image_size: int, images: int, density: float, seed: int) -> None:
    """Give every gated layer ``images`` decision masks with about density x cells cells on each."""
    if not 0.0 <= density <= 1.0:
        raise UserError(f"--density: must be in [0, 1], got {density}")
    generator = torch.Generator().manual_seed(seed)
    shapes = {i.name: i.out_shape for i in conv_inventory(net, image_size)}
    for name, layer in gated_layers(net):
        _, h, w = shapes[name]
        s, bh, bw = layer.impl.decision_block(layer.gate, (h, w))
        grid = (layer.out_channels // s, -(-h // bh), -(-w // bw))
        cells = grid[0] * grid[1] * grid[2]
        order = torch.stack([torch.randperm(cells, generator=generator) for _ in range(images)])
        exact = density * cells  # floor(exact) cells per image, one more with probability frac(exact)
        extra = (torch.rand(images, generator=generator) < exact - int(exact)).long()
        on = (int(exact) + extra)[:, None]
        layer.set_mask((order < on).float().view(images, *grid))
