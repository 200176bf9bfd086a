"""Which convolutions are gated, with which gate: ``gate_for`` (the config's ``gate.layers`` and
per-stage overrides), ``default_selection``, and the builders of gated convs and backbones."""
from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating import registry
from cdg.gating.spec import GateSpec, make_gate, validate_gate
from cdg.models.resnet import ConvFactory, ConvSpec, ResNet, build_backbone, dense_conv


def gate_for(spec: ConvSpec, cfg, settings: dict | None = None) -> GateSpec | None:
    """The gate of conv ``spec`` under ``cfg`` (a ``cdg.config.GateConfig``; None: stays dense).

    ``settings``: method settings derived from the whole run config (``GateMethod.backbone_settings``);
    structure the method does not have is set to 1."""
    if cfg.method == "none" or spec.role == "stem":
        return None
    if cfg.layers == "3x3":
        if spec.role != "conv" or spec.kernel_size != 3:
            return None
    elif not any(fnmatch.fnmatchcase(spec.name, pattern) for pattern in cfg.layers):
        return None
    method = registry.method(cfg.method)
    stage = cfg.stages.get(spec.name.split(".")[0])
    groups = stage.groups if stage and stage.groups is not None else cfg.groups
    block = stage.channel_block if stage and stage.channel_block is not None else cfg.channel_block
    spatial = stage.spatial_block if stage and stage.spatial_block is not None else cfg.spatial_block
    if not method.channel_blocks:
        block = 1
    elif block == "all":
        block = spec.out_channels
    if not method.spatial_blocks:
        spatial = 1
    static = any(names_layer(entry, spec.name) for entry in getattr(cfg, "static_off", ()))
    return make_gate(cfg.method, groups=groups, channel_block=block, spatial_block=spatial, static_off=static,
                     sharpness=cfg.sharpness, saliency_norm=cfg.saliency_norm, **(settings or {}))


def names_layer(entry: str, name: str) -> bool:
    """Whether a ``gate.static_off`` entry names conv ``name``: the name itself or a prefix of its
    dotted path (``layer4`` and ``layer4.1`` name ``layer4.1.conv2``)."""
    return name == entry or name.startswith(entry + ".")


def check_static_off(backbone: nn.Module, entries) -> None:
    """One-line ``UserError`` naming ``gate.static_off`` for an entry that names no gated conv."""
    gated = [name for name, module in backbone.named_modules() if getattr(module, "gate", None) is not None]
    for entry in entries:
        if not any(names_layer(entry, name) for name in gated):
            raise UserError(f"gate.static_off: {entry!r} names no gated conv (gated: {', '.join(gated) or 'none'})")


def default_selection(gate: GateSpec) -> Callable[[ConvSpec], GateSpec | None]:
    """Gate every 3x3 conv of the residual blocks (role "conv"); stem, shortcuts and 1x1 convs stay dense."""

    def select(spec: ConvSpec) -> GateSpec | None:
        return gate if spec.role == "conv" and spec.kernel_size == 3 else None

    return select


def build_gated_conv(spec: ConvSpec, gate: GateSpec) -> nn.Conv2d:
    """The gated conv of ``gate.method`` for conv ``spec`` (validated: UserError naming the field)."""
    validate_gate(spec, gate)
    return registry.method(gate.method).layer(spec, gate)


def gated_conv_factory(select: Callable[[ConvSpec], GateSpec | None]) -> ConvFactory:
    """A ConvFactory: a gated conv where ``select(spec)`` returns a GateSpec, else the dense conv."""

    def factory(spec: ConvSpec) -> nn.Module:
        gate = select(spec)
        return dense_conv(spec) if gate is None else build_gated_conv(spec, gate)

    return factory


def build_gated_backbone(cfg) -> ResNet:
    """The backbone with the convs ``cfg.gate`` selects replaced by gated ones (``cfg``: a ``cdg.config.Config``)."""
    if cfg.gate.method == "none":
        return build_backbone(cfg.model)
    method = registry.method(cfg.gate.method)
    settings = method.backbone_settings(cfg)
    backbone = build_backbone(cfg.model, gated_conv_factory(lambda spec: gate_for(spec, cfg.gate, settings)))
    check_static_off(backbone, cfg.gate.static_off)
    method.adopt(backbone)
    return backbone
