"""How much of each accelerator's verdict depends on the real masks: real vs iid at the same density.

    python scripts/mask_sensitivity.py --trace tests/data/cdg_digits_trace \
        --accel accel_configs/systolic_32x32_os_compact.yaml accel_configs/sparse_pe.yaml accel_configs/gpu_a100.yaml

For every gated layer of the trace, the speed-up over the same layer with no sparsity exploited
(total cycles, memory included) with the trace's real gate masks, and with iid masks of the same
shape: independent decisions on the layer's own decision grid (S channels x b x b pixels), each
image's decisions drawn at that image's measured density of the same layer (so per-image budget
and layer density are kept; only where in the image the work sits, and how it clusters, is
lost). Input-activation masks of the trace go to both runs alike. Prints one Markdown table per accelerator (per layer: density, real, iid, iid / real) and
the network totals. Nothing here is tuned: both columns come from the same model and the same
counts of active decisions per image, up to the binomial draw.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hwsim.api import simulate_layers
from hwsim.trace import load_trace
from hwsim.trace.errors import HwsimError, cli_entry
from hwsim.trace.masks import expand_gate_blocks


def iid_like(blocks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """iid decision grid of ``blocks``' shape, each image at its own density."""
    per_image = blocks.reshape(blocks.shape[0], -1).mean(axis=1)
    shape = (blocks.shape[0], *[1] * (blocks.ndim - 1))
    return rng.random(blocks.shape) < per_image.reshape(shape)


def compare(trace_dir: str, accel: str, seed: int) -> list[str]:
    trace = load_trace(trace_dir)
    rng = np.random.default_rng(seed)
    real, iid = {}, {}
    acts = {layer.spec.name: layer.act_masks for layer in trace.layers if layer.act_masks is not None}
    for layer in trace.layers:
        if layer.gate_blocks is not None:
            real[layer.spec.name] = expand_gate_blocks(layer.gate_blocks, layer.spec)
            iid[layer.spec.name] = expand_gate_blocks(iid_like(layer.gate_blocks, rng), layer.spec)
    if not real:
        raise HwsimError(trace_dir, "layers", "no gated layer with stored masks: nothing to compare")
    with_real = simulate_layers(trace.specs, accel, masks=real, source=trace_dir, act_masks=acts)
    with_iid = simulate_layers(trace.specs, accel, masks=iid, source=trace_dir, act_masks=acts)
    lines = [f"**{Path(accel).stem}** ({with_real.mode})", "",
             "| layer | decision density | speed-up, real masks | speed-up, iid masks | iid / real |",
             "|---|---|---|---|---|"]
    for r, i in zip(with_real.layers, with_iid.layers):
        if r.name in real:
            density = float(real[r.name].mean())
            lines.append(f"| {r.name} | {density:.3f} | {r.speedup:.3f}x | {i.speedup:.3f}x | {i.speedup / r.speedup:.3f} |")
    t_real, t_iid = with_real.totals()["speedup"], with_iid.totals()["speedup"]
    lines += [f"| **network** | | **{t_real:.3f}x** | **{t_iid:.3f}x** | **{t_iid / t_real:.3f}** |", ""]
    return lines


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", required=True, help="trace directory with stored gate masks")
    parser.add_argument("--accel", nargs="+", required=True, help="accelerator YAMLs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the iid draw")
    args = parser.parse_args(argv)
    print(f"trace {args.trace}; iid masks drawn per image at the image's own density (seed {args.seed})\n")
    for accel in args.accel:
        print("\n".join(compare(args.trace, accel, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
