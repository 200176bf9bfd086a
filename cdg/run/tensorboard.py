"""TensorBoard event files beside ``metrics.jsonl`` (``train.tensorboard: true``), so training
curves, gate densities and MACs show up where SSL users look.

Every record the run writes to ``metrics.jsonl`` is mirrored: each finite number becomes the scalar
``<event>/<key>`` (one level of nested mappings: ``<event>/<key>/<sub>``) at the record's global
step. The writer is opened on the first record with ``purge_step`` = that step, so a resumed run
replaces, in TensorBoard as in ``metrics.jsonl``, whatever the interrupted run logged after its
last checkpoint. Needs the optional ``tensorboard`` package (``pip install -e ".[tensorboard]"``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hwsim.trace.errors import UserError

TENSORBOARD_DIR = "tensorboard"
SKIPPED = ("event", "step", "epoch")


def require_tensorboard() -> None:
    """Fail before training starts (one line) when the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError('train.tensorboard=true needs the tensorboard package: pip install -e ".[tensorboard]"') from None


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers as TensorBoard tags (booleans and text are not curves)."""
    event = record.get("event", "record")
    out: dict[str, float] = {}

    def add(tag: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)

    for key, value in record.items():
        if key in SKIPPED:
            continue
        if isinstance(value, dict):
            for sub, inner in value.items():
                add(f"{event}/{key}/{sub}", inner)
        else:
            add(f"{event}/{key}", value)
    return out


class TensorBoardMirror:
    """``write(record)``: the ``MetricsLog`` sink that copies records into event files."""

    def __init__(self, run_dir: Path):
        require_tensorboard()
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir), purge_step=step)
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
