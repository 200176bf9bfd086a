"""Hardware-aware sparsity weights: what one gated-off MAC of each layer is worth on an accelerator.

The one cdg module that calls hwsim's models (``hwsim.api``) and accelerator configs; the rest of
cdg imports only the trace contract ``hwsim.trace``.

A FLOPs regulariser treats every removed MAC alike, but an accelerator turns them into time only
at its skip granularity (a fold, a thread-block tile, a PE's share) and only where the layer is
compute-bound. Before training, each gated layer is simulated by ``hwsim`` at the density the
target implies, with masks of the layer's own gate structure (independent decisions on its
S x b x b decision grid, ``hwsim.api.stats_masks``):

    s_l = (dense cycles_l - cycles_l) / (dense MACs_l - needed MACs_l)     saved cycles per gated-off MAC
    w_l = max(s_l / s_mean, floor),  renormalised so that  sum_l c_l w_l = sum_l c_l

with ``c_l`` the layer's gateable MACs and ``s_mean`` the c-weighted mean of ``s_l``. The
regulariser then prices a layer's conditional MACs at ``w_l`` (``GateController``), so sparsity
moves to the layers where this hardware turns it into time; the measured FLOPs ratio (and so
the target control) is unchanged. The floor keeps every layer under some pressure: a layer the
hardware cannot exploit at this density may still be exploitable at another.

``masks`` (``gate.hw_aware_prices: real``) replaces the iid masks by the model's own masks of each
layer at that density (``cdg.gating.price_masks``), so clustering of the real masks is priced too.
Layers whose conditional path is statically removed (``gate.static_off``) have no gate to price:
they are left out, and their removed MACs count toward the target when ``d*`` is computed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cdg.tracing.inventory import layer_spec
from hwsim.api import simulate_layer, stats_masks
from hwsim.config import load_config
from hwsim.trace.errors import HwsimError, UserError

WEIGHT_FLOOR = 0.1
N_IMAGES = 8


def is_static(info) -> bool:
    """Whether the conv's conditional path is statically removed (``gate.static_off``)."""
    return info.gate is not None and getattr(info.gate, "static_off", False)


def target_density(infos, target_ratio: float) -> float:
    """Uniform conditional density of the dynamically gated layers at which the network meets
    ``target_ratio`` (effective/dense); statically removed conditional paths are at density 0."""
    dense = sum(i.dense_macs for i in infos)
    gateable = sum(i.gated_macs for i in infos)
    gated = sum(i.gated_macs for i in infos if not is_static(i))
    overhead = sum(i.overhead_macs for i in infos)
    if gated == 0:
        return 1.0
    d = (target_ratio * dense - (dense - gateable) - overhead) / gated
    return min(max(d, 0.02), 1.0)


def layer_weights(infos, accel_path: str | Path, target_ratio: float,
                  masks: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Per gated layer: ``{"weight", "saved_cycles_per_mac", "speedup", "granularity"}``.

    ``masks``: full-resolution gate masks (bool, n x C_out x H_out x W_out) by layer name to price
    on instead of iid ones (``gate.hw_aware_prices: real``); the rows then also hold each layer's
    ``density``, the masks' own.

    Raises UserError (one line) for an unreadable config or a hardware that saves no cycles from
    any layer at this gate structure (every weight would be zero)."""
    try:
        accel = load_config(accel_path)
    except HwsimError as exc:
        raise UserError(f"gate.hw_aware: {exc.one_line()}") from None
    density = target_density(infos, target_ratio)
    rows: dict[str, dict] = {}
    for info in infos:
        if info.gate is None or info.gated_macs == 0 or is_static(info):
            continue
        spec = layer_spec(info.name, info, source=f"gate.hw_aware ({info.name})")
        if masks is not None:
            layer_masks = np.asarray(masks[info.name], dtype=bool)
        else:
            layer_masks = stats_masks(spec, density, n_images=N_IMAGES)
        r = simulate_layer(spec, accel, gate_masks=layer_masks)
        zero = r.dense_macs - r.needed_macs
        saved = (r.dense_total_cycles - r.total_cycles) / zero if zero > 0 else 0.0
        rows[info.name] = {"saved_cycles_per_mac": max(saved, 0.0), "speedup": r.speedup,
                           "granularity": r.granularity, "gated_macs": info.gated_macs}
        if masks is not None:
            rows[info.name]["density"] = float(layer_masks.mean())
    if not rows:
        raise UserError("gate.hw_aware: the backbone has no gated layer")
    total_c = sum(r["gated_macs"] for r in rows.values())
    mean_s = sum(r["saved_cycles_per_mac"] * r["gated_macs"] for r in rows.values()) / total_c
    if mean_s <= 0:
        raise UserError(f"gate.hw_aware: {accel.name} saves no cycles from this gate structure at density "
                        f"{density:.2f} in any layer (try coarser gate.channel_block / gate.spatial_block)")
    for r in rows.values():
        r["weight"] = max(r["saved_cycles_per_mac"] / mean_s, WEIGHT_FLOOR)
    norm = total_c / sum(r["weight"] * r["gated_macs"] for r in rows.values())
    for r in rows.values():
        r["weight"] *= norm
    return rows
