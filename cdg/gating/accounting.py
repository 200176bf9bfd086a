"""MAC accounting of dense and gated convolutions, per image, method-neutral: each method
(``GateMethod``) says its decision block, base channels and gate / predictor overheads.

Conventions (the same as ``torch.utils.flop_counter``, where FLOPs = 2 MACs): a convolution
output element costs C_in k^2 MACs whatever the padding, so

    dense = C_out * H_out * W_out * C_in * k^2,    H_out = floor((H_in + 2p - k) / stride) + 1.

Effective MACs of one image are split into four parts (``effective_macs`` returns each as an
int64 tensor of shape N, plus their sum under "total"):

cdg, cgnet (base/conditional split, C_b = ceil(C_in / G), C_c = C_in - C_b)
    base         = C_out * H_out * W_out * C_b * k^2                 (always computed)
    conditional  = (number of output elements whose gate is on) * C_c * k^2
    gate         cdg:   pooling adds C_out * H_out * W_out (only when S > 1 or b > 1)
                        + 4 per decision (sum and sum of squares for the per-sample statistics,
                        one fused standardise, one compare), D_c * H_d * W_d decisions;
                 cgnet: 2 per output element (normalise with the BatchNorm statistics, compare).
                 Both 0 when G = 1 (empty conditional path: a hardware gate would not run).
    predictor    = 0 (no auxiliary network)

fbs, dgnet (no base path: all of an output element's work is skipped or done)
    conditional  = (number of output elements computed) * C_in * k^2
    predictor    fbs:   C_in * H_in * W_in (global average pool adds) + C_in * C_out (linear)
                 dgnet (at a block's leader; 0 at its followers, which reuse the leader's mask):
                        spatial C_in * H_in * W_in (pool adds) + 9 * C_in * H_d * W_d (3x3 conv)
                        + channel C_in * H_in * W_in (global pool adds) + C_in * h + h * C_out
                        (two linears, h = max(1, C_in // reduction))
    gate         fbs:   C_out (ReLU) + C_out * ceil(log2 C_out) (top-k selection compares)
                        + one multiply per computed output element (scaling by the saliency pi);
                 dgnet: C_out + H_d * W_d compares (leader; 0 at followers).
    base         = 0

This is the output-only convention: a computed output element costs all its MACs. The full
convention (``gate.accounting: full``, the default for target control) also credits the MACs
whose input element a producing layer's gate left structurally zero: ``cdg.tracing.input_credit``,
from what each method declares it zeroes (``GateMethod.zeroes_skipped_outputs``).

Bias adds, activation functions inside predictors and the AND of DGNet's two gates are not
counted (each is at most one op per decision, dwarfed by the terms above). Everything that is
not a multiply-accumulate (an add, a compare) counts as one MAC-equivalent.

A decision covers a block of S output channels x bh x bw output pixels; the decision grid is
D x H_d x W_d with D = C_out / S, H_d = ceil(H_out / bh), W_d = ceil(W_out / bw). Blocks on the
bottom and right edges may be ragged (smaller); they are counted with their true size.
"""
from __future__ import annotations

import torch

from cdg.gating.ops import block_sizes
from cdg.gating.spec import GateSpec
from cdg.models.resnet import ConvSpec


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_out_hw(spec: ConvSpec, h_in: int, w_in: int) -> tuple[int, int]:
    k, s, p = spec.kernel_size, spec.stride, spec.padding
    return conv_out_size(h_in, k, s, p), conv_out_size(w_in, k, s, p)


def dense_conv_macs(spec: ConvSpec, h_in: int, w_in: int) -> int:
    """MACs of the dense convolution for one H_in x W_in image."""
    h_out, w_out = conv_out_hw(spec, h_in, w_in)
    return spec.out_channels * h_out * w_out * spec.in_channels * spec.kernel_size**2


def decision_block(gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
    """(S, bh, bw): output channels and output pixels covered by one decision of ``gate``'s method."""
    return gate.impl.decision_block(gate, out_hw)


def decision_grid(spec: ConvSpec, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
    """(D, H_d, W_d): shape of the decision mask of one image (the record's mask is N x D x H_d x W_d)."""
    s, bh, bw = decision_block(gate, out_hw)
    return spec.out_channels // s, -(-out_hw[0] // bh), -(-out_hw[1] // bw)


def computed_outputs(mask: torch.Tensor, spec: ConvSpec, out_hw: tuple[int, int], block: tuple[int, int, int]) -> torch.Tensor:
    """Per image, the number of output elements covered by an on decision (int64, shape N).

    ``mask`` is N x D x H_d x W_d; each decision (d, i, j) covers S channels and the true
    (possibly ragged) size of spatial block (i, j).
    """
    s, bh, bw = block
    rows = torch.tensor(block_sizes(out_hw[0], bh), dtype=torch.float64, device=mask.device)
    cols = torch.tensor(block_sizes(out_hw[1], bw), dtype=torch.float64, device=mask.device)
    if mask.shape[1:] != (spec.out_channels // s, rows.numel(), cols.numel()):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match the decision grid "
            f"({spec.out_channels // s}, {rows.numel()}, {cols.numel()}) of layer {spec.name}"
        )
    on = (mask.detach().to(torch.float64) != 0).to(torch.float64)
    per_image = torch.einsum("ndij,i,j->n", on, rows, cols) * s
    return per_image.round().to(torch.int64)


def count_effective_macs(
    mask: torch.Tensor, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Per-image effective MACs (int64 tensors of shape N) of a layer whose decisions are ``mask``.

    ``mask`` is the decision-level mask (N x D x H_d x W_d, nonzero = on) of what was computed.
    Keys: "base", "conditional", "gate", "predictor", "total".
    """
    method = gate.impl
    out_hw = conv_out_hw(spec, *in_hw)
    n = mask.shape[0]
    k2 = spec.kernel_size**2
    on = computed_outputs(mask, spec, out_hw, decision_block(gate, out_hw))
    c_b = method.base_channels(spec, gate)

    def const(value: int) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.int64, device=mask.device)

    gate_macs = const(method.fixed_gate_macs(spec, gate, in_hw))
    if method.gate_macs_per_output:  # e.g. fbs: scaling of each computed output by its saliency
        gate_macs = gate_macs + on * method.gate_macs_per_output
    macs = {
        "base": const(spec.out_channels * out_hw[0] * out_hw[1] * c_b * k2),
        "conditional": on * ((spec.in_channels - c_b) * k2),
        "gate": gate_macs,
        "predictor": const(method.predictor_macs(spec, gate, in_hw)),
    }
    macs["total"] = macs["base"] + macs["conditional"] + macs["gate"] + macs["predictor"]
    return macs


def effective_macs(record, spec: ConvSpec | None = None) -> dict[str, torch.Tensor]:
    """Per-image effective MACs of the forward that produced ``record`` (a ``GateRecord``).

    ``spec`` defaults to the record's own. This is what ``record.macs`` returns.
    """
    return count_effective_macs(record.mask, spec or record.spec, record.gate, record.in_hw)
