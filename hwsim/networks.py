"""Built-in layer tables (dense, ungated) for runs without a trace.

Shapes follow the torchvision ResNets (v1.5: the stride of a bottleneck sits in its 3x3
conv), the common CIFAR ResNet-18 (3x3 stem, no max-pool) and GoogLeNet v1 (Szegedy et al.,
"Going deeper with convolutions", CVPR 2015, Table 1; the network SCNN's density sweep uses). Pooling and element-wise ops
are not layers here; ``inputs`` records which earlier tensors each layer reads, residual
tensors included, so the layer graph keeps them alive.
"""
from __future__ import annotations

from typing import Callable

from hwsim.trace.errors import HwsimError
from hwsim.trace import LayerSpec, make_layer


def _basic_stage(layers: list[LayerSpec], src: list[str], shape: tuple[int, int, int],
                 planes: int, blocks: int, stride: int, prefix: str) -> tuple[list[str], tuple[int, int, int]]:
    for b in range(blocks):
        s = stride if b == 0 else 1
        name = f"{prefix}.{b}"
        c1 = make_layer(f"{name}.conv1", "conv", shape, planes, 3, s, 1, inputs=src)
        c2 = make_layer(f"{name}.conv2", "conv", c1.out_shape, planes, 3, 1, 1, inputs=[c1.name])
        layers += [c1, c2]
        if s != 1 or shape[0] != planes:
            sc = make_layer(f"{name}.shortcut", "conv", shape, planes, 1, s, 0, inputs=src)
            layers.append(sc)
            src = [c2.name, sc.name]
        else:
            src = [c2.name] + src
        shape = c2.out_shape
    return src, shape


def _bottleneck_stage(layers: list[LayerSpec], src: list[str], shape: tuple[int, int, int],
                      planes: int, blocks: int, stride: int, prefix: str) -> tuple[list[str], tuple[int, int, int]]:
    out_c = planes * 4
    for b in range(blocks):
        s = stride if b == 0 else 1
        name = f"{prefix}.{b}"
        c1 = make_layer(f"{name}.conv1", "conv", shape, planes, 1, 1, 0, inputs=src)
        c2 = make_layer(f"{name}.conv2", "conv", c1.out_shape, planes, 3, s, 1, inputs=[c1.name])
        c3 = make_layer(f"{name}.conv3", "conv", c2.out_shape, out_c, 1, 1, 0, inputs=[c2.name])
        layers += [c1, c2, c3]
        if s != 1 or shape[0] != out_c:
            sc = make_layer(f"{name}.shortcut", "conv", shape, out_c, 1, s, 0, inputs=src)
            layers.append(sc)
            src = [c3.name, sc.name]
        else:
            src = [c3.name] + src
        shape = c3.out_shape
    return src, shape


def resnet18_cifar(num_classes: int = 10) -> list[LayerSpec]:
    layers = [make_layer("conv1", "conv", (3, 32, 32), 64, 3, 1, 1)]
    src, shape = ["conv1"], layers[0].out_shape
    for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
        src, shape = _basic_stage(layers, src, shape, planes, 2, stride, f"layer{i + 1}")
    layers.append(make_layer("fc", "linear", (shape[0], 1, 1), num_classes, inputs=src))
    return layers


def _imagenet(stage: Callable, blocks: tuple[int, ...], width: int, num_classes: int) -> list[LayerSpec]:
    layers = [make_layer("conv1", "conv", (3, 224, 224), 64, 7, 2, 3)]
    src, shape = ["conv1"], (64, 56, 56)          # after the 3x3/2 max-pool
    for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 2, 2))):
        src, shape = stage(layers, src, shape, planes, n, stride, f"layer{i + 1}")
    layers.append(make_layer("fc", "linear", (width, 1, 1), num_classes, inputs=src))
    return layers


def resnet18_imagenet(num_classes: int = 1000) -> list[LayerSpec]:
    return _imagenet(_basic_stage, (2, 2, 2, 2), 512, num_classes)


def resnet50_imagenet(num_classes: int = 1000) -> list[LayerSpec]:
    return _imagenet(_bottleneck_stage, (3, 4, 6, 3), 2048, num_classes)


# GoogLeNet Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), max-pool after 3b and 4e
_INCEPTION = (("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64),
              ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64),
              ("4c", 128, 128, 256, 24, 64, 64), ("4d", 112, 144, 288, 32, 64, 64),
              ("4e", 256, 160, 320, 32, 128, 128), ("5a", 256, 160, 320, 32, 128, 128),
              ("5b", 384, 192, 384, 48, 128, 128))


def googlenet(num_classes: int = 1000) -> list[LayerSpec]:
    """GoogLeNet v1 at 224 x 224 (no auxiliary classifiers); a module's branches read its input
    and the next module reads their concatenation (the pool branch's 3x3/1 max-pool is no layer)."""
    layers = [make_layer("conv1", "conv", (3, 224, 224), 64, 7, 2, 3)]
    layers.append(make_layer("conv2.reduce", "conv", (64, 56, 56), 64, 1, inputs=["conv1"]))
    layers.append(make_layer("conv2", "conv", (64, 56, 56), 192, 3, 1, 1, inputs=["conv2.reduce"]))
    src, c, hw = ["conv2"], 192, 28
    for name, n1, r3, n3, r5, n5, pp in _INCEPTION:
        if name in ("4a", "5a"):
            hw //= 2                                   # the max-pool after 3b and 4e
        p = f"inception_{name}"
        shape = (c, hw, hw)
        b1 = make_layer(f"{p}.1x1", "conv", shape, n1, 1, inputs=src)
        b3r = make_layer(f"{p}.3x3_reduce", "conv", shape, r3, 1, inputs=src)
        b3 = make_layer(f"{p}.3x3", "conv", (r3, hw, hw), n3, 3, 1, 1, inputs=[b3r.name])
        b5r = make_layer(f"{p}.5x5_reduce", "conv", shape, r5, 1, inputs=src)
        b5 = make_layer(f"{p}.5x5", "conv", (r5, hw, hw), n5, 5, 1, 2, inputs=[b5r.name])
        bp = make_layer(f"{p}.pool_proj", "conv", shape, pp, 1, inputs=src)
        layers += [b1, b3r, b3, b5r, b5, bp]
        src, c = [b1.name, b3.name, b5.name, bp.name], n1 + n3 + n5 + pp
    layers.append(make_layer("fc", "linear", (c, 1, 1), num_classes, inputs=src))
    return layers


NETWORKS: dict[str, Callable[[], list[LayerSpec]]] = {
    "resnet18_cifar": resnet18_cifar,
    "resnet18_imagenet": resnet18_imagenet,
    "resnet50_imagenet": resnet50_imagenet,
    "googlenet": googlenet,
}


def get_network(name: str) -> list[LayerSpec]:
    if name not in NETWORKS:
        raise HwsimError("--network", "name", f"unknown network {name!r}; choose from {sorted(NETWORKS)}")
    return NETWORKS[name]()
