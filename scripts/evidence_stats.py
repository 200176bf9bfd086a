"""The tables and preregistered tests of ``scripts/fashion_evidence.py``, built from its JSON
records alone (so anyone with the committed ``docs/results/fashion/`` can rebuild them).

Tests, as preregistered in ``docs/results.md``: the pilot's gate is a mean gap of at least 3
points of linear-probe top-1 of dense SimCLR over raw pixels *and* a one-sided Welch test of
dense > raw pixels at p < 0.05; the main table compares CDG with each baseline by a two-sided
Welch test, Holm-corrected over the baselines; a "no loss vs dense" claim needs a TOST
equivalence test with a +-1 point margin at p < 0.05.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy.stats import ttest_ind

PILOT_ARMS = ("raw_pixels", "random_init", "dense")
BASELINES = ("cgnet", "fbs", "dgnet")
PILOT_GAP = 3.0  # points
EQUIVALENCE_MARGIN = 1.0  # points
ALPHA = 0.05


def load_records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(results).rglob("*.json"))]


def pct(records: list[dict], key: str) -> list[float]:
    return [100 * r[key] for r in records if r.get(key) is not None]


def mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def welch(a: list[float], b: list[float], alternative: str = "two-sided") -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    return float(ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), over the tests that exist."""
    present = sorted((p, k) for k, p in pvalues.items() if p is not None)
    adjusted: dict[str, float | None] = {k: None for k in pvalues}
    running = 0.0
    for rank, (p, key) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[key] = running
    return adjusted


def tost(a: list[float], b: list[float], margin: float = EQUIVALENCE_MARGIN) -> float | None:
    """p-value of the two one-sided Welch tests that mean(a) - mean(b) lies within +-margin."""
    if len(a) < 2 or len(b) < 2:
        return None
    lower = ttest_ind([x + margin for x in a], b, equal_var=False, alternative="greater").pvalue
    upper = ttest_ind([x - margin for x in a], b, equal_var=False, alternative="less").pvalue
    return float(max(lower, upper))


def fmt_p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _select(records: list[dict], **match) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def pilot_section(records: list[dict]) -> list[str]:
    lines = []
    for dataset in sorted({r["dataset"] for r in records}):
        rows = _select(records, dataset=dataset)
        epochs = sorted({r["budget_epochs"] for r in rows if r["arm"] == "dense"})
        lines += [f"**{dataset}** (dense budget: {', '.join(map(str, epochs)) or '-'} epoch(s))", "",
                  "| arm | runs | seeds | linear top-1 (%) | kNN top-1 (%) | wall per run (min) |", "|---|---|---|---|---|---|"]
        for arm in PILOT_ARMS:
            arm_rows = _select(rows, arm=arm)
            walls = [r["wall_s"] / 60 for r in arm_rows]
            seeds = ",".join(str(r["seed"]) for r in sorted(arm_rows, key=lambda r: r["seed"]))
            lines.append(f"| {arm} | {len(arm_rows)} | {seeds or '-'} | {mean_sd(pct(arm_rows, 'linear_top1'))} | "
                         f"{mean_sd(pct(arm_rows, 'knn_top1'))} | {mean_sd(walls, 1)} |")
        dense, raw = pct(_select(rows, arm="dense"), "linear_top1"), pct(_select(rows, arm="raw_pixels"), "linear_top1")
        if dense and raw:
            gap = statistics.mean(dense) - statistics.mean(raw)
            p = welch(dense, raw, "greater")
            passed = gap >= PILOT_GAP and p is not None and p < ALPHA
            verdict = "passes" if passed else ("not decided (fewer than 2 runs per arm)" if p is None else "fails")
            lines += ["", f"Dense minus raw pixels: {gap:+.2f} points (gate: >= {PILOT_GAP:g}), one-sided Welch "
                      f"p = {fmt_p(p)} (gate: < {ALPHA:g}): the pilot **{verdict}** on {dataset}."]
        lines.append("")
    return lines


def adaptivity(rows: list[dict]) -> str:
    """Mean over runs of the per-image MAC ratio's std and 5-95 % range (full convention): how
    much a method's cost varies with the input (``-`` for dense, which has no gates)."""
    dists = [r["per_image_mac_ratio"]["full"] for r in rows if (r.get("per_image_mac_ratio") or {}).get("full")]
    if not dists:
        return "-"
    std = sum(d["std"] for d in dists) / len(dists)
    lo = sum(d["quantiles"]["q05"] for d in dists) / len(dists)
    hi = sum(d["quantiles"]["q95"] for d in dists) / len(dists)
    return f"{std:.4f} ({lo:.3f}-{hi:.3f})"


def main_section(records: list[dict]) -> list[str]:
    lines = []
    for dataset in sorted({r["dataset"] for r in records}):
        rows = _select(records, dataset=dataset)
        cdg = pct(_select(rows, arm="cdg"), "linear_top1")
        raw_p = {b: welch(cdg, pct(_select(rows, arm=b), "linear_top1")) for b in BASELINES}
        adjusted = holm(raw_p)
        lines += [f"**{dataset}**", "", "| method | runs | reduction (full) | reduction (output only) | linear top-1 (%) | "
                  "kNN top-1 (%) | training MACs per step, ideal / performed | per-image MAC ratio, std (q05-q95) | "
                  "p vs CDG (Welch) | Holm |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for arm in ("dense", "cdg", *BASELINES):
            arm_rows = _select(rows, arm=arm)
            macs = [r["train_macs"]["train_macs_ideal_full_per_step"] / r["train_macs"]["train_macs_performed_per_step"]
                    for r in arm_rows if r.get("train_macs", {}).get("train_macs_performed_per_step")]
            red_full = [r["reduction_full"] for r in arm_rows if r.get("reduction_full") is not None]
            red_out = [r["reduction_output"] for r in arm_rows if r.get("reduction_output") is not None]
            p = raw_p.get(arm)
            lines.append(f"| {arm} | {len(arm_rows)} | {mean_sd(red_full)} | {mean_sd(red_out)} | "
                         f"{mean_sd(pct(arm_rows, 'linear_top1'))} | {mean_sd(pct(arm_rows, 'knn_top1'))} | "
                         f"{mean_sd(macs, 3)} | {adaptivity(arm_rows)} | {fmt_p(p)} | {fmt_p(adjusted.get(arm))} |")
        dense = pct(_select(rows, arm="dense"), "linear_top1")
        lines += ["", f"CDG vs dense, equivalence within ±{EQUIVALENCE_MARGIN:g} point (TOST): p = {fmt_p(tost(cdg, dense))}", ""]
    return lines


def curve_section(records: list[dict]) -> list[str]:
    lines = ["| data set | method | target | runs | reduction (full) | linear top-1 (%) |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["arm"], r["target_reduction"]) for r in records})
    for dataset, arm, target in keys:
        rows = _select(records, dataset=dataset, arm=arm, target_reduction=target)
        lines.append(f"| {dataset} | {arm} | {target:g}x | {len(rows)} | {mean_sd([r['reduction_full'] for r in rows if r.get('reduction_full') is not None])} | "
                     f"{mean_sd(pct(rows, 'linear_top1'))} |")
    return lines + [""]


def render_tables(results: Path) -> str:
    records = load_records(results)
    if not records:
        return f"no records under {results} yet"
    out = []
    for phase, section in (("pilot", pilot_section), ("main", main_section), ("curve", curve_section)):
        phase_records = _select(records, phase=phase)
        if phase_records:
            out += [f"### {phase}", "", *section(phase_records)]
    return "\n".join(out)
