"""Atomic file writes and the one YAML reader, shared by every package (numpy/torch-free on purpose).

A run directory must never hold a half-written file: a crash or a kill between
``open`` and ``close`` would otherwise leave a truncated checkpoint, config or
trace that a later ``--resume`` or a simulator would trust. Everything is
written to a temporary file in the same directory, flushed and fsync'd, then
moved into place with ``os.replace`` (atomic on POSIX and Windows).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import yaml

from hwsim.trace.errors import HwsimError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit it replaces ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[IO], None]) -> None:
    """Let ``writer(handle)`` stream into a binary temp file (e.g. ``torch.save``)."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def load_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's data; a missing, unreadable or invalid file is a one-line HwsimError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HwsimError(str(path), "file", f"unreadable ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise HwsimError(str(path), where, "not valid YAML") from None
    return data
