"""One published SCNN design point, reproduced with the sparse-PE model: GoogLeNet's density sweep.

    python scripts/sparse_pe_design_point.py                       # prints the Markdown tables
    python scripts/sparse_pe_design_point.py --json tests/data/scnn_design_point.json

SCNN (Parashar et al., ISCA 2017) reports SCNN / DCNN performance on GoogLeNet with every
layer's weights and activations at one density d (the published points and where they come from:
``tests/data/scnn_published.json``, a third-party summary, not the paper body). Here: the conv
layers of ``hwsim.networks.googlenet`` (the fully connected layer is left out: SCNN's paper runs
it at a quarter of peak and points to EIE for it), iid activation masks at density d (one image,
``--seed``), weight density d (``weight_density``: the expected vector lengths of iid pruned
weights), on ``accel_configs/sparse_pe_scnn.yaml`` with its halo and crossbar switches each off
and on. The DCNN is not specified in the sources used, so two baselines are reported: the same
8x8 PE grid and tiles running every MAC with ideal packing (``sparse_pe.yaml`` with
``skip_zero_acts: false``), and an ideal 1024-MAC machine (dense MACs / 1024). Speed-up = DCNN
compute cycles / SCNN compute cycles (DRAM left out; SCNN's paper finds it hidden above 4 GB/s).
Nothing is fitted: the configs are the shipped files, the published numbers are only compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from hwsim.config import load_config  # noqa: E402
from hwsim.models.sparse_pe import model  # noqa: E402
from hwsim.networks import googlenet  # noqa: E402
from hwsim.trace.errors import cli_entry  # noqa: E402
from hwsim.trace.fileio import atomic_open  # noqa: E402
from hwsim.workload import lower  # noqa: E402

VARIANTS = (("cartesian", dict(halo=False, crossbar=False)), ("cartesian + halo", dict(halo=True, crossbar=False)),
            ("cartesian + crossbar", dict(halo=False, crossbar=True)),
            ("cartesian + halo + crossbar", dict(halo=True, crossbar=True)))
GOAL_PCT = 15.0


def conv_layers():
    return [s for s in googlenet() if s.op == "conv"]


def network_cycles(cfg, layers, density: float, seed: int) -> float:
    """Compute cycles of the layers at weight and activation density ``density`` (dense at 1)."""
    rng = np.random.default_rng(seed)          # the same masks for every variant
    cfg = cfg.with_overrides(weight_density=None if density >= 1.0 else density)
    total = 0.0
    for spec in layers:
        work = lower(spec)
        if density >= 1.0:
            total += model.dense(work, cfg).cycles
        else:
            acts = rng.random((1, *spec.in_shape)) < density
            total += model.sparse(work, cfg, None, acts)[0].cycles
    return total


def err_pct(model_value: float, published: float) -> float:
    return 100.0 * (model_value - published) / published


def design_point(config: str, dcnn_config: str, published: str, seed: int, queue_depths: list[int]) -> dict:
    pub = json.loads(Path(published).read_text())
    scnn = load_config(config)
    dcnn = load_config(dcnn_config).with_overrides(skip_zero_acts=False)
    layers = conv_layers()
    dense_macs = float(sum(s.dense_macs for s in layers))
    grid = sum(model.dense(lower(s), dcnn).cycles for s in layers)
    ideal = dense_macs / scnn.peak_macs_per_cycle()
    points = []
    for p in pub["points"]:
        d = float(p["weight_density"])
        row = {"density": d, "published": p["speedup"], "kind": p["kind"], "variants": {}}
        for name, switches in VARIANTS:
            cyc = network_cycles(scnn.with_overrides(**switches), layers, d, seed)
            row["variants"][name] = {"cycles": cyc, "speedup_vs_grid": grid / cyc, "speedup_vs_ideal": ideal / cyc,
                                     "error_vs_grid_pct": err_pct(grid / cyc, p["speedup"]),
                                     "error_vs_ideal_pct": err_pct(ideal / cyc, p["speedup"])}
        points.append(row)
    queue = []
    for q in queue_depths:
        cfg = scnn.with_overrides(halo=True, crossbar=True, scatter={"banks": scnn.scatter.banks, "queue_depth": q})
        cyc = network_cycles(cfg, layers, 1.0, seed)
        queue.append({"queue_depth": q, "speedup_vs_grid_at_density_1": grid / cyc})
    return {"config": config, "dcnn_config": dcnn_config + " (skip_zero_acts: false)", "published": published,
            "seed": seed, "layers": f"GoogLeNet conv layers ({len(layers)}), fc left out", "dense_macs": dense_macs,
            "dcnn_grid_cycles": grid, "dcnn_ideal_cycles": ideal, "goal_pct": GOAL_PCT, "points": points,
            "crossbar_queue_sensitivity": queue}


def tables(res: dict) -> str:
    lines = ["| density (w = a) | published SCNN/DCNN | model variant | vs DCNN on the same grid | error | vs ideal 1024-MAC DCNN | error |",
             "|---|---|---|---|---|---|---|"]
    for p in res["points"]:
        for name, v in p["variants"].items():
            lines.append(f"| {p['density']:g} | {p['published']:g} | {name} | {v['speedup_vs_grid']:.3f} | "
                         f"{v['error_vs_grid_pct']:+.1f} % | {v['speedup_vs_ideal']:.3f} | {v['error_vs_ideal_pct']:+.1f} % |")
    lines += ["", f"DCNN cycles: same grid {res['dcnn_grid_cycles']:.0f}, ideal {res['dcnn_ideal_cycles']:.0f} "
              f"({res['dense_macs'] / 1e9:.4f} GMACs over {res['layers']})", "",
              "| crossbar queue depth (density 1, halo + crossbar) | vs DCNN on the same grid |", "|---|---|"]
    lines += [f"| {q['queue_depth']} | {q['speedup_vs_grid_at_density_1']:.3f} |" for q in res["crossbar_queue_sensitivity"]]
    return "\n".join(lines)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="accel_configs/sparse_pe_scnn.yaml")
    ap.add_argument("--dcnn-config", default="accel_configs/sparse_pe.yaml")
    ap.add_argument("--published", default="tests/data/scnn_published.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queue-depths", default="0,4,8", help="crossbar queue depths for the sensitivity table")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    res = design_point(args.config, args.dcnn_config, args.published, args.seed,
                       [int(q) for q in args.queue_depths.split(",") if q])
    print(tables(res))
    if args.json:
        with atomic_open(args.json, "w") as fh:
            fh.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
