"""The evidence script: one JSON per finished run, skipped on re-run, tables from the JSONs alone,
and the preregistered statistics against hand computations."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import evidence_stats as stats  # noqa: E402
import fashion_evidence as evidence  # noqa: E402

TINY = ["data.image_size=8", "model.width=0.125", "method.proj_hidden_dim=32", "method.proj_dim=16",
        "train.batch_size=128", "eval.linear_epochs=2", "gate.trace_images=4", "gate.trace_act_images=2"]


def run_script(tmp_path, *args):
    argv = [sys.executable, str(REPO / "scripts" / "fashion_evidence.py"), *args,
            "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--threads", "1"]
    return subprocess.run([*argv, *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=600)


def test_pilot_writes_one_record_per_run_and_skips_them_next_time(tmp_path):
    first = run_script(tmp_path, "pilot", "--datasets", "digits", "--seeds", "0", "--epochs", "2")
    assert first.returncode == 0, first.stderr
    records = sorted((tmp_path / "results" / "pilot" / "digits").glob("*.json"))
    assert [p.name for p in records] == ["dense_s0.json", "random_init_s0.json", "raw_pixels_s0.json"]
    dense = json.loads(records[0].read_text())
    assert dense["steps"] > 0 and dense["budget_epochs"] == 2 and dense["command"].startswith("python -m cdg.train")
    assert dense["train_macs"]["train_macs_performed_per_step"] > 0
    raw = json.loads(records[2].read_text())
    assert raw["feature_dim"] == 3 * 8 * 8 and 0 < raw["linear_top1"] <= 1
    stamps = [p.stat().st_mtime_ns for p in records]
    again = run_script(tmp_path, "pilot", "--datasets", "digits", "--seeds", "0", "--epochs", "2")
    assert again.returncode == 0 and "0 runs to go" in again.stderr
    assert [p.stat().st_mtime_ns for p in records] == stamps
    tables = run_script(tmp_path, "tables")
    assert "| dense | 1 | 0 |" in tables.stdout and "not decided" in tables.stdout


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    run = evidence.Run("pilot", "digits", "dense", 0, 2)
    leftover = run.run_dir(tmp_path)
    leftover.mkdir(parents=True)
    argv = evidence.command_for(run, tmp_path, 1, [])
    assert "--resume" not in argv and not leftover.exists()
    (leftover / "checkpoints").mkdir(parents=True)
    (leftover / "checkpoints" / "last.pt").write_bytes(b"x")
    assert evidence.command_for(run, tmp_path, 1, [])[2] == "--resume"


def test_plan_puts_cheap_baselines_first_and_covers_every_arm():
    runs = evidence.plan("main", ["fashion_mnist"], [0, 1, 2, 3, 4], 1, None)
    assert len(runs) == 25 and {r.arm for r in runs} == {"dense", "cdg", "cgnet", "fbs", "dgnet"}
    assert all(r.target == 2.0 for r in runs if r.arm != "dense")
    pilot = evidence.plan("pilot", ["fashion_mnist", "fashion_mnist_cluttered"], [0, 1, 2], 1, None)
    assert [r.arm for r in pilot[:6]] == ["raw_pixels", "random_init"] * 2 + ["dense"] * 2
    assert [r.seed for r in pilot] == sorted(r.seed for r in pilot)
    curve = evidence.plan("curve", ["fashion_mnist"], [0, 1, 2], 1, "fbs")
    assert {(r.arm, r.target) for r in curve} == {(a, t) for a in ("cdg", "fbs") for t in (1.5, 2.5)}


def test_holm_is_step_down_and_monotone():
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted["a"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06)  # 2 x 0.03 carried: never below an earlier step
    assert adjusted["d"] is None


def test_tost_accepts_equal_means_and_refuses_a_gap_beyond_the_margin():
    same = [90.0, 90.2, 89.8, 90.1, 89.9]
    assert stats.tost(same, [x + 0.05 for x in same]) < 0.05
    assert stats.tost(same, [x + 3.0 for x in same]) > 0.5


def test_pilot_verdict_needs_the_gap_and_the_test(tmp_path):
    def record(arm, seed, top1):
        return {"phase": "pilot", "dataset": "d", "arm": arm, "seed": seed, "budget_epochs": 1,
                "linear_top1": top1, "knn_top1": top1, "wall_s": 60.0}
    rows = [record("raw_pixels", s, 0.80 + 0.001 * s) for s in range(3)]
    close = rows + [record("dense", s, 0.82 + 0.001 * s) for s in range(3)]
    far = rows + [record("dense", s, 0.84 + 0.002 * s) for s in range(3)]
    assert "**fails**" in "\n".join(stats.pilot_section(close))
    assert "**passes**" in "\n".join(stats.pilot_section(far))


def test_main_reuses_the_pilots_identical_dense_run_and_nothing_else(tmp_path):
    pilot = evidence.Run("pilot", "digits", "dense", 0, 1)
    path = pilot.record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"phase": "pilot", "arm": "dense", "seed": 0, "budget_epochs": 1, "linear_top1": 0.5}))
    main_dense = evidence.Run("main", "digits", "dense", 0, 1)
    record = evidence.reuse_pilot_dense(main_dense, tmp_path)
    assert record["phase"] == "main" and record["reused_from"] == "pilot/digits/dense_s0.json"
    assert json.loads(main_dense.record_path(tmp_path).read_text())["linear_top1"] == 0.5
    assert evidence.reuse_pilot_dense(evidence.Run("main", "digits", "dense", 0, 3), tmp_path) is None  # other budget
    assert evidence.reuse_pilot_dense(evidence.Run("main", "digits", "dense", 1, 1), tmp_path) is None  # no pilot run
    assert evidence.reuse_pilot_dense(evidence.Run("main", "digits", "cdg", 0, 1, 2.0), tmp_path) is None


def test_main_table_reports_each_methods_per_image_spread():
    def record(arm, seed, top1, std):
        dist = {"std": std, "quantiles": {"q05": 0.4, "q95": 0.6}} if arm != "dense" else None
        return {"phase": "main", "dataset": "d", "arm": arm, "seed": seed, "linear_top1": top1, "knn_top1": top1,
                "reduction_full": 2.0, "reduction_output": 1.9, "train_macs": {},
                "per_image_mac_ratio": {"full": dist} if dist else None}
    rows = [record(a, s, 0.6 + 0.01 * s, 0.01 * (1 + s)) for a in ("dense", "cdg", "cgnet", "fbs", "dgnet") for s in range(3)]
    table = "\n".join(stats.main_section(rows))
    assert "| cdg | 3 |" in table and "0.0200 (0.400-0.600)" in table
    assert table.splitlines()[4].split("|")[7].strip() == "-"  # dense: no gates, no spread
