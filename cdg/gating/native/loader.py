"""Builds and loads the fused CPU kernels of CDG's unstructured gate (``csrc/cdg_gate_cpu.cpp``) on first use.

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

The Python entry points on raw pointers are ``cdg.gating.native.kernels``.
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
