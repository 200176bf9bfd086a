"""Load and validate ``accel_configs/*.yaml``: the YAML's ``model`` field picks the model's config
class from the registry (``hwsim.models.registry``); each subclasses
:class:`~hwsim.models.base.AccelConfig`. Validation errors raise
:class:`~hwsim.trace.errors.HwsimError` naming the file and the dotted field path.
"""
from __future__ import annotations

import os
from typing import Any

from hwsim.models import registry
from hwsim.models.base import AccelConfig, validate_config
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import load_yaml


def config_class(model: Any, source: str) -> type[AccelConfig]:
    if model is None:
        raise HwsimError(source, "model", "missing")
    if model not in registry.names():
        raise HwsimError(source, "model", f"unknown model {model!r} (known: {', '.join(sorted(registry.names()))})")
    return registry.get(model).config_class


def parse_config(data: Any, source: str) -> AccelConfig:
    if not isinstance(data, dict):
        raise HwsimError(source, "(top level)", "must be a mapping")
    return validate_config(config_class(data.get("model"), source), data, source)


def load_config(path: str | os.PathLike) -> AccelConfig:
    """An accelerator YAML, or a SCALE-Sim ``.cfg`` (read as a systolic config that counts as
    SCALE-Sim does: ``hwsim.interop.scalesim_cfg``)."""
    if str(path).lower().endswith(".cfg"):
        from hwsim.interop.scalesim_cfg import load_scalesim_cfg

        return load_scalesim_cfg(path)
    return parse_config(load_yaml(path), str(path))
