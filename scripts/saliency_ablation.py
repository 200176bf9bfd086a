"""CDG's saliency options on digits: cross-branch overlap consistency and per-channel normalisation.

    python scripts/saliency_ablation.py --seeds 0 1 --jobs 2 --out-dir runs/saliency_ablation

Every run is the embedded default config (SimCLR, ResNet-18 x1/4, 40 epochs on digits) at
``gate.target_reduction=2`` plus its options, trained by ``python -m cdg.train`` in its own process
(``--jobs`` at a time, one CPU thread each; finished runs are not run again, as in
``scripts/digits_gating_experiments.py``, whose runner this uses). Prints one Markdown table:
linear-probe top-1 (mean ± std over seeds, Welch p against the CDG row), the measured reduction
(full convention), the per-image MAC-ratio std over the evaluation split (``per_image_mac_ratio``),
and the *overlap disagreement* of the final model: for 512 training images and one fixed draw of
the two SimCLR views (seed 0), ``cdg.gating.cross_branch.overlap_consistency`` of the eval-mode
hard gates, i.e. the mean squared gate difference where the two crops overlap (0: the views agree
everywhere they share).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_gating_experiments import run_one, welch_p  # noqa: E402

CDG = ["gate.method=cdg", "gate.target_reduction=2"]
CONFIGS = {
    "CDG": CDG,
    "CDG + overlap consistency": [*CDG, "gate.cross_branch=overlap_consistency"],
    "CDG + channel norm": [*CDG, "gate.saliency_norm=channel"],
    "CDG, S=8": [*CDG, "gate.channel_block=8"],
    "CDG, S=8 + channel norm": [*CDG, "gate.channel_block=8", "gate.saliency_norm=channel"],
    "CGNet": ["gate.method=cgnet", "gate.target_reduction=2"],
}


def overlap_disagreement(run_dir: Path, images: int = 512) -> float:
    """Overlap consistency of the trained model's hard gates on one fixed two-view draw."""
    import torch

    from cdg.data.datasets import load_source
    from cdg.gating.base import collect_records
    from cdg.gating.cross_branch import overlap_consistency
    from cdg.run.builders import build_augment, load_trained
    from cdg.run.rundir import checkpoint_path

    trained = load_trained(checkpoint_path(run_dir), {"train.device": "cpu"})
    cfg, backbone = trained.cfg, trained.model.backbone.eval()
    train = load_source(cfg.data.dataset, "train", cfg.data.data_dir, cfg.data.image_size, False)
    augment = build_augment(cfg, train.mean, train.std)
    batch, _ = next(train.iter_batches([torch.arange(min(images, len(train)))]))
    torch.manual_seed(0)
    with torch.no_grad():
        view1, view2 = augment(batch)
        backbone(view1)
        first = collect_records(backbone)
        backbone(view2)
        second = collect_records(backbone)
        return float(overlap_consistency([first, second], augment.last_geometry))


def row(label: str, run_dirs: list[Path], reference: list[float]) -> str:
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs]
    linear = [s["linear_top1"] * 100 for s in summaries]
    spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    reduction = [s["reduction_full"] for s in summaries]
    per_image_std = [s["per_image_mac_ratio"]["full"]["std"] for s in summaries]
    disagreement = [overlap_disagreement(d) for d in run_dirs]
    return (f"| {label} | {statistics.mean(linear):.2f} ± {spread(linear):.2f} | {welch_p(linear, reference)} "
            f"| {statistics.mean(reduction):.2f}x | {statistics.mean(per_image_std):.4f} "
            f"| {statistics.mean(disagreement):.3f} ± {spread(disagreement):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/saliency_ablation"))
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), default=list(CONFIGS),
                        help="rows to run (default: all; the CDG row is always run, as the reference)")
    args = parser.parse_args()
    labels = ["CDG", *[label for label in args.configs if label != "CDG"]]
    jobs = [(label, CONFIGS[label], seed) for label in labels for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda j: run_one(args.out_dir, j[0], j[1], j[2], args.extra), jobs))
    by_label: dict[str, list[Path]] = {}
    for (label, _, _), run_dir in zip(jobs, done):
        by_label.setdefault(label, []).append(run_dir)
    reference = [json.loads((d / "summary.json").read_text())["linear_top1"] * 100 for d in by_label["CDG"]]
    print("| run | linear-probe top-1 (%) | p vs CDG | reduction (full) | per-image MAC-ratio std | overlap disagreement |")
    print("|---|---|---|---|---|---|")
    for label, run_dirs in by_label.items():
        print(row(label, run_dirs, reference))


if __name__ == "__main__":
    main()
