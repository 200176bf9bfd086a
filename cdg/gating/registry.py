"""The gate methods by name: the one table a new gate method is registered in (one line each).

Each entry names the method's class as ``"module:attr"``, imported on first use, and the two
facts the config must check before torch is imported (``cdg.config`` reads this table, and
``python -m cdg.train --print-config`` must stay fast and torch-free):

* ``needs_target``: the method meets a MAC target and so requires ``gate.target_reduction`` or
  ``gate.target_density`` (FBS derives its keep ratio from the target when one is given);
* ``hw_aware``: the method has a ratio regulariser that ``gate.hw_aware`` can price by hardware.

Everything else about a method (its layer, settings, validation, decision block, MAC counts,
regulariser, controller and calibration behaviour) is declared by its class, a
``cdg.gating.base.GateMethod`` in ``cdg/gating/methods/<name>.py``.

Adding a gate method: write ``cdg/gating/methods/<name>.py`` with a ``GateMethod`` subclass
(``name``, ``Settings``, the structure flags, ``validate``, ``decision_block``, the MAC hooks,
``regulariser``; ``backbone_settings`` / ``adopt`` / ``begin_step`` / ``integrate`` where it
needs them) and its ``GatedConv`` subclass (``impl`` = the method; ``forward`` leaves a
``GateRecord``; ``shift_gate`` if the target is met by shifting), set ``Method.layer``, and add
its line to ``_METHODS`` below. ``tests/cdg/gating/test_recipe_toy_gate.py`` does exactly this.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from hwsim.trace.errors import UserError


@dataclass(frozen=True)
class Entry:
    """Where a gate method lives and what the config must know about it without importing it."""

    path: str
    """"package.module:Class" of its ``GateMethod``."""
    needs_target: bool = True
    hw_aware: bool = False


_METHODS: dict[str, Entry] = {
    "cdg": Entry("cdg.gating.methods.cdg:CDG", needs_target=True, hw_aware=True),
    "cgnet": Entry("cdg.gating.methods.cgnet:CGNet", needs_target=True),
    "fbs": Entry("cdg.gating.methods.fbs:FBS", needs_target=False),
    "dgnet": Entry("cdg.gating.methods.dgnet:DGNet", needs_target=True, hw_aware=True),
}


def register(name: str, entry: Entry) -> None:
    """Add (or replace) a gate method at run time, e.g. from a plug-in or a test.

    The config's ``gate.method`` choices are fixed when ``cdg.config`` is imported, so a method
    registered later is reachable through the Python API (``GateSpec``, ``build_gated_conv``),
    not through ``gate.method``; add its line to the table above for that.
    """
    _METHODS[name] = entry


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def names(**traits: bool) -> tuple[str, ...]:
    """Registered method names in table order, optionally only those whose entry has ``traits``
    (e.g. ``names(hw_aware=True)``)."""
    return tuple(name for name, entry in _METHODS.items()
                 if all(getattr(entry, key) == value for key, value in traits.items()))


def entry(name: str) -> Entry:
    """The entry of ``name``; a one-line UserError naming ``gate.method`` for an unknown one."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UserError(f"gate.method: unknown method {name!r} (valid: {', '.join(_METHODS)})") from None


def method(name: str):
    """The ``GateMethod`` class of ``name`` (its module is imported on first use)."""
    module, _, attr = entry(name).path.partition(":")
    return getattr(importlib.import_module(module), attr)
