"""scripts/gpu_published_throughput.py: the committed A100-80GB config against the committed,
cited ResNet-50 table: within 15 % on every held-out batch (fails if the model drifts)."""
import re
import sys
from pathlib import Path

import pytest

from hwsim import api
from hwsim.trace.errors import HwsimError

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import gpu_published_throughput as gpt  # noqa: E402


def test_committed_table_is_cited_and_holds_batches_out():
    t = gpt.load_table()
    src = t.source
    assert src["repo"] == "NVIDIA/DeepLearningExamples" and src["path"].endswith("README.md")
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]) and "A100 80GB" in src["heading"]
    assert src["precision"] == "FP16" and "TensorRT" in src["framework"]
    assert sorted(t.images_per_s) == [1, 2, 4, 8, 16, 32, 64, 128, 256] and t.network == "resnet50_imagenet"
    held = [b for b in t.images_per_s if b not in t.calibration]
    assert set(t.calibration) < set(t.images_per_s) and len(held) >= 5


def test_model_within_15_percent_of_published_at_every_batch():
    cfg = api.load_config(gpt.ACCEL)
    text, worst_held = gpt.report(cfg, gpt.load_table())
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 9 and sum("held out" in r for r in rows) == 6
    ratios = [float(r.split("|")[4]) for r in rows]
    assert worst_held <= gpt.TOLERANCE and all(abs(x - 1) <= gpt.TOLERANCE for x in ratios)


def test_the_comparison_fails_an_uncalibrated_model():
    cfg = api.load_config(gpt.ACCEL).with_overrides(tensor_efficiency=1.0)
    _, err = gpt.errors(cfg, gpt.load_table(), [128])[128]
    assert err > gpt.TOLERANCE                     # peak tensor rate: far too fast at batch 128


def test_best_launch_recovers_a_known_launch_time():
    table = gpt.Published("x", {1: 0.0, 16: 0.0, 256: 0.0}, (1, 16, 256), {})
    t0 = {1: 300.0, 16: 900.0, 256: 12000.0}
    table.images_per_s.update({B: B / (t0[B] + 50 * 7.0) * 1e6 for B in t0})
    worst, launch = gpt._best_launch(t0, 50, table)
    assert launch == pytest.approx(7.0) and worst < 1e-9


def test_bad_table_is_a_one_line_error(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("network: resnet50_imagenet\nsource: {}\ncalibration_batches: [3]\nimages_per_s: {1: 10.0}\n")
    with pytest.raises(HwsimError) as exc:
        gpt.load_table(bad)
    assert exc.value.field == "calibration_batches" and "\n" not in str(exc.value)
