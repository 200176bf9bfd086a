"""Measure a gated backbone: sparse executor vs dense torch, per layer and whole network, and the
``execution.json`` document (``docs/execution.md``).

Per layer, each conv's own op sequence is timed in isolation on its real input (captured in one
forward); the whole network is timed end to end. The correctness figure ``max_abs_error`` is the
largest difference between the executor's output and the masked dense model's (the gated backbone
itself) on the measured batch.
"""
from __future__ import annotations

import os
import platform

import torch
from torch import nn
from tqdm import tqdm

from cdg.sparse_exec.base import Executor
from cdg.sparse_exec.network import DenseOp, build_dense, build_sparse, layer_inputs, tune
from cdg.sparse_exec.timing import interleaved

VERSION = 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _conv_macs(module: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> int:
    k = module.kernel_size[0] * module.kernel_size[1]
    return int(y.numel() * (module.in_channels // module.groups) * k)


@torch.no_grad()
def measure_backbone(backbone: nn.Module, x: torch.Tensor, warmup: int, repetitions: int,
                     progress: bool = True, paths: dict[str, str] | None = None, clock: str = "wall") -> dict:
    """The ``layers``, ``total`` and ``max_abs_error`` parts of ``execution.json`` for ``backbone``
    (eval mode, gated) on the batch ``x``. ``paths`` forces executor paths (default: ``tune``)."""
    device = x.device
    sparse, dense = build_sparse(backbone), build_dense(backbone)
    if paths is None:
        tune(sparse, x, clock=clock)
    else:
        for name, module in sparse.named_modules():
            if isinstance(module, Executor) and name in paths:
                module.set_path(paths[name])
    reference = backbone(x)
    error = float((sparse(x) - reference).abs().max())
    sparse_inputs, dense_inputs = layer_inputs(sparse, x), layer_inputs(dense, x)
    dense_modules, sparse_modules = dict(dense.named_modules()), dict(sparse.named_modules())
    layers = []
    for name in tqdm(list(dense_inputs), desc="layers", disable=not progress, leave=False):
        d_mod, s_mod = dense_modules[name], sparse_modules[name]
        xd, xs = dense_inputs[name], sparse_inputs[name]
        if isinstance(s_mod, Executor):
            times = interleaved({"dense": lambda: d_mod(xd), "sparse": lambda: s_mod(xs)}, warmup, repetitions, device, clock)
            s_mod(xs)  # its counters describe this input
            row = {"name": name, "path": s_mod.path, "density": s_mod.gate_density(), "dense_macs": s_mod.dense_macs,
                   "executed_macs": int(s_mod.executed)}
        else:
            times = interleaved({"dense": lambda: d_mod(xd)}, warmup, repetitions, device, clock)
            times["sparse"] = times["dense"]  # the same dense op in both networks
            macs = _conv_macs(d_mod, xd, d_mod(xd))
            row = {"name": name, "path": "dense", "density": 1.0, "dense_macs": macs, "executed_macs": macs}
        layers.append({**row, "dense_ms": times["dense"], "sparse_ms": times["sparse"]})
    times = interleaved({"dense": lambda: dense(x), "sparse": lambda: sparse(x)}, warmup, repetitions, device, clock)
    total = {"dense_ms": times["dense"], "sparse_ms": times["sparse"],
             "speedup": times["dense"]["median"] / times["sparse"]["median"]}
    total["dense_macs"] = sum(row["dense_macs"] for row in layers)
    total["executed_macs"] = sum(row["executed_macs"] for row in layers)
    return {"layers": layers, "total": total, "max_abs_error": error,
            "reference_max_abs": float(reference.abs().max())}


def header(kind: str, device: torch.device, batch: int, image_size: int, warmup: int, repetitions: int,
           clock: str = "wall") -> dict:
    return {"version": VERSION, "kind": kind, "clock": clock, "device": device.type, "threads": torch.get_num_threads(),
            "batch": batch, "image_size": image_size, "torch_version": torch.__version__,
            "host": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count() or 1},
            "warmup": warmup, "repetitions": repetitions, "trace": "trace"}


def format_table(doc: dict) -> str:
    """The printed per-layer and total table."""
    lines = [f"{'layer':<22} {'path':<22} {'density':>7} {'dense ms':>9} {'sparse ms':>10} {'speed-up':>8}  "
             f"(median [q25, q75]; batch {doc['batch']}, {doc['image_size']} px, {doc['device']}, "
             f"{doc['threads']} threads, {doc['clock']} clock)"]
    for row in doc["layers"]:
        d, s = row["dense_ms"], row["sparse_ms"]
        lines.append(f"{row['name']:<22} {row['path']:<22} {row['density']:7.3f} {d['median']:9.3f} {s['median']:10.3f} "
                     f"{d['median'] / max(s['median'], 1e-9):8.2f}  [{s['q25']:.3f}, {s['q75']:.3f}]")
    t = doc["total"]
    lines.append(f"{'total (executed MACs)':<22} {'':<22} {t['executed_macs'] / max(t['dense_macs'], 1):7.3f} "
                 f"{t['dense_ms']['median']:9.3f} {t['sparse_ms']['median']:10.3f} {t['speedup']:8.2f}  "
                 f"[{t['sparse_ms']['q25']:.3f}, {t['sparse_ms']['q75']:.3f}]   max |sparse - masked dense| "
                 f"{doc['max_abs_error']:.2e}")
    return "\n".join(lines)
