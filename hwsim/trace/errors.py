"""One family of user-facing errors for every package: one line, exit code 2, no traceback.

Anything a user can get wrong (a config key or value, a data dir, a checkpoint, a trace
directory, an accelerator YAML, a layer shape given to an API) raises :class:`UserError`, or
its :class:`HwsimError` form that names the file and the field separately. Command-line entry
points wrap ``main`` with :func:`cli_entry`, so such a mistake prints ``error: <what and
where>`` on one line instead of a stack trace. It lives in the numpy-only contract package so
that ``cdg``, ``hwsim`` and ``analysis`` share it without importing each other.
"""
from __future__ import annotations

import functools
import sys
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


def cli_entry(func: F | None = None, *, interrupted: str = "interrupted: nothing was written"):
    """Run ``func``; turn a :class:`UserError` into one stderr line and exit code 2, Ctrl-C
    into the one line ``interrupted`` and exit code 130. Use as ``@cli_entry`` or
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
            except KeyboardInterrupt:
                print(interrupted, file=sys.stderr, flush=True)
                raise SystemExit(EXIT_INTERRUPTED) from None

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
