"""``cdg.eval --config``: the random-init and raw-pixel baselines need no run, and match what a
run's own random-init evaluation gives."""
import json

import pytest
import torch

from cdg import eval as cdg_eval
from cdg import train
from cdg.config import load_config
from cdg.run.builders import build_untrained, load_trained
from tests.cdg.helpers import TINY, tiny

PROBE = ["data.image_size=8", "model.width=0.125", "eval.linear_epochs=2", "train.threads=1"]


def test_raw_pixels_are_the_normalised_image(tmp_path):
    out = tmp_path / "raw.json"
    result = cdg_eval.main(["--config", "configs/digits_simclr.yaml", "--features", "raw-pixels",
                            "--json", str(out), *PROBE])
    assert result["weights"] == "raw-pixels"
    assert result["feature_dim"] == 3 * 8 * 8  # digits are stored as 3 identical channels
    assert json.loads(out.read_text()) == result
    assert 0.5 < result["linear_top1"] <= 1.0  # pixels of digits are linearly separable enough


def test_random_init_from_config_equals_random_init_of_a_run(tmp_path):
    train.main(tiny(tmp_path, "r", "train.seed=3"))
    from_run = load_trained(tmp_path / "r" / "checkpoints" / "last.pt", weights=False).model.state_dict()
    cfg = load_config(None, [*TINY, f"run.dir={tmp_path}", "run.name=r", "train.seed=3"])
    from_config = build_untrained(cfg).model.state_dict()
    assert from_run.keys() == from_config.keys()
    for key, value in from_run.items():
        assert torch.equal(value, from_config[key]), key


def test_seed_changes_the_random_init():
    a = build_untrained(load_config(None, PROBE + ["train.seed=0"])).model.state_dict()
    b = build_untrained(load_config(None, PROBE + ["train.seed=1"])).model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("argv, message", [
    (["--config", "configs/digits_simclr.yaml"], "add --random-init or --features raw-pixels"),
    (["--run", "runs/none", "train.seed=1"], "only eval.key=value is allowed"),
    (["--config", "configs/digits_simclr.yaml", "--random-init", "--json", ""], "--json: empty path"),
])
def test_bad_command_lines_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cdg_eval.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_runs_probe_settings_can_change_and_nothing_else(tmp_path):
    train.main(tiny(tmp_path, "r", "eval.linear_epochs=0"))
    run = str(tmp_path / "r")
    base = cdg_eval.main(["--run", run, "--no-log", "eval.linear_epochs=2", "eval.linear_lr=0.01"])
    other = cdg_eval.main(["--run", run, "--no-log", "eval.linear_epochs=2", "eval.linear_lr=1.0"])
    assert "linear_top1" in base and base["knn_top1"] == other["knn_top1"]  # same weights, same features
    assert base["linear_top1"] != other["linear_top1"] or base["linear_top5"] != other["linear_top5"]
