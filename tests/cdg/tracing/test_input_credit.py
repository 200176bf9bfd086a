"""Input-side credit of the full accounting (cdg.tracing.input_credit) against a brute-force count
on the real input tensors of every conv, for every method and for mixed networks; the output-only
numbers against the old formula."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdg.gating.base import collect_records, gated_layers
from cdg.gating.methods.dgnet import link_blocks
from cdg.gating.predictor import adopt_output_norms
from cdg.gating.selection import gated_conv_factory
from cdg.gating.spec import make_gate
from cdg.models.resnet import ResNet
from cdg.tracing.input_credit import input_credit, skipped_input_macs
from cdg.tracing.measure import computation_report, measure

from tests.cdg.gating.helpers import METHODS


def _select(methods, roles):
    """Gate the convs of ``roles``, cycling through ``methods`` (a mixed network when several)."""
    order = itertools.cycle(methods)

    def select(spec):
        if spec.role not in roles:
            return None
        method = next(order)
        if method in ("cdg", "cgnet") and spec.in_channels < 4:
            return None
        return make_gate(method, spatial_block=2 if method == "dgnet" else 1)
    return select


def _net(methods, arch="resnet18", stem="cifar", roles=("conv",), seed=0, adopt=True):
    """A tiny gated ResNet whose gates are random and whose only exact zeros are the gated-off ones.

    Every BatchNorm outputs 1 + 0.001 y (eval mode), so nothing a ReLU sees is negative by accident;
    the FBS saliencies are kept > 0 (bias 10), so a zero is a gate decision, never π = 0.
    """
    torch.manual_seed(seed)
    net = ResNet(arch, stem=stem, width=0.125, conv_factory=gated_conv_factory(_select(methods, roles)))
    if adopt:
        adopt_output_norms(net)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1e-3)
                m.bias.fill_(1.0)
        for _, layer in gated_layers(net):
            name = layer.gate.method
            if name == "fbs":
                layer.saliency.weight.uniform_(-1, 1, generator=gen)
                layer.saliency.bias.fill_(10.0)
                layer.keep = int(torch.randint(1, layer.out_channels, (1,), generator=gen))
            elif name == "dgnet":
                layer.spatial_bias.fill_(0.0)
                layer.channel_fc2.bias.normal_(0.0, 0.3, generator=gen)
            else:  # cdg, cgnet: thresholds around the middle of the standardised saliency
                layer.threshold.normal_(0.0, 0.5, generator=gen)
    return net.eval()


def _brute_force(net, x):
    """Per conv, per image: MACs of computed output elements whose input element is exactly 0,
    found on the actual input tensors by enumerating (output channel, input row, output pixel)."""
    inputs = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0].clone()))
             for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    records = collect_records(net)
    modules = dict(net.named_modules())
    counts = {}
    for name, inp in inputs.items():
        conv = modules[name]
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        # N x (C_in k^2) x L: padded taps are 0 here (not an input element)
        zero_taps = F.unfold((inp == 0).double(), k, padding=p, stride=s)
        rows = torch.arange(zero_taps.shape[1]) // (k * k)  # input channel of each row
        if name in records:
            base = conv.gate.base_channels(conv.spec)
            computed = records[name].full_resolution().flatten(2).double()  # N x C_out x L
        else:
            base, computed = conv.in_channels, torch.ones(inp.shape[0], conv.out_channels, zero_taps.shape[2], dtype=torch.float64)
        active = torch.where((rows < base).view(1, 1, -1, 1), torch.ones(()), computed[:, :, None, :].double())
        counts[name] = torch.einsum("norl,nrl->n", active.expand(-1, -1, rows.numel(), -1), zero_taps).round().long()
    return counts, records


CASES = [((m,), "resnet18", "cifar", ("conv",)) for m in METHODS] + [  # cgnet: grouping with shuffle (default)
    (("fbs", "dgnet"), "resnet18", "cifar", ("conv", "shortcut", "stem")),
    (("fbs", "cdg"), "resnet18", "cifar", ("conv",)),
    (("dgnet", "cgnet", "fbs"), "resnet50", "imagenet", ("conv", "shortcut", "stem")),
    (("fbs",), "resnet18", "imagenet", ("stem", "conv", "shortcut")),
]


@pytest.mark.parametrize("methods,arch,stem,roles", CASES)
def test_input_credit_matches_a_brute_force_count_on_the_real_inputs(methods, arch, stem, roles):
    net = _net(methods, arch, stem, roles)
    x = torch.randn(3, 3, 16 if stem == "imagenet" else 8, 16 if stem == "imagenet" else 8)
    brute, records = _brute_force(net, x)
    credit = input_credit(net, records)
    for name, count in brute.items():
        ours = credit.get(name, torch.zeros_like(count))
        assert torch.equal(ours, count), (name, ours, count)
    total = sum(int(c.sum()) for c in brute.values())
    if set(methods) & {"fbs", "dgnet"}:
        assert total > 0  # the network really has structural zeros to credit
    else:
        assert total == 0 and credit == {}  # cdg, cgnet: a skipped output still has its base part


@pytest.mark.parametrize("roles", [("conv",), ("conv", "shortcut", "stem")])
@pytest.mark.parametrize("arch,stem", [("resnet18", "cifar"), ("resnet50", "imagenet")])
def test_input_credit_of_dgnet_block_masks_matches_a_brute_force_count(roles, arch, stem):
    # DGNet as its block design (DGNet.adopt): conv2 reuses conv1's spatial mask, conv1's off
    # channels are zero inputs of conv2; random masks from random leader predictors
    net = _net(("dgnet",), arch, stem, roles)
    assert link_blocks(net) > 0
    size = 16 if stem == "imagenet" else 8
    brute, records = _brute_force(net, torch.randn(3, 3, size, size))
    credit = input_credit(net, records)
    for name, count in brute.items():
        assert torch.equal(credit.get(name, torch.zeros_like(count)), count), name
    followers = [name for name, layer in gated_layers(net) if layer.is_follower]
    assert followers and sum(int(brute[name].sum()) for name in followers) > 0


@pytest.mark.parametrize("method", ["fbs", "dgnet"])
def test_no_credit_when_a_batchnorm_follows_the_gate(method):
    # without adopt_output_norms the gate zeroes the raw conv output and the block's BatchNorm
    # (BN(0) = β ≠ 0) makes it non-zero again: nothing downstream is structurally zero
    net = _net((method,), roles=("conv", "shortcut"), adopt=False)
    brute, records = _brute_force(net, torch.randn(2, 3, 8, 8))
    assert any(bool((r.zeroed_outputs()).any()) for r in records.values())
    assert input_credit(net, records) == {}
    assert all(int(c.sum()) == 0 for c in brute.values())


def test_residual_sum_is_zero_only_where_both_summands_are():
    # FBS gates every conv and shortcut: a block output is zero where conv2's and the shortcut's
    # channels are both off; the stem (dense, BN left in place) makes layer1's sums never zero
    net = _net(("fbs",), roles=("conv", "shortcut"))
    x = torch.randn(2, 3, 8, 8)
    brute, records = _brute_force(net, x)
    credit = input_credit(net, records)
    assert "layer1.1.conv1" not in credit and int(brute["layer1.1.conv1"].sum()) == 0
    assert int(brute["layer3.0.conv2"].sum()) > 0 and torch.equal(credit["layer3.0.conv2"], brute["layer3.0.conv2"])
    assert torch.equal(credit.get("layer3.1.conv1", torch.zeros(2, dtype=torch.long)), brute["layer3.1.conv1"])


def test_tap_count_of_one_conv_by_explicit_loops():
    torch.manual_seed(3)
    conv = nn.Conv2d(5, 4, 3, stride=2, padding=1, bias=False)
    zeros = torch.rand(2, 5, 7, 6) < 0.4
    computed = torch.rand(2, 4, 4, 3) < 0.5
    base = 2
    expected = []
    for n in range(2):
        total = 0
        for o, i, j, c, dy, dx in itertools.product(range(4), range(4), range(3), range(5), range(3), range(3)):
            y, x = 2 * i + dy - 1, 2 * j + dx - 1
            if 0 <= y < 7 and 0 <= x < 6 and zeros[n, c, y, x] and (c < base or computed[n, o, i, j]):
                total += 1
        expected.append(total)
    assert skipped_input_macs(zeros, conv, base, computed).tolist() == expected


class _Source:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return self.images.shape[0]

    def iter_batches(self, batches):
        for idx in batches:
            yield self.images[idx], torch.zeros(len(idx), dtype=torch.long)


def _old_formula(conv, record, n):
    """Output-only effective MACs of the accounting before input credit existed (base + conditional
    + gate + predictor), written out per method."""
    spec, (h_in, w_in) = conv.spec, record.in_hw
    h_out, w_out = record.out_hw
    k2 = spec.kernel_size ** 2
    on = record.full_resolution().flatten(1).sum(1).double()
    gate = conv.gate
    if gate.method in ("cdg", "cgnet"):
        c_b = math.ceil(spec.in_channels / gate.groups)
        return spec.out_channels * h_out * w_out * c_b * k2 + on * (spec.in_channels - c_b) * k2 \
            + gate.overhead_macs(spec, (h_in, w_in))
    extra = on if gate.method == "fbs" else 0
    return on * spec.in_channels * k2 + gate.overhead_macs(spec, (h_in, w_in)) + extra


def test_report_keeps_output_only_numbers_and_adds_the_full_convention():
    net = _net(("fbs", "dgnet", "cdg"), roles=("conv", "shortcut"))
    images = torch.randn(5, 3, 8, 8)
    tallies = measure(net, _Source(images), nn.Identity(), torch.device("cpu"), 8, 0, 0, batch_size=3, progress=False)
    report = computation_report(tallies)
    # reference: one forward of all images, old formula and brute-force input credit
    brute, records = _brute_force(net, images)
    modules = dict(net.named_modules())
    expected_out, expected_credit = 0.0, 0.0
    for layer in report["layers"]:
        name = layer["layer"]
        if name in records:
            old = float(_old_formula(modules[name], records[name], 5).mean())
        else:
            old = float(layer["dense_macs"])
        assert layer["effective_macs"] == pytest.approx(old, rel=1e-12)
        assert layer["input_skipped_macs"] == pytest.approx(float(brute[name].double().mean()), rel=1e-12)
        assert layer["effective_macs_full"] == pytest.approx(old - layer["input_skipped_macs"], rel=1e-12)
        expected_out += old
        expected_credit += layer["input_skipped_macs"]
    assert expected_credit > 0
    assert report["effective_macs"] == pytest.approx(expected_out, rel=1e-12)
    assert report["reduction"] == pytest.approx(report["dense_macs"] / expected_out, rel=1e-12)
    assert report["reduction_full"] == pytest.approx(report["dense_macs"] / (expected_out - expected_credit), rel=1e-12)
    assert report["reduction_full"] > report["reduction"]
