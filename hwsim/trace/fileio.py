"""Atomic file writes and the one YAML reader, shared by every package (numpy/torch-free on purpose).

A run directory must never hold a half-written file: a crash or a kill between
``open`` and ``close`` would otherwise leave a truncated checkpoint, config or
trace that a later ``--resume`` or a simulator would trust. Everything is
written to a temporary file ``.<name>.<random>.tmp`` in the same directory, flushed and
fsync'd, then moved into place with ``os.replace`` (atomic on POSIX and Windows).

Three more promises (``docs/reliability.md``):

* The file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its
  mode, a new one gets ``0666 & ~umask`` (0644 under the usual umask), not ``mkstemp``'s 0600,
  so collaborators on a shared file system can read configs, summaries and CSVs.
* A temp file left by a killed writer is removed the next time the same path is written. A
  writer holds an exclusive ``flock`` on its temp file for as long as it writes, and the kernel
  drops the lock when the process dies, so a temp file whose lock can be taken is stale, and
  one whose lock cannot (another live writer) is left alone.
* An ``OSError`` while writing always names the target path (a full disk raises ``ENOSPC`` from
  ``write`` without a file name), so ``cli_entry`` can turn it into one line.
* :func:`atomic_write_files` writes a set of files that belong together (``hwsim.run``'s CSV and
  JSON): all temp files are written first, and only when every one is complete are they renamed,
  so a full disk leaves the old pair, never a new file beside an old one.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

import yaml

from hwsim.trace.errors import HwsimError

try:  # POSIX; without it (Windows) stale temp files are simply not cleaned
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp$")


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temp files of ``path`` left by writers that died; returns what was removed."""
    path = Path(path)
    removed: list[Path] = []
    if fcntl is None or not path.parent.is_dir():
        return removed
    pattern = _temp_pattern(path.name)
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not pattern.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live writer holds it
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            os.close(fd)
    return removed


def _named(exc: OSError, path: Path, tmp: str | None) -> OSError:
    """``exc`` with the target path as its file name (not a nameless ENOSPC, not the temp file)."""
    if exc.filename is None or (tmp is not None and exc.filename == tmp):
        new = OSError(exc.errno, exc.strerror or str(exc), str(path))
        return new
    return exc


def _open_temp(path: Path) -> tuple[int, str]:
    """A locked temp file beside ``path`` with ``path``'s eventual mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, _target_mode(path)) if hasattr(os, "fchmod") else None
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit it replaces ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    tmp = None
    try:
        fd, tmp = _open_temp(path)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp, path)  # while the lock is held: nobody may take the temp for stale
    except OSError as exc:
        _discard(tmp)
        raise _named(exc, path, tmp) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def atomic_write_files(contents: Mapping[str | os.PathLike, bytes | str]) -> None:
    """Write several files that belong together: every temp file is complete before any is
    renamed into place, so a failure while writing leaves all the old files and no new one."""
    staged: list[tuple[Path, str, int]] = []
    try:
        for target, data in contents.items():
            target = Path(target)
            tmp = None
            try:
                fd, tmp = _open_temp(target)
                staged.append((target, tmp, fd))
                payload = data.encode("utf-8") if isinstance(data, str) else data
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                raise _named(exc, target, tmp) from exc
        for target, tmp, _ in staged:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _named(exc, target, tmp) from exc
    finally:
        for _, tmp, fd in staged:
            with contextlib.suppress(OSError):
                os.close(fd)
            _discard(tmp) if os.path.exists(tmp) else None


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block; if
    another process holds it, raise ``busy()`` at once. The kernel drops the lock when its holder
    dies, however it dies, so a killed sweep or training run never leaves a stale lock behind.
    (Without ``fcntl``, on Windows, nothing is locked.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy() from None
        yield
    finally:
        handle.close()  # closing the file releases the lock


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


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML silently keeps
    the last one, so a config that sets a field twice would quietly ignore the first)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable key: let PyYAML report it
                    continue
                if first is not key_node:
                    raise _DuplicateKey(None, None, f"duplicate key {key!r} (first on line {first.start_mark.line + 1})",
                                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's data; a missing, unreadable, non-UTF-8 or invalid file, or one with a
    duplicate key, is a one-line HwsimError naming the file (and the line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "not found") from None
    except UnicodeDecodeError:
        raise HwsimError(str(path), "file", "not a UTF-8 text file (is it binary?)") from None
    except OSError as exc:
        raise HwsimError(str(path), "file", f"unreadable ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise HwsimError(str(path), "file", "not a text file (it holds NUL bytes)")
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise HwsimError(str(path), f"line {exc.problem_mark.line + 1}", exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise HwsimError(str(path), where, "not valid YAML") from None
    except RecursionError:
        raise HwsimError(str(path), "yaml", "nested too deeply to be a config") from None
    return data
