"""User-facing errors: one line, exit code 2, no traceback.

Anything a user can get wrong (config keys and values, data dirs, checkpoints)
raises ``UserError``; entry points wrap ``main`` with ``exit_on_user_error`` so
such mistakes print ``error: <what and where>`` instead of a stack trace.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input; the message names the field or file."""


def exit_on_user_error(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            message = " ".join(str(exc).split())  # always a single line
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            print("interrupted: the last checkpoint is intact; continue with --resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
