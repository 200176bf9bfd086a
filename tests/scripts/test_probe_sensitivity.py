"""The probe-sensitivity script: one JSON per (arm, lr), skipped on re-run, the same weights at every
lr, and a table that picks each arm's best lr."""
import json
import subprocess
import sys
from pathlib import Path

from cdg import train
from tests.cdg.helpers import tiny

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "scripts" / "probe_sensitivity.py"


def run_script(tmp_path, *args):
    argv = [sys.executable, str(SCRIPT), *args, "--results", str(tmp_path / "results")]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=600)


def test_each_probe_is_one_record_and_the_table_compares_best_lrs(tmp_path):
    train.main(tiny(tmp_path, "dense", "eval.linear_epochs=0"))
    common = ["run", "--dataset", "digits", "--dense-run", str(tmp_path / "dense"), "--lrs", "0.1", "0.01",
              "--threads", "1", "eval.linear_epochs=2"]
    first = run_script(tmp_path, *common)
    assert first.returncode == 0, first.stderr
    records = sorted((tmp_path / "results" / "probe_sensitivity" / "digits").glob("*.json"))
    assert [p.name for p in records] == ["dense_lr0.01.json", "dense_lr0.1.json",
                                         "raw_pixels_lr0.01.json", "raw_pixels_lr0.1.json"]
    dense = [json.loads(p.read_text()) for p in records[:2]]
    assert dense[0]["knn_top1"] == dense[1]["knn_top1"]  # the same weights at every lr
    assert "eval.linear_lr=0.01" in dense[0]["command"] and "--run" in dense[0]["command"]
    again = run_script(tmp_path, *common)
    assert again.returncode == 0 and "0 probes to go" in again.stderr
    table = run_script(tmp_path, "tables").stdout
    best = max(100 * d["linear_top1"] for d in dense)
    assert f"| dense | " in table and f"{best:.2f} |" in table and "each at its best lr" in table


def test_a_missing_dense_run_is_one_line(tmp_path):
    done = run_script(tmp_path, "run", "--dataset", "digits", "--dense-run", str(tmp_path / "nope"))
    assert done.returncode == 2 and "--dense-run" in done.stderr.strip().splitlines()[-1]
