"""train.tensorboard: the run's metrics as TensorBoard scalars, and a one-line error without the package."""
import sys

import pytest

from cdg import train
from cdg.run.tensorboard import require_tensorboard, scalars
from hwsim.trace.errors import UserError
from tests.cdg.helpers import records, tiny


def test_scalars_keep_finite_numbers_and_one_nested_level():
    record = {"event": "train", "step": 7, "epoch": 0.5, "loss": 2.5, "lr": 0.1, "ok": True, "name": "x",
              "bad": float("nan"), "density": {"layer1.0.conv1": 0.4, "note": "y"}}
    assert scalars(record) == {"train/loss": 2.5, "train/lr": 0.1, "train/density/layer1.0.conv1": 0.4}


def test_a_run_writes_every_training_record_as_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train.main(tiny(tmp_path, "tb", "train.tensorboard=true", "train.log_every_steps=1"))
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    logged = [(r["step"], r["loss"]) for r in records(tmp_path / "tb", "train")]
    curve = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in curve] == [s for s, _ in logged]
    assert [v for _, v in curve] == pytest.approx([v for _, v in logged], rel=1e-6)
    assert "linear_probe/top1" in events.Tags()["scalars"]


def test_missing_package_is_one_line_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(UserError, match="needs the tensorboard package"):
        require_tensorboard()
