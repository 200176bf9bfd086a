"""The sparse executor of each gate method, by method name (one line each): a method's module in
``cdg.sparse_exec.methods`` exports ``executor(layer)``."""
from __future__ import annotations

import importlib

from hwsim.trace.errors import UserError

EXECUTORS = {
    "cdg": "cdg.sparse_exec.methods.cdg",
    "cgnet": "cdg.sparse_exec.methods.cgnet",
    "fbs": "cdg.sparse_exec.methods.fbs",
    "dgnet": "cdg.sparse_exec.methods.dgnet",
}


def executor_for(layer):
    """The sparse executor of gated conv ``layer`` (``UserError`` for a method without one)."""
    method = layer.gate.method
    if method not in EXECUTORS:
        raise UserError(f"gate method {method!r} has no sparse executor (have: {', '.join(EXECUTORS)})")
    return importlib.import_module(EXECUTORS[method]).executor(layer)
