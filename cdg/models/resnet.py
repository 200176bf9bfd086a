"""ResNet-18/34/50 backbones with a CIFAR or ImageNet stem and a width multiplier.

Every convolution is created through a ``ConvFactory`` that receives a ``ConvSpec``
(its dotted module name, shape and role). Dynamic-pruning methods swap convolutions
for gated ones by passing another factory; the network definition is never copied.
The backbone returns globally pooled features (N x ``feature_dim``), no classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from hwsim.trace.errors import UserError

ConvRole = Literal["stem", "conv", "shortcut"]


@dataclass(frozen=True)
class ConvSpec:
    """What a conv factory needs to build (and a tracer to describe) one convolution."""

    name: str  # dotted module path inside the backbone, e.g. "layer2.0.conv1"
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    role: ConvRole


ConvFactory = Callable[[ConvSpec], nn.Module]


def dense_conv(spec: ConvSpec) -> nn.Module:
    return nn.Conv2d(
        spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, bias=False
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, name: str, in_ch: int, width: int, stride: int, make_conv: ConvFactory):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = make_conv(ConvSpec(f"{name}.conv1", in_ch, width, 3, stride, 1, "conv"))
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = make_conv(ConvSpec(f"{name}.conv2", width, out_ch, 3, 1, 1, "conv"))
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(name, in_ch, out_ch, stride, make_conv)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, name: str, in_ch: int, width: int, stride: int, make_conv: ConvFactory):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = make_conv(ConvSpec(f"{name}.conv1", in_ch, width, 1, 1, 0, "conv"))
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = make_conv(ConvSpec(f"{name}.conv2", width, width, 3, stride, 1, "conv"))
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = make_conv(ConvSpec(f"{name}.conv3", width, out_ch, 1, 1, 0, "conv"))
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(name, in_ch, out_ch, stride, make_conv)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(name: str, in_ch: int, out_ch: int, stride: int, make_conv: ConvFactory) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    conv = make_conv(ConvSpec(f"{name}.shortcut.0", in_ch, out_ch, 1, stride, 0, "shortcut"))
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)


class ResNet(nn.Module):
    def __init__(
        self,
        arch: str = "resnet18",
        stem: Literal["cifar", "imagenet"] = "cifar",
        width: float = 1.0,
        conv_factory: ConvFactory = dense_conv,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"model.arch: unknown architecture {arch!r} (valid: {', '.join(ARCHS)})")
        if stem not in ("cifar", "imagenet"):
            raise UserError(f"model.stem: must be 'cifar' or 'imagenet', got {stem!r}")
        if width <= 0:
            raise UserError(f"model.width: must be > 0, got {width}")
        block, depths = ARCHS[arch]
        widths = [max(1, int(round(w * width))) for w in STAGE_WIDTHS]
        stem_ch = widths[0]
        self.arch, self.stem_type = arch, stem
        if stem == "cifar":
            self.conv1 = conv_factory(ConvSpec("conv1", in_channels, stem_ch, 3, 1, 1, "stem"))
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = conv_factory(ConvSpec("conv1", in_channels, stem_ch, 7, 2, 3, "stem"))
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_ch)
        self.relu = nn.ReLU(inplace=True)
        in_ch = stem_ch
        for stage, (stage_width, depth) in enumerate(zip(widths, depths), start=1):
            blocks = []
            for index in range(depth):
                stride = 2 if (stage > 1 and index == 0) else 1
                blocks.append(block(f"layer{stage}.{index}", in_ch, stage_width, stride, conv_factory))
                in_ch = stage_width * block.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def build_backbone(cfg, conv_factory: ConvFactory = dense_conv) -> ResNet:
    """Backbone from a resolved ``ModelConfig``."""
    return ResNet(
        arch=cfg.arch,
        stem=cfg.stem,
        width=cfg.width,
        conv_factory=conv_factory,
        zero_init_residual=cfg.zero_init_residual,
    )


def conv_graph(net: ResNet) -> dict[str, list[str]]:
    """For each conv (by module name), the convs whose output tensors it reads.

    Element-wise ops (BN, ReLU, residual add, pooling) are not nodes: a block's output is
    named by the convs that produced it (its last conv, plus the shortcut conv or the
    block input it adds), as in ``hwsim.networks``, so residual tensors stay alive in the
    simulator's layer graph.
    """
    graph: dict[str, list[str]] = {"conv1": []}
    source = ["conv1"]
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(net, stage_name)):
            block_name = f"{stage_name}.{index}"
            names = [n for n, _ in block.named_children() if n.startswith("conv")]
            previous = source
            for conv in names:
                graph[f"{block_name}.{conv}"] = list(previous)
                previous = [f"{block_name}.{conv}"]
            last = previous[0]
            if isinstance(block.shortcut, nn.Sequential):
                graph[f"{block_name}.shortcut.0"] = list(source)
                source = [last, f"{block_name}.shortcut.0"]
            else:
                source = [last, *source]
    return graph


def _after_norm(zeros, norm: nn.Module):
    """Zeros of a conv's module output that survive its BatchNorm: all of them when the BatchNorm was
    moved into the conv (an Identity is left in its place), none otherwise (BN(0) = β − γμ/σ ≠ 0)."""
    return zeros if zeros is not None and isinstance(norm, nn.Identity) else None


def _both(a, b):
    """Zeros of relu(a + b): where both summands are structurally zero."""
    return None if a is None or b is None else a & b


def structural_input_zeros(net: ResNet, out_zeros: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """For every conv (module name), the N x C_in x H_in x W_in bool mask of its input elements that
    are exactly zero whatever the image values, or None where there are none.

    ``out_zeros``: conv name -> N x C_out x H_out x W_out bool of that conv module's output elements
    that are exactly zero because its gate switched them off (absent: none). This function knows
    what the network computes between convs: a BatchNorm left in the block (not moved into the
    conv) destroys the zeros, ReLU keeps them, a residual sum relu(main + shortcut) is zero only
    where both are, and the ImageNet stem's max-pool only where its whole window is (padding
    ignored). Accidental zeros (a ReLU of a negative value) are not structural and not reported.
    """
    stem = _after_norm(out_zeros.get("conv1"), net.bn1)
    if stem is not None and isinstance(net.maxpool, nn.MaxPool2d):
        pool = net.maxpool
        stem = nn.functional.max_pool2d((~stem).float(), pool.kernel_size, pool.stride, pool.padding) == 0
    inputs: dict[str, torch.Tensor | None] = {"conv1": None}
    zeros = stem
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(net, stage_name)):
            name = f"{stage_name}.{index}"
            convs = sorted(n for n, _ in block.named_children() if n.startswith("conv"))
            main = zeros
            for conv in convs:
                inputs[f"{name}.{conv}"] = main
                main = _after_norm(out_zeros.get(f"{name}.{conv}"), getattr(block, conv.replace("conv", "bn")))
            if isinstance(block.shortcut, nn.Sequential):
                inputs[f"{name}.shortcut.0"] = zeros
                short = _after_norm(out_zeros.get(f"{name}.shortcut.0"), block.shortcut[1])
            else:
                short = zeros
            zeros = _both(main, short)
    return inputs
