import pytest
import torch
import torchvision

from hwsim.trace.errors import UserError
from cdg.models.resnet import ConvSpec, ResNet, dense_conv


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_width_one_imagenet_stem_matches_torchvision_parameter_count(arch):
    ours = ResNet(arch, stem="imagenet", width=1.0)
    ref = getattr(torchvision.models, arch)(weights=None)
    assert count(ours) == count(ref) - count(ref.fc)
    assert ours.feature_dim == ref.fc.in_features


@pytest.mark.parametrize("stem, size, arch", [("cifar", 8, "resnet18"), ("imagenet", 32, "resnet50")])
def test_forward_shapes(stem, size, arch):
    net = ResNet(arch, stem=stem, width=0.125)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, net.feature_dim)


def test_cifar_stem_has_no_downsampling_before_layer1():
    net = ResNet("resnet18", stem="cifar", width=0.125)
    x = torch.randn(1, 3, 8, 8)
    stem_out = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    assert stem_out.shape[-1] == 8


def test_conv_factory_sees_every_conv_with_names_and_roles():
    seen: list[ConvSpec] = []

    def recording(spec):
        seen.append(spec)
        return dense_conv(spec)

    net = ResNet("resnet18", stem="cifar", width=0.25, conv_factory=recording)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(seen) == len(convs) == 20  # stem + 16 block convs + 3 shortcuts
    names = {s.name for s in seen}
    assert {"conv1", "layer1.0.conv1", "layer2.0.shortcut.0", "layer4.1.conv2"} <= names
    assert {s.role for s in seen} == {"stem", "conv", "shortcut"}
    modules = dict(net.named_modules())
    for spec in seen:  # the spec name is the module path, so a tracer can find it
        assert isinstance(modules[spec.name], torch.nn.Conv2d)
        assert modules[spec.name].stride == (spec.stride, spec.stride)


def test_factory_replacement_changes_the_convs():
    class Marked(torch.nn.Conv2d):
        pass

    net = ResNet(
        "resnet18",
        width=0.125,
        conv_factory=lambda s: Marked(s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding, bias=False)
        if s.role == "conv"
        else dense_conv(s),
    )
    assert sum(isinstance(m, Marked) for m in net.modules()) == 16


def test_bad_arch_is_a_user_error():
    with pytest.raises(UserError, match="model.arch"):
        ResNet("resnet19")
