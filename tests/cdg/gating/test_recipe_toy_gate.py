"""Recipe "add a gate method": one module with a ``GateMethod`` subclass and its ``GatedConv``, plus
one registry line (here ``registry.register`` from the test). If any part of the extension point
breaks (registry lookup, settings, validation, layer construction, decision block, MAC accounting,
inventory, trace row, gate shift, calibration), this test fails."""
from __future__ import annotations

import pytest
import torch

from hwsim.trace.errors import UserError
from cdg.gating import registry
from cdg.gating.accounting import conv_out_hw
from cdg.gating.base import GatedConv, GateMethod, ThresholdSettings, collect_records, gated_layers, validate_threshold_settings
from cdg.gating.calibration import measured_ratio
from cdg.gating.controller import shift_gates
from cdg.gating.ops import straight_through_gate
from cdg.gating.selection import default_selection, gated_conv_factory
from cdg.gating.spec import make_gate, validate_gate
from cdg.models.resnet import ConvSpec, ResNet
from cdg.tracing.inventory import conv_inventory, layer_spec


# ----------------------------------------------------------------------------- the toy method (its "one file")


class Toy(GateMethod):
    """Keeps an output channel where the spatial mean of its conv output exceeds a learnable Δ."""

    name = "toy"
    Settings = ThresholdSettings

    @classmethod
    def validate(cls, spec, gate):
        validate_threshold_settings(gate.settings)

    @classmethod
    def decision_block(cls, gate, out_hw):
        return 1, out_hw[0], out_hw[1]  # one decision per output channel

    @classmethod
    def fixed_gate_macs(cls, spec, gate, in_hw):
        h, w = conv_out_hw(spec, *in_hw)
        return spec.out_channels * h * w + spec.out_channels  # the means, one compare per channel

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        return controller.gate.reg_weight * (cost - target) ** 2


class ToyConv(GatedConv):
    impl = Toy

    def __init__(self, spec, gate):
        super().__init__(spec, gate)
        self.threshold = torch.nn.Parameter(torch.full((spec.out_channels,), float(gate.settings.init_threshold)))

    def shift_gate(self, delta):
        self.threshold.add_(delta)

    def forward(self, x):
        y = self._conv(x, self.weight)
        score = y.float().mean(dim=(2, 3))
        g = straight_through_gate(score, self.threshold, self.gate.settings.sharpness)  # N x C_out
        if self.gating:
            y = y * g.to(y.dtype)[:, :, None, None]
        density = g.mean(dim=1)
        self._record(mask=(g.detach() if self.gating else torch.ones_like(g))[:, :, None, None],
                     soft_density=density.mean(), soft_density_per_sample=density, saliency_mean=None,
                     in_hw=tuple(x.shape[-2:]), out_hw=tuple(y.shape[-2:]), gated=self.gating)
        return y


Toy.layer = ToyConv


# ----------------------------------------------------------------------------- the registry line, and the checks


@pytest.fixture
def toy_registered():
    registry.register("toy", registry.Entry(f"{__name__}:Toy", needs_target=True))
    yield
    registry.unregister("toy")


def test_a_toy_gate_method_plugs_in_through_the_registry(toy_registered):
    assert "toy" in registry.names() and registry.method("toy") is Toy
    gate = make_gate("toy", groups=3, sharpness=2.0, init_threshold=-0.5, keep_ratio=0.3)  # unused values ignored
    assert gate.settings == ThresholdSettings(sharpness=2.0, init_threshold=-0.5)
    with pytest.raises(UserError, match=r"gate\.channel_block=2: only method 'cdg' has channel blocks"):
        validate_gate(ConvSpec("layer1.0.conv1", 8, 8, 3, 1, 1, "conv"), make_gate("toy", channel_block=2))

    torch.manual_seed(0)
    net = ResNet("resnet18", width=0.125, conv_factory=gated_conv_factory(default_selection(gate)))
    layers = gated_layers(net)
    assert len(layers) == 16 and all(isinstance(layer, ToyConv) for _, layer in layers)
    assert "method=toy" in repr(layers[0][1])

    x = torch.randn(4, 3, 16, 16)
    net(x).sum().backward()
    assert all(layer.threshold.grad is not None for _, layer in layers)  # straight-through gradient
    for name, record in collect_records(net).items():
        on = record.full_resolution()
        per_image = on.flatten(1).sum(1) * record.spec.in_channels * record.spec.kernel_size**2
        assert record.macs["conditional"].tolist() == per_image.tolist(), name
        assert (record.macs["base"] == 0).all() and (record.macs["predictor"] == 0).all()
        assert (record.macs["gate"] == Toy.fixed_gate_macs(record.spec, record.gate, record.in_hw)).all()

    infos = conv_inventory(net, 16)
    gated = [info for info in infos if info.gate is not None]
    assert all(info.gated_macs == info.dense_macs and info.overhead_macs > 0 for info in gated)
    row = layer_spec(gated[0].name, gated[0])
    assert (row.gate.G, row.gate.S, row.gate.b, row.gate.base_channels) == (1, 1, 1, 0)

    images = torch.randn(16, 3, 16, 16)
    dense_ratio = measured_ratio(net, images, infos)
    shift_gates(net, 5.0)  # every threshold up: most channels off
    assert measured_ratio(net, images, infos) < dense_ratio


def test_an_unregistered_method_is_a_one_line_user_error():
    with pytest.raises(UserError, match=r"gate\.method: unknown method 'toy' \(valid: cdg, cgnet, fbs, dgnet\)"):
        validate_gate(ConvSpec("layer1.0.conv1", 8, 8, 3, 1, 1, "conv"), make_gate("toy"))
