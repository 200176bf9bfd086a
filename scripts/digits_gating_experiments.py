"""Dynamic pruning in SimCLR on digits: dense vs CDG vs CGNet vs FBS vs DGNet, and CDG ablations.

    python scripts/digits_gating_experiments.py --seeds 0 1 2 --jobs 2 --out-dir runs/digits_gating

Every run is the embedded default config (SimCLR, ResNet-18 x1/4, 40 epochs on digits) plus
its gate settings, trained by ``python -m cdg.train`` in its own process (``--jobs`` at a
time, one CPU thread each). Finished runs (``summary.json`` present) are not run again, so an
interrupted sweep continues where it stopped. Prints two Markdown tables: linear-probe top-1
(mean ± std over seeds), the computation reduction measured on the evaluation split (dense MACs /
effective MACs, gate and predictor overheads included), and a two-sided Welch t-test p-value of
each row's linear-probe top-1 against the CDG row.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARGET = ["gate.target_reduction=2"]
MAIN = {
    "dense": [],
    "CDG": ["gate.method=cdg", *TARGET],
    "CGNet": ["gate.method=cgnet", *TARGET],
    "FBS": ["gate.method=fbs", *TARGET],
    "DGNet": ["gate.method=dgnet", *TARGET],
}
ABLATIONS = {
    "CDG, gates in one branch": ["gate.method=cdg", *TARGET, "gate.branches=one"],
    "CDG, aligned saliency": ["gate.method=cdg", *TARGET, "gate.align_weight=1.0"],
    "CDG, structured S=8": ["gate.method=cdg", *TARGET, "gate.channel_block=8"],
    "CDG, structured S=16": ["gate.method=cdg", *TARGET, "gate.channel_block=16"],
    "CDG, per pixel (S=C_out)": ["gate.method=cdg", *TARGET, "gate.channel_block=all"],
}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def run_one(out_dir: Path, label: str, overrides: list[str], seed: int, extra: list[str]) -> Path:
    run_dir = out_dir / f"{slug(label)}_s{seed}"
    if (run_dir / "summary.json").exists():
        return run_dir
    args = [sys.executable, "-m", "cdg.train", f"run.dir={out_dir}", f"run.name={run_dir.name}",
            f"train.seed={seed}", "train.threads=1", "train.progress=false", *overrides, *extra]
    if (run_dir / "checkpoints" / "last.pt").exists():
        args = [sys.executable, "-m", "cdg.train", "--resume", str(run_dir), "train.threads=1", "train.progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{run_dir.name} failed:\n{result.stderr[-2000:]}")
    print(f"finished {run_dir.name}", file=sys.stderr, flush=True)
    return run_dir


def linear_top1(run_dirs: list[Path]) -> list[float]:
    return [json.loads((d / "summary.json").read_text())["linear_top1"] * 100 for d in run_dirs]


def welch_p(values: list[float], reference: list[float]) -> str:
    """Two-sided Welch t-test p-value of the linear-probe top-1 against the CDG row."""
    if len(values) < 2 or len(reference) < 2:
        return "-"
    from scipy.stats import ttest_ind

    return f"{ttest_ind(values, reference, equal_var=False).pvalue:.2f}"


def summarise(run_dirs: list[Path]) -> tuple[str, str, str]:
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs]
    linear = [s["linear_top1"] * 100 for s in summaries]
    reduction = [s.get("reduction", 1.0) for s in summaries]
    spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    before = []
    for d in run_dirs:
        lines = (d / "metrics.jsonl").read_text().splitlines()
        cal = [json.loads(line) for line in lines if '"calibration"' in line]
        if cal:
            before.append(1 / cal[-1]["ratio_before"])
    trained = f"{statistics.mean(before):.2f}x" if before else "-"
    return (f"{statistics.mean(linear):.2f} ± {spread(linear):.2f}",
            f"{statistics.mean(reduction):.2f}x ± {spread(reduction):.2f}", trained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=None, help="default: --seeds")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/digits_gating"))
    parser.add_argument("--skip-ablations", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value for every run")
    args = parser.parse_args()
    ablation_seeds = args.ablation_seeds or args.seeds
    jobs = [(label, o, s) for label, o in MAIN.items() for s in args.seeds]
    if not args.skip_ablations:
        jobs += [(label, o, s) for label, o in ABLATIONS.items() for s in ablation_seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {(label, seed): pool.submit(run_one, args.out_dir, label, o, seed, args.overrides)
                   for label, o, seed in jobs}
        dirs: dict[str, list[Path]] = {}
        for (label, _), future in futures.items():
            dirs.setdefault(label, []).append(future.result())
    header = ("| run | linear-probe top-1 (%) | reduction (eval set) | reduction before calibration | p vs CDG |\n"
              "|---|---|---|---|---|")
    reference = linear_top1(dirs["CDG"])
    print(f"\nSimCLR on digits, seeds {args.seeds}, target reduction 2x")
    print(header)
    for label in MAIN:
        p = "-" if label == "CDG" else welch_p(linear_top1(dirs[label]), reference)
        print(f"| {label} | " + " | ".join(summarise(dirs[label])) + f" | {p} |")
    if not args.skip_ablations:
        print(f"\nCDG ablations, seeds {ablation_seeds} (CDG row above: both branches, independent saliency, S=1)")
        print(header)
        for label in ABLATIONS:
            p = welch_p(linear_top1(dirs[label]), reference)
            print(f"| {label} | " + " | ".join(summarise(dirs[label])) + f" | {p} |")


if __name__ == "__main__":
    main()
