"""The hardware-aware re-run: four arms, one JSON per finished run with its simulated speed-up,
skipped on re-run, and tables with the preregistered tests from the JSONs alone."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import hw_aware_rerun as rerun  # noqa: E402

TINY = ["data.image_size=8", "model.width=0.125", "method.proj_hidden_dim=32", "method.proj_dim=16",
        "train.batch_size=128", "eval.linear_epochs=2", "gate.trace_images=4", "gate.trace_act_images=2"]


def run_script(tmp_path, *args):
    argv = [sys.executable, str(REPO / "scripts" / "hw_aware_rerun.py"), *args,
            "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--threads", "1"]
    return subprocess.run([*argv, *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=900)


def test_every_arm_runs_on_digits_writes_its_record_and_is_skipped_next_time(tmp_path):
    first = run_script(tmp_path, "run", "--dataset", "digits", "--seeds", "0", "--epochs", "2")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "results" / "hw_aware" / "digits"
    records = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    assert set(records) == {f"{arm}_2x_s0" for arm in rerun.ARMS}
    for name, r in records.items():
        assert r["arm"] == name.split("_2x")[0] and r["budget_epochs"] == 2 and r["gate"] == ["gate.channel_block=all"]
        assert r["simulated_speedup"] > 1 and "not a measurement" in r["simulated_note"]
        assert 1 < r["reduction_full"] and 1 < r["reduction_output"] and 0 < r["linear_top1"] <= 1
        assert r["knn_top1"] is not None and r["command"].startswith("python -m cdg.train")
    assert "gate.hw_aware_prices=real" in records["hw_real_2x_s0"]["command"]
    assert records["hw_iid_2x_s0"]["hw_prices"] and "hw_prices" not in records["flops_2x_s0"]
    static = records["static_layer4_2x_s0"]["simulated_stages"]["layer4"]
    assert static["needed_macs"] < static["dense_macs"] and "gate.static_off=[layer4]" in records["static_layer4_2x_s0"]["command"]
    stamps = [p.stat().st_mtime_ns for p in sorted(folder.glob("*.json"))]
    again = run_script(tmp_path, "run", "--dataset", "digits", "--seeds", "0", "--epochs", "2")
    assert again.returncode == 0 and "0 runs to go" in again.stderr
    assert [p.stat().st_mtime_ns for p in sorted(folder.glob("*.json"))] == stamps
    tables = run_script(tmp_path, "tables")
    assert tables.returncode == 0 and "| static_layer4 | 1 |" in tables.stdout and "not decided" in tables.stdout


def _record(arm, seed, speedup, top1):
    stages = {s: {"dense_cycles": 100.0, "cycles": 100.0 / speedup, "dense_macs": 10, "needed_macs": 5}
              for s in ("layer1", "layer2", "layer3", "layer4")}
    return {"phase": "hw_aware", "dataset": "fashion_mnist_cluttered", "arm": arm, "seed": seed,
            "accelerator": rerun.DEFAULT_ACCEL, "simulated_speedup": speedup, "linear_top1": top1,
            "knn_top1": top1, "reduction_full": 2.0, "reduction_output": 1.8, "simulated_stages": stages}


def test_tables_apply_the_preregistered_tests(tmp_path):
    folder = tmp_path / "hw_aware" / "fashion_mnist_cluttered"
    folder.mkdir(parents=True)
    arms = {"flops": (1.10, 0.700), "hw_iid": (1.60, 0.701), "hw_real": (1.10, 0.650), "static_layer4": (1.58, 0.700)}
    for arm, (speed, top1) in arms.items():
        for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
            (folder / f"{arm}_2x_s{seed}.json").write_text(json.dumps(_record(arm, seed, speed + jitter, top1 + jitter / 10)))
    text = rerun.render(tmp_path / "hw_aware")
    main_row = next(line for line in text.splitlines() if line.startswith("| hw_iid | 3 |"))
    assert "| 1.600 ± 0.010 |" in main_row and "| 2.00 ± 0.00 | 1.80 ± 0.00 |" in main_row
    verdicts = [line for line in text.splitlines() if line.startswith("- ")]
    assert verdicts[0].startswith("- hw_iid: faster than flops **yes**, faster than static_layer4 **no**, top-1 equivalent to flops **yes**")
    assert verdicts[1].startswith("- hw_real: faster than flops **no**") and verdicts[1].endswith("**no**")
    stage_row = [line for line in text.splitlines() if line.startswith("| hw_iid |")][-1]
    assert stage_row.count("25.0 % / 37.5 %") == 4  # four equal stages, 1 - 1/1.6 of their cycles saved


def test_a_trained_run_without_its_record_is_only_simulated(tmp_path, monkeypatch):
    args = rerun.parse_args(["run", "--dataset", "digits", "--runs-dir", str(tmp_path / "runs"),
                             "--results", str(tmp_path / "results"), "--threads", "1"])
    run = rerun.plan("digits", [0], 1, args.accel, args.gate)[0]
    run_dir = run.run_dir(args.runs_dir)
    (run_dir / "trace").mkdir(parents=True)
    (run_dir / "trace" / "trace.json").write_text("{}")
    (run_dir / "summary.json").write_text(json.dumps({"linear_top1": 0.5, "knn_top1": 0.4, "reduction": 1.9,
                                                      "reduction_full": 2.0, "steps": 3}))
    monkeypatch.setattr(rerun.subprocess, "run", lambda *a, **k: pytest.fail("a trained run was trained again"))
    monkeypatch.setattr(rerun, "simulated", lambda d, accel: {"simulated_speedup": 1.5, "simulated_stages": {}})
    monkeypatch.setattr(rerun, "git_commit", lambda: "abc")
    record = rerun.execute(run, args)
    assert record["wall_s"] is None and record["simulated_speedup"] == 1.5 and record["reduction_full"] == 2.0
    assert "--resume" not in record["command"] and f"run.dir={run_dir.parent}" in record["command"]
    assert json.loads(run.record_path(args.results).read_text()) == record
