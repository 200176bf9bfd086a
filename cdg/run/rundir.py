"""The run directory: ``config.yaml`` (resolved), ``metrics.jsonl``, ``checkpoints/``, ``trace/``.

Starting a run never overwrites an existing one; ``--resume`` continues it only if
the config that shapes the result is unchanged (runtime knobs such as the device,
worker count or progress bars may differ). ``metrics.jsonl`` is append-only; on
resume the records written after the checkpoint (which the resumed run will produce
again) are dropped, so the file reads as one uninterrupted run.

A kill in the middle of an append leaves a torn last line (no newline). The one rule, kept by
both the reader and the appender: only the *last* line of a file that does not end in a newline
can be torn; the reader skips it, and the appender repairs it before its first append (a
complete record that only lacks its newline gets one, a fragment is cut off, with a one-line
warning), so the next record never glues onto it. Any other line that is not a JSON object is
damage, not a kill, and is refused with a one-line error naming the file and line.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from cdg.config import Config, build_config, config_diff, read_yaml, resolve, to_yaml
from hwsim.trace.errors import UserError
from hwsim.trace.fileio import atomic_write_text, exclusive_lock
from hwsim.trace.layout import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE

# what a Ctrl-C prints in the cdg CLIs: checkpoints are written atomically, so the last one is whole
INTERRUPTED = "interrupted: the last checkpoint is intact; continue with --resume"

# Keys that may change between the original run and its resumption.
RUNTIME_KEYS = {
    "data.data_dir",
    "data.num_workers",
    "train.device",
    "train.threads",
    "train.progress",
    "train.compile",
    "train.log_every_steps",
    "run.dir",
    "run.stop_after_epoch",
    "run.checkpoint_every_steps",
}


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def load_run_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    return resolve(build_config(read_yaml(path), str(path)))


def create_run_dir(cfg: Config) -> Path:
    """Make a fresh run directory, refusing to clobber an existing run."""
    run_dir = cfg.run_dir
    if (run_dir / CONFIG_FILE).exists() or (run_dir / CHECKPOINT_DIR).exists():
        raise UserError(
            f"run directory {run_dir} already exists: continue it with --resume, or choose run.name=<new name>"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, to_yaml(cfg))
    return run_dir


RUN_LOCK = ".lock"


def run_dir_lock(run_dir: Path):
    """The training process's exclusive lock on ``run_dir/.lock``: a second ``cdg.train`` (a
    ``--resume`` while the first still trains) is refused at once instead of interleaving
    ``metrics.jsonl`` and checkpoints; the kernel releases it when the holder dies."""
    busy = lambda: UserError(  # noqa: E731
        f"{run_dir} is in use: another cdg.train process is training it (wait for it, or stop it first)")
    return exclusive_lock(run_dir / RUN_LOCK, busy)


def remove_failed_start(run_dir: Path, existed: bool) -> None:
    """Undo a start that failed before its first checkpoint (a missing data dir, an unreachable
    target, a bad gate setting): such a directory could be neither started again ("exists, use
    --resume") nor resumed ("no checkpoint"), and a sweep over ``runs/*`` would trip on it. Once a
    checkpoint exists the directory is kept: it is resumable. Only what a run writes before its
    first checkpoint is removed, and the directory itself only if this start created it."""
    if checkpoint_path(run_dir).exists():
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in (CONFIG_FILE, METRICS_FILE, "hw_aware.json", RUN_LOCK):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()
    with contextlib.suppress(OSError):
        (run_dir / CHECKPOINT_DIR).rmdir()  # only if empty


def check_resume_config(saved: Config, requested: Config, run_dir: Path) -> None:
    changed = [key for key in config_diff(saved, requested) if key not in RUNTIME_KEYS]
    if changed:
        raise UserError(
            f"cannot resume {run_dir}: {changed[0]} differs from its {CONFIG_FILE} "
            f"({len(changed)} key(s) changed); start a new run.name instead"
        )


class MetricsLog:
    """Append-only JSON-lines log; each record carries the global ``step`` it belongs to."""

    def __init__(self, path: Path, enabled: bool = True, mirror: Any = None):
        self.path = path
        self.enabled = enabled
        self.mirror = mirror  # e.g. cdg.run.tensorboard.TensorBoardMirror: gets every record too
        self._checked_tail = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self._checked_tail:
            dropped = repair_torn_tail(self.path)
            if dropped:
                print(f"warning: {self.path}: dropped a torn last line ({dropped} bytes, left by a killed run)",
                      file=sys.stderr)
            self._checked_tail = True
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if self.mirror is not None:
            self.mirror.write(record)

    def read(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> int:
        """Drop records newer than ``step`` (atomically); return how many were dropped."""
        if not self.enabled or not self.path.exists():
            return 0
        records = self.read()
        # ``cdg.eval`` records are not part of the training timeline: always kept.
        kept = [r for r in records if r.get("event") == "eval" or r.get("step", 0) <= step]
        raw_lines = sum(1 for line in self.path.read_bytes().split(b"\n") if line.strip())
        if len(kept) != raw_lines:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return raw_lines - len(kept)


def _record(line: bytes | str) -> dict | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def repair_torn_tail(path: Path) -> int:
    """Make ``path`` end in a newline before an append; return how many torn bytes were cut."""
    try:
        handle = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        start, pos = 0, size
        while pos > 0:  # the start of the last line: scan back in blocks
            step = min(1 << 16, pos)
            pos -= step
            handle.seek(pos)
            found = handle.read(step).rfind(b"\n")
            if found >= 0:
                start = pos + found + 1
                break
        handle.seek(start)
        fragment = handle.read()
        if _record(fragment) is not None:  # a whole record that only lacks its newline
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
            cut = 0
        else:
            handle.truncate(start)
            cut = size - start
        handle.flush()
        os.fsync(handle.fileno())
    return cut


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse ``metrics.jsonl``; a torn last line (killed mid-write) is skipped, any other bad
    line is a one-line ``UserError``."""
    if not path.exists():
        return []
    records = []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            if number == len(lines) and not raw.endswith(b"\n"):
                break  # torn by a kill mid-append
            raise UserError(f"{path}: line {number} is not a JSON object (the file is damaged)")
        records.append(record)
    return records
