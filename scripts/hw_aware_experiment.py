"""Hardware-aware vs FLOPs-only CDG on digits: accuracy and simulated speed-up on one accelerator.

    python scripts/hw_aware_experiment.py --seeds 0 1 2 --jobs 2 \
        --accel accel_configs/systolic_32x32_os_compact.yaml --out-dir runs/digits_gating

Both arms are the embedded default run (SimCLR, ResNet-18 x1/4, 40 epochs on digits) with CDG
at a 2x FLOPs target and the gate structure of ``--gate`` (default: one decision per pixel,
``gate.channel_block=all``, which an output-stationary array with compaction can exploit). The
FLOPs-only arm is the same run as ``scripts/digits_gating_experiments.py``'s "CDG, per pixel"
ablation (same directory name, so it is reused when already trained); the hardware-aware arm adds
``gate.hw_aware=<accel>``. Each finished run's trace is simulated on ``--accel``; the table gives
linear-probe top-1, the FLOPs reduction measured on the evaluation split, and the simulated
speed-up (cycles of the same layers with no sparsity exploited / cycles with the run's real masks),
mean ± std over seeds, with Welch p-values of the hardware-aware arm against the FLOPs-only arm,
then, for the first seed of each arm, where the cycles go per stage (share of the dense cycles
and MACs, FLOPs reduction and cycle saving).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_gating_experiments import TARGET, run_one  # noqa: E402

from hwsim.api import simulate_trace  # noqa: E402


def simulated(run_dir: Path, accel: str) -> dict:
    totals = simulate_trace(run_dir / "trace", accel).totals()
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"linear": summary["linear_top1"] * 100, "flops": summary["reduction"], "speedup": totals["speedup"],
            "realised": totals["zero_work_removed"]}


def stage_table(run_dir: Path, accel: str) -> list[str]:
    """Per stage (conv1, layer1..4): dense-cycle share, MAC share, FLOPs reduction, cycles saved."""
    run = simulate_trace(run_dir / "trace", accel)
    total_cycles = sum(r.dense_total_cycles for r in run.layers)
    total_macs = sum(r.dense_macs for r in run.layers)
    stages: dict[str, list] = {}
    for r in run.layers:
        stages.setdefault(r.name.split(".")[0], []).append(r)
    lines = []
    for stage, rows in stages.items():
        dense_c = sum(r.dense_total_cycles for r in rows)
        dense_m = sum(r.dense_macs for r in rows)
        lines.append(f"| {stage} | {100 * dense_c / total_cycles:.1f} % | {100 * dense_m / total_macs:.1f} % | "
                     f"{dense_m / sum(r.needed_macs for r in rows):.2f}x | "
                     f"{100 * (1 - sum(r.total_cycles for r in rows) / dense_c):.1f} % |")
    return lines


def fmt(values: list[float], digits: int = 2, suffix: str = "") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f}{suffix} ± {sd:.{digits}f}"


def welch(a: list[float], b: list[float]) -> str:
    if len(a) < 2 or len(b) < 2:
        return "-"
    from scipy.stats import ttest_ind

    return f"{ttest_ind(a, b, equal_var=False).pvalue:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--accel", default="accel_configs/systolic_32x32_os_compact.yaml")
    parser.add_argument("--gate", nargs="*", default=["gate.channel_block=all"],
                        help="gate structure of both arms (section.key=value)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/digits_gating"))
    args = parser.parse_args()
    if not Path(args.accel).is_file():
        parser.error(f"--accel {args.accel}: not found")
    base = ["gate.method=cdg", *TARGET, *args.gate]
    # the FLOPs-only arm's label matches digits_gating_experiments.py's ablation for the default --gate
    flops_label = "CDG, per pixel (S=C_out)" if args.gate == ["gate.channel_block=all"] else "CDG " + " ".join(args.gate)
    arms = {flops_label: base, f"{flops_label}, hw-aware {Path(args.accel).stem}": [*base, f"gate.hw_aware={args.accel}"]}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {(label, s): pool.submit(run_one, args.out_dir, label, o, s, []) for label, o in arms.items()
                   for s in args.seeds}
        dirs: dict[str, list[Path]] = {}
        for (label, _), future in futures.items():
            dirs.setdefault(label, []).append(future.result())
    results = {label: [simulated(d, args.accel) for d in ds] for label, ds in dirs.items()}
    ref = results[flops_label]
    print(f"\nSimCLR + CDG on digits, seeds {args.seeds}, 2x FLOPs target, {' '.join(args.gate)}; "
          f"simulated on {args.accel}")
    print("| run | linear-probe top-1 (%) | FLOPs reduction (eval set) | simulated speed-up | "
          "realised share of gated-off work | p (top-1) | p (speed-up) |\n|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        col = lambda key: [r[key] for r in rows]  # noqa: E731
        same = label == flops_label
        print(f"| {label} | {fmt(col('linear'))} | {fmt(col('flops'), suffix='x')} | {fmt(col('speedup'), 3, 'x')} | "
              f"{fmt([100 * v for v in col('realised')], 1, '%')} | "
              f"{'-' if same else welch(col('linear'), [r['linear'] for r in ref])} | "
              f"{'-' if same else welch(col('speedup'), [r['speedup'] for r in ref])} |")
    for label, ds in dirs.items():
        print(f"\nPer stage, {ds[0].name} on {Path(args.accel).stem} (shares of the dense run)")
        print("| stage | dense cycles | MACs | FLOPs reduction | cycles saved |\n|---|---|---|---|---|")
        print("\n".join(stage_table(ds[0], args.accel)))


if __name__ == "__main__":
    main()
