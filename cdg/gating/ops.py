"""The tensor operations every gate method is built from: decision-grid pooling and expansion,
per-sample statistics, the straight-through gate and the gated sum (their autograd Functions).

A decision covers a block of S output channels x bh x bw output pixels; a decision grid is
N x D x H_d x W_d with D = C / S, H_d = ceil(H / bh), W_d = ceil(W / bw). Blocks on the bottom
and right edges may be ragged (smaller); pooling averages over what they contain and the
fractions weight them by their true size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cdg.gating.native import kernels, torch_private

STANDARDISE_EPS = 1e-5


# --------------------------------------------------------------------------- helpers on decision grids


def block_sizes(n: int, block: int) -> list[int]:
    """Sizes of the consecutive blocks of ``block`` elements covering ``n`` (last one ragged)."""
    return [min(block, n - start) for start in range(0, n, block)]


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
    if not (torch.is_grad_enabled() and p.requires_grad) and kernels.usable(p):
        return kernels.sample_stats(p, eps)  # the statistics the fused CPU forward uses
    dims = (1, 2, 3)
    mean = p.mean(dim=dims, keepdim=True)
    second = torch.linalg.vector_norm(p, dim=dims, keepdim=True).square() / p[0].numel()
    return mean, ((second - mean.square()).clamp(min=0.0) + eps).sqrt()  # tiny tensors: out of place (autograd)


def standardise_per_sample(p: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """(p - mean) / sqrt(var + eps), statistics over all but the batch dimension (population variance)."""
    mean, std = sample_stats(p, eps)
    return (p - mean) / std


def gate_dtype(y: torch.Tensor) -> torch.dtype:
    """Gates are decided in float32 (float64 for float64 inputs), whatever the autocast dtype."""
    return torch.promote_types(y.dtype, torch.float32)


def memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def match_layout(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Give ``g`` the channels_last layout of ``like`` when they differ (avoids slow mixed-layout kernels)."""
    if like.dim() == 4 and like.shape[1] > 1 and not like.is_contiguous():
        if like.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous(
            memory_format=torch.channels_last
        ):
            return g.contiguous(memory_format=torch.channels_last)
    return g


def full_gate(g: torch.Tensor, like: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """Decision-level g expanded to the shape, dtype and layout of ``like`` (a view when S = b = 1)."""
    s, bh, bw = block
    return match_layout(expand_decisions(g.to(like.dtype), s, bh, bw, tuple(like.shape[-2:])), like)


def spatial_gate(g: torch.Tensor, like: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """g expanded over its b x b pixel blocks only (N x D x H_out x W_out), dtype and layout of ``like``.

    The S channels of a block are then covered by broadcasting (``channel_blocks``), so the
    full-size gate is never materialised.
    """
    _, bh, bw = block
    return match_layout(expand_decisions(g.to(like.dtype), 1, bh, bw, tuple(like.shape[-2:])), like)


def channel_blocks(t: torch.Tensor, channel_block: int) -> torch.Tensor:
    """N x C x H x W -> N x C/S x S x H x W view (any layout)."""
    return t.unflatten(1, (-1, channel_block)) if channel_block > 1 else t


def unblock(t: torch.Tensor, channel_block: int) -> torch.Tensor:
    return t.flatten(1, 2) if channel_block > 1 else t


def bcast(g_sp: torch.Tensor, channel_block: int) -> torch.Tensor:
    """N x D x H x W spatial gate, broadcastable against ``channel_blocks`` views."""
    return g_sp[:, :, None] if channel_block > 1 else g_sp


def gated_addcmul(y_base, g_sp, y_cond, channel_block: int, inplace: bool = False) -> torch.Tensor:
    """Y_base + g ⊙ Y_cond with g given at channel-block resolution (one full-size write)."""
    yb, yc, gb = channel_blocks(y_base, channel_block), channel_blocks(y_cond, channel_block), bcast(g_sp, channel_block)
    out = yb.addcmul_(gb, yc) if inplace else torch.addcmul(yb, gb, yc)
    return unblock(out, channel_block)


def per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ over (C, H, W) of a * b per sample (shape N)."""
    return (a * b).sum(dim=(1, 2, 3))


# --------------------------------------------------------------------------- straight-through gates


def surrogate_grad(margin: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """grad * d/dmargin sigmoid(alpha margin) = grad * alpha σ (1 − σ), computed in the (consumed) ``margin``."""
    sig = margin.mul_(alpha).sigmoid_()
    h = torch_private.sigmoid_backward(grad, sig, out=sig)  # grad * σ * (1 - σ)
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
        grad_score = surrogate_grad(torch.sub(score, threshold), grad, ctx.alpha)
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
        return torch.addcmul(y_base, full_gate(g, y_cond, block), y_cond)

    @staticmethod
    def backward(ctx, grad):
        y_cond, g = ctx.saved_tensors
        grad_g = grad_cond = None
        if ctx.needs_input_grad[2]:
            grad_g = block_sum(grad * y_cond, *ctx.block).to(g.dtype)
        if ctx.needs_input_grad[1]:
            grad_cond = grad * full_gate(g, y_cond, ctx.block)
        return grad, grad_cond, grad_g, None


def gated_sum(y_base: torch.Tensor, y_cond: torch.Tensor, g: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """``Y_base + expand(g) ⊙ Y_cond``; in place on ``y_base`` when no gradient is needed."""
    if torch.is_grad_enabled() and (y_base.requires_grad or y_cond.requires_grad or g.requires_grad):
        return _GatedSum.apply(y_base, y_cond, g, block)
    return y_base.addcmul_(full_gate(g, y_cond, block), y_cond)
