"""The accelerator models hwsim knows, by the name a config's ``model`` field gives.

Adding a model is one new package ``hwsim/models/<name>/`` (``config.py``: the pydantic config
class; ``kernels.py``: its numba loops; ``model.py``: ``dense`` / ``sparse`` / ``granularity``;
``__init__.py``: ``MODEL = Model(...)``) plus one line in :data:`MODELS`. A model defined outside
hwsim (a plugin, a test) calls :func:`register` instead. Packages are imported on first use, so
loading a systolic config never imports the GPU model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from hwsim.figures import LossColumns

# model name -> package whose MODEL attribute is its Model entry
MODELS: dict[str, str] = {
    "systolic": "hwsim.models.systolic",
    "sparse_pe": "hwsim.models.sparse_pe",
    "gpu": "hwsim.models.gpu",
    "cpu": "hwsim.models.cpu",
}

_REGISTERED: dict[str, "Model"] = {}


@dataclass(frozen=True)
class Model:
    """One accelerator model: its config class and the three functions of the model contract
    (``hwsim.models``). ``loss_columns`` names the counters that carry its typed loss fields."""

    name: str
    config_class: type                          # a subclass of hwsim.models.base.AccelConfig
    dense: Callable
    sparse: Callable
    granularity: Callable
    loss_columns: LossColumns = field(default_factory=LossColumns)


def register(model: Model) -> None:
    """Make ``model`` known under ``model.name`` (replacing an earlier registration)."""
    _REGISTERED[model.name] = model


def unregister(name: str) -> None:
    """Forget a model registered with :func:`register` (the built-in table is untouched)."""
    _REGISTERED.pop(name, None)


def names() -> list[str]:
    """Every known model name: the built-in table first, then registered ones."""
    return list(MODELS) + [n for n in _REGISTERED if n not in MODELS]


def get(name: str) -> Model:
    """The model called ``name`` (KeyError if there is none; ``hwsim.config`` reports it to users)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    entry = importlib.import_module(MODELS[name]).MODEL
    _REGISTERED[name] = entry
    return entry
