"""MAC accounting (cdg.gating.accounting): brute-force counts, records, full-resolution masks, torch's flop counter."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cdg.gating.accounting import conv_out_hw, count_effective_macs, decision_grid, dense_conv_macs
from cdg.gating.base import GateRecord, collect_records, full_resolution_mask, gated_layers, set_gating
from cdg.gating.selection import build_gated_conv, default_selection, gated_conv_factory
from cdg.gating.spec import make_gate, validate_gate
from cdg.models.resnet import ConvSpec, ResNet

from tests.cdg.gating.helpers import spec_of


# ----------------------------------------------------------------------------- accounting


def brute_force_macs(mask, spec, gate, in_hw):
    """Per image, by looping over every output element of the full-resolution mask."""
    h_out, w_out = conv_out_hw(spec, *in_hw)
    d, h_d, w_d = decision_grid(spec, gate, (h_out, w_out))
    s = spec.out_channels // d
    bh, bw = -(-h_out // h_d), -(-w_out // w_d)  # (ragged) block size along each axis
    if gate.method == "fbs":
        bh, bw = h_out, w_out
    k2 = spec.kernel_size**2
    per_out = spec.in_channels - math.ceil(spec.in_channels / gate.groups) if gate.method in ("cdg", "cgnet") else spec.in_channels
    counts = []
    for n in range(mask.shape[0]):
        on = 0
        for c, i, j in itertools.product(range(spec.out_channels), range(h_out), range(w_out)):
            on += int(mask[n, c // s, i // bh, j // bw] != 0)
        counts.append(on * per_out * k2)
    return counts


ACCOUNTING_CASES = [  # method, gate kwargs, C_in, C_out, stride, input size
    ("cdg", dict(groups=4, channel_block=1, spatial_block=1), 8, 8, 1, 5),
    ("cdg", dict(groups=2, channel_block=4, spatial_block=2), 6, 8, 2, 9),  # 5x5 output, ragged 2x2 blocks
    ("cdg", dict(groups=3, channel_block=8, spatial_block=3), 7, 8, 1, 7),
    ("cdg", dict(groups=1, channel_block=2, spatial_block=4), 4, 6, 2, 6),  # G=1, one ragged block row
    ("cgnet", dict(groups=4), 8, 4, 2, 7),
    ("fbs", dict(keep_ratio=0.4), 5, 6, 1, 4),
    ("dgnet", dict(spatial_block=3), 5, 4, 2, 11),
]


@pytest.mark.parametrize("method, gate, c_in, c_out, stride, size", ACCOUNTING_CASES)
def test_effective_macs_match_a_brute_force_count_on_random_masks(method, gate, c_in, c_out, stride, size):
    spec, gspec = spec_of(c_in, c_out, stride), make_gate(method, **gate)
    validate_gate(spec, gspec)
    out_hw = conv_out_hw(spec, size, size)
    grid = decision_grid(spec, gspec, out_hw)
    mask = (torch.rand(3, *grid, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    macs = count_effective_macs(mask, spec, gspec, (size, size))
    assert macs["conditional"].tolist() == brute_force_macs(mask, spec, gspec, (size, size))
    assert torch.equal(macs["total"], macs["base"] + macs["conditional"] + macs["gate"] + macs["predictor"])
    if method in ("cdg", "cgnet"):
        c_b = math.ceil(c_in / gspec.groups)
        assert macs["base"].tolist() == [c_out * out_hw[0] * out_hw[1] * c_b * 9] * 3
        assert (macs["predictor"] == 0).all()
        all_on = count_effective_macs(torch.ones_like(mask), spec, gspec, (size, size))
        assert (all_on["base"] + all_on["conditional"]).tolist() == [dense_conv_macs(spec, size, size)] * 3
    else:
        assert (macs["base"] == 0).all() and (macs["predictor"] > 0).all()


@pytest.mark.parametrize("method, gate, c_in, c_out, stride, size", ACCOUNTING_CASES)
def test_layer_records_count_what_the_forward_computed(method, gate, c_in, c_out, stride, size):
    torch.manual_seed(4)
    layer = build_gated_conv(spec_of(c_in, c_out, stride), make_gate(method, init_threshold=0.0, **gate))
    layer(torch.randn(2, c_in, size, size))
    rec = layer.record
    on = full_resolution_mask(rec)
    assert on.shape == (2, c_out, *conv_out_hw(layer.spec, size, size))
    per_out = c_in - layer.base_channels if method in ("cdg", "cgnet") else c_in
    assert rec.macs["conditional"].tolist() == (on.sum(dim=(1, 2, 3)) * per_out * 9).tolist()
    assert rec.dense_macs == layer.dense_macs(size, size)


def test_full_resolution_mask_expands_channel_and_spatial_blocks():
    spec, gate = spec_of(4, 6, stride=1), make_gate("cdg", groups=2, channel_block=3, spatial_block=2)
    mask = (torch.rand(2, 2, 3, 2, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    rec = GateRecord(
        mask=mask, soft_density=torch.tensor(0.0), soft_density_per_sample=torch.zeros(2), saliency_mean=None, spec=spec, gate=gate, in_hw=(5, 3), out_hw=(5, 3), gated=True,
    )
    full = full_resolution_mask(rec)
    assert full.shape == (2, 6, 5, 3) and full.dtype == torch.bool
    for n, c, i, j in itertools.product(range(2), range(6), range(5), range(3)):
        assert full[n, c, i, j] == bool(mask[n, c // 3, i // 2, j // 2])


def test_dense_macs_agree_with_torch_flop_counter_over_a_gated_resnet18():
    x = torch.randn(1, 3, 16, 16)
    torch.manual_seed(0)
    dense = ResNet("resnet18", width=0.125)
    torch.manual_seed(0)
    gated = ResNet("resnet18", width=0.125, conv_factory=gated_conv_factory(default_selection(make_gate("cdg"))))
    assert len(gated_layers(gated)) == 16

    in_hw: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp, name=name: in_hw.__setitem__(name, tuple(inp[0].shape[-2:])))
        for name, m in gated.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    counts = {}
    for key, net in (("dense", dense), ("gated", gated)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
        counts[key] = counter.get_total_flops()
    for h in hooks:
        h.remove()
    modules = dict(gated.named_modules())
    ours = sum(dense_conv_macs(_spec(modules[n], n), *hw) for n, hw in in_hw.items())
    assert counts["dense"] == counts["gated"] == 2 * ours  # the split costs no extra FLOPs
    set_gating(gated, False)
    gated(x)
    for name, rec in collect_records(gated).items():
        assert rec.macs["base"] + rec.macs["conditional"] == modules[name].dense_macs(*rec.in_hw)


def _spec(module, name):
    if hasattr(module, "spec"):
        return module.spec
    return ConvSpec(name, module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0], module.padding[0], "conv")
