"""Self-supervised pre-training: ``python -m cdg.train [--config FILE.yaml] [section.key=value ...]``.

With no arguments it trains the embedded default (SimCLR, ResNet-18 x1/4 on the bundled
``digits`` data) on the CPU in a few minutes. Under ``torchrun`` it runs data-parallel
(DDP; SyncBN on CUDA). The run directory gets the resolved config, ``metrics.jsonl``
(loss, lr, throughput, kNN top-1 during training, linear-probe top-1 at the end) and
atomic checkpoints; ``--resume`` continues bit-exactly from the last one. The loop itself
is ``cdg.run.trainer.Trainer``; this module is its command line.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from cdg.config import Config, apply_overrides, build_config, load_config, resolve, to_commented_yaml
from cdg.run.rundir import (
    INTERRUPTED,
    check_resume_config,
    checkpoint_path,
    create_run_dir,
    load_run_config,
    remove_failed_start,
    run_dir_lock,
)
from hwsim.trace.errors import EXIT_INTERRUPTED, CliParser, UserError, cli_entry, exit_zero
from hwsim.trace.layout import SUMMARY_FILE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CliParser(
        prog="python -m cdg.train",
        description="Self-supervised pre-training with runtime sparsity (see README.md).",
    )
    parser.add_argument("--config", type=Path, help="YAML config (defaults: the embedded digits run)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint (RUN_DIR, or the run the config names)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser.parse_args(argv)


def resolve_run(args: argparse.Namespace) -> tuple[Config, Path, bool]:
    """Work out the config and run directory for a fresh or resumed run."""
    if isinstance(args.resume, str):
        run_dir = Path(args.resume)
        saved = load_run_config(run_dir)
        if args.config is not None:
            raise UserError("--resume RUN_DIR takes its config from RUN_DIR/config.yaml; drop --config")
        tree = apply_overrides(saved.model_dump(mode="json"), args.overrides)
        cfg = resolve(build_config(tree, "override"))
        check_resume_config(saved, cfg, run_dir)
        return cfg, run_dir, True
    cfg = load_config(args.config, args.overrides)
    if args.resume:
        run_dir = cfg.run_dir
        check_resume_config(load_run_config(run_dir), cfg, run_dir)
        return cfg, run_dir, True
    return cfg, cfg.run_dir, False


@cli_entry(interrupted=INTERRUPTED)
def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    cfg, run_dir, resume = resolve_run(args)
    if args.print_config:
        print(to_commented_yaml(cfg), end="")
        return None
    if resume and not checkpoint_path(run_dir).exists():
        raise UserError(f"nothing to resume in {run_dir}: no checkpoint yet (start it again without --resume)")
    # torch only now: a typo in the command line or the config is reported before the heavy imports
    from cdg import distributed
    from cdg.run.trainer import Trainer
    rank = int(os.environ.get("RANK", "0"))
    fresh_dir = None
    if not resume and rank == 0:
        existed = run_dir.exists()
        create_run_dir(cfg)
        fresh_dir = (run_dir, existed)
    try:
        with run_dir_lock(run_dir) if rank == 0 else contextlib.nullcontext():
            trainer = Trainer(cfg, run_dir, resume)
            if resume and trainer.epoch >= cfg.train.epochs and (run_dir / SUMMARY_FILE).exists():
                if trainer.is_main:
                    print(f"{run_dir} is already complete", file=sys.stderr)
                return None
            return trainer.fit()
    except (Exception, KeyboardInterrupt) as exc:  # Ctrl-C too: a start without a checkpoint must not block its retry
        if fresh_dir is not None and not checkpoint_path(run_dir).exists():
            remove_failed_start(*fresh_dir)
            if isinstance(exc, KeyboardInterrupt):
                print("interrupted before the first checkpoint: removed what the run wrote; start it again "
                      "(no --resume needed)", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    finally:
        distributed.cleanup()


console = exit_zero(main)  # the console script (pyproject [project.scripts])


if __name__ == "__main__":
    main()
    sys.exit(0)
