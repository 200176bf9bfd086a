"""Linear-probe and kNN top-1 of the default digits run vs the same encoder at random init.

    python scripts/ssl_vs_random_init.py --seeds 0 1 2 --out-dir runs/ssl_vs_random

Trains the embedded default config once per seed (``train.seed``), evaluates the
trained checkpoint and the random-init encoder of the same seed with ``cdg.eval``,
and prints a Markdown table (mean ± std over seeds). Extra ``section.key=value``
arguments are passed to every training run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cdg.eval import main as eval_main
from cdg.run.rundir import checkpoint_path
from cdg.train import main as train_main


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", default="runs/ssl_vs_random")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {"SimCLR (default run)": {}, "random init": {}}
    minutes = []
    for seed in args.seeds:
        name = f"seed{seed}"
        start = time.perf_counter()
        train_main([f"run.dir={args.out_dir}", f"run.name={name}", f"train.seed={seed}", "train.progress=false", *args.overrides])
        minutes.append((time.perf_counter() - start) / 60)
        run = f"{args.out_dir}/{name}"
        for label, extra in (("SimCLR (default run)", []), ("random init", ["--random-init"])):
            result = eval_main(["--checkpoint", str(checkpoint_path(Path(run))), "--no-log", *extra])
            for key in ("linear_top1", "knn_top1"):
                rows[label].setdefault(key, []).append(result[key])
    print(f"\n{len(args.seeds)} seeds {args.seeds}; training wall time per run {statistics.mean(minutes):.1f} min")
    print("| encoder | linear-probe top-1 (%) | kNN top-1 (%) |")
    print("|---|---|---|")
    for label, values in rows.items():
        print(f"| {label} | {mean_std(values['linear_top1'])} | {mean_std(values['knn_top1'])} |")


if __name__ == "__main__":
    main()
