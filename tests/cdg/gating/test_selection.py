"""Validation (cdg.gating.spec) and construction (cdg.gating.selection) of gated convs and backbones."""
from __future__ import annotations

import copy

import pytest
import torch

from hwsim.trace.errors import UserError
from cdg.gating.base import gated_layers
from cdg.gating.selection import build_gated_conv, default_selection, gated_conv_factory
from cdg.gating.spec import make_gate, validate_gate
from cdg.models.resnet import ConvSpec, ResNet

from tests.cdg.gating.helpers import METHODS, make, spec_of


# ----------------------------------------------------------------------------- validation and construction


@pytest.mark.parametrize(
    "spec, gate, message",
    [
        (spec_of(8, 16), make_gate("cdg", channel_block=3), "gate.channel_block=3 does not divide C_out=16 of layer layer1.0.conv1"),
        (spec_of(4, 8), make_gate("cdg", groups=8), "gate.groups=8 exceeds C_in=4 of layer layer1.0.conv1"),
        (spec_of(4, 8), make_gate("cgnet", groups=5), "gate.groups"),
        (spec_of(), make_gate("skipnet"), "gate.method"),
        (spec_of(), make_gate("cdg", spatial_block=0), "gate.spatial_block"),
        (spec_of(), make_gate("cgnet", channel_block=2), "gate.channel_block"),
        (spec_of(), make_gate("fbs", spatial_block=2), "gate.spatial_block"),
        (spec_of(), make_gate("fbs", keep_ratio=0.0), "gate.keep_ratio"),
        (spec_of(), make_gate("cdg", sharpness=-1.0), "gate.sharpness"),
    ],
)
def test_validate_gate_raises_user_errors_naming_the_field(spec, gate, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        validate_gate(spec, gate)
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        build_gated_conv(spec, gate)


def test_factory_errors_name_the_failing_layer():
    with pytest.raises(UserError, match=r"gate\.channel_block=3 does not divide C_out=16 of layer layer1\.0\.conv1"):
        ResNet("resnet18", width=0.25, conv_factory=gated_conv_factory(default_selection(make_gate("cdg", channel_block=3))))


def test_default_selection_gates_only_the_3x3_block_convs():
    select = default_selection(make_gate("cgnet"))
    net50 = ResNet("resnet50", width=0.125, conv_factory=gated_conv_factory(select))
    assert [n for n, _ in gated_layers(net50)] == [
        n for n, m in net50.named_modules() if n.endswith("conv2") and isinstance(m, torch.nn.Conv2d)
    ]
    assert select(ConvSpec("conv1", 3, 8, 3, 1, 1, "stem")) is None
    assert select(ConvSpec("layer2.0.shortcut.0", 8, 16, 1, 2, 0, "shortcut")) is None


def test_gated_backbone_keeps_dense_init_and_checkpoint_keys():
    torch.manual_seed(0)
    dense = ResNet("resnet18", width=0.125)
    torch.manual_seed(0)
    gated = ResNet("resnet18", width=0.125, conv_factory=gated_conv_factory(default_selection(make_gate("cdg"))))
    dense_sd, gated_sd = dense.state_dict(), gated.state_dict()
    assert set(gated_sd) - set(dense_sd) == {f"{n}.threshold" for n, _ in gated_layers(gated)}
    for key, value in dense_sd.items():  # same RNG stream: identical initial weights
        assert torch.equal(value, gated_sd[key]), key
    gated(torch.randn(2, 3, 8, 8))
    clone = copy.deepcopy(gated)  # records hold graph tensors; deepcopy must not touch them
    assert all(layer.record is None for _, layer in gated_layers(clone))


@pytest.mark.parametrize("method", METHODS)
def test_eval_is_deterministic_and_per_sample(method):
    layer = make(method, **({"spatial_block": 2} if method in ("cdg", "dgnet") else {}))
    x = torch.randn(4, 8, 6, 6)
    layer.train()
    layer(x)  # (cgnet: updates its running statistics)
    layer.eval()
    with torch.no_grad():
        y = layer(x)
        mask = layer.record.mask.clone()
        y_again = layer(x)
        assert torch.equal(y, y_again) and torch.equal(mask, layer.record.mask)
        y_one = layer(x[1:2])  # no batch statistics in eval: a sample's output is its own
    torch.testing.assert_close(y_one, y[1:2])
    torch.testing.assert_close(layer.record.mask, mask[1:2])
