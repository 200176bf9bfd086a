"""Evidence on Fashion-MNIST: the preregistered pilot, main comparison and reduction curve as
resumable runs, one small JSON per finished run, and the tables built from those JSONs alone.

    python scripts/fashion_evidence.py pilot --commit            # 3 seeds, both data sets
    python scripts/fashion_evidence.py main --dataset fashion_mnist --seeds 0 1 2 3 4 --commit
    python scripts/fashion_evidence.py curve --dataset fashion_mnist --baseline fbs --commit
    python scripts/fashion_evidence.py tables                    # Markdown tables + the tests

The hypotheses, budget and tests are written in ``docs/results.md`` before the runs. Every run is
a real command (``python -m cdg.train`` or ``python -m cdg.eval --config``) in its own process;
its record (``docs/results/fashion/<phase>/<data set>/<arm>_s<seed>.json``) holds what the tables
need and the command that made it. A run whose JSON exists is never run again; a run killed
half-way resumes from its last checkpoint (``--resume``); so an interrupted sweep, or a fresh
machine with the committed JSONs, loses only the run in progress. ``--commit`` commits each JSON
as it lands (only that file), which is how results outlive a session.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # run from anywhere; the statistics live beside it
from evidence_stats import render_tables  # noqa: E402

from hwsim.trace.fileio import atomic_write_json  # noqa: E402

CONFIGS = {
    "fashion_mnist": "configs/fashion_mnist_simclr.yaml",
    "fashion_mnist_cluttered": "configs/fashion_mnist_cluttered_simclr.yaml",
    "digits": "configs/digits_simclr.yaml",  # for the script's own test only
}
GATES = ("cdg", "cgnet", "fbs", "dgnet")
SCHEMA = 1


@dataclass
class Run:
    """One preregistered run: what it is (the record's identity) and the overrides that make it."""

    phase: str
    dataset: str
    arm: str  # dense | random_init | raw_pixels | one of GATES
    seed: int
    epochs: int
    target: float | None = None
    overrides: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        target = f"_{self.target:g}x" if self.target is not None else ""
        return f"{self.arm}{target}_s{self.seed}"

    def record_path(self, results: Path) -> Path:
        return results / self.phase / self.dataset / f"{self.run_id}.json"

    def run_dir(self, runs: Path) -> Path:
        return runs / self.phase / self.dataset / self.run_id


def budget_overrides(epochs: int) -> list[str]:
    """The one budget of a phase: ``epochs`` passes over the training split, schedules scaled to it.

    The warm-up fractions are those of the embedded digits recipe (lr warm-up 2 of 40 epochs; gates
    dense for 2 and ramped over 10 of 40), so a shorter budget keeps the same shape."""
    return [f"train.epochs={epochs}", f"optim.warmup_epochs={0.05 * epochs:g}",
            f"gate.warmup_epochs={0.05 * epochs:g}", f"gate.ramp_epochs={0.25 * epochs:g}",
            "eval.knn_every_epochs=0", "train.progress=false"]


def plan(phase: str, datasets: list[str], seeds: list[int], epochs: int, baseline: str | None) -> list[Run]:
    runs: list[Run] = []
    for dataset in datasets:
        for seed in seeds:
            if phase == "pilot":
                runs += [Run(phase, dataset, "raw_pixels", seed, epochs), Run(phase, dataset, "random_init", seed, epochs),
                         Run(phase, dataset, "dense", seed, epochs)]
            elif phase == "main":
                runs.append(Run(phase, dataset, "dense", seed, epochs))
                runs += [Run(phase, dataset, g, seed, epochs, 2.0, [f"gate.method={g}"]) for g in GATES]
            elif phase == "curve":
                for target in (1.5, 2.5):
                    runs += [Run(phase, dataset, g, seed, epochs, target, [f"gate.method={g}"]) for g in ("cdg", baseline)]
    # seed by seed, cheap baselines first within a seed: every finished seed is a complete
    # comparison, and the first dense runs come early instead of after every baseline
    return sorted(runs, key=lambda r: (r.seed, r.arm not in ("raw_pixels", "random_init"), r.dataset))


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() or "unknown"


def command_for(run: Run, runs_dir: Path, threads: int, extra: list[str]) -> list[str]:
    config = CONFIGS[run.dataset]
    common = [f"train.seed={run.seed}", f"train.threads={threads}", *run.overrides, *extra]
    if run.arm in ("raw_pixels", "random_init"):
        flag = ["--features", "raw-pixels"] if run.arm == "raw_pixels" else ["--random-init"]
        return ["-m", "cdg.eval", "--config", config, *flag, *common]
    target = [f"gate.target_reduction={run.target:g}"] if run.target is not None else []
    run_dir = run.run_dir(runs_dir)
    if (run_dir / "checkpoints" / "last.pt").exists():
        return ["-m", "cdg.train", "--resume", str(run_dir), f"train.threads={threads}"]
    if run_dir.exists():  # killed before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    return ["-m", "cdg.train", "--config", config, f"run.dir={run_dir.parent}", f"run.name={run_dir.name}",
            *budget_overrides(run.epochs), *target, *common]


def record_from(run: Run, argv: list[str], result: dict, wall_s: float, threads: int) -> dict:
    record = {
        "schema": SCHEMA, "phase": run.phase, "dataset": run.dataset, "arm": run.arm, "seed": run.seed,
        "ssl_method": "simclr", "gate_method": run.arm if run.arm in GATES else "none",
        "target_reduction": run.target, "budget_epochs": run.epochs,
        "steps": result.get("steps", 0), "linear_top1": result.get("linear_top1"), "knn_top1": result.get("knn_top1"),
        "reduction_full": result.get("reduction_full"), "reduction_output": result.get("reduction"),
        "train_macs": {k: v for k, v in result.items() if k.startswith("train_macs")},
        "per_image_mac_ratio": result.get("per_image_mac_ratio"),  # adaptivity (gated runs)
        "command": "python " + " ".join(argv), "git_commit": git_commit(), "wall_s": round(wall_s, 1),
        "threads": threads, "host": platform.node(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if run.arm in ("raw_pixels", "random_init"):
        record["feature_dim"] = result.get("feature_dim")
    return record


def execute(run: Run, runs_dir: Path, results: Path, threads: int, extra: list[str]) -> dict:
    argv = command_for(run, runs_dir, threads, extra)
    scratch = run.run_dir(runs_dir).with_suffix(".eval.json")
    if argv[1] == "cdg.eval":
        scratch.parent.mkdir(parents=True, exist_ok=True)
        argv = [*argv[:2], "--json", str(scratch), *argv[2:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{run.phase}/{run.dataset}/{run.run_id} failed (exit {done.returncode}): " + " | ".join(tail))
    wall = time.monotonic() - start
    if argv[1] == "cdg.eval":
        result = json.loads(scratch.read_text())
    else:
        result = json.loads((run.run_dir(runs_dir) / "summary.json").read_text())
    record = record_from(run, argv, result, wall, threads)
    atomic_write_json(run.record_path(results), record)
    return record


def reuse_pilot_dense(run: Run, results: Path) -> dict | None:
    """The main phase's dense arm is the pilot's dense arm: the same command (config, seed, budget,
    no gate), so its record is reused, marked as such, instead of training the same network twice."""
    if run.phase != "main" or run.arm != "dense":
        return None
    pilot = Run("pilot", run.dataset, "dense", run.seed, run.epochs).record_path(results)
    if not pilot.exists():
        return None
    record = json.loads(pilot.read_text())
    if record.get("budget_epochs") != run.epochs:
        return None
    record.update(phase="main", reused_from=str(pilot.relative_to(results)))
    atomic_write_json(run.record_path(results), record)
    return record


def commit_record(path: Path, message: str, tries: int = 6) -> bool:
    """Commit only ``path``; retried, since another git command (a merge) may hold the index."""
    for attempt in range(tries):
        add = subprocess.run(["git", "add", "--", str(path)], cwd=REPO, capture_output=True, text=True)
        done = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], cwd=REPO,
                              capture_output=True, text=True)
        if add.returncode == 0 and done.returncode == 0:
            return True
        time.sleep(10 * (attempt + 1))
    print(f"warning: could not commit {path} (commit it by hand): {done.stderr.strip()}", file=sys.stderr)
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["pilot", "main", "curve", "tables"])
    parser.add_argument("--datasets", nargs="+", default=None, choices=sorted(CONFIGS),
                        help="pilot: both Fashion-MNIST sets (default); main/curve: use --dataset")
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default=None, help="main/curve: the pilot's passing data set")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (main: 0-4)")
    parser.add_argument("--epochs", type=int, default=1, help="the budget in epochs of the training split")
    parser.add_argument("--baseline", choices=GATES[1:], default=None, help="curve: the strongest baseline of main")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (runs go one at a time)")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "fashion_evidence")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results" / "fashion")
    parser.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value for every run (tests only)")
    args = parser.parse_intermixed_args(argv)
    if args.phase in ("main", "curve") and args.dataset is None:
        parser.error(f"{args.phase}: --dataset is required (the data set that passed the pilot)")
    if args.phase == "curve" and args.baseline is None:
        parser.error("curve: --baseline is required (the strongest baseline of the main table)")
    if args.epochs < 1 or args.threads < 1:
        parser.error("--epochs and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "tables":
        print(render_tables(args.results))
        return 0
    datasets = [args.dataset] if args.dataset else (args.datasets or ["fashion_mnist", "fashion_mnist_cluttered"])
    seeds = args.seeds if args.seeds is not None else ([0, 1, 2, 3, 4] if args.phase == "main" else [0, 1, 2])
    todo = [r for r in plan(args.phase, datasets, seeds, args.epochs, args.baseline)
            if not r.record_path(args.results).exists()]
    print(f"{args.phase}: {len(todo)} runs to go", file=sys.stderr, flush=True)
    for count, run in enumerate(todo[: args.max_runs] if args.max_runs else todo, 1):
        label = f"{run.phase}/{run.dataset}/{run.run_id}"
        print(f"[{count}/{len(todo)}] {label} ...", file=sys.stderr, flush=True)
        record = reuse_pilot_dense(run, args.results) if not args.overrides else None
        if record is not None:
            print(f"  the pilot's identical run: {record['reused_from']}", file=sys.stderr, flush=True)
        else:
            record = execute(run, args.runs_dir, args.results, args.threads, args.overrides)
        print(f"  linear {record['linear_top1']:.4f} knn {record['knn_top1']:.4f} in {record['wall_s']:.0f} s",
              file=sys.stderr, flush=True)
        if args.commit:
            commit_record(run.record_path(args.results), f"results: fashion {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
