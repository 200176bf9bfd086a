"""The GPU model's dense ResNet-50 throughput per batch against a published table.

    python scripts/gpu_published_throughput.py                  # compare, config values as they are
    python scripts/gpu_published_throughput.py --calibrate      # fit tensor_efficiency and launch_us

The table (``tests/data/published_gpu_throughput.yaml``) is NVIDIA's Paddle-TRT FP16 inference
throughput of ResNet-50 v1.5 on one A100 80GB, batches 1..256, with its citation. The model runs
the built-in ``resnet50_imagenet`` layers dense on ``--accel`` (default
``accel_configs/gpu_a100_80gb.yaml``) at each batch; images/s = batch / the batch's time.
Only two figures no datasheet gives are fitted, and only on the table's ``calibration_batches``:
``tensor_efficiency`` and ``launch_us``, minimising the worst relative error there (launches
add a fixed time per kernel, so each efficiency's best launch time is found exactly). Every
batch is then reported, calibration points marked; the held-out ones are the test of the fit.
docs/hwsim-gpu.md section 8.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from hwsim import api
from hwsim.trace.errors import HwsimError, cli_entry
from hwsim.trace.fileio import load_yaml

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "tests" / "data" / "published_gpu_throughput.yaml"
ACCEL = REPO / "accel_configs" / "gpu_a100_80gb.yaml"
TOLERANCE = 0.15          # the goal: within 15 % at every batch


@dataclass(frozen=True)
class Published:
    """A per-batch throughput table and the batches a fit may see."""

    network: str
    images_per_s: dict[int, float]
    calibration: tuple[int, ...]
    source: dict


def load_table(path: str | Path = TABLE) -> Published:
    data = load_yaml(path)
    try:
        ips = {int(b): float(v) for b, v in data["images_per_s"].items()}
        cal = tuple(int(b) for b in data["calibration_batches"])
        net, src = str(data["network"]), dict(data["source"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HwsimError(str(path), "images_per_s", f"not a published-throughput table ({exc})") from None
    missing = [b for b in cal if b not in ips]
    if missing:
        raise HwsimError(str(path), "calibration_batches", f"{missing} not in images_per_s")
    return Published(net, ips, cal, src)


def batch_times_us(cfg, network: str, batches) -> tuple[dict[int, float], int]:
    """Dense time of one batch (us) at each batch size, and the kernels per forward pass."""
    out, kernels = {}, 0
    for B in batches:
        run = api.simulate_network(network, cfg.with_overrides(batch=B))
        out[B] = run.totals()["time_us"] * B
        kernels = int(sum(r.figures.counters["kernels"] for r in run.layers))
    return out, kernels


def errors(cfg, table: Published, batches=None) -> dict[int, tuple[float, float]]:
    """batch -> (model images/s, model / published - 1)."""
    batches = sorted(table.images_per_s) if batches is None else batches
    times, _ = batch_times_us(cfg, table.network, batches)
    return {B: (B / times[B] * 1e6, B / times[B] * 1e6 / table.images_per_s[B] - 1) for B in batches}


def _best_launch(t0: dict[int, float], kernels: int, table: Published, step: float = 0.05,
                 top: float = 50.0) -> tuple[float, float]:
    """The launch_us (grid of ``step``) minimising the worst calibration error, given the batch
    times without launches. -> (worst error, launch_us)."""
    best = (float("inf"), 0.0)
    for i in range(int(top / step) + 1):
        L = i * step
        worst = max(abs(B / (t0[B] + kernels * L) * 1e6 / table.images_per_s[B] - 1) for B in table.calibration)
        best = min(best, (worst, round(L, 4)))
    return best


def calibrate(cfg, table: Published, lo: float = 0.30, hi: float = 1.0) -> tuple[float, float, float]:
    """Fit (tensor_efficiency, launch_us) on the calibration batches: a coarse grid of 0.05 in
    efficiency, then 0.01 around the best. -> (efficiency, launch_us, worst calibration error)."""
    def score(e: float) -> tuple[float, float]:
        c = cfg.with_overrides(tensor_efficiency=e, launch_us=0.0)
        t0, kernels = batch_times_us(c, table.network, table.calibration)
        return _best_launch(t0, kernels, table)

    seen: dict[float, tuple[float, float]] = {}
    for e in [round(lo + 0.05 * i, 2) for i in range(int(round((hi - lo) / 0.05)) + 1)]:
        seen[e] = score(e)
    coarse = min(seen, key=lambda e: seen[e][0])
    for e in [round(coarse + 0.01 * d, 2) for d in range(-4, 5)]:
        if lo <= e <= hi and e not in seen:
            seen[e] = score(e)
    e = min(seen, key=lambda k: seen[k][0])
    return e, seen[e][1], seen[e][0]


def report(cfg, table: Published) -> tuple[str, float]:
    """Markdown table of every batch and the worst held-out |error|."""
    errs = errors(cfg, table)
    lines = ["| batch | published img/s | model img/s | model / published | fit |", "|---|---|---|---|---|"]
    for B, (ips, err) in errs.items():
        role = "calibration" if B in table.calibration else "held out"
        lines.append(f"| {B} | {table.images_per_s[B]:,.0f} | {ips:,.0f} | {1 + err:.3f} | {role} |")
    held = [abs(err) for B, (_, err) in errs.items() if B not in table.calibration]
    worst_cal = max(abs(err) for B, (_, err) in errs.items() if B in table.calibration)
    worst = max(held) if held else 0.0
    lines.append(f"\nworst |error|: calibration {worst_cal:.1%}, held out {worst:.1%} (goal {TOLERANCE:.0%})")
    return "\n".join(lines), worst


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accel", default=str(ACCEL), help="a gpu config (default: accel_configs/gpu_a100_80gb.yaml)")
    p.add_argument("--table", default=str(TABLE), help="published table (default: tests/data/published_gpu_throughput.yaml)")
    p.add_argument("--calibrate", action="store_true", help="fit tensor_efficiency and launch_us first")
    p.add_argument("--l2-model", choices=("step", "smooth"), help="override l2.model")
    p.add_argument("--no-tactics", action="store_true", help="drop tactics: one tile, no split-K")
    p.add_argument("--sustained-clock", type=float, help="override sustained_clock_mhz")
    args = p.parse_args(argv)
    cfg = api.load_config(args.accel)
    if cfg.model != "gpu":
        raise HwsimError(args.accel, "model", f"expected a gpu config, got {cfg.model!r}")
    table = load_table(args.table)
    changes: dict = {}
    if args.l2_model:
        changes["l2"] = {**cfg.l2.model_dump(), "model": args.l2_model}
    if args.no_tactics:
        changes["tactics"] = None
    if args.sustained_clock:
        changes["sustained_clock_mhz"] = args.sustained_clock
    changes["sparse"] = {**cfg.sparse.model_dump(), "mode": "dense"}
    cfg = cfg.with_overrides(**changes)
    src = table.source
    print(f"published: {src.get('repo')} {src.get('path')} @ {src.get('commit')}, {src.get('heading')}")
    if args.calibrate:
        e, L, w = calibrate(cfg, table)
        print(f"calibrated on batches {list(table.calibration)}: tensor_efficiency {e:.2f}, launch_us {L:.2f} "
              f"(worst calibration |error| {w:.1%})")
        cfg = cfg.with_overrides(tensor_efficiency=e, launch_us=L)
    t = cfg.tactics
    print(f"model: {cfg.name}, tensor_efficiency {cfg.tensor_efficiency}, launch_us {cfg.launch_us}, "
          f"sustained clock {cfg.sustained_clock_mhz or cfg.clock_mhz} MHz, l2 {cfg.l2.model}, "
          f"tactics {'none' if t is None else f'{len(t.tiles) + 1} tiles x split-K {t.split_k}'}")
    text, _ = report(cfg, table)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
