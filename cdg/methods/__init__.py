"""Self-supervised methods: SimCLR, MoCo v2, BYOL, SimSiam behind one interface (``SSLMethod``).

``build_method(cfg, backbone)`` reads the method section of the config
(``name``, ``proj_hidden_dim``, ``proj_dim``, ``pred_hidden_dim``,
``temperature``, ``queue_size``, ``momentum``, ``momentum_final``; only the
fields the chosen method uses need to be set).
"""
from __future__ import annotations

from torch import nn

from hwsim.trace.errors import UserError
from cdg.methods.base import MethodOutput, SSLMethod
from cdg.methods.byol import BYOL
from cdg.methods.moco import MoCo
from cdg.methods.simclr import SimCLR
from cdg.methods.simsiam import SimSiam

METHODS = ("simclr", "moco", "byol", "simsiam")

_FIELDS = {
    "simclr": ("proj_hidden_dim", "proj_dim", "temperature"),
    "moco": ("proj_hidden_dim", "proj_dim", "temperature", "queue_size", "momentum"),
    "byol": ("proj_hidden_dim", "proj_dim", "pred_hidden_dim", "momentum", "momentum_final"),
    "simsiam": ("proj_hidden_dim", "proj_dim", "pred_hidden_dim"),
}
_CLASSES = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "simsiam": SimSiam}


def build_method(cfg, backbone: nn.Module) -> SSLMethod:
    """Wrap ``backbone`` (N x 3 x H x W -> N x ``feature_dim``) in the SSL method ``cfg.name``."""
    name = getattr(cfg, "name", None)
    if name not in _FIELDS:
        raise UserError(f"method.name={name!r} is not a known method; choose one of {', '.join(METHODS)}")
    if not isinstance(getattr(backbone, "feature_dim", None), int):
        raise TypeError("the backbone must expose an int attribute feature_dim")
    kwargs = {}
    for key in _FIELDS[name]:
        value = getattr(cfg, key, None)
        if value is None:
            raise UserError(f"method.{key} must be set for method.name={name}")
        kwargs[key] = value
    return _CLASSES[name](backbone, **kwargs)


__all__ = ["METHODS", "MethodOutput", "SSLMethod", "build_method", "BYOL", "MoCo", "SimCLR", "SimSiam"]
