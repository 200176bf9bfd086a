"""``python -m cdg.execute`` on a trained run and its one-line errors."""
from __future__ import annotations

import json

from cdg.train import main as train_main

from tests.cdg.gating.helpers import gated
from tests.cdg.helpers import run_cli


def test_execute_a_trained_run(tmp_path):
    train_main(gated(tmp_path, "ex", "gate.method=cdg", "gate.target_reduction=1.6", "gate.spatial_block=2",
                     "gate.channel_block=all"))
    run = tmp_path / "ex"
    result = run_cli("-m", "cdg.execute", "--run", str(run), "--batch", "4", "--repetitions", "1", "--warmup", "0",
                     "--threads", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    doc = json.loads((run / "execution.json").read_text())
    assert doc["kind"] == "run" and doc["batch"] == 4 and doc["threads"] == 1 and doc["gate_method"] == "cdg"
    trace = json.loads((run / "trace" / "trace.json").read_text())
    names = [layer["name"] for layer in trace["layers"]]
    assert [row["name"] for row in doc["layers"]] == names
    assert doc["max_abs_error"] <= 1e-5 * doc["reference_max_abs"]
    assert "total" in result.stdout


def test_errors_are_one_line(tmp_path):
    missing = run_cli("-m", "cdg.execute", "--run", str(tmp_path / "nope"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    bad = run_cli("-m", "cdg.execute", "--synthetic", "--structure", "blob", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "--structure" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    no_out = run_cli("-m", "cdg.execute", "--synthetic")
    assert no_out.returncode == 2 and "--out" in no_out.stderr
