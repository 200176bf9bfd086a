"""Input-side credit of the full MAC accounting: the MACs a conv can skip because some of its
input elements are structurally zero (a producing layer's gate switched them off and nothing
between the two layers made them non-zero again).

Two conventions are reported (docs/algorithm.md, "What is credited"):

output-only
    effective MACs of every layer as ``cdg.gating.accounting`` counts them: an output element
    whose gated part is off costs nothing of that part, whatever its inputs.
full
    the same minus ``input_credit``: of every output element that *is* computed, the
    multiply-accumulates whose input element is structurally zero are skipped as well
    (FBS's "input- and output-side savings").

For a conv with base channels C_b (``gate.base_channels``; C_in for a dense conv, 0 without a
base path) and input zeros Z (N x C_in x H_in x W_in), per image::

    taps_base(i, j) = Σ_{c < C_b, window of output pixel (i, j)} Z      (padding taps: not zero inputs)
    taps_cond(i, j) = Σ_{c ≥ C_b, window of output pixel (i, j)} Z
    credit = C_out · Σ_ij taps_base(i, j) + Σ_ij taps_cond(i, j) · on(i, j)

``on(i, j)`` is the number of output channels at pixel (i, j) whose gated part was computed
(C_out for a dense conv). The padded taps keep costing MACs, as in the dense convention
(C_in k² per output element whatever the padding). Method-neutral: the producing method says
which outputs it zeroes (``record.zeroed_outputs()``), the model says where they go
(``cdg.models.resnet.structural_input_zeros``), and this module counts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdg.models.resnet import structural_input_zeros


def skipped_input_macs(zeros: torch.Tensor, conv: nn.Conv2d, base_channels: int,
                       computed: torch.Tensor | None) -> torch.Tensor:
    """Per image (int64, shape N), the MACs of ``conv`` whose input element is in ``zeros``
    (N x C_in x H_in x W_in bool), over the output elements that are computed: all of them on the
    first ``base_channels`` input channels, those in ``computed`` (N x C_out x H_out x W_out bool;
    None: all) on the others."""
    if zeros.shape[1] != conv.in_channels:
        raise ValueError(f"input zeros with {zeros.shape[1]} channels for a conv with {conv.in_channels}")
    n, c_in = zeros.shape[:2]
    if not bool(zeros.any()):
        return torch.zeros(n, dtype=torch.int64, device=zeros.device)
    k = conv.kernel_size
    weight = torch.zeros((2, c_in, *k), dtype=torch.float32, device=zeros.device)
    weight[0, :base_channels] = 1.0
    weight[1, base_channels:] = 1.0
    # counts of at most C_in k² (< 2^24): exact in float32
    taps = F.conv2d(zeros.float(), weight, None, conv.stride, conv.padding, conv.dilation).double()
    base = taps[:, 0].sum(dim=(1, 2)) * conv.out_channels
    if computed is None:
        cond = taps[:, 1].sum(dim=(1, 2)) * conv.out_channels
    else:
        if computed.shape[-2:] != taps.shape[-2:] or computed.shape[1] != conv.out_channels:
            raise ValueError(f"computed mask {tuple(computed.shape)} does not match the output {tuple(taps.shape[-2:])} of the conv")
        cond = (taps[:, 1] * computed.sum(dim=1, dtype=torch.float64)).sum(dim=(1, 2))
    return (base + cond).round().to(torch.int64)


def input_credit(net: nn.Module, records: dict) -> dict[str, torch.Tensor]:
    """Per conv (module name) that has structurally zero inputs, the per-image MACs it skips on
    them (int64, shape N); convs without any are left out. ``records``: the gated layers'
    ``GateRecord`` of one forward of ``net``, by module name."""
    zeroed = {}
    for name, record in records.items():
        zeros = record.zeroed_outputs()
        if zeros is not None and bool(zeros.any()):
            zeroed[name] = zeros
    if not zeroed:
        return {}
    modules = dict(net.named_modules())
    credit = {}
    for name, zeros in structural_input_zeros(net, zeroed).items():
        if zeros is None:
            continue
        conv, record = modules[name], records.get(name)
        gate = getattr(conv, "gate", None)
        if gate is not None and record is not None:
            base, computed = gate.base_channels(conv.spec), record.full_resolution()
        else:
            base, computed = conv.in_channels, None
        credit[name] = skipped_input_macs(zeros, conv, base, computed)
    return credit
