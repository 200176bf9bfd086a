"""Contrastive dual gating (CDG): the gate method, its layer ``CDGConv`` and its fused gate node.

``CDGConv`` (a ``SplitGatedConv``, see ``cdg.gating.split``)::

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

Per-channel normalisation (``gate.saliency_norm: channel``). Y_base is a signed pre-BN partial
sum whose channels have unrelated offsets and scales (the block's BatchNorm removes them after the
conv), so pooling it over S channels lets one large channel dominate a block or two channels of
opposite sign cancel. With this option each channel of each image is first standardised over its
own pixels, z_c = (Y_base,c − mean_hw) / sqrt(var_hw + ε), and p = pool_{S,b}(z): a positive
rescaling or a shift of one channel's partial sums no longer changes any decision. It runs the
eager torch path (``SplitGatedConv``'s gate and gated sum over ``cdg_decisions``), not the fused
node or the C++ kernels; a 1 x 1 output map has nothing to standardise over (z = 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from cdg.gating.accounting import conv_out_hw, decision_grid
from cdg.gating.base import ThresholdSettings
from cdg.gating.native import kernels, torch_private
from cdg.gating.ops import (
    STANDARDISE_EPS,
    bcast,
    block_counts,
    block_sum,
    block_weights,
    channel_blocks,
    gate_dtype,
    gated_addcmul,
    per_sample_dot,
    pool_blocks,
    sample_stats,
    spatial_fraction,
    spatial_gate,
    standardise_per_sample,
    straight_through_gate,
    surrogate_grad,
    unblock,
)
from cdg.gating.spec import GateSpec
from cdg.gating.split import SplitGatedConv, SplitMethod
from hwsim.trace.errors import UserError
from cdg.models.resnet import ConvSpec


class _CDGGate(torch.autograd.Function):
    """CDG's gate, gated sum and gate density in one autograd node, written for speed on CPU, where
    every full-size pass over memory counts: the forward makes five (two statistics, g, its count,
    Y), the backward of the unstructured case ten, allocating only its two full-size gradients.
    For CPU float32 unstructured gates both directions run the fused kernels of
    ``cdg.gating.native.kernels`` instead (same maths, one forward pass and two backward sweeps).

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
        if block == (1, 1, 1) and kernels.usable(y_base, y_cond):  # fused CPU kernel, one pass per sample
            p = y_base
            y, g, density, mean, std, cut = kernels.gate_forward(y_base, y_cond, threshold, eps)
            g_sp = g
        else:
            p = pool_blocks(y_base.to(gate_dtype(y_base)), *block)  # Y_base itself when S = b = 1 in float32
            mean, std = sample_stats(p, eps)
            cut = torch.addcmul(mean, threshold.view(1, -1, 1, 1).to(p.dtype), std)  # N x D x 1 x 1: μ + σ Δ
            g = torch.gt(p, cut, out=torch.empty_like(p))
            density = spatial_fraction(g, weights)
            g_sp = spatial_gate(g, y_cond, block)
            y = gated_addcmul(y_base, g_sp, y_cond, block[0])
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
                and kernels.usable(grad_y, y_cond, p)):  # fused CPU kernel: two sweeps per sample
            donate = ctx.donate and torch_private.saved_tensors_reusable()  # Y_cond, p are dead after this
            grads = kernels.gate_backward(grad_y, y_cond, p, mean, std, cut, grad_density, alpha,
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
        h = surrogate_grad(torch.sub(s, threshold.view(1, -1, 1, 1)), dg, alpha)  # dL/ds
        grad_threshold = h.sum(dim=(0, 2, 3)).neg_() if ctx.needs_input_grad[2] else None
        grad_base = grad_cond = None
        if ctx.needs_input_grad[0]:
            mean_hs = per_sample_dot(h, s).div_(p[0].numel()).view(-1, 1, 1, 1)
            mean_h = h.mean(dim=(1, 2, 3), keepdim=True)
            grad_p = h.sub_(s.mul_(mean_hs)).sub_(mean_h).div_(std)
            if pooled:  # mean-pooling backward: spread over the block, divided by its size
                counts = block_counts(tuple(y_cond.shape[-2:]), *block, device=grad_p.device)
                spread = bcast(spatial_gate(grad_p.div_(counts), y_cond, block), s_blk)
                if grad_y is None:
                    grad_y_blocks = torch.zeros_like(channel_blocks(y_cond, s_blk), dtype=ctx.base_dtype)
                else:
                    grad_y_blocks = channel_blocks(grad_y, s_blk)
                grad_base = unblock(grad_y_blocks + spread, s_blk)
            else:
                grad_base = (grad_p if grad_y is None else grad_p.add_(grad_y)).to(ctx.base_dtype)
        if ctx.needs_input_grad[1] and grad_y is not None:
            gy, gb = channel_blocks(grad_y, s_blk), bcast(g_sp, s_blk)
            if scratch is not None and scratch.dtype == grad_y.dtype:
                grad_cond = unblock(torch.mul(gy, gb, out=channel_blocks(scratch, s_blk)), s_blk)
            else:
                grad_cond = unblock(gy * gb, s_blk)
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
            torch_private.sigmoid_backward(buf, h, out=h)  # h'
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
        p = pool_blocks(y_base.to(gate_dtype(y_base)), *block)
        mean, std = sample_stats(p, eps)
        thr = threshold.view(1, -1, 1, 1).to(p.dtype)
        soft = torch.sigmoid(alpha * ((p - mean) / std - thr))
        hard = (p > torch.addcmul(mean, thr, std)).to(p.dtype)  # the same comparison as in eager mode
        g = hard + (soft - soft.detach())
        y = unblock(channel_blocks(y_base, block[0]) + bcast(spatial_gate(g, y_cond, block), block[0])
                     * channel_blocks(y_cond, block[0]), block[0])
        return y, g, spatial_fraction(g, weights)
    if block == (1, 1, 1) and kernels.usable(y_base, y_cond):
        return kernels.gate_forward(y_base, y_cond, threshold, eps, out=y_base)[:3]
    p = pool_blocks(y_base.to(gate_dtype(y_base)), *block)
    mean, std = sample_stats(p, eps)
    g = torch.gt(p, torch.addcmul(mean, threshold.view(1, -1, 1, 1).to(p.dtype), std), out=torch.empty_like(p))
    y = gated_addcmul(y_base, spatial_gate(g, y_cond, block), y_cond, block[0], inplace=True)
    return y, g, spatial_fraction(g, weights)


def cdg_decisions(
    y_base: torch.Tensor, threshold: torch.Tensor, block: tuple[int, int, int], alpha: float,
    eps: float = STANDARDISE_EPS,
) -> torch.Tensor:
    """Straight-through CDG decisions g (N x D x H_d x W_d) alone, for the ungated (all-on) path.

    Built from differentiable torch ops (hard forward, sigmoid surrogate gradient), so that
    ``soft_density`` keeps its gradient when the layer runs with ``gating = False``.
    """
    s = standardise_per_sample(pool_blocks(y_base.to(gate_dtype(y_base)), *block), eps)
    return straight_through_gate(s, threshold.view(1, -1, 1, 1), alpha)


def cdg_saliency(y_base: torch.Tensor, channel_block: int, spatial_block: int) -> torch.Tensor:
    """CDG saliency s = standardise_per_sample(pool_{S,b}(Y_base)), float32 N x D_c x H_d x W_d."""
    return standardise_per_sample(pool_blocks(y_base.to(gate_dtype(y_base)), channel_block, spatial_block))



# --------------------------------------------------------------------------- the method


def standardise_channels(y: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """Each channel of each sample (N x C x H x W) standardised over its own H x W pixels, in the gate dtype."""
    y = y.to(gate_dtype(y))
    var, mean = torch.var_mean(y, dim=(2, 3), keepdim=True, correction=0)
    return (y - mean) / (var + eps).sqrt()


@dataclass(frozen=True)
class CDGSettings(ThresholdSettings):
    """CDG's settings: the threshold gate's, and how the base partial sum is normalised."""

    saliency_norm: str = "none"
    """none: pool Y_base as it is; channel: standardise each channel per image first (module docstring)."""


SALIENCY_NORMS = ("none", "channel")


class CDG(SplitMethod):
    """Contrastive dual gating: threshold on the standardised, block-pooled base partial sum."""

    name = "cdg"
    Settings = CDGSettings
    channel_blocks = True
    spatial_blocks = True
    static_removal = True

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        super().validate(spec, gate)
        if gate.settings.saliency_norm not in SALIENCY_NORMS:
            raise UserError(f"gate.saliency_norm: must be one of {', '.join(SALIENCY_NORMS)}, got {gate.settings.saliency_norm!r}")
        if spec.out_channels % gate.channel_block:
            raise UserError(
                f"gate.channel_block={gate.channel_block} does not divide C_out={spec.out_channels} of layer {spec.name}"
            )

    @classmethod
    def decision_block(cls, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
        return gate.channel_block, gate.spatial_block, gate.spatial_block

    @classmethod
    def split_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Pooling adds C_out H_out W_out (only when S > 1 or b > 1) + 4 per decision (sum and sum of
        squares for the per-sample statistics, one fused standardise, one compare)."""
        out_hw = conv_out_hw(spec, *in_hw)
        d, h_d, w_d = decision_grid(spec, gate, out_hw)
        s, bh, bw = cls.decision_block(gate, out_hw)
        pooling = spec.out_channels * out_hw[0] * out_hw[1] if (s > 1 or bh > 1 or bw > 1) else 0
        return pooling + 4 * d * h_d * w_d

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """Augmented Lagrangian on the soft network ratio of both views: μ (r − t) + ρ/2 (r − t)²."""
        rho = controller.gate.reg_weight
        return controller.multiplier * (cost - target) + 0.5 * rho * (cost - target) ** 2

    @classmethod
    def integrate(cls, controller, step: float) -> None:
        controller.multiplier += step  # dual ascent on the same error as the gate shift


class CDGConv(SplitGatedConv):
    """Contrastive dual gating conv (see the module docstring). ``threshold``: Δ, shape C_out / S."""

    impl = CDG

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate, spec.out_channels // gate.channel_block)

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        if self.gate.settings.saliency_norm == "channel":
            y_base = standardise_channels(y_base)
        return cdg_decisions(y_base, self.threshold, block, self.gate.settings.sharpness)

    def _gate_and_sum(self, y_base, y_cond, block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.gate.settings.saliency_norm == "channel":  # eager path: the fused node pools Y_base itself
            return super()._gate_and_sum(y_base, y_cond, block)
        # the partial sums are this forward's own temporaries: their memory may hold their gradients
        return cdg_gate(y_base, y_cond, self.threshold, block, self.gate.settings.sharpness, donate=True)


CDG.layer = CDGConv
