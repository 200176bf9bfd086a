"""The sweep journal (append-only JSON lines, one per computed point, fsync'd) and the lock that keeps
two sweeps from writing one directory: what makes an interrupted sweep resumable.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_open, exclusive_lock

JOURNAL = "journal.jsonl"
LOCK = ".lock"


# --------------------------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines, one per computed point, flushed and fsync'd per point.

    Opening it reads every complete record; a line that does not parse (the last one, cut by a
    kill mid-write) is dropped and the file is rewritten atomically without it before appending."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        self.dropped = 0
        if path.exists():
            raw = path.read_bytes()
            good = []
            for line in raw.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "point_id" not in rec or "result" not in rec:
                        raise ValueError
                except ValueError:
                    self.dropped += 1
                    continue
                self.records[rec["point_id"]] = rec
                good.append(line)
            if self.dropped or (raw and not raw.endswith(b"\n")):
                with atomic_open(path, "wb") as handle:
                    handle.write(b"".join(g + b"\n" for g in good))
        self.handle = open(path, "ab")

    def append(self, rec: dict) -> None:
        self.handle.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.records[rec["point_id"]] = rec

    def close(self) -> None:
        self.handle.close()


@contextlib.contextmanager
def locked(out: Path):
    """Hold an exclusive lock on ``out/.lock`` for the sweep; a second sweep on ``out`` fails at once."""
    busy = lambda: HwsimError(str(out), "--out", "another sweep is writing this directory")  # noqa: E731
    with exclusive_lock(out / LOCK, busy):
        yield
