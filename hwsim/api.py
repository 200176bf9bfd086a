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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tqdm.auto import tqdm

from hwsim.config import load_config
from hwsim.figures import Figures, mean_figures
from hwsim.graph import build_graph, live_bytes
from hwsim.models import registry
from hwsim.models.base import AccelConfig
from hwsim.networks import get_network
from hwsim.trace import LayerSpec, Trace, expand_gate_blocks, load_trace, validate_layer, validate_layer_table
from hwsim.trace.errors import HwsimError
from hwsim.trace.layout import TRACE_JSON
from hwsim.workload import conv_layer, linear_layer, lower

__all__ = ["LayerResult", "RunResult", "simulate_layer", "simulate_layers", "simulate_trace",
           "simulate_network", "load_config", "conv_layer", "linear_layer", "load_trace"]


@dataclass
class LayerResult:
    """Figures of one layer, per image (the exact mean over the images simulated).
    ``dense`` is the same layer with no sparsity exploited."""

    name: str
    gated: bool
    n_images: int
    figures: Figures
    dense: Figures
    dense_macs: float
    needed_macs: float            # base + conditional MACs of the outputs whose gate is on
    granularity: str              # what the hardware can skip in this layer
    mask_source: str              # masks | stats | none (see RunResult.mask_source)
    peak_macs_per_cycle: float
    clock_mhz: float
    live_bytes: int = 0
    cycles_per_image: np.ndarray | None = field(default=None, repr=False)

    @property
    def cycles(self) -> float:
        return self.figures.cycles

    @property
    def total_cycles(self) -> float:
        return self.figures.total_cycles

    @property
    def time_us(self) -> float:
        return self.total_cycles / self.clock_mhz

    @property
    def macs(self) -> float:
        return self.figures.macs

    @property
    def energy_pj(self) -> dict[str, float]:
        return self.figures.energy_pj

    @property
    def traffic_bytes(self) -> dict[str, float]:
        return self.figures.traffic_bytes

    @property
    def dram_bytes(self) -> float:
        return self.figures.dram_bytes

    @property
    def utilisation(self) -> float:
        return self.macs / self.cycles / self.peak_macs_per_cycle if self.cycles else 0.0

    @property
    def dense_total_cycles(self) -> float:
        return self.dense.total_cycles

    @property
    def dense_energy_pj(self) -> float:
        return self.dense.energy_pj["total"]

    @property
    def speedup(self) -> float:
        return self.dense_total_cycles / self.total_cycles if self.total_cycles else 1.0

    @property
    def flops_reduction(self) -> float:
        return self.dense_macs / self.needed_macs if self.needed_macs else float("inf")

    @property
    def zero_work_removed(self) -> float:
        """Share of the gated-off work that the hardware turned into saved time: realised cycle
        saving / FLOPs-proportional saving (NaN where the trace has no gated-off work). Above 1
        only where a model also skips input-activation zeros."""
        ideal = 1.0 - self.needed_macs / self.dense_macs if self.dense_macs else 0.0
        if ideal <= 0:
            return float("nan")
        return (1.0 - self.total_cycles / self.dense_total_cycles) / ideal

    @property
    def energy_saving(self) -> float:
        return 1.0 - self.energy_pj["total"] / self.dense_energy_pj if self.dense_energy_pj else 0.0

    def row(self) -> dict:
        """Flat dict (CSV row / JSON object)."""
        out = {"layer": self.name, "gated": self.gated, "n_images": self.n_images,
               "mask_source": self.mask_source, "granularity": self.granularity,
               "cycles": self.cycles, "total_cycles": self.total_cycles, "time_us": self.time_us,
               "utilisation": self.utilisation, "macs": self.macs, "dense_macs": self.dense_macs,
               "needed_macs": self.needed_macs, "flops_reduction": self.flops_reduction,
               "dram_bytes": self.dram_bytes, "energy_pj": self.energy_pj["total"],
               "dense_total_cycles": self.dense_total_cycles, "dense_energy_pj": self.dense_energy_pj,
               "speedup": self.speedup, "zero_work_removed": self.zero_work_removed,
               "energy_saving": self.energy_saving, "live_bytes": self.live_bytes}
        out.update(self.figures.counters)
        out.update({f"bytes_{k}": v for k, v in self.traffic_bytes.items()})
        out.update({f"energy_{k}_pj": v for k, v in self.energy_pj.items() if k != "total"})
        return out


@dataclass
class RunResult:
    config: str
    model: str
    mode: str                     # the config's describe(): model, dataflow, sparse mode...
    dense_run: bool
    n_images: int
    layers: list[LayerResult]
    peak_macs_per_cycle: float = 1.0
    mask_source: str = "none"     # masks: real per-image masks; stats: per-layer densities only

    def totals(self) -> dict:
        t_cyc = sum(r.total_cycles for r in self.layers)
        d_cyc = sum(r.dense_total_cycles for r in self.layers)
        e = sum(r.energy_pj["total"] for r in self.layers)
        d_e = sum(r.dense_energy_pj for r in self.layers)
        macs = sum(r.macs for r in self.layers)
        c_cyc = sum(r.cycles for r in self.layers)
        dense_macs = sum(r.dense_macs for r in self.layers)
        needed = sum(r.needed_macs for r in self.layers)
        ideal = 1.0 - needed / dense_macs if dense_macs else 0.0
        per_img = [r.cycles_per_image for r in self.layers]
        out = {
            "cycles": c_cyc, "total_cycles": t_cyc, "time_us": sum(r.time_us for r in self.layers),
            "energy_pj": e, "dram_bytes": sum(r.dram_bytes for r in self.layers),
            "macs": macs, "dense_macs": dense_macs, "needed_macs": needed,
            "flops_reduction": dense_macs / needed if needed else float("inf"),
            "utilisation": macs / max(c_cyc, 1) / self.peak_macs_per_cycle,
            "dense_total_cycles": d_cyc, "dense_energy_pj": d_e,
            "speedup": d_cyc / t_cyc if t_cyc else 1.0, "energy_saving": 1 - e / d_e if d_e else 0.0,
            "zero_work_removed": (1 - t_cyc / d_cyc) / ideal if ideal > 0 and d_cyc else float("nan"),
        }
        if all(p is not None for p in per_img) and per_img:
            img = np.sum(np.stack(per_img), axis=0)
            out["total_cycles_max_image"] = float(img.max())
            out["total_cycles_min_image"] = float(img.min())
        for key in self.layers[0].energy_pj:
            if key != "total":
                out[f"energy_{key}_pj"] = sum(r.energy_pj.get(key, 0.0) for r in self.layers)
        for key in self.layers[0].traffic_bytes:
            out[f"bytes_{key}"] = sum(r.traffic_bytes.get(key, 0.0) for r in self.layers)
        return out


def _needed_macs(spec: LayerSpec, gate_masks: np.ndarray | None) -> float:
    if gate_masks is None:
        return float(spec.dense_macs)
    on = gate_masks.reshape(gate_masks.shape[0], -1).sum(axis=1).mean()
    return float(spec.base_macs() + on * spec.cond_macs_per_output())


def _layer_result(spec: LayerSpec, cfg: AccelConfig, gate_masks: np.ndarray | None,
                  act_masks: np.ndarray | None, act_density: float | None, mask_source: str,
                  live: int = 0) -> LayerResult:
    model = registry.get(cfg.model)
    work = lower(spec)
    dense = model.dense(work, cfg)
    if gate_masks is None and act_masks is None and act_density is None:
        per_image = [dense]
    else:
        per_image = model.sparse(work, cfg, gate_masks, act_masks, act_density)
    return LayerResult(
        name=spec.name, gated=gate_masks is not None, n_images=len(per_image),
        figures=mean_figures(per_image), dense=dense, dense_macs=float(spec.dense_macs),
        needed_macs=_needed_macs(spec, gate_masks), granularity=model.granularity(work, cfg),
        mask_source=mask_source, peak_macs_per_cycle=cfg.peak_macs_per_cycle(), clock_mhz=cfg.clock_mhz,
        live_bytes=live, cycles_per_image=np.array([f.total_cycles for f in per_image]),
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
                   gate_masks: np.ndarray | None = None, act_masks: np.ndarray | None = None) -> LayerResult:
    """One layer, dense (no masks) or sparse: ``gate_masks`` bool (n_images, C_out, H_out, W_out),
    1 = conditional part computed; ``act_masks`` bool (n, C_in, H_in, W_in), 1 = non-zero input
    (used by models that skip zero activations)."""
    cfg = _as_config(config)
    spec = validate_layer(layer, "simulate_layer")
    if gate_masks is not None:
        gate_masks = _check_masks(spec, gate_masks, "simulate_layer")
    if act_masks is not None:
        act_masks = _check_act(spec, act_masks, "simulate_layer")
    source = "masks" if gate_masks is not None or act_masks is not None else "none"
    return _layer_result(spec, cfg, gate_masks, act_masks, None, source)


def _check_act(spec: LayerSpec, masks: np.ndarray, source: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 4 or masks.shape[1:] != tuple(spec.in_shape) or masks.shape[0] < 1:
        raise HwsimError(source, f"layer {spec.name!r}.act_masks",
                         f"expected bool (n,{','.join(map(str, spec.in_shape))}), got {masks.dtype} {masks.shape}")
    return masks


def simulate_layers(layers: Sequence[LayerSpec], config: AccelConfig | str | os.PathLike,
                    masks: dict[str, np.ndarray] | None = None, source: str = "layers",
                    act_masks: dict[str, np.ndarray] | None = None) -> RunResult:
    """A layer table; ``masks`` maps gated layer names to full-resolution gate masks,
    ``act_masks`` layer names to input-activation masks."""
    masks = masks or {}
    act_masks = act_masks or {}
    names = {s.name for s in layers}
    for what, d in (("masks", masks), ("act_masks", act_masks)):
        for name in d:
            if name not in names:
                raise HwsimError(source, f"{what}[{name!r}]", "no layer of that name")

    def inputs(spec: LayerSpec):
        g = masks.get(spec.name)
        a = act_masks.get(spec.name)
        return (None if g is None else _check_masks(spec, g, source),
                None if a is None else _check_act(spec, a, source), None)

    any_masks = bool(masks or act_masks)
    return _simulate(layers, _as_config(config), inputs, not any_masks, source, "masks" if any_masks else "none")


LayerInputs = tuple  # (gate_masks | None, act_masks | None, act_density | None)


def _simulate(layers: Sequence[LayerSpec], cfg: AccelConfig, get_inputs: Callable[[LayerSpec], LayerInputs],
              dense_run: bool, source: str, mask_source: str) -> RunResult:
    specs = [validate_layer(s, source) for s in layers]
    validate_layer_table(specs, source)
    build_graph(specs, source)
    live = live_bytes(specs, cfg.word_bytes.ofmap)
    results = []
    for spec in tqdm(specs, desc=f"hwsim {cfg.name}", unit="layer", leave=False,
                     disable=len(specs) < 8 or not sys.stderr.isatty()):
        g, a, d = get_inputs(spec)
        src = mask_source if (g is not None or a is not None or d is not None) else "none"
        try:
            with np.errstate(all="ignore"):  # an overflow is refused below, with one line, not warned about
                results.append(_layer_result(spec, cfg, g, a, d, src, live[spec.name]))
        except ArithmeticError as exc:  # inf -> int, x / 0 after an underflow, ...
            raise HwsimError(f"accelerator {cfg.name!r}", f"layer {spec.name!r}",
                             f"the simulation failed ({type(exc).__name__}: {exc}): a cost, size or rate in "
                             "the accelerator config is out of the range a float64 simulation can hold") from None
    n_images = max(r.n_images for r in results)
    # layers simulated once (dense / ungated) have the same figures for every image
    for r in results:
        if r.n_images == 1 and n_images > 1:
            r.cycles_per_image = np.full(n_images, r.total_cycles)
    run = RunResult(cfg.name, cfg.model, cfg.describe(), dense_run, n_images, results,
                    cfg.peak_macs_per_cycle(), mask_source)
    _check_finite(run, cfg)
    return run


# the physical figures of a run; a ratio of two of them may be NaN (nothing gated off), these may not
_FINITE = ("cycles", "total_cycles", "time_us", "energy_pj", "dram_bytes", "dense_total_cycles", "dense_energy_pj")


def _check_finite(run: RunResult, cfg: AccelConfig) -> None:
    """Refuse a run whose cycles, time, energy or traffic overflowed (a config cost near the float
    limit, e.g. ``mac_pj: 1e308``): reporting it would print ``inf``/``nan%`` and exit 0."""
    with np.errstate(all="ignore"):
        rows = [(r.name, r.row()) for r in run.layers] + [("TOTAL", run.totals())]
    for name, row in rows:
        for key in _FINITE + tuple(k for k in row if k.startswith(("energy_", "bytes_"))):
            value = row.get(key)
            if isinstance(value, (int, float, np.number)) and not np.isfinite(value):
                raise HwsimError(f"accelerator {cfg.name!r}", key, f"the simulated {key} of {name} is {float(value)}: "
                                 "a cost, size or rate in the accelerator config is too large for a float64")


STATS_IMAGES = 32   # images drawn for the statistics path
STATS_SEED = 0


def stats_masks(spec: LayerSpec, density: float, n_images: int = STATS_IMAGES, seed: int = STATS_SEED) -> np.ndarray:
    """Gate masks for a trace that holds only per-layer densities: independent decisions on the
    layer's decision grid (S channels x b x b pixels), each on with the measured mean density.
    Exact in expectation for models linear in the mask; models sensitive to how active work
    clusters (imbalance, tiles) see iid scatter, which the report labels ``stats``."""
    rng = np.random.default_rng(seed)
    grid = spec.gate_grid(n_images)
    blocks = rng.random(grid) < density
    return expand_gate_blocks(blocks, spec)


def simulate_trace(trace: Trace | str | os.PathLike, config: AccelConfig | str | os.PathLike,
                   dense: bool = False) -> RunResult:
    """A whole trace: gated layers from their real masks (or, for a trace without masks, from
    the per-layer statistics), input-activation masks where the trace has them.
    ``dense=True`` runs the same layer table with no sparsity."""
    cfg = _as_config(config)
    tr = trace if isinstance(trace, Trace) else load_trace(trace)
    by_name = {layer.spec.name: layer for layer in tr.layers}
    from_stats = tr.n_mask_images == 0

    def inputs(spec: LayerSpec) -> LayerInputs:   # expanded one layer at a time
        layer = by_name[spec.name]
        if dense:
            return None, None, None
        if layer.gate_blocks is not None:
            g = expand_gate_blocks(layer.gate_blocks, layer.spec)
        elif spec.gate is not None:
            g = stats_masks(spec, layer.stats.gate_density_mean)
        else:
            g = None
        a = layer.act_masks
        d = layer.stats.input_act_density if a is None else None
        return g, a, d

    src = "dense" if dense else ("stats" if from_stats else "masks")
    return _simulate(tr.specs, cfg, inputs, dense, str(Path(tr.path) / TRACE_JSON), src)


def simulate_network(network: str | Sequence[LayerSpec], config: AccelConfig | str | os.PathLike) -> RunResult:
    """A built-in network (``resnet18_cifar``, ``resnet18_imagenet``, ``resnet50_imagenet``, ``googlenet``) or a
    layer list, dense."""
    specs = get_network(network) if isinstance(network, str) else list(network)
    return _simulate(specs, _as_config(config), lambda spec: (None, None, None), True,
                     network if isinstance(network, str) else "layers", "none")
