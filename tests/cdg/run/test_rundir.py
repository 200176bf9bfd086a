import json

import pytest
import torch

from cdg.run.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from cdg.config import load_config
from hwsim.trace.errors import UserError
from cdg.run.rundir import MetricsLog, check_resume_config, create_run_dir, read_metrics


def test_create_refuses_to_clobber(tmp_path):
    cfg = load_config(None, [f"run.dir={tmp_path}", "run.name=r"])
    run_dir = create_run_dir(cfg)
    assert (run_dir / "config.yaml").exists()
    with pytest.raises(UserError, match="already exists"):
        create_run_dir(cfg)


def test_resume_config_check(tmp_path):
    saved = load_config(None, ["train.epochs=4"])
    check_resume_config(saved, load_config(None, ["train.epochs=4", "train.progress=false"]), tmp_path)
    with pytest.raises(UserError, match="optim.lr differs"):
        check_resume_config(saved, load_config(None, ["train.epochs=4", "optim.lr=0.01"]), tmp_path)


def test_metrics_truncation_keeps_eval_and_ignores_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.write({"event": "train", "step": step})
    log.write({"event": "eval", "step": 5})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"event": "train", "st')  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 5]
    assert log.truncate_after(2) == 2
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 5]


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": {}, "epoch": 1, "global_step": 4})
    payload = load_checkpoint(path)
    assert payload["epoch"] == 1 and payload["format"] == "cdg-checkpoint"
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind
    with pytest.raises(UserError, match="does not match the model"):
        load_model_state(torch.nn.Linear(3, 4), payload["model"], path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(UserError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a cdg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
