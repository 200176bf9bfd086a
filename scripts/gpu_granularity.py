"""What a gated ResNet-18 (CIFAR) gains on a GPU model at each gate granularity.

    python scripts/gpu_granularity.py --accel accel_configs/gpu_a100.yaml --modes predicated compact \
        --gates 1x1 8x2 64x8 128x32
    python scripts/gpu_granularity.py --accel accel_configs/gpu_a100.yaml --tile 64 64 --gates 64x8 128x32
    python scripts/gpu_granularity.py --accel accel_configs/gpu_a100.yaml --batch 1 --gates 128x32

Every 3x3 conv after the stem is gated with G = 4 and decision blocks of S channels x b x b
pixels (S capped at C_out); decisions are iid at ``--density`` on each layer's decision grid
(``hwsim.api.stats_masks``, 64 images, seed 0). Prints, per gate structure and sparse mode, the
FLOPs reduction and the speed-up over the same kernel with no gating (whole network).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from hwsim import api
from hwsim.trace.errors import HwsimError, cli_entry
from hwsim.networks import get_network
from hwsim.trace import GateGrid


def gated_network(S: int, b: int) -> list:
    out = []
    for spec in get_network("resnet18_cifar"):
        if spec.op == "conv" and spec.kernel == (3, 3) and spec.name != "conv1":
            gate = GateGrid(G=4, S=min(S, spec.out_shape[0]), b=b).resolved(spec.in_shape[0])
            spec = replace(spec, gate=gate)
        out.append(spec)
    return out


def parse_gate(text: str) -> tuple[int, int]:
    try:
        s, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HwsimError("--gates", text, "expected SxB, e.g. 8x2") from None
    if s < 1 or b < 1:
        raise HwsimError("--gates", text, "S and b must be >= 1")
    return s, b


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accel", required=True, help="a gpu config (accel_configs/gpu_*.yaml)")
    p.add_argument("--modes", nargs="+", default=["predicated"], choices=("predicated", "compact"))
    p.add_argument("--gates", nargs="+", default=["1x1", "8x2", "64x8", "128x32"], help="S x b per structure")
    p.add_argument("--tile", nargs=2, type=int, metavar=("M", "N"), help="override tile.m and tile.n")
    p.add_argument("--batch", type=int, help="override batch")
    p.add_argument("--density", type=float, default=0.5)
    args = p.parse_args(argv)
    base = api.load_config(args.accel)
    if base.model != "gpu":
        raise HwsimError(args.accel, "model", f"expected a gpu config, got {base.model!r}")
    changes = {}
    if args.tile:
        changes["tile"] = {**base.tile.model_dump(), "m": args.tile[0], "n": args.tile[1]}
    if args.batch:
        changes["batch"] = args.batch
    if changes:
        base = base.with_overrides(**changes)
    print(f"{base.describe()}, density {args.density}")
    print("| gate S x b | FLOPs reduction | " + " | ".join(f"speed-up {m}" for m in args.modes) + " |")
    print("|---|---|" + "---|" * len(args.modes))
    for S, b in map(parse_gate, args.gates):
        specs = gated_network(S, b)
        masks = {s.name: api.stats_masks(s, args.density, n_images=64) for s in specs if s.gate is not None}
        cells, flops = [], None
        for mode in args.modes:
            cfg = base.with_overrides(sparse={**base.sparse.model_dump(), "mode": mode})
            t = api.simulate_layers(specs, cfg, masks=masks).totals()
            flops = t["flops_reduction"]
            cells.append(f"{t['speedup']:.3f}")
        print(f"| {S} x {b} | {flops:.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
