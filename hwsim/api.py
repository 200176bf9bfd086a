"""Python API: simulate one layer or a whole trace / layer table on one accelerator config.

    from hwsim import api
    cfg = api.load_config("accel_configs/systolic_32x32_os.yaml")
    r = api.simulate_layer(api.conv_layer(32, 32, 64, 64, kernel=3, stride=1, padding=1), cfg)
    run = api.simulate_trace("runs/r1/trace", cfg)          # gated, from the real masks
    run = api.simulate_network("resnet18_cifar", cfg)       # dense, built-in layer table

Every figure is per image (the mean over the trace's mask images for gated layers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hwsim.config import AccelConfig, load_config
from hwsim.energy import energy_pj, total_cycles, traffic_bytes
from hwsim.errors import HwsimError
from hwsim.graph import build_graph, live_bytes
from hwsim.networks import get_network
from hwsim.systolic import Counts, dense_layer_counts, gated_layer_counts
from hwsim.trace import LayerSpec, Trace, expand_gate_blocks, load_trace, validate_layer, validate_layer_table
from hwsim.workload import conv_layer, linear_layer, lower

__all__ = ["LayerResult", "RunResult", "simulate_layer", "simulate_layers", "simulate_trace",
           "simulate_network", "load_config", "conv_layer", "linear_layer", "load_trace"]


@dataclass
class LayerResult:
    """Figures of one layer, per image. ``dense`` is the same layer without gating."""

    name: str
    gated: bool
    n_images: int
    counts: Counts
    dense: Counts
    cycles: float                 # compute cycles
    total_cycles: float           # max(compute, DRAM transfer) cycles
    time_us: float
    energy_pj: dict[str, float]
    traffic_bytes: dict[str, float]
    utilisation: float
    dense_total_cycles: float
    dense_energy_pj: float
    live_bytes: int = 0
    cycles_per_image: np.ndarray | None = field(default=None, repr=False)

    @property
    def dram_bytes(self) -> float:
        return self.traffic_bytes["dram_ifmap_read"] + self.traffic_bytes["dram_filter_read"] + \
            self.traffic_bytes["dram_ofmap_write"]

    @property
    def speedup(self) -> float:
        return self.dense_total_cycles / self.total_cycles if self.total_cycles else 1.0

    @property
    def energy_saving(self) -> float:
        return 1.0 - self.energy_pj["total"] / self.dense_energy_pj if self.dense_energy_pj else 0.0

    def row(self) -> dict:
        """Flat dict (CSV row / JSON object)."""
        out = {"layer": self.name, "gated": self.gated, "n_images": self.n_images,
               "cycles": self.cycles, "total_cycles": self.total_cycles, "time_us": self.time_us,
               "utilisation": self.utilisation, "macs": self.counts.macs, "dense_macs": self.dense.macs,
               "folds": self.counts.folds, "folds_run": self.counts.folds_run,
               "dram_bytes": self.dram_bytes, "energy_pj": self.energy_pj["total"],
               "dense_total_cycles": self.dense_total_cycles, "dense_energy_pj": self.dense_energy_pj,
               "speedup": self.speedup, "energy_saving": self.energy_saving, "live_bytes": self.live_bytes}
        out.update({f"sram_{k}": v for k, v in (
            ("ifmap_reads", self.counts.sram_ifmap_reads), ("filter_reads", self.counts.sram_filter_reads),
            ("ofmap_writes", self.counts.sram_ofmap_writes))})
        out.update({f"bytes_{k}": v for k, v in self.traffic_bytes.items()})
        out.update({f"energy_{k}_pj": v for k, v in self.energy_pj.items() if k != "total"})
        return out


@dataclass
class RunResult:
    config: str
    dataflow: str
    sparse_mode: str
    dense_run: bool
    n_images: int
    layers: list[LayerResult]
    pe_count: int = 1

    def totals(self) -> dict:
        t_cyc = sum(r.total_cycles for r in self.layers)
        d_cyc = sum(r.dense_total_cycles for r in self.layers)
        e = sum(r.energy_pj["total"] for r in self.layers)
        d_e = sum(r.dense_energy_pj for r in self.layers)
        macs = sum(r.counts.macs for r in self.layers)
        c_cyc = sum(r.cycles for r in self.layers)
        time_us = sum(r.time_us for r in self.layers)
        per_img = [r.cycles_per_image for r in self.layers]
        out = {
            "cycles": c_cyc, "total_cycles": t_cyc, "time_us": time_us,
            "energy_pj": e, "dram_bytes": sum(r.dram_bytes for r in self.layers),
            "macs": macs, "dense_macs": sum(r.dense.macs for r in self.layers),
            "utilisation": macs / max(c_cyc, 1) / self.pe_count,
            "dense_total_cycles": d_cyc, "dense_energy_pj": d_e,
            "speedup": d_cyc / t_cyc if t_cyc else 1.0, "energy_saving": 1 - e / d_e if d_e else 0.0,
        }
        if all(p is not None for p in per_img) and per_img:
            img = np.sum(np.stack(per_img), axis=0)
            out["total_cycles_max_image"] = float(img.max())
            out["total_cycles_min_image"] = float(img.min())
        for key in self.layers[0].energy_pj:
            if key != "total":
                out[f"energy_{key}_pj"] = sum(r.energy_pj[key] for r in self.layers)
        for key in self.layers[0].traffic_bytes:
            out[f"bytes_{key}"] = sum(r.traffic_bytes[key] for r in self.layers)
        return out


def _finish(name: str, gated: bool, per_image: list[Counts], dense: Counts, cfg: AccelConfig,
            live: int = 0) -> LayerResult:
    n = len(per_image)
    totals = np.array([total_cycles(c, cfg) for c in per_image])
    energies = [energy_pj(c, cfg, t) for c, t in zip(per_image, totals)]
    mean = per_image[0]
    for c in per_image[1:]:
        mean = mean + c
    mean = mean.scaled(1.0 / n)
    energy = {k: float(np.mean([e[k] for e in energies])) for k in energies[0]}
    d_total = total_cycles(dense, cfg)
    pes = cfg.array.rows * cfg.array.cols
    return LayerResult(
        name=name, gated=gated, n_images=n, counts=mean, dense=dense, cycles=mean.cycles,
        total_cycles=float(totals.mean()), time_us=float(totals.mean()) / cfg.clock_mhz,
        energy_pj=energy, traffic_bytes=traffic_bytes(mean, cfg),
        utilisation=mean.macs / mean.cycles / pes if mean.cycles else 0.0,
        dense_total_cycles=d_total, dense_energy_pj=energy_pj(dense, cfg, d_total)["total"],
        live_bytes=live, cycles_per_image=totals,
    )


def _as_config(config: AccelConfig | str | os.PathLike) -> AccelConfig:
    if isinstance(config, AccelConfig):
        return config
    return load_config(config)


def _check_masks(spec: LayerSpec, masks: np.ndarray, source: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 4 or masks.shape[1:] != tuple(spec.out_shape) or masks.shape[0] < 1:
        raise HwsimError(source, f"layer {spec.name!r}.gate_masks",
                         f"expected bool (n,{','.join(map(str, spec.out_shape))}), got {masks.dtype} {masks.shape}")
    if spec.gate is None:
        raise HwsimError(source, f"layer {spec.name!r}.gate", "masks given for a layer without a gate")
    return masks


def simulate_layer(layer: LayerSpec, config: AccelConfig | str | os.PathLike,
                   gate_masks: np.ndarray | None = None) -> LayerResult:
    """One layer, dense (``gate_masks=None``) or gated with full-resolution masks
    (bool, n_images x C_out x H_out x W_out, 1 = conditional part computed)."""
    cfg = _as_config(config)
    spec = validate_layer(layer, "simulate_layer")
    work = lower(spec)
    dense = dense_layer_counts(work, cfg)
    if gate_masks is None:
        return _finish(spec.name, False, [dense], dense, cfg)
    masks = _check_masks(spec, gate_masks, "simulate_layer")
    return _finish(spec.name, True, gated_layer_counts(work, cfg, masks), dense, cfg)


def simulate_layers(layers: Sequence[LayerSpec], config: AccelConfig | str | os.PathLike,
                    masks: dict[str, np.ndarray] | None = None, source: str = "layers") -> RunResult:
    """A layer table; ``masks`` maps gated layer names to full-resolution masks."""
    masks = masks or {}
    names = {s.name for s in layers}
    for name in masks:
        if name not in names:
            raise HwsimError(source, f"masks[{name!r}]", "no layer of that name")
    return _simulate(layers, _as_config(config), masks.get, not masks, source)


def _simulate(layers: Sequence[LayerSpec], cfg: AccelConfig,
              get_mask: Callable[[str], np.ndarray | None], dense_run: bool, source: str) -> RunResult:
    specs = [validate_layer(s, source) for s in layers]
    validate_layer_table(specs, source)
    build_graph(specs, source)
    live = live_bytes(specs, cfg.word_bytes.ofmap)
    results = []
    n_images = 1
    for spec in specs:
        work = lower(spec)
        dense = dense_layer_counts(work, cfg)
        m = get_mask(spec.name)
        if m is None:
            results.append(_finish(spec.name, False, [dense], dense, cfg, live[spec.name]))
        else:
            m = _check_masks(spec, m, source)
            n_images = max(n_images, m.shape[0])
            results.append(_finish(spec.name, True, gated_layer_counts(work, cfg, m), dense, cfg, live[spec.name]))
    # ungated layers have the same figures for every image
    for r in results:
        if not r.gated and n_images > 1:
            r.cycles_per_image = np.full(n_images, r.total_cycles)
    return RunResult(cfg.name, cfg.dataflow, cfg.sparse.mode, dense_run, n_images, results,
                     cfg.array.rows * cfg.array.cols)


def simulate_trace(trace: Trace | str | os.PathLike, config: AccelConfig | str | os.PathLike,
                   dense: bool = False) -> RunResult:
    """A whole trace: gated layers from their real masks, the rest dense.
    ``dense=True`` runs the same layer table without gating."""
    cfg = _as_config(config)
    tr = trace if isinstance(trace, Trace) else load_trace(trace)
    by_name = {layer.spec.name: layer for layer in tr.layers}

    def get_mask(name: str) -> np.ndarray | None:  # expanded one layer at a time
        layer = by_name[name]
        if dense or layer.gate_blocks is None:
            return None
        return expand_gate_blocks(layer.gate_blocks, layer.spec)

    return _simulate(tr.specs, cfg, get_mask, dense, str(Path(tr.path) / "trace.json"))


def simulate_network(network: str | Sequence[LayerSpec], config: AccelConfig | str | os.PathLike) -> RunResult:
    """A built-in network (``resnet18_cifar``, ``resnet18_imagenet``, ``resnet50_imagenet``) or a
    layer list, dense."""
    specs = get_network(network) if isinstance(network, str) else list(network)
    return _simulate(specs, _as_config(config), lambda name: None, True,
                     network if isinstance(network, str) else "layers")
