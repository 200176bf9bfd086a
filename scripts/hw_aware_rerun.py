"""The hardware-aware re-run with its controls: FLOPs-aware CDG, hardware-aware CDG with iid and
with real-mask prices, and FLOPs-aware CDG with layer4's conditional path removed statically, as
resumable runs, one small JSON per finished run, and the preregistered tables built from them.

    python scripts/hw_aware_rerun.py run --commit            # 4 arms x seeds 0-2, fashion_mnist_cluttered
    python scripts/hw_aware_rerun.py tables                  # Markdown tables + the preregistered tests
    python scripts/hw_aware_rerun.py overheads               # seconds the price fit and simulation add

Hypotheses, tests and budget are in ``docs/hw-aware.md`` ("The re-run") and ``docs/results.md``,
written before the runs. Every arm is CDG at a 2x FLOPs target (full accounting) with the gate
structure ``--gate`` (default one decision per pixel, ``gate.channel_block=all``, the structure
the output-stationary array with compaction can exploit, as in ``scripts/hw_aware_experiment.py``),
trained with the budget and settings of ``scripts/fashion_evidence.py main`` (``--epochs`` passes,
its ``budget_overrides``, the data set's config file). Each run is ``python -m cdg.train`` in its
own process; its trace is then simulated on ``--accel`` and its record
(``docs/results/hw_aware/<data set>/<arm>_2x_s<seed>.json``) holds both reductions, the
*simulated* speed-up (hwsim cycles of the same layers without sparsity / with the run's traced
masks), per-stage cycles, linear and kNN top-1 and the command. A run whose JSON exists is never
run again; a run killed half-way resumes from its last checkpoint; ``--commit`` commits each JSON
as it lands (only that file).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]
from evidence_stats import ALPHA, EQUIVALENCE_MARGIN, fmt_p, holm, load_records, mean_sd, tost, welch  # noqa: E402
from fashion_evidence import CONFIGS, Run, command_for, commit_record, git_commit  # noqa: E402

from hwsim.api import simulate_trace  # noqa: E402
from hwsim.trace.fileio import atomic_write_json  # noqa: E402

PHASE = "hw_aware"
TARGET = 2.0
SCHEMA = 1
DEFAULT_ACCEL = "accel_configs/systolic_32x32_os_compact.yaml"
HW_ARMS = ("hw_iid", "hw_real")
CONTROLS = ("static_layer4",)
ARMS = ("flops", *HW_ARMS, *CONTROLS)


def arm_overrides(arm: str, accel: str, gate: list[str]) -> list[str]:
    """The overrides of one arm on top of CDG at the 2x target with gate structure ``gate``."""
    extra = {"flops": [], "hw_iid": [f"gate.hw_aware={accel}", "gate.hw_aware_prices=iid"],
             "hw_real": [f"gate.hw_aware={accel}", "gate.hw_aware_prices=real"],
             "static_layer4": ["gate.static_off=[layer4]"]}[arm]
    return ["gate.method=cdg", *gate, *extra]


def plan(dataset: str, seeds: list[int], epochs: int, accel: str, gate: list[str]) -> list[Run]:
    """Seed by seed, so every finished seed is a complete comparison."""
    return [Run(PHASE, dataset, arm, seed, epochs, TARGET, arm_overrides(arm, accel, gate))
            for seed in seeds for arm in ARMS]


def simulated(run_dir: Path, accel: str) -> dict:
    """Simulated speed-up of the run's traced masks on ``accel`` and where the cycles go per stage."""
    result = simulate_trace(run_dir / "trace", accel)
    totals = result.totals()
    stages: dict[str, dict] = {}
    for r in result.layers:
        row = stages.setdefault(r.name.split(".")[0], {"dense_cycles": 0.0, "cycles": 0.0, "dense_macs": 0, "needed_macs": 0})
        row["dense_cycles"] += r.dense_total_cycles
        row["cycles"] += r.total_cycles
        row["dense_macs"] += r.dense_macs
        row["needed_macs"] += r.needed_macs
    return {"simulated_speedup": totals["speedup"], "simulated_zero_work_removed": totals["zero_work_removed"],
            "simulated_flops_reduction": totals["flops_reduction"], "simulated_stages": stages}


def fresh_command(run: Run, args: argparse.Namespace) -> list[str]:
    """The command that trains ``run`` from scratch (``command_for`` of a run directory that does not
    exist yet, so neither ``--resume`` nor a clean-up), for the record of a run already trained."""
    scratch = args.runs_dir / ".fresh"
    argv = command_for(run, scratch, args.threads, args.overrides)
    return [a.replace(str(scratch), str(args.runs_dir)) for a in argv]


def execute(run: Run, args: argparse.Namespace) -> dict:
    run_dir = run.run_dir(args.runs_dir)
    wall = None
    if (run_dir / "summary.json").exists() and (run_dir / "trace" / "trace.json").exists():
        # trained and traced, killed before its record was written: only the simulation is left
        argv = fresh_command(run, args)
    else:
        argv = command_for(run, args.runs_dir, args.threads, args.overrides)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
        start = time.monotonic()
        done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{run.dataset}/{run.run_id} failed (exit {done.returncode}): " + " | ".join(tail))
        wall = round(time.monotonic() - start, 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    sim_start = time.monotonic()
    sim = simulated(run_dir, str(accel_path(args.accel)))
    record = {
        "schema": SCHEMA, "phase": PHASE, "dataset": run.dataset, "arm": run.arm, "seed": run.seed,
        "ssl_method": "simclr", "gate_method": "cdg", "target_reduction": TARGET, "budget_epochs": run.epochs,
        "gate": args.gate, "accelerator": args.accel, "steps": summary.get("steps", 0),
        "linear_top1": summary.get("linear_top1"), "knn_top1": summary.get("knn_top1"),
        "reduction_full": summary.get("reduction_full"), "reduction_output": summary.get("reduction"),
        **sim, "simulated_note": "hwsim cycles, not a measurement: dense / gated cycles of the traced masks",
        "command": "python " + " ".join(argv), "git_commit": git_commit(), "wall_s": wall,
        "simulate_s": round(time.monotonic() - sim_start, 1), "threads": args.threads, "host": platform.node(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    prices = run_dir / "hw_aware.json"
    if prices.exists():
        record["hw_prices"] = {name: row["weight"] for name, row in json.loads(prices.read_text())["layers"].items()}
    atomic_write_json(run.record_path(args.results), record)
    return record


# --------------------------------------------------------------------------- tables


def _values(records: list[dict], arm: str, key: str, scale: float = 1.0) -> list[float]:
    return [scale * r[key] for r in records if r["arm"] == arm and r.get(key) is not None]


def stage_lines(records: list[dict]) -> list[str]:
    """Per arm and stage: share of the dense cycles and cycles saved, mean over seeds."""
    lines = ["| arm | " + " | ".join(f"{s}: dense share / saved" for s in ("layer1", "layer2", "layer3", "layer4")) + " |",
             "|---|---|---|---|---|"]
    for arm in ARMS:
        rows = [r["simulated_stages"] for r in records if r["arm"] == arm and r.get("simulated_stages")]
        if not rows:
            continue
        cells = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            share = [s[stage]["dense_cycles"] / sum(v["dense_cycles"] for v in s.values()) for s in rows if stage in s]
            saved = [1 - s[stage]["cycles"] / s[stage]["dense_cycles"] for s in rows if stage in s]
            cells.append(f"{100 * statistics.mean(share):.1f} % / {100 * statistics.mean(saved):.1f} %" if share else "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def render(results: Path) -> str:
    records = [r for r in load_records(results) if r.get("phase") == PHASE]
    if not records:
        return f"no records under {results} yet"
    out = []
    for dataset in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == dataset]
        speed = {arm: _values(rows, arm, "simulated_speedup") for arm in ARMS}
        linear = {arm: _values(rows, arm, "linear_top1", 100) for arm in ARMS}
        vs_flops = holm({arm: welch(speed[arm], speed["flops"], "greater") for arm in HW_ARMS})
        vs_static = holm({arm: welch(speed[arm], speed["static_layer4"], "greater") for arm in HW_ARMS})
        accels = sorted({Path(r["accelerator"]).name for r in rows})
        out += [f"**{dataset}** (CDG at {TARGET:g}x, simulated on {', '.join(accels)})", "",
                "| arm | runs | reduction (full) | reduction (output only) | simulated speed-up | linear top-1 (%) | "
                "kNN top-1 (%) | speed-up > flops: Welch p, Holm-adjusted | speed-up > static_layer4: Welch p, Holm-adjusted | "
                f"top-1 within ±{EQUIVALENCE_MARGIN:g} of flops: TOST p |", "|---|---|---|---|---|---|---|---|---|---|"]
        for arm in ARMS:
            arm_rows = [r for r in rows if r["arm"] == arm]
            hw = arm in HW_ARMS
            out.append(
                f"| {arm} | {len(arm_rows)} | {mean_sd(_values(rows, arm, 'reduction_full'))} | "
                f"{mean_sd(_values(rows, arm, 'reduction_output'))} | {mean_sd(speed[arm], 3)} | "
                f"{mean_sd(linear[arm])} | {mean_sd(_values(rows, arm, 'knn_top1', 100))} | "
                f"{fmt_p(vs_flops[arm]) if hw else '-'} | {fmt_p(vs_static[arm]) if hw else '-'} | "
                f"{'-' if arm == 'flops' else fmt_p(tost(linear[arm], linear['flops']))} |")
        out += ["", f"Preregistered decisions (alpha {ALPHA:g}, one-sided Welch, Holm over {', '.join(HW_ARMS)}):"]
        for arm in HW_ARMS:
            out.append(f"- {arm}: faster than flops **{_verdict(vs_flops[arm])}**, faster than static_layer4 "
                       f"**{_verdict(vs_static[arm])}**, top-1 equivalent to flops **{_verdict(tost(linear[arm], linear['flops']))}**")
        out += ["", "Where the simulated cycles go (share of the dense cycles / cycles saved, mean over seeds):", "",
                *stage_lines(rows), ""]
    return "\n".join(out)


def _verdict(p: float | None) -> str:
    return "not decided (fewer than 2 runs per arm)" if p is None else ("yes" if p < ALPHA else "no")


# --------------------------------------------------------------------------- overheads


def overheads(args: argparse.Namespace) -> dict:
    """Seconds the re-run adds to a training run, at the data set's image size: the real-mask price
    fit (``hw_real``) and the simulation of 64 images' masks of every gated layer (what simulating a
    trace costs, the ungated layers aside). Random images: the cost does not depend on content."""
    import torch

    from cdg.config import load_config
    from cdg.gating.price_masks import masks_at_density
    from cdg.run.builders import build_model
    from cdg.run.trainer import PRICE_IMAGES
    from cdg.tracing.hw_prices import layer_weights, target_density
    from cdg.tracing.inventory import conv_inventory, layer_spec
    from hwsim.api import simulate_layer, stats_masks

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(REPO / CONFIGS[args.dataset], ["gate.method=cdg", f"gate.target_reduction={TARGET:g}",
                                                     *args.gate, *args.overrides])
    backbone = build_model(cfg).backbone
    infos = conv_inventory(backbone, cfg.data.image_size)
    density = target_density(infos, 1 / TARGET)
    images = torch.randn(PRICE_IMAGES, 3, cfg.data.image_size, cfg.data.image_size)
    start = time.monotonic()
    masks = masks_at_density(backbone, images, density)
    fit = time.monotonic() - start
    start = time.monotonic()
    layer_weights(infos, str(accel_path(args.accel)), 1 / TARGET, masks)
    price = time.monotonic() - start
    start = time.monotonic()
    for info in infos:
        if info.gate is not None:
            spec = layer_spec(info.name, info)
            simulate_layer(spec, str(accel_path(args.accel)), gate_masks=stats_masks(spec, density, n_images=cfg.gate.trace_images))
    return {"dataset": args.dataset, "image_size": cfg.data.image_size, "threads": args.threads,
            "fit_masks_s": round(fit, 1), "simulate_price_masks_s": round(price, 1),
            "simulate_trace_gated_layers_s": round(time.monotonic() - start, 1), "trace_images": cfg.gate.trace_images}


# --------------------------------------------------------------------------- command line


def accel_path(accel: str) -> Path:
    """``--accel`` as a path: absolute, or relative to the repository (where the runs start)."""
    return Path(accel) if Path(accel).is_absolute() else REPO / accel


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "tables", "overheads"])
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="fashion_mnist_cluttered")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1, help="the budget in epochs (scripts/fashion_evidence.py main's)")
    parser.add_argument("--accel", default=DEFAULT_ACCEL)
    parser.add_argument("--gate", nargs="*", default=["gate.channel_block=all"], help="gate structure of every arm")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (runs go one at a time)")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / PHASE)
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value for every run (tests only)")
    args = parser.parse_intermixed_args(argv)
    if args.epochs < 1 or args.threads < 1:
        parser.error("--epochs and --threads must be at least 1")
    if not accel_path(args.accel).is_file():
        parser.error(f"--accel {args.accel}: not found")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "tables":
        print(render(args.results / PHASE))
        return 0
    if args.command == "overheads":
        print(json.dumps(overheads(args)))
        return 0
    todo = [r for r in plan(args.dataset, args.seeds, args.epochs, args.accel, args.gate)
            if not r.record_path(args.results).exists()]
    print(f"{PHASE}: {len(todo)} runs to go", file=sys.stderr, flush=True)
    for count, run in enumerate(todo[: args.max_runs] if args.max_runs else todo, 1):
        label = f"{run.dataset}/{run.run_id}"
        print(f"[{count}/{len(todo)}] {label} ...", file=sys.stderr, flush=True)
        record = execute(run, args)
        print(f"  linear {record['linear_top1']:.4f} speed-up {record['simulated_speedup']:.3f}x (simulated) "
              f"in {record['wall_s'] or 0:.0f} s + {record['simulate_s']:.0f} s", file=sys.stderr, flush=True)
        if args.commit:
            commit_record(run.record_path(args.results), f"results: hw-aware {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
