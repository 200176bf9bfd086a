"""Computation accounting and runtime sparsity traces of a trained backbone (``python -m cdg.trace``
and the end of ``python -m cdg.train`` call ``trace_run``).

One pass of the evaluation set through the trained backbone (eval mode, real hard gates)
measures, per conv and per image: the fraction of outputs that got the conditional work,
the density of the post-ReLU input activations, and the effective MACs (base path +
gated conditional path, and separately the gates' and predictors' own overhead). It
returns the computation report (``metrics.jsonl`` / ``summary.json`` take it) and writes the
trace directory ``runs/X/trace/`` through ``hwsim.trace`` (the one module that reads, writes and
validates traces; see docs/trace-format.md), with full-resolution gate masks and input
activation masks for the first ``gate.trace_images`` evaluation images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cdg.data.augment import build_eval_transform
from cdg.models.resnet import conv_graph
from cdg.tracing.adaptivity import per_image_ratios
from cdg.tracing.input_credit import input_credit
from cdg.tracing.inventory import ConvInfo, conv_inventory, layer_spec
from hwsim.trace import LayerStats, TraceWriter, density_histogram
from hwsim.trace.layout import TRACE_DIR


@dataclass
class LayerTally:
    """Per-image measurements of one conv over the evaluation set."""

    info: ConvInfo
    gate_density: list[np.ndarray] = field(default_factory=list)
    act_density: list[np.ndarray] = field(default_factory=list)
    conv_macs: list[np.ndarray] = field(default_factory=list)  # base + conditional
    overhead_macs: list[np.ndarray] = field(default_factory=list)  # gate + predictor
    input_credit: list[np.ndarray] = field(default_factory=list)  # MACs skipped on structurally zero inputs
    gate_masks: list[np.ndarray] = field(default_factory=list)
    act_masks: list[np.ndarray] = field(default_factory=list)

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name)) if getattr(self, name) else np.zeros(0)


@torch.no_grad()
def measure(backbone: nn.Module, source, transform: nn.Module, device: torch.device, image_size: int,
            sample_images: int, act_images: int, batch_size: int = 256, progress: bool = True) -> dict[str, LayerTally]:
    """Run the whole ``source`` through ``backbone``; keep gate masks of the first ``sample_images``
    images and input-activation masks of the first ``act_images`` of them."""
    infos = conv_inventory(backbone, image_size)
    tallies = {info.name: LayerTally(info) for info in infos}
    modules = dict(backbone.named_modules())
    inputs: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda m, inp, out, name=name: inputs.__setitem__(name, inp[0]))
             for name, module in backbone.named_modules() if isinstance(module, nn.Conv2d)]
    was_training = backbone.training
    backbone.eval()
    seen = 0
    order = torch.arange(len(source))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        for images, _ in tqdm(source.iter_batches(batches), total=len(batches), desc="trace", disable=not progress, leave=False):
            backbone(transform(images.to(device)))
            n = images.shape[0]
            credit = input_credit(backbone, {name: modules[name].record for name, tally in tallies.items()
                                             if tally.info.gate is not None})
            keep = max(0, min(n, sample_images - seen))
            keep_act = max(0, min(n, min(act_images, sample_images) - seen))
            for name, tally in tallies.items():
                x = inputs[name]
                nonzero = x != 0
                tally.act_density.append(nonzero.flatten(1).float().mean(1).cpu().numpy())
                if tally.info.gate is not None:
                    record = modules[name].record
                    full = record.full_resolution()
                    tally.gate_density.append(full.flatten(1).float().mean(1).cpu().numpy())
                    macs = record.macs
                    tally.conv_macs.append((macs["base"] + macs["conditional"]).cpu().numpy().astype(np.float64))
                    tally.overhead_macs.append((macs["gate"] + macs["predictor"]).cpu().numpy().astype(np.float64))
                    if keep:
                        tally.gate_masks.append(full[:keep].cpu().numpy())
                else:
                    tally.gate_density.append(np.ones(n))
                    tally.conv_macs.append(np.full(n, float(tally.info.dense_macs)))
                    tally.overhead_macs.append(np.zeros(n))
                skipped = credit.get(name)
                tally.input_credit.append(np.zeros(n) if skipped is None else skipped.cpu().numpy().astype(np.float64))
                if keep_act:
                    tally.act_masks.append(nonzero[:keep_act].cpu().numpy())
            seen += n
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    return tallies


def computation_report(tallies: dict[str, LayerTally]) -> dict:
    """Dense vs effective MACs per layer and in total (per image, mean over the evaluation set), in
    both conventions (``cdg.tracing.input_credit``): ``effective_macs`` / ``reduction`` output-only,
    ``effective_macs_full`` / ``reduction_full`` with the input-side credit ``input_skipped_macs``
    (counted at the consuming conv) subtracted; ``per_image_mac_ratio`` is the distribution of the
    network ratio over the images (``cdg.tracing.adaptivity``)."""
    layers = []
    for name, tally in tallies.items():
        conv = float(tally.cat("conv_macs").mean())
        overhead = float(tally.cat("overhead_macs").mean())
        skipped = float(tally.cat("input_credit").mean())
        dense = tally.info.dense_macs
        layers.append({
            "layer": name,
            "gated": tally.info.gate is not None,
            "dense_macs": dense,
            "effective_macs": conv + overhead,
            "overhead_macs": overhead,
            "gate_density": float(tally.cat("gate_density").mean()),
            "input_act_density": float(tally.cat("act_density").mean()),
            "reduction": dense / (conv + overhead),
            "input_skipped_macs": skipped,
            "effective_macs_full": conv + overhead - skipped,
            "reduction_full": dense / (conv + overhead - skipped),
        })
    dense = sum(layer["dense_macs"] for layer in layers)
    effective = sum(layer["effective_macs"] for layer in layers)
    full = sum(layer["effective_macs_full"] for layer in layers)
    n_images = len(next(iter(tallies.values())).cat("conv_macs"))
    per_image = per_image_ratios([t.cat("conv_macs") for t in tallies.values()],
                                 [t.cat("overhead_macs") for t in tallies.values()],
                                 [t.cat("input_credit") for t in tallies.values()], dense)
    return {"n_images": n_images, "dense_macs": dense, "effective_macs": effective,
            "reduction": dense / effective, "effective_macs_full": full, "reduction_full": dense / full,
            "per_image_mac_ratio": per_image, "layers": layers}


def write_trace(path: Path, tallies: dict[str, LayerTally], graph: dict[str, list[str]], meta: dict) -> Path:
    """Write the trace directory atomically (replacing an older trace)."""
    with TraceWriter(path, meta=meta, overwrite=True) as writer:
        for name, tally in tallies.items():
            info = tally.info
            spec = layer_spec(name, info, graph.get(name, []), str(path))
            gate = spec.gate
            density = tally.cat("gate_density")
            stats = LayerStats(
                n_images=len(density),
                gate_density_mean=float(density.mean()) if gate is not None else 1.0,
                gate_density_std=float(density.std()) if gate is not None else 0.0,
                gate_density_hist=density_histogram(density),
                input_act_density=float(tally.cat("act_density").mean()),
                effective_macs=float(tally.cat("conv_macs").mean()),
            )
            gate_masks = np.concatenate(tally.gate_masks) if (gate is not None and tally.gate_masks) else None
            act_masks = np.concatenate(tally.act_masks) if tally.act_masks else None
            writer.add_layer(spec, gate_masks=gate_masks, act_masks=act_masks, stats=stats)
    return path


def trace_run(cfg, backbone: nn.Module, sources, device: torch.device, run_dir: Path,
              progress: bool = True) -> dict:
    """Measure the evaluation set, write ``run_dir/trace`` and return the computation report
    (``cfg``: the run's ``cdg.config.Config``; ``sources``: its train and test sources)."""
    transform = build_eval_transform(cfg.data.image_size, sources.train.mean, sources.train.std).to(device)
    tallies = measure(backbone, sources.test, transform, device, cfg.data.image_size,
                      cfg.gate.trace_images, cfg.gate.trace_act_images, cfg.eval.batch_size, progress)
    report = computation_report(tallies)
    overhead = {layer["layer"]: layer["overhead_macs"] for layer in report["layers"] if layer["gated"]}
    meta = {
        "producer": "cdg.trace",
        "model": f"{cfg.model.arch}_{cfg.model.stem}_x{cfg.model.width}",
        "dataset": cfg.data.dataset,
        "split": "test",
        "image_size": cfg.data.image_size,
        "ssl_method": cfg.method.name,
        "gate_method": cfg.gate.method,
        "overhead_macs_per_image": overhead,
        "total_reduction_with_overheads": report["reduction"],
        "per_image_mac_ratio": report["per_image_mac_ratio"],
    }
    write_trace(run_dir / TRACE_DIR, tallies, conv_graph(backbone), meta)
    return report
