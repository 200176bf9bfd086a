"""Evaluate a trained encoder: ``python -m cdg.eval --run runs/X`` (or ``--checkpoint FILE``).

Runs the kNN monitor and the linear probe on frozen features of the backbone and
appends the result to the run's ``metrics.jsonl``. ``--random-init`` evaluates the
same architecture with untrained weights, the baseline every SSL run must beat.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdg.run.builders import load_sources, load_trained
from cdg.run.evaluate import features_for, knn_top1, linear_top1
from cdg.run.rundir import INTERRUPTED, MetricsLog, checkpoint_path
from hwsim.trace.layout import METRICS_FILE
from hwsim.trace.errors import CliParser, cli_entry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="python -m cdg.eval", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="run directory (uses its checkpoints/last.pt)")
    where.add_argument("--checkpoint", type=Path, help="a checkpoint file (its config is stored inside)")
    parser.add_argument("--random-init", action="store_true", help="evaluate untrained weights (baseline)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--data-dir", default=None, help="override data.data_dir (data moved since training)")
    parser.add_argument("--no-log", action="store_true", help="do not append to the run's metrics.jsonl")
    return parser.parse_args(argv)


@cli_entry(interrupted=INTERRUPTED)
def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    ckpt_file = args.checkpoint or checkpoint_path(args.run)
    trained = load_trained(ckpt_file, {"train.device": args.device, "data.data_dir": args.data_dir},
                           weights=not args.random_init)
    cfg, payload, device = trained.cfg, trained.payload, trained.device
    backbone = trained.model.backbone.to(device)
    sources = load_sources(cfg)
    train, test = features_for(cfg, backbone, sources, device)
    num_classes = sources.train.num_classes
    result = {
        "event": "eval",
        "weights": "random-init" if args.random_init else "trained",
        "checkpoint": str(ckpt_file),
        "epoch": payload["epoch"],
        "step": payload["global_step"],
        "knn_top1": knn_top1(cfg, train, test, num_classes),
    }
    if cfg.eval.linear_epochs > 0:
        probe = linear_top1(cfg, train, test, num_classes)
        result.update(linear_top1=probe["top1"], linear_top5=probe["top5"])
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    run_dir = args.run if args.run else Path(ckpt_file).parent.parent
    if not args.no_log and (run_dir / METRICS_FILE).exists():
        MetricsLog(run_dir / METRICS_FILE).write(result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
