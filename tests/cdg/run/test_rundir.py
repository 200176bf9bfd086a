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


def test_append_repairs_a_torn_last_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2):
        log.write({"event": "train", "step": step})
    torn = '{"event": "train", "st'
    with open(path, "a") as handle:
        handle.write(torn)  # killed mid-append
    MetricsLog(path).write({"event": "train", "step": 3})  # the resumed process appends
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert path.read_text().endswith('"step": 3}\n')
    assert f"dropped a torn last line ({len(torn)} bytes" in capsys.readouterr().err
    with open(path, "a") as handle:
        handle.write('{"event": "train", "step": 4}')  # whole record, newline never written
    MetricsLog(path).write({"event": "train", "step": 5})
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]


def test_damage_in_the_middle_is_refused_everywhere(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(UserError, match="line 2 is not a JSON object"):
        read_metrics(path)
    with pytest.raises(UserError, match="line 2"):
        MetricsLog(path).truncate_after(1)
    path.write_text('{"step": 1}\n[1, 2]\n')  # valid JSON, but not a record, and the line is complete
    with pytest.raises(UserError, match="line 2"):
        read_metrics(path)


def test_resume_after_a_torn_metrics_line(tmp_path):
    """The issue's case: a kill tears the last line, ``cdg.eval`` appends to the same log, and
    ``--resume`` must still accept the run (it used to find the glued line in the middle)."""
    from cdg.eval import main as eval_main
    from cdg.train import main
    from tests.cdg.helpers import records, tiny

    main(tiny(tmp_path, "run", "run.stop_after_epoch=1"))
    with open(tmp_path / "run" / "metrics.jsonl", "a") as handle:
        handle.write('{"event": "train", "loss": 1.2')
    eval_main(["--run", str(tmp_path / "run")])
    assert len(records(tmp_path / "run", "eval")) == 1
    main(["--resume", str(tmp_path / "run"), "train.progress=false"])
    steps = [r["step"] for r in records(tmp_path / "run", "train")]
    assert steps == sorted(set(steps)) and steps[-1] == 20


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    """A start that fails before its first checkpoint used to leave a directory that could be
    neither started again nor resumed; now the same command works once the mistake is fixed."""
    from cdg.train import main
    from tests.cdg.helpers import tiny

    bad = tiny(tmp_path, "run", "data.dataset=cifar10", f"data.data_dir={tmp_path / 'no_such_data'}")
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2 and not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a directory the user made is kept, only the run's files go
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(tiny(tmp_path, "kept", "data.dataset=cifar10", f"data.data_dir={tmp_path / 'no_such_data'}"))
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]
    main(tiny(tmp_path, "run", "train.epochs=1", "optim.warmup_epochs=0", "eval.linear_epochs=1"))
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from cdg.run.rundir import run_dir_lock
with run_dir_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_run_in_use_is_refused_and_a_killed_holder_frees_it(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys

    from cdg.train import main
    from tests.cdg.helpers import REPO, tiny

    run = tmp_path / "run"
    main(tiny(tmp_path, "run", "run.stop_after_epoch=1"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run / "metrics.jsonl").read_bytes(), (run / "checkpoints" / "last.pt").read_bytes()
        with pytest.raises(SystemExit) as exc:
            main(["--resume", str(run), "train.progress=false"])
        assert exc.value.code == 2 and "is in use: another cdg.train" in capsys.readouterr().err
        assert ((run / "metrics.jsonl").read_bytes(), (run / "checkpoints" / "last.pt").read_bytes()) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    main(["--resume", str(run), "train.progress=false"])  # the kernel released the dead holder's lock
    assert (run / "summary.json").is_file()


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt) while a fresh run trains towards its first checkpoint removes the
    run directory, like a failure does, so the same command can simply be run again; after a
    checkpoint the directory is kept and the usual "continue with --resume" line is printed."""
    import cdg.train
    from cdg.run.trainer import Trainer
    from tests.cdg.helpers import tiny

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(SystemExit) as exc:
        cdg.train.main(tiny(tmp_path, "run"))
    assert exc.value.code == 130 and not (tmp_path / "run").exists()
    assert "before the first checkpoint" in capsys.readouterr().err
    monkeypatch.undo()
    cdg.train.main(tiny(tmp_path, "run", "run.stop_after_epoch=1"))  # the same run starts again
    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(SystemExit) as exc:
        cdg.train.main(["--resume", str(tmp_path / "run"), "train.progress=false"])
    assert exc.value.code == 130 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "continue with --resume" in capsys.readouterr().err
