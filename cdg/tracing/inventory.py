"""What convolutions a backbone has: ``ConvInfo`` per conv (shapes from one dummy forward, dense,
gateable and overhead MACs) and its row in hwsim's layer table (``layer_spec``).

A gated conv is any ``nn.Conv2d`` with a ``gate`` (a ``cdg.gating.spec.GateSpec``) and a ``spec``
(its ``ConvSpec``); the MACs its gate can remove or adds are the gate's to say
(``gate.base_channels``, ``gate.overhead_macs``), so this module needs no gate method.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdg.models.resnet import ConvSpec
from hwsim.trace import GateGrid, make_layer


@dataclass(frozen=True)
class ConvInfo:
    """One conv of the backbone, as seen on a dummy image of the training size."""

    name: str
    spec: ConvSpec
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    gate: object | None
    """The conv's ``GateSpec``; None for a dense conv."""

    @property
    def dense_macs(self) -> int:
        """C_out H_out W_out C_in k² for one image."""
        return self.spec.out_channels * self.out_shape[1] * self.out_shape[2] * self.spec.in_channels * self.spec.kernel_size**2

    @property
    def overhead_macs(self) -> int:
        """Per-image MACs of the gate and predictor themselves (mask-independent; FBS's per-output
        saliency scaling, which depends on the mask, is left out)."""
        if self.gate is None:
            return 0
        return self.gate.overhead_macs(self.spec, (self.in_shape[1], self.in_shape[2]))

    @property
    def gated_macs(self) -> int:
        """MACs that the gate can remove (conditional part, or the whole conv without a base path)."""
        if self.gate is None:
            return 0
        return self.dense_macs * (self.spec.in_channels - self.gate.base_channels(self.spec)) // self.spec.in_channels


@torch.no_grad()
def conv_inventory(backbone: nn.Module, image_size: int) -> list[ConvInfo]:
    """Shapes of every conv from one forward of a dummy image (eval mode, state restored)."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, inp, out, name=name: shapes.__setitem__(name, (tuple(inp[0].shape[1:]), tuple(out.shape[1:])))
            ))
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    try:
        backbone(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    infos = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            gate = getattr(module, "gate", None)
            spec = module.spec if gate is not None else ConvSpec(
                name, module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                module.padding[0], "conv",
            )
            infos.append(ConvInfo(name, spec, *shapes[name], gate))
    return infos


def layer_spec(name: str, info: ConvInfo, inputs=(), source: str = "trace"):
    """The hwsim layer-table row of one backbone conv (ConvInfo), gate structure included."""
    gate = None
    if info.gate is not None:
        gate = GateGrid(
            G=info.gate.groups if info.gate.has_thresholds else 1,
            S=info.gate.channel_block,
            b=info.gate.spatial_block,
            base_channels=info.gate.base_channels(info.spec),
        )
    return make_layer(name, "conv", info.in_shape, info.spec.out_channels, info.spec.kernel_size, info.spec.stride,
                      info.spec.padding, gate=gate, inputs=list(inputs), source=source)
