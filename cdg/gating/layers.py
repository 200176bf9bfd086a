"""Gated convolutions: the common base, the records they leave, CDG and channel gating (CGNet).

Every gated layer is an ``nn.Conv2d`` subclass (``bias=False``) that owns the full weight
W (C_out x C_in x k x k, state_dict key ``weight``), so the backbone's conv initialisation,
checkpoints and tracers treat it like the dense conv it replaces; only ``forward`` differs.
Each forward stores a ``GateRecord`` in ``layer.record`` (overwritten by the next forward).

Notation: x is N x C_in x H_in x W_in, Y is N x C_out x H_out x W_out, C_b = ceil(C_in / G)
base input channels and C_c = C_in - C_b conditional ones, conv(x, W) the convolution with the
layer's stride and padding.

**CDG** (``CDGConv``, DESIGN.md §1)::

    Y_base = conv(x[:, :C_b], W[:, :C_b])                              (always computed)
    p      = pool_{S,b}(Y_base)        mean over S consecutive output channels and b x b
                                       output pixels (ragged edge blocks: mean of what is there);
                                       p is N x D_c x H_d x W_d, D_c = C_out / S, H_d = ceil(H_out / b)
    s      = (p - mean_n(p)) / sqrt(var_n(p) + eps)   per-sample standardisation over (D_c, H_d, W_d):
                                       parameter-free, no running statistics
    g      = 1[s > Δ]                  Δ: learnable threshold per channel block (shape D_c)
    Y      = Y_base + expand(g) ⊙ conv(x[:, C_b:], W[:, C_b:])

The hard gate is trained with a straight-through estimator: the forward uses g, the backward
the derivative of sigmoid(α (s − Δ)) (α = ``gate.sharpness``), which reaches Δ and, through s,
the base weights. The two partial convolutions run on disjoint input-channel slices of x and W
(views, no copies of W), so a training step costs the MACs of one dense conv plus the gate's
elementwise work. No auxiliary predictor.

**CGNet** (``CGNetConv``, Hua et al., NeurIPS 2019): same split, one decision per output element::

    s = BN(Y_base)                     non-affine BatchNorm: batch statistics in training,
                                       running statistics in eval
    g = 1[s > Δ_c]                     Δ: learnable per output channel (shape C_out), STE as above
    Y = Y_base + g ⊙ conv(x[:, C_b:], W[:, C_b:])

its regulariser λ Σ_c (Δ_c − T)² is ``layer.threshold_penalty(T)`` (or computed from
``record.threshold_term``, which holds Δ).

``layer.gating = False`` turns every gate on (dense conditional path, for dense warm-up and
one-branch ablations). The layer still computes the gate decisions it would have taken (so
``soft_density`` keeps its meaning and gradient), the record's ``mask`` says what was computed
(all ones), and the gate parameters stay in the autograd graph through a zero-valued bias, so
DDP without ``find_unused_parameters`` is happy. In eval mode the gates are the same hard
threshold decisions, deterministic.

Implementation notes. Gate decisions are made in float32 (float64 for float64 inputs) even
under ``torch.autocast``; Y keeps the conv dtype. CDG's gate, gated sum, per-sample density
and their backward are one autograd node (``_CDGGate``) whose backward is checked against
autograd of the plain straight-through definition (``cdg_decisions``) in the tests. For
unstructured gates (S = b = 1, the default) its backward works through the batch in
cache-sized chunks (``CHUNK_BYTES``), with the standardisation backward folded into three
passes, and allocates only the two full-size gradients it returns (plus one float32 chunk of
scratch under autocast); it never materialises a full-size gate when S > 1 (channel blocks are
broadcast). Memory per gated layer kept for backward: Y_cond, the gate at channel-block
resolution and the pooled saliency (for S = b = 1, Y_base itself, in the conv dtype). Without
gradients (eval) the gated sum accumulates into Y_base in place. The forward has no
data-dependent Python control flow (``torch.compile(fullgraph=True)`` traces it, see the tests).

On CPU, float32 unstructured CDG gates run fused C++ kernels (``cdg.gating.native``, built on
first use; ``CDG_NATIVE_GATE=0`` turns them off): the statistics, decisions, gated sum and
density in one pass per sample, the backward in two, with the decisions recomputed rather than
read and, inside a layer, the two gradients written over the partial sums they come from
whenever autograd frees those afterwards (no ``retain_graph``). Their per-sample statistics
are summed in float64, and ``sample_stats`` uses the same kernel whenever no gradient flows
through it, so training and eval decide alike; where a gradient does flow (the ungated path's
``cdg_decisions`` in training) the statistics are torch's float32 sums, which may differ in
the last bit. The tests check both paths against each other and against float64 autograd of
the definition.
"""
from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cdg.gating.accounting import (
    block_sizes,
    conv_out_hw,
    decision_block,
    decision_grid,
    dense_conv_macs,
    effective_macs,
)
from cdg.gating import native
from cdg.gating.spec import GateSpec, base_channels, validate_gate
from cdg.models.resnet import ConvFactory, ConvSpec, dense_conv

STANDARDISE_EPS = 1e-5


# --------------------------------------------------------------------------- helpers on decision grids


def pool_blocks(y: torch.Tensor, channel_block: int, block_h: int, block_w: int | None = None) -> torch.Tensor:
    """Mean of ``y`` (N x C x H x W) over blocks of S channels x bh x bw pixels -> N x C/S x ceil(H/bh) x ceil(W/bw).

    Ragged edge blocks are averaged over the elements they contain.
    """
    return _pool(y, channel_block, block_h, block_h if block_w is None else block_w, mean=True)


def block_sum(y: torch.Tensor, channel_block: int, block_h: int, block_w: int) -> torch.Tensor:
    """Like ``pool_blocks`` but summing (the adjoint of ``expand_decisions``)."""
    return _pool(y, channel_block, block_h, block_w, mean=False)


def _pool(y: torch.Tensor, channel_block: int, block_h: int, block_w: int, mean: bool) -> torch.Tensor:
    n, c, h, w = y.shape
    if channel_block > 1:
        y = y.unflatten(1, (c // channel_block, channel_block))
        y = y.mean(2) if mean else y.sum(2)
    if block_h > 1 or block_w > 1:
        kernel = (min(block_h, h), min(block_w, w))
        y = F.avg_pool2d(
            y, kernel, stride=(block_h, block_w), ceil_mode=True, count_include_pad=False,
            divisor_override=None if mean else 1,
        )
    return y


def expand_decisions(
    g: torch.Tensor, channel_block: int, block_h: int, block_w: int, out_hw: tuple[int, int]
) -> torch.Tensor:
    """Decision-level ``g`` (N x D x H_d x W_d) -> full resolution N x D*S x H_out x W_out (ragged edges cropped)."""
    n, d, h_d, w_d = g.shape
    if block_h > 1 or block_w > 1:  # "nearest-exact" maps output row i to floor((i + 0.5) / b) = i // b
        g = F.interpolate(g, size=(h_d * block_h, w_d * block_w), mode="nearest-exact")
        if (h_d * block_h, w_d * block_w) != tuple(out_hw):
            g = g[:, :, : out_hw[0], : out_hw[1]]
    if channel_block > 1:
        h, w = g.shape[-2:]
        g = g[:, :, None].expand(n, d, channel_block, h, w).reshape(n, d * channel_block, h, w)
    return g


def block_counts(out_hw: tuple[int, int], channel_block: int, block_h: int, block_w: int, device) -> torch.Tensor:
    """H_d x W_d float32: output elements covered by each decision (S x true block height x width)."""
    rows = torch.tensor(block_sizes(out_hw[0], block_h), dtype=torch.float32, device=device)
    cols = torch.tensor(block_sizes(out_hw[1], block_w), dtype=torch.float32, device=device)
    return rows[:, None] * cols[None, :] * float(channel_block)


def block_weights(out_hw: tuple[int, int], block_h: int, block_w: int, device) -> torch.Tensor | None:
    """H_d x W_d fraction of the output pixels covered by each spatial block; None when all blocks are equal."""
    h, w = out_hw
    if h % block_h == 0 and w % block_w == 0:
        return None
    return block_counts(out_hw, 1, block_h, block_w, device) / float(h * w)


def spatial_fraction(g: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Per-sample fraction of output pixels (x channels) covered by ``g`` (N x D x H_d x W_d), pixel-weighted."""
    if weights is None:
        return g.mean(dim=(1, 2, 3))
    return (g.mean(dim=1) * weights).sum(dim=(1, 2))


def sample_stats(p: torch.Tensor, eps: float = STANDARDISE_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean and sqrt(population variance + eps) over (C, H, W), each N x 1 x 1 x 1.

    Single pass (E[p²] − mean²), without full-size temporaries (``torch.var_mean`` is far slower on CPU).
    """
    if not (torch.is_grad_enabled() and p.requires_grad) and native.usable(p):
        return native.sample_stats(p, eps)  # the statistics the fused CPU forward uses
    dims = (1, 2, 3)
    mean = p.mean(dim=dims, keepdim=True)
    second = torch.linalg.vector_norm(p, dim=dims, keepdim=True).square() / p[0].numel()
    return mean, ((second - mean.square()).clamp(min=0.0) + eps).sqrt()  # tiny tensors: out of place (autograd)


def standardise_per_sample(p: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """(p - mean) / sqrt(var + eps), statistics over all but the batch dimension (population variance)."""
    mean, std = sample_stats(p, eps)
    return (p - mean) / std


def cdg_saliency(y_base: torch.Tensor, channel_block: int, spatial_block: int) -> torch.Tensor:
    """CDG saliency s = standardise_per_sample(pool_{S,b}(Y_base)), float32 N x D_c x H_d x W_d."""
    return standardise_per_sample(pool_blocks(y_base.to(_gate_dtype(y_base)), channel_block, spatial_block))


def _gate_dtype(y: torch.Tensor) -> torch.dtype:
    """Gates are decided in float32 (float64 for float64 inputs), whatever the autocast dtype."""
    return torch.promote_types(y.dtype, torch.float32)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _match_layout(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Give ``g`` the channels_last layout of ``like`` when they differ (avoids slow mixed-layout kernels)."""
    if like.dim() == 4 and like.shape[1] > 1 and not like.is_contiguous():
        if like.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous(
            memory_format=torch.channels_last
        ):
            return g.contiguous(memory_format=torch.channels_last)
    return g


def _full_gate(g: torch.Tensor, like: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """Decision-level g expanded to the shape, dtype and layout of ``like`` (a view when S = b = 1)."""
    s, bh, bw = block
    return _match_layout(expand_decisions(g.to(like.dtype), s, bh, bw, tuple(like.shape[-2:])), like)


def _spatial_gate(g: torch.Tensor, like: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """g expanded over its b x b pixel blocks only (N x D x H_out x W_out), dtype and layout of ``like``.

    The S channels of a block are then covered by broadcasting (``_channel_blocks``), so the
    full-size gate is never materialised.
    """
    _, bh, bw = block
    return _match_layout(expand_decisions(g.to(like.dtype), 1, bh, bw, tuple(like.shape[-2:])), like)


def _channel_blocks(t: torch.Tensor, channel_block: int) -> torch.Tensor:
    """N x C x H x W -> N x C/S x S x H x W view (any layout)."""
    return t.unflatten(1, (-1, channel_block)) if channel_block > 1 else t


def _unblock(t: torch.Tensor, channel_block: int) -> torch.Tensor:
    return t.flatten(1, 2) if channel_block > 1 else t


def _bcast(g_sp: torch.Tensor, channel_block: int) -> torch.Tensor:
    """N x D x H x W spatial gate, broadcastable against ``_channel_blocks`` views."""
    return g_sp[:, :, None] if channel_block > 1 else g_sp


def _gated_addcmul(y_base, g_sp, y_cond, channel_block: int, inplace: bool = False) -> torch.Tensor:
    """Y_base + g ⊙ Y_cond with g given at channel-block resolution (one full-size write)."""
    yb, yc, gb = _channel_blocks(y_base, channel_block), _channel_blocks(y_cond, channel_block), _bcast(g_sp, channel_block)
    out = yb.addcmul_(gb, yc) if inplace else torch.addcmul(yb, gb, yc)
    return _unblock(out, channel_block)


def _per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ over (C, H, W) of a * b per sample (shape N)."""
    return (a * b).sum(dim=(1, 2, 3))


# --------------------------------------------------------------------------- straight-through gates


def _surrogate_grad(margin: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """grad * d/dmargin sigmoid(alpha margin) = grad * alpha σ (1 − σ), computed in the (consumed) ``margin``."""
    sig = margin.mul_(alpha).sigmoid_()
    h = torch.ops.aten.sigmoid_backward.grad_input(grad, sig, grad_input=sig)  # grad * σ * (1 - σ)
    return h.mul_(alpha)


class _StraightThroughGate(torch.autograd.Function):
    """Forward 1[score > threshold]; backward d/d(score, threshold) of sigmoid(alpha (score - threshold))."""

    @staticmethod
    def forward(ctx, score: torch.Tensor, threshold: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(score, threshold)
        ctx.alpha = alpha
        return torch.gt(score, threshold, out=torch.empty_like(score))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        score, threshold = ctx.saved_tensors
        grad_score = _surrogate_grad(torch.sub(score, threshold), grad, ctx.alpha)
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = grad_score.sum_to_size(threshold.shape).neg()
        return grad_score, grad_threshold, None


def straight_through_gate(score: torch.Tensor, threshold, alpha: float) -> torch.Tensor:
    """Hard gate ``1[score > threshold]`` (dtype of ``score``) with the sigmoid(alpha ·) surrogate gradient.

    ``threshold`` (tensor or number) broadcasts against ``score``; its gradient is summed back to
    its own shape.
    """
    if not isinstance(threshold, torch.Tensor):
        threshold = torch.full((), float(threshold), dtype=score.dtype, device=score.device)
    return _StraightThroughGate.apply(score, threshold, float(alpha))


class _GatedSum(torch.autograd.Function):
    """y = y_base + expand(g) ⊙ y_cond with a lean backward (no full-size temporaries beyond the two grads).

    grad_y_base = grad, grad_y_cond = grad ⊙ expand(g), grad_g = block_sum(grad ⊙ y_cond).
    """

    @staticmethod
    def forward(ctx, y_base, y_cond, g, block):
        ctx.save_for_backward(y_cond, g)
        ctx.block = block
        return torch.addcmul(y_base, _full_gate(g, y_cond, block), y_cond)

    @staticmethod
    def backward(ctx, grad):
        y_cond, g = ctx.saved_tensors
        grad_g = grad_cond = None
        if ctx.needs_input_grad[2]:
            grad_g = block_sum(grad * y_cond, *ctx.block).to(g.dtype)
        if ctx.needs_input_grad[1]:
            grad_cond = grad * _full_gate(g, y_cond, ctx.block)
        return grad, grad_cond, grad_g, None


def gated_sum(y_base: torch.Tensor, y_cond: torch.Tensor, g: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """``Y_base + expand(g) ⊙ Y_cond``; in place on ``y_base`` when no gradient is needed."""
    if torch.is_grad_enabled() and (y_base.requires_grad or y_cond.requires_grad or g.requires_grad):
        return _GatedSum.apply(y_base, y_cond, g, block)
    return y_base.addcmul_(_full_gate(g, y_cond, block), y_cond)


class _CDGGate(torch.autograd.Function):
    """CDG's gate, gated sum and gate density in one autograd node, written for speed on CPU, where
    every full-size pass over memory counts: the forward makes five (two statistics, g, its count,
    Y), the backward of the unstructured case ten, allocating only its two full-size gradients.
    For CPU float32 unstructured gates both directions run the fused kernels of
    ``cdg.gating.native`` instead (same maths, one forward pass and two backward sweeps).

    Forward (p = pool_{S,b}(Y_base) in float32, per-sample μ, σ over (D, H_d, W_d))::

        g = 1[(p − μ)/σ > Δ]  computed as 1[p > μ + σ Δ]
        Y = Y_base + expand(g) ⊙ Y_cond
        ρ = spatial_fraction(g)             per-sample density (pixel-weighted over ragged blocks)

    Backward, with s = (p − μ)/σ and the straight-through surrogate ĝ = sigmoid(α (s − Δ)):
    dL/dg = block_sum(dL/dY ⊙ Y_cond) + dL/dρ ∂ρ/∂g (+ the gradient reaching g directly);
    h = dL/dg ⊙ α ĝ (1 − ĝ); dL/dΔ = −Σ h; dL/dp = (h − mean(h) − s mean(h s)) / σ (exact
    standardisation backward); dL/dY_base = dL/dY + expand(dL/dp / block size); dL/dY_cond = dL/dY ⊙ expand(g).
    """

    @staticmethod
    def forward(ctx, y_base, y_cond, threshold, block, alpha, eps, donate=False):
        weights = block_weights(tuple(y_cond.shape[-2:]), block[1], block[2], y_base.device)
        if block == (1, 1, 1) and native.usable(y_base, y_cond):  # fused CPU kernel, one pass per sample
            p = y_base
            y, g, density, mean, std, cut = native.gate_forward(y_base, y_cond, threshold, eps)
            g_sp = g
        else:
            p = pool_blocks(y_base.to(_gate_dtype(y_base)), *block)  # Y_base itself when S = b = 1 in float32
            mean, std = sample_stats(p, eps)
            cut = torch.addcmul(mean, threshold.view(1, -1, 1, 1).to(p.dtype), std)  # N x D x 1 x 1: μ + σ Δ
            g = torch.gt(p, cut, out=torch.empty_like(p))
            density = spatial_fraction(g, weights)
            g_sp = _spatial_gate(g, y_cond, block)
            y = _gated_addcmul(y_base, g_sp, y_cond, block[0])
        if _is_lean(y_base, y_cond, block):  # under autocast, keep bfloat16 Y_base rather than its float32 copy p
            p = y_base
        ctx.save_for_backward(p, mean, std, cut, threshold, g_sp, y_cond, weights)
        ctx.block, ctx.alpha, ctx.base_dtype, ctx.donate = block, alpha, y_base.dtype, donate
        ctx.set_materialize_grads(False)
        return y, g, density

    @staticmethod
    def backward(ctx, grad_y, grad_g, grad_density):
        p, mean, std, cut, threshold, g_sp, y_cond, weights = ctx.saved_tensors
        block, alpha = ctx.block, ctx.alpha
        s_blk = block[0]
        if grad_y is None and grad_g is None and grad_density is None:
            return None, None, None, None, None, None, None
        if (grad_y is not None and grad_g is None and block == (1, 1, 1)
                and native.usable(grad_y, y_cond, p)):  # fused CPU kernel: two sweeps per sample
            donate = ctx.donate and native.saved_tensors_reusable()  # Y_cond, p are dead after this
            grads = native.gate_backward(grad_y, y_cond, p, mean, std, cut, grad_density, alpha,
                                         tuple(ctx.needs_input_grad[:3]), donate)
            return (*grads, None, None, None, None)
        dtype = mean.dtype  # the gate dtype (p may be a bfloat16 Y_base)
        from_density = None  # dL/dρ ∂ρ/∂g, broadcastable to p: N x 1 x 1 x 1 or N x 1 x H_d x W_d
        if grad_density is not None:
            per_sample = grad_density.to(dtype).view(-1, 1, 1, 1)
            from_density = per_sample / p[0].numel() if weights is None else per_sample * (weights / p.shape[1])
        if grad_y is not None and _is_lean(p, y_cond, block) and grad_y.dtype == y_cond.dtype:
            return _CDGGate._backward_lean(ctx, p, mean, std, cut, g_sp, y_cond, grad_y, grad_g, from_density)
        pooled = block != (1, 1, 1)
        scratch = None  # full-size buffer of ours, reused for dL/dY_cond
        dg = None
        if grad_y is not None:
            scratch = torch.mul(grad_y, y_cond)
            dg = (block_sum(scratch, *block) if pooled else scratch).to(dtype)
            if dg is scratch:
                dg = dg.clone()
        for extra in (grad_g, from_density):
            if extra is not None:
                dg = extra.expand_as(p).clone() if dg is None else dg.add_(extra)
        s = torch.sub(p, mean).div_(std)  # standardised saliency (decision level)
        h = _surrogate_grad(torch.sub(s, threshold.view(1, -1, 1, 1)), dg, alpha)  # dL/ds
        grad_threshold = h.sum(dim=(0, 2, 3)).neg_() if ctx.needs_input_grad[2] else None
        grad_base = grad_cond = None
        if ctx.needs_input_grad[0]:
            mean_hs = _per_sample_dot(h, s).div_(p[0].numel()).view(-1, 1, 1, 1)
            mean_h = h.mean(dim=(1, 2, 3), keepdim=True)
            grad_p = h.sub_(s.mul_(mean_hs)).sub_(mean_h).div_(std)
            if pooled:  # mean-pooling backward: spread over the block, divided by its size
                counts = block_counts(tuple(y_cond.shape[-2:]), *block, device=grad_p.device)
                spread = _bcast(_spatial_gate(grad_p.div_(counts), y_cond, block), s_blk)
                if grad_y is None:
                    grad_y_blocks = torch.zeros_like(_channel_blocks(y_cond, s_blk), dtype=ctx.base_dtype)
                else:
                    grad_y_blocks = _channel_blocks(grad_y, s_blk)
                grad_base = _unblock(grad_y_blocks + spread, s_blk)
            else:
                grad_base = (grad_p if grad_y is None else grad_p.add_(grad_y)).to(ctx.base_dtype)
        if ctx.needs_input_grad[1] and grad_y is not None:
            gy, gb = _channel_blocks(grad_y, s_blk), _bcast(g_sp, s_blk)
            if scratch is not None and scratch.dtype == grad_y.dtype:
                grad_cond = _unblock(torch.mul(gy, gb, out=_channel_blocks(scratch, s_blk)), s_blk)
            else:
                grad_cond = _unblock(gy * gb, s_blk)
        return grad_base, grad_cond, grad_threshold, None, None, None, None

    @staticmethod
    def _backward_lean(ctx, p, mean, std, cut, g, y_cond, grad_y, grad_g, from_density):
        """S = b = 1: the same maths in ten elementwise passes per cache-sized chunk of samples. In
        float32 it writes only the two full-size gradients, which double as scratch; with bfloat16
        / float16 partial sums (autocast) the scratch is a float32 chunk and the gradient of Y_base
        is rounded once, at the end.

        With h' = dL/dg ⊙ ĝ (1 − ĝ) (so h = α h'), the standardisation backward is affine in p per
        sample: dL/dp = A h' + B p + C, A = α/σ, M = (mean(h' p) − μ mean(h'))/σ, B = −α M/σ²,
        C = α (μ M/σ − mean(h'))/σ; folding it this way replaces a dozen elementwise passes by three.
        """
        alpha = ctx.alpha
        numel = p[0].numel()
        want_base, want_cond = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        a = std.reciprocal().mul_(alpha)  # N x 1 x 1 x 1: α/σ; α (s − Δ) = a (p − cut)
        grad_base, grad_cond = torch.empty_like(grad_y), torch.empty_like(grad_y)
        per_map = mean.new_empty(p.shape[:2])  # Σ over pixels of h', N x D
        mixed = grad_y.dtype != mean.dtype
        chunks = _sample_chunks(p, mean.element_size())
        if mixed:  # float32 scratch for one chunk
            scratch = [torch.empty_like(grad_y[chunks[0]], dtype=mean.dtype) for _ in range(2)]
        for i in chunks:
            gy, pc, ac = grad_y[i], p[i], a[i]
            if mixed:
                buf, h = (t[: i.stop - i.start] for t in scratch)
            else:
                buf, h = grad_base[i], grad_cond[i]  # scratch until the gradients are written
            if from_density is None:
                torch.mul(gy, y_cond[i], out=buf)
            else:
                torch.addcmul(from_density[i], gy, y_cond[i], out=buf)
            if grad_g is not None:
                buf.add_(grad_g[i])  # buf: dL/dg
            # two passes: an op with two broadcast operands (N x D x 1 x 1 and N x 1 x 1 x 1) takes
            # TensorIterator's scalar loop, about 3x slower than two vectorised ones
            torch.sub(pc, cut[i], out=h).mul_(ac).sigmoid_()
            torch.ops.aten.sigmoid_backward.grad_input(buf, h, grad_input=h)  # h'
            per_map[i] = h.sum(dim=(2, 3))
            if want_base:
                mean_h = per_map[i].sum(1).div_(numel).view(-1, 1, 1, 1)
                mean_hp = torch.mul(h, pc, out=buf).sum(dim=(1, 2, 3)).div_(numel).view(-1, 1, 1, 1)
                m = (mean_hp - mean[i] * mean_h) / std[i]
                coef_p = m.mul(ac).div_(std[i]).neg_()  # B
                const = (mean[i] * m / std[i] - mean_h) * ac  # C
                torch.addcmul(gy, h, ac, out=buf).addcmul_(pc, coef_p).add_(const)
                if mixed:
                    grad_base[i].copy_(buf)
            if want_cond:
                torch.mul(gy, g[i], out=grad_cond[i])
        grad_threshold = per_map.sum(0).mul_(-alpha) if ctx.needs_input_grad[2] else None
        grads = (grad_base if want_base else None), (grad_cond if want_cond else None), grad_threshold
        return (*grads, None, None, None, None)


# Elementwise passes over tensors larger than the cache run at memory bandwidth; the backward of
# the lean CDG gate therefore works through the batch in chunks of about this many bytes per
# tensor, so that its ten passes per chunk hit cache. On CUDA one chunk covers the batch (kernel
# launches cost more there).
CHUNK_BYTES = 2 << 20


def _sample_chunks(t: torch.Tensor, itemsize: int | None = None) -> list[slice]:
    """Slices of the batch dimension of ``t`` of about ``CHUNK_BYTES`` each (one slice on CUDA),
    counting ``itemsize`` bytes per element (default: ``t``'s)."""
    n = t.shape[0]
    per_sample = t[0].numel() * (itemsize or t.element_size())
    size = n if t.device.type != "cpu" else max(1, CHUNK_BYTES // max(per_sample, 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _is_lean(y_base: torch.Tensor, y_cond: torch.Tensor, block: tuple[int, int, int]) -> bool:
    """Unstructured gates (S = b = 1) with both partial sums in one dtype (float32, or bfloat16 /
    float16 under autocast, whose gradients are then computed in float32 scratch)."""
    return block == (1, 1, 1) and y_base.dtype == y_cond.dtype


def cdg_gate(
    y_base: torch.Tensor, y_cond: torch.Tensor, threshold: torch.Tensor, block: tuple[int, int, int],
    alpha: float, eps: float = STANDARDISE_EPS, donate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Y, g, ρ) of the CDG layer given its two partial sums, ρ = ``spatial_fraction(g)`` per sample;
    see ``_CDGGate``. In place on ``y_base`` without grad. ``donate``: the caller will not read
    ``y_base`` and ``y_cond`` again, so the fused CPU backward may write their gradients over them
    (when autograd frees its saved tensors, i.e. without ``retain_graph``).

    Under ``torch.compile`` the same maths is written as plain differentiable ops (straight-through
    by ``hard + soft − soft.detach()``), which the compiler fuses better than the hand-written node.
    """
    needs_grad = torch.is_grad_enabled() and (y_base.requires_grad or y_cond.requires_grad or threshold.requires_grad)
    if needs_grad and not torch.compiler.is_compiling():
        return _CDGGate.apply(y_base, y_cond, threshold, block, float(alpha), float(eps), donate)
    weights = block_weights(tuple(y_cond.shape[-2:]), block[1], block[2], y_base.device)
    if needs_grad:
        p = pool_blocks(y_base.to(_gate_dtype(y_base)), *block)
        mean, std = sample_stats(p, eps)
        thr = threshold.view(1, -1, 1, 1).to(p.dtype)
        soft = torch.sigmoid(alpha * ((p - mean) / std - thr))
        hard = (p > torch.addcmul(mean, thr, std)).to(p.dtype)  # the same comparison as in eager mode
        g = hard + (soft - soft.detach())
        y = _unblock(_channel_blocks(y_base, block[0]) + _bcast(_spatial_gate(g, y_cond, block), block[0])
                     * _channel_blocks(y_cond, block[0]), block[0])
        return y, g, spatial_fraction(g, weights)
    if block == (1, 1, 1) and native.usable(y_base, y_cond):
        return native.gate_forward(y_base, y_cond, threshold, eps, out=y_base)[:3]
    p = pool_blocks(y_base.to(_gate_dtype(y_base)), *block)
    mean, std = sample_stats(p, eps)
    g = torch.gt(p, torch.addcmul(mean, threshold.view(1, -1, 1, 1).to(p.dtype), std), out=torch.empty_like(p))
    y = _gated_addcmul(y_base, _spatial_gate(g, y_cond, block), y_cond, block[0], inplace=True)
    return y, g, spatial_fraction(g, weights)


def cdg_decisions(
    y_base: torch.Tensor, threshold: torch.Tensor, block: tuple[int, int, int], alpha: float,
    eps: float = STANDARDISE_EPS,
) -> torch.Tensor:
    """Straight-through CDG decisions g (N x D x H_d x W_d) alone, for the ungated (all-on) path.

    Built from differentiable torch ops (hard forward, sigmoid surrogate gradient), so that
    ``soft_density`` keeps its gradient when the layer runs with ``gating = False``.
    """
    s = standardise_per_sample(pool_blocks(y_base.to(_gate_dtype(y_base)), *block), eps)
    return straight_through_gate(s, threshold.view(1, -1, 1, 1), alpha)


# --------------------------------------------------------------------------- record


@dataclass(eq=False)
class GateRecord:
    """What one forward of a gated layer did (overwritten by the next forward).

    mask
        Decision-level hard gate, {0, 1} float32, detached, N x D x H_d x W_d: cdg N x C_out/S x
        ceil(H_out/b) x ceil(W_out/b); cgnet N x C_out x H_out x W_out; fbs N x C_out x 1 x 1 (one
        decision per channel over the whole map); dgnet N x C_out x ceil(H_out/b) x ceil(W_out/b), the
        product of its channel and spatial gates (the factors are in ``extras``). It is what was
        computed: all ones when the layer ran with ``gating = False``.
    soft_density / soft_density_per_sample
        Differentiable fraction of the gated work kept (scalar / shape N): cdg, cgnet the fraction of
        conditional output elements computed; dgnet the fraction of output elements computed (the
        conv MAC ratio, for its FLOPs loss); fbs the fraction of channels kept (constant k / C_out).
        Straight-through: the forward value is the hard density of the gate decisions, the gradient
        that of the sigmoid surrogate. With ``gating = False`` it is the density the gates *would*
        have had, so regularisers and cross-branch terms still see the decisions.
    threshold_term
        The learnable thresholds Δ (cdg: shape C_out/S; cgnet: C_out), not detached, so that
        λ Σ (Δ − T)² = ``((record.threshold_term - T) ** 2).sum()``; None for fbs and dgnet.
    saliency_mean
        fbs: mean of the channel saliency π ≥ 0 over batch and channels (its L1 regulariser); None otherwise.
    extras
        Method-specific detached tensors: dgnet "channel" (N x C_out) and "spatial" (N x H_d x W_d)
        gates; fbs "saliency" (N x C_out).
    macs
        Per-image effective MACs (int64, shape N): "base", "conditional", "gate", "predictor",
        "total" (see ``cdg.gating.accounting``); computed on first access.
    """

    mask: torch.Tensor
    soft_density: torch.Tensor
    soft_density_per_sample: torch.Tensor
    threshold_term: torch.Tensor | None
    saliency_mean: torch.Tensor | None
    spec: ConvSpec
    gate: GateSpec
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    gated: bool
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def thresholds(self) -> torch.Tensor | None:
        return self.threshold_term

    @property
    def block(self) -> tuple[int, int, int]:
        """(S, bh, bw): output channels x pixels covered by one decision of ``mask``."""
        return decision_block(self.gate, self.out_hw)

    @property
    def dense_macs(self) -> int:
        return dense_conv_macs(self.spec, *self.in_hw)

    @functools.cached_property
    def macs(self) -> dict[str, torch.Tensor]:
        return effective_macs(self)

    @property
    def hard_density(self) -> torch.Tensor:
        """Per image, the fraction of output elements that got the conditional (fbs/dgnet: any) work."""
        s, bh, bw = self.block
        weights = block_weights(self.out_hw, bh, bw, self.mask.device)
        return spatial_fraction((self.mask != 0).float(), weights)

    def threshold_penalty(self, target: float) -> torch.Tensor:
        """Σ (Δ − target)² (CGNet's regulariser); zero for methods without thresholds."""
        if self.threshold_term is None:
            return self.soft_density.new_zeros(())
        return ((self.threshold_term - target) ** 2).sum()


def full_resolution_mask(
    record: GateRecord, spec: ConvSpec | None = None, out_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """N x C_out x H_out x W_out bool: which outputs got the conditional (fbs/dgnet: any) computation.

    ``spec`` and ``out_hw`` default to the record's own.
    """
    spec = spec or record.spec
    out_hw = tuple(out_hw or record.out_hw)
    s, bh, bw = decision_block(record.gate, out_hw)
    expected = decision_grid(spec, record.gate, out_hw)
    if tuple(record.mask.shape[1:]) != expected:
        raise ValueError(
            f"record mask {tuple(record.mask.shape)} does not match decision grid {expected} "
            f"of layer {spec.name} at output {out_hw}"
        )
    device = record.mask.device
    channels = torch.arange(spec.out_channels, device=device) // s
    rows = torch.arange(out_hw[0], device=device) // bh
    cols = torch.arange(out_hw[1], device=device) // bw
    on = record.mask != 0
    return on.index_select(1, channels).index_select(2, rows).index_select(3, cols)


# --------------------------------------------------------------------------- layers


class GatedConv(nn.Conv2d):
    """Common base of the gated convolutions: a bias-free ``nn.Conv2d`` with a gate and a record.

    Attributes: ``spec`` (ConvSpec), ``gate`` (GateSpec), ``weight`` (C_out x C_in x k x k, the
    ``nn.Conv2d`` initialisation), ``gating`` (bool, default True), ``record`` (GateRecord of the
    last forward, or None).
    """

    method: str = ""

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        validate_gate(spec, gate)
        if gate.method != self.method:
            raise ValueError(f"{type(self).__name__} implements method {self.method!r}, got {gate.method!r}")
        super().__init__(
            spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, bias=False
        )
        self.spec = spec
        self.gate = gate
        self.gating = True
        self.record: GateRecord | None = None

    def dense_macs(self, h_in: int, w_in: int) -> int:
        """MACs of the dense conv this layer replaces, for one H_in x W_in image."""
        return dense_conv_macs(self.spec, h_in, w_in)

    def out_hw(self, h_in: int, w_in: int) -> tuple[int, int]:
        return conv_out_hw(self.spec, h_in, w_in)

    def threshold_penalty(self, target: float) -> torch.Tensor:
        """Σ (Δ − target)² over this layer's thresholds (zero for methods without thresholds)."""
        threshold = getattr(self, "threshold", None)
        if threshold is None:
            return self.weight.new_zeros(())
        return ((threshold - target) ** 2).sum()

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding)

    def _zero_bias(self, link: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A zero C_out bias that keeps ``link`` (and so the gate parameters) in the autograd graph."""
        return (link.reshape(()) * 0.0).to(dtype).expand(self.out_channels)

    def _record(self, **kwargs) -> None:
        self.record = GateRecord(spec=self.spec, gate=self.gate, **kwargs)

    def __getstate__(self):  # deepcopy / pickle: the record holds graph tensors, never copy it
        state = self.__dict__.copy()
        state["record"] = None
        return state

    def extra_repr(self) -> str:
        g = self.gate
        parts = [super().extra_repr(), f"method={g.method}"]
        if g.method in ("cdg", "cgnet"):
            parts.append(f"G={g.groups}")
        if g.method == "cdg":
            parts.append(f"S={g.channel_block}")
        if g.method in ("cdg", "dgnet"):
            parts.append(f"b={g.spatial_block}")
        return ", ".join(parts)


class _SplitGatedConv(GatedConv, metaclass=abc.ABCMeta):
    """Shared base/conditional machinery of cdg and cgnet (subclasses define ``_decide``)."""

    def __init__(self, spec: ConvSpec, gate: GateSpec, decisions: int):
        super().__init__(spec, gate)
        self.base_channels = base_channels(spec, gate)
        self.cond_channels = spec.in_channels - self.base_channels
        self.threshold = nn.Parameter(torch.full((decisions,), float(gate.init_threshold)))

    @abc.abstractmethod
    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        """Straight-through hard gate, float32 N x D x H_d x W_d, from the base partial sum."""

    def _gate_and_sum(self, y_base, y_cond, block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Y, g, ρ) with Y = Y_base + expand(g) ⊙ Y_cond and ρ = ``spatial_fraction(g)`` per sample."""
        g = self._decide(y_base, block)
        weights = block_weights(tuple(y_base.shape[-2:]), block[1], block[2], g.device)
        return gated_sum(y_base, y_cond, g, block), g, spatial_fraction(g, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        c_b, c_c = self.base_channels, self.cond_channels
        if c_c == 0:
            x_base, w_base = x, self.weight
        else:  # disjoint input-channel slices of x and W: views, gradients re-joined by one cat
            x_base, x_cond = x.split((c_b, c_c), dim=1)
            w_base, w_cond = self.weight.split((c_b, c_c), dim=1)
            if torch.compiler.is_compiling():  # compiled convs on strided slices hit slow kernels
                fmt = _memory_format(x)
                x_base, x_cond = x_base.contiguous(memory_format=fmt), x_cond.contiguous(memory_format=fmt)
                w_base, w_cond = w_base.contiguous(), w_cond.contiguous()
        y_base = self._conv(x_base, w_base)
        out_hw = (y_base.shape[-2], y_base.shape[-1])
        block = decision_block(self.gate, out_hw)
        if c_c > 0 and self.gating:
            y_cond = self._conv(x_cond, w_cond)
            y, g, density = self._gate_and_sum(y_base, y_cond, block)
            mask = g.detach()
        else:  # all gates on (or nothing to gate): the decisions still feed soft_density
            g = self._decide(y_base, block)
            density = spatial_fraction(g, block_weights(out_hw, block[1], block[2], g.device))
        if c_c == 0:  # G = 1: Y = Y_base; a zero bias keeps Δ in the graph (DDP)
            y = y_base + self._zero_bias(density.sum(), y_base.dtype).view(1, -1, 1, 1)
            mask = torch.ones_like(g)
        elif not self.gating:
            y = y_base + self._conv(x_cond, w_cond, self._zero_bias(density.sum(), x_cond.dtype))
            mask = torch.ones_like(g)
        self._record(
            mask=mask,
            soft_density=density.mean(),
            soft_density_per_sample=density,
            threshold_term=self.threshold,
            saliency_mean=None,
            in_hw=in_hw,
            out_hw=out_hw,
            gated=self.gating,
        )
        return y


class CDGConv(_SplitGatedConv):
    """Contrastive dual gating conv (see the module docstring). ``threshold``: Δ, shape C_out / S."""

    method = "cdg"

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate, spec.out_channels // gate.channel_block)

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        return cdg_decisions(y_base, self.threshold, block, self.gate.sharpness)

    def _gate_and_sum(self, y_base, y_cond, block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the partial sums are this forward's own temporaries: their memory may hold their gradients
        return cdg_gate(y_base, y_cond, self.threshold, block, self.gate.sharpness, donate=True)


class CGNetConv(_SplitGatedConv):
    """Channel gating conv (Hua et al. 2019). ``threshold``: Δ, shape C_out; ``running_mean/var``: its BN statistics."""

    method = "cgnet"

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate, spec.out_channels)
        # A non-affine BatchNorm held as plain buffers (not an nn.BatchNorm2d submodule, which the
        # backbone's initialisation and SyncBatchNorm conversion would treat as one of its own).
        self.register_buffer("running_mean", torch.zeros(spec.out_channels))
        self.register_buffer("running_var", torch.ones(spec.out_channels))

    def normalise(self, y_base: torch.Tensor) -> torch.Tensor:
        """BN(Y_base) without affine: batch statistics in training (updating the running ones), running in eval."""
        return F.batch_norm(
            y_base.to(self.running_mean.dtype), self.running_mean, self.running_var, None, None,
            self.training, self.gate.bn_momentum, 1e-5,
        )

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        return straight_through_gate(self.normalise(y_base), self.threshold.view(1, -1, 1, 1), self.gate.sharpness)


# --------------------------------------------------------------------------- construction


def _layer_classes() -> dict[str, type[GatedConv]]:
    from cdg.gating.predictors import DGNetConv, FBSConv  # predictors build on this module

    return {"cdg": CDGConv, "cgnet": CGNetConv, "fbs": FBSConv, "dgnet": DGNetConv}


def build_gated_conv(spec: ConvSpec, gate: GateSpec) -> GatedConv:
    """The gated conv of ``gate.method`` for conv ``spec`` (validated: UserError naming the field)."""
    validate_gate(spec, gate)
    return _layer_classes()[gate.method](spec, gate)


def gated_conv_factory(select: Callable[[ConvSpec], GateSpec | None]) -> ConvFactory:
    """A ConvFactory: a gated conv where ``select(spec)`` returns a GateSpec, else the dense conv."""

    def factory(spec: ConvSpec) -> nn.Module:
        gate = select(spec)
        return dense_conv(spec) if gate is None else build_gated_conv(spec, gate)

    return factory


def default_selection(gate: GateSpec) -> Callable[[ConvSpec], GateSpec | None]:
    """Gate every 3x3 conv of the residual blocks (role "conv"); stem, shortcuts and 1x1 convs stay dense."""

    def select(spec: ConvSpec) -> GateSpec | None:
        return gate if spec.role == "conv" and spec.kernel_size == 3 else None

    return select


def gated_layers(model: nn.Module) -> list[tuple[str, GatedConv]]:
    """(module name, layer) of every gated conv in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GatedConv)]


def set_gating(model: nn.Module, enabled: bool) -> None:
    """Switch every gated conv of ``model`` between gated and all-on (dense warm-up)."""
    for _, layer in gated_layers(model):
        layer.gating = bool(enabled)


def collect_records(model: nn.Module) -> dict[str, GateRecord]:
    """Records of the last forward, by module name (layers that have not run yet are left out)."""
    return {name: layer.record for name, layer in gated_layers(model) if layer.record is not None}
