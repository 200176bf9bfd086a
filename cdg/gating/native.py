"""Fused CPU kernels for CDG's unstructured gate (``csrc/cdg_gate_cpu.cpp``), built on first use.

Why: on CPU the eager gate is about fifteen separate elementwise operator calls per layer and
step, each a pass over memory; the fused kernels do the forward in one pass and the backward in
two, per sample, while it is in cache, and the backward can write its gradients over the
partial sums it consumes instead of into fresh memory (docs/results.md has the step times with
and without them).

The kernel is compiled by ``torch.utils.cpp_extension`` (a C++ compiler and the ``ninja``
package; about two seconds, cached under ``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``) and called through ``ctypes`` on raw pointers: it includes only
``ATen/Parallel.h``, whose thread pool it shares with torch. It is compiled for the vector
instructions torch's own kernels use on this CPU, and without them if the compiler rejects the
flags. If the build still fails (no compiler, Windows), one warning is issued and the eager
torch path is used; the two agree up to float rounding (the tests compare them).
``CDG_NATIVE_GATE=0`` turns the kernels off.

Only CPU float32 tensors of one shape and one dense layout (NCHW or channels_last) take this
path; ``usable`` says whether a set of tensors does.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "cdg_gate_cpu.cpp"
ENV_SWITCH = "CDG_NATIVE_GATE"

# x86 vector extensions to compile for, by what torch's own kernels use on this CPU
_ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}

_P = ctypes.c_void_p
_I64, _I32 = ctypes.c_int64, ctypes.c_int32


def enabled() -> bool:
    """False when ``CDG_NATIVE_GATE`` is 0 / off / false (checked on every call, so tests can flip it)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "off", "false", "no"}


def _build(name: str, flags: list[str]) -> str:
    """Compile (or find in the cache) the kernel library; returns its path."""
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "No CUDA runtime is found" is noise for a CPU-only kernel
    try:
        from torch.utils import cpp_extension

        # ATen/Parallel.h's parallel_for is inline OpenMP when torch uses OpenMP: without -fopenmp
        # it would run on one thread (the process's libgomp, torch's, is the one that gets used)
        threads = ["-fopenmp"] if torch.backends.openmp.is_available() else []
        return cpp_extension.load(name, sources=[str(SOURCE)], extra_cflags=["-O3", "-fopenmp-simd", *flags, *threads],
                                  extra_ldflags=threads, is_python_module=False, verbose=False)
    finally:
        quiet.setLevel(level)


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL | None:
    if sys.platform == "win32":  # the flags are gcc/clang's
        return None
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "DEFAULT"
    # one build per vector ISA and torch version (the cache is keyed by name and source, not by torch's ABI)
    version = re.sub(r"\W", "_", torch.__version__)
    attempts = [(f"cdg_gate_cpu_{capability.lower()}_torch{version}", _ARCH_FLAGS.get(capability, []))]
    if attempts[0][1]:  # a compiler without these -m flags still builds the portable version
        attempts.append((f"cdg_gate_cpu_default_torch{version}", []))
    for build_name, flags in attempts:
        try:
            lib = ctypes.CDLL(_build(build_name, flags))
            break
        except Exception as exc:  # no compiler, no ninja, read-only cache, ...
            error = exc
    else:  # fall back, say so once
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        warnings.warn(f"CDG's fused CPU gate kernel could not be built ({reason}); using the slower torch path "
                      f"(set {ENV_SWITCH}=0 to silence)", RuntimeWarning, stacklevel=3)
        return None
    lib.cdg_sigmoid_grad_f32.argtypes = [_P, _P, _I64]
    lib.cdg_sigmoid_grad_f32.restype = None
    lib.cdg_sample_stats_f32.argtypes = [_P, _P, _P, _I64, _I64, ctypes.c_float]
    lib.cdg_sample_stats_f32.restype = None
    lib.cdg_gate_forward_f32.argtypes = [_P, _P, _P, ctypes.c_float, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _I32]
    lib.cdg_gate_forward_f32.restype = None
    lib.cdg_gate_backward_f32.argtypes = [_P, _P, _P, _P, _P, _P, _P, ctypes.c_float, _P, _P, _P,
                                          _I64, _I64, _I64, _I32]
    lib.cdg_gate_backward_f32.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None when disabled or unbuildable."""
    return _library() if enabled() else None


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
    return same and library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _f32(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``t`` as a dense float32 tensor of ``shape`` (no op when it already is one)."""
    if t.dtype == torch.float32 and t.shape == shape and t.is_contiguous():
        return t
    return t.to(torch.float32).expand(shape).contiguous()


def saved_tensors_reusable() -> bool:
    """Inside a backward: whether autograd frees the saved tensors after it (no ``retain_graph``),
    so that their memory may hold gradients (torch's compiled autograd donates buffers alike)."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return keep_graph is not None and not keep_graph()


def sigmoid_grad(m: torch.Tensor) -> torch.Tensor:
    """sigmoid'(m) as the fused backward computes it (its inlined exp), for float32 CPU ``m``."""
    m = m.to(torch.float32).contiguous()
    out = torch.empty_like(m)
    library().cdg_sigmoid_grad_f32(_ptr(m), _ptr(out), m.numel())
    return out


def sample_stats(p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean and sqrt(population variance + eps), each N x 1 x 1 x 1, sums in float64.
    Requires ``usable(p)``; not differentiable."""
    n = p.shape[0]
    mean, std = torch.empty(n, 1, 1, 1), torch.empty(n, 1, 1, 1)
    library().cdg_sample_stats_f32(_ptr(p), _ptr(mean), _ptr(std), n, p[0].numel(), float(eps))
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
    library().cdg_gate_forward_f32(_ptr(p), _ptr(y_cond), _ptr(threshold), float(eps), _ptr(mean), _ptr(std),
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
    library().cdg_gate_backward_f32(
        _ptr(grad_y), _ptr(y_cond), _ptr(p), _ptr(mean), _ptr(std), _ptr(cut), _ptr(density), float(alpha),
        _ptr(grad_base), _ptr(grad_cond), _ptr(grad_threshold), n, c, h * w, int(_layout(p)))
    return grad_base, grad_cond, grad_threshold
