"""User-facing errors for hwsim: one line naming the file and the field, exit code 2.

Everything a user can get wrong (a trace directory, an accelerator YAML, a
layer shape given to the API) raises :class:`HwsimError`. Command-line entry
points wrap ``main`` with :func:`cli_entry` so that such a mistake prints
``error: <file>: <field>: <what>`` on one line instead of a traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


class HwsimError(Exception):
    """A mistake in user input. ``source`` is the file (or API argument), ``field`` the key."""

    def __init__(self, source: str, field: str, message: str):
        self.source = str(source)
        self.field = str(field)
        self.message = str(message)
        super().__init__(f"{self.source}: {self.field}: {self.message}")

    def one_line(self) -> str:
        return " ".join(str(self).split())


def cli_entry(func: F | None = None, *, interrupted: str = "interrupted: nothing was written"):
    """Run ``func``; turn a :class:`HwsimError` into one stderr line and exit code 2, Ctrl-C
    into the one line ``interrupted`` and exit code 130. Use as ``@cli_entry`` or
    ``@cli_entry(interrupted="...")``."""

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except HwsimError as exc:
                print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USER_ERROR) from None
            except BrokenPipeError:  # output piped into e.g. `head`
                sys.stderr.close()
                raise SystemExit(0) from None
            except KeyboardInterrupt:
                print(interrupted, file=sys.stderr, flush=True)
                raise SystemExit(130) from None

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
