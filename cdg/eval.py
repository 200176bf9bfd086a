"""Evaluate an encoder: ``python -m cdg.eval --run runs/X`` (or ``--checkpoint FILE``, or ``--config FILE``).

Runs the kNN monitor and the linear probe on frozen features and appends the result to the
run's ``metrics.jsonl``. The two baselines every SSL run must beat need no run at all:
``--config FILE --random-init`` evaluates the architecture with the seeded untrained weights,
``--config FILE --features raw-pixels`` the normalised pixels themselves (same probe, same
split), so an experiment can tell learned features from what the input already gives.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from cdg.config import load_config
from cdg.run.rundir import INTERRUPTED, MetricsLog, checkpoint_path
from hwsim.trace.errors import CliParser, cli_entry, exit_zero
from hwsim.trace.fileio import atomic_write_json
from hwsim.trace.layout import METRICS_FILE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="python -m cdg.eval", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="run directory (uses its checkpoints/last.pt)")
    where.add_argument("--checkpoint", type=Path, help="a checkpoint file (its config is stored inside)")
    where.add_argument("--config", type=Path,
                       help="YAML config without a run: baselines only (--random-init or --features raw-pixels)")
    parser.add_argument("--random-init", action="store_true", help="evaluate untrained weights (baseline)")
    parser.add_argument("--features", choices=["backbone", "raw-pixels"], default="backbone",
                        help="backbone features (default) or the normalised input pixels (baseline)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--data-dir", default=None, help="override data.data_dir (data moved since training)")
    parser.add_argument("--no-log", action="store_true", help="do not append to the run's metrics.jsonl")
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides; with --run/--checkpoint only the probe's own eval.* keys "
                             "(e.g. eval.linear_lr=0.01: a probe-sensitivity check on the same weights)")
    args = parser.parse_args(argv)
    if args.config is None:
        for item in args.overrides:
            key, sep, _ = item.partition("=")
            if not sep or not key.startswith("eval."):
                parser.error(f"override {item!r}: with --run/--checkpoint only eval.key=value is allowed "
                             "(the rest of a run's config is fixed by its checkpoint)")
    if args.config is not None and not args.random_init and args.features == "backbone":
        parser.error("--config has no trained weights: add --random-init or --features raw-pixels")
    if args.json is not None:  # an empty value is refused by CliParser (a path option)
        args.json = Path(args.json)
    return args


def _weights_label(args: argparse.Namespace) -> str:
    if args.features == "raw-pixels":
        return "raw-pixels"
    return "random-init" if args.random_init else "trained"


@cli_entry(interrupted=INTERRUPTED)
def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    values = {"train.device": args.device, "data.data_dir": args.data_dir}
    cfg = None
    if args.config is not None:
        overrides = [*args.overrides, *(f"{k}={v}" for k, v in values.items() if v is not None)]
        cfg = load_config(args.config, overrides)  # validated before torch is imported
    from cdg.evaluation import RawPixels
    from cdg.run.builders import build_untrained, load_sources, load_trained
    from cdg.run.evaluate import features_for, knn_top1, linear_top1

    if cfg is not None:
        trained = build_untrained(cfg)
        source = str(args.config)
    else:
        source = args.checkpoint or checkpoint_path(args.run)
        probe = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
        trained = load_trained(source, {**values, **probe}, weights=not args.random_init)
    cfg, payload, device = trained.cfg, trained.payload, trained.device
    encoder = RawPixels() if args.features == "raw-pixels" else trained.model.backbone
    encoder = encoder.to(device)
    sources = load_sources(cfg)
    train, test = features_for(cfg, encoder, sources, device)
    num_classes = sources.train.num_classes
    result = {
        "event": "eval",
        "weights": _weights_label(args),
        "checkpoint" if args.config is None else "config": str(source),
        "dataset": cfg.data.dataset,
        "seed": cfg.train.seed,
        "epoch": payload["epoch"],
        "step": payload["global_step"],
        "feature_dim": int(train.x.shape[1]),
        "knn_top1": knn_top1(cfg, train, test, num_classes),
    }
    if cfg.eval.linear_epochs > 0:
        probe = linear_top1(cfg, train, test, num_classes)
        result.update(linear_top1=probe["top1"], linear_top5=probe["top5"])
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    if args.json is not None:
        atomic_write_json(args.json, result)
    if args.config is None:
        run_dir = args.run if args.run else Path(source).parent.parent
        if not args.no_log and (run_dir / METRICS_FILE).exists():
            MetricsLog(run_dir / METRICS_FILE).write(result)
    return result


console = exit_zero(main)  # the console script (pyproject [project.scripts])


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
