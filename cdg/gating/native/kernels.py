"""The Python entry points of CDG's fused CPU gate kernels: ctypes calls on raw pointers.

Only CPU float32 tensors of one shape and one dense layout (NCHW or channels_last) take this
path; ``usable`` says whether a set of tensors does. The library itself is built and loaded by
``cdg.gating.native.loader``.
"""
from __future__ import annotations

import torch

from cdg.gating.native import loader


def _layout(t: torch.Tensor) -> bool | None:
    """True for channels_last, False for NCHW, None for anything else (checked in that order of preference)."""
    if t.is_contiguous():
        return False
    if t.is_contiguous(memory_format=torch.channels_last):
        return True
    return None


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these full-size tensors: CPU float32 N x C x H x W, one shape,
    one dense layout (same strides), not inside ``torch.compile``, and the kernels available."""
    first = tensors[0]
    if torch.compiler.is_compiling():  # traced code keeps to torch ops (cdg_gate's compile branch)
        return False
    if first.device.type != "cpu" or first.dtype != torch.float32 or first.dim() != 4 or _layout(first) is None:
        return False
    same = all(t.dtype == torch.float32 and t.shape == first.shape and t.stride() == first.stride()
               and t.device.type == "cpu" for t in tensors[1:])
    return same and loader.library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _f32(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``t`` as a dense float32 tensor of ``shape`` (no op when it already is one)."""
    if t.dtype == torch.float32 and t.shape == shape and t.is_contiguous():
        return t
    return t.to(torch.float32).expand(shape).contiguous()


def sigmoid_grad(m: torch.Tensor) -> torch.Tensor:
    """sigmoid'(m) as the fused backward computes it (its inlined exp), for float32 CPU ``m``."""
    m = m.to(torch.float32).contiguous()
    out = torch.empty_like(m)
    loader.library().cdg_sigmoid_grad_f32(_ptr(m), _ptr(out), m.numel())
    return out


def sample_stats(p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean and sqrt(population variance + eps), each N x 1 x 1 x 1, sums in float64.
    Requires ``usable(p)``; not differentiable."""
    n = p.shape[0]
    mean, std = torch.empty(n, 1, 1, 1), torch.empty(n, 1, 1, 1)
    loader.library().cdg_sample_stats_f32(_ptr(p), _ptr(mean), _ptr(std), n, p[0].numel(), float(eps))
    return mean, std


def gate_forward(p: torch.Tensor, y_cond: torch.Tensor, threshold: torch.Tensor, eps: float,
                 out: torch.Tensor | None = None):
    """CDG's unstructured forward in one pass per sample: (Y, g, ρ, μ, σ, cut) with μ, σ the
    per-sample statistics of p (as ``sample_stats``), cut = μ + σ Δ (N x C x 1 x 1), g = 1[p > cut],
    Y = p + g ⊙ Y_cond (written into ``out``, which may be ``p`` itself) and ρ the per-sample mean
    of g. Requires ``usable(p, y_cond)``; not differentiable."""
    n, c, h, w = p.shape
    threshold = _f32(threshold.detach(), (c,))
    mean, std, cut, density = torch.empty(n, 1, 1, 1), torch.empty(n, 1, 1, 1), torch.empty(n, c, 1, 1), torch.empty(n)
    y = torch.empty_like(p) if out is None else out
    g = torch.empty_like(p)
    loader.library().cdg_gate_forward_f32(_ptr(p), _ptr(y_cond), _ptr(threshold), float(eps), _ptr(mean), _ptr(std),
                                   _ptr(cut), _ptr(y), _ptr(g), _ptr(density), n, c, h * w, int(_layout(p)))
    return y, g, density, mean, std, cut


def gate_backward(grad_y, y_cond, p, mean, std, cut, grad_density, alpha: float, want: tuple[bool, bool, bool],
                  donate: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(dL/dY_base, dL/dY_cond, dL/dΔ) of the unstructured CDG gate given dL/dY and dL/dρ
    (``grad_density``, N, or None), each computed when ``want`` says so. The maths is
    ``_CDGGate._backward_lean``'s; the decisions 1[p > cut] are recomputed bit for bit rather than
    read. ``donate``: write dL/dY_base into Y_cond's memory and dL/dY_cond into p's (the caller
    guarantees that nothing reads them afterwards). Requires ``usable(grad_y, y_cond, p)``;
    ``mean``, ``std``: N x 1 x 1 x 1, ``cut``: N x C x 1 x 1."""
    n, c, h, w = p.shape
    mean, std, cut = _f32(mean, (n, 1, 1, 1)), _f32(std, (n, 1, 1, 1)), _f32(cut, (n, c, 1, 1))
    density = None if grad_density is None else _f32(grad_density.reshape(-1), (n,))
    want_base, want_cond, want_threshold = want
    grad_base = (y_cond if donate else torch.empty_like(p)) if want_base else None
    grad_cond = (p if donate else torch.empty_like(p)) if want_cond else None
    grad_threshold = torch.empty(c) if want_threshold else None
    loader.library().cdg_gate_backward_f32(
        _ptr(grad_y), _ptr(y_cond), _ptr(p), _ptr(mean), _ptr(std), _ptr(cut), _ptr(density), float(alpha),
        _ptr(grad_base), _ptr(grad_cond), _ptr(grad_threshold), n, c, h * w, int(_layout(p)))
    return grad_base, grad_cond, grad_threshold
