"""One family of user-facing errors for every package: one line, exit code 2, no traceback.

Anything a user can get wrong (a config key or value, a data dir, a checkpoint, a trace
directory, an accelerator YAML, a layer shape given to an API) raises :class:`UserError`, or
its :class:`HwsimError` form that names the file and the field separately. Command-line entry
points wrap ``main`` with :func:`cli_entry`, so such a mistake prints ``error: <what and
where>`` on one line instead of a stack trace. It lives in the numpy-only contract package so
that ``cdg``, ``hwsim`` and ``analysis`` share it without importing each other.

The wrapper also turns every ``OSError`` that escapes ``main`` (a read-only or full output
location, a file where a directory is expected, an over-long name) into one line naming the
path and what failed, exit code 2: those are faults of the environment the user can fix, not
bugs to debug from a stack trace.
"""
from __future__ import annotations

import argparse
import errno
import functools
import sys
import traceback
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in the user's input; the message names the field or file."""

    def one_line(self) -> str:
        return " ".join(str(self).split())


class HwsimError(UserError):
    """A :class:`UserError` that names its ``source`` (file or API argument) and ``field`` (key)."""

    def __init__(self, source: str, field: str, message: str):
        self.source = str(source)
        self.field = str(field)
        self.message = str(message)
        super().__init__(f"{self.source}: {self.field}: {self.message}")


# innermost Python function of the failing call -> what it was doing
_ACTIONS = {
    "mkdir": "creating the directory", "makedirs": "creating the directory", "mkstemp": "creating a file in",
    "_mkstemp_inner": "creating a file in", "open": "opening", "_open_temp": "creating a file beside",
    "read_bytes": "reading", "read_text": "reading", "write_bytes": "writing", "write_text": "writing",
    "replace": "replacing", "rename": "renaming", "unlink": "removing", "rmtree": "removing",
    "copy": "copying", "copyfile": "copying", "stat": "reading the status of", "scandir": "listing",
    "iterdir": "listing", "glob": "listing", "touch": "creating", "symlink_to": "linking",
    "atomic_open": "writing", "atomic_write_files": "writing",
}


def os_error_line(exc: OSError) -> str:
    """One line for an ``OSError``: the path, what was being done to it and the OS's reason."""
    action = None
    chain = [exc, exc.__cause__] if isinstance(exc.__cause__, OSError) else [exc]  # fileio re-raises with the path
    for err in chain:
        for frame, _ in traceback.walk_tb(err.__traceback__):
            action = _ACTIONS.get(frame.f_code.co_name, action)
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or -1)
    reason = f"{reason} ({code})" if code else reason
    if exc.filename is None:
        return f"{action or 'file operation'} failed: {reason}"
    target = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{target}: {action + ' failed' if action else 'failed'}: {reason}"


# options that name a file or directory in some CLI: an empty value is refused in all of them
PATH_OPTIONS = frozenset({"out", "trace", "accel", "config", "run", "checkpoint", "data_dir", "sweep", "grid",
                          "runs", "png", "out_dir", "keep", "check", "resume", "json", "topology"})


class CliParser(argparse.ArgumentParser):
    """The argument parser of every CLI: a command-line mistake is one line (``error: command
    line: ...``) and exit code 2, like every other user error, instead of argparse's usage block.
    An empty value for a path option (``--out ''``, ``--trace ''``, ...) means the same in every
    CLI: ``error: command line: --out: empty path`` (``Path('')`` would silently be ``.``)."""

    def _get_values(self, action, arg_strings):
        if action.dest in PATH_OPTIONS and action.option_strings and any(
                isinstance(arg, str) and not arg.strip() for arg in arg_strings):
            raise argparse.ArgumentError(None, f"{action.option_strings[-1]}: empty path")
        return super()._get_values(action, arg_strings)

    def error(self, message: str):
        print(f"error: command line: {' '.join(message.split())}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR)


def cli_entry(func: F | None = None, *, interrupted: str = "interrupted: nothing was written"):
    """Run ``func``; turn a :class:`UserError` or an ``OSError`` into one stderr line and exit
    code 2, Ctrl-C into the one line ``interrupted`` and exit code 130. Use as ``@cli_entry`` or
    ``@cli_entry(interrupted="...")``."""

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except UserError as exc:
                print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USER_ERROR) from None
            except BrokenPipeError:  # output piped into e.g. `head`
                sys.stderr.close()
                raise SystemExit(0) from None
            except OSError as exc:
                print(f"error: {' '.join(os_error_line(exc).split())}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USER_ERROR) from None
            except KeyboardInterrupt:
                print(interrupted, file=sys.stderr, flush=True)
                raise SystemExit(EXIT_INTERRUPTED) from None

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def exit_zero(main):
    """A console-script entry for a ``main`` that returns its result (a summary, the files it
    wrote): the generated script calls ``sys.exit(entry())``, which would print that result and exit
    with status 1; the entry returns 0 once ``main`` succeeded (failures exit through ``cli_entry``)."""
    def entry() -> int:
        main()
        return 0

    entry.__name__ = entry.__qualname__ = "console"
    return entry
