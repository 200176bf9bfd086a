"""The model registry and the typed loss fields every shipped model fills."""
from __future__ import annotations

import numpy as np
import pytest

from hwsim.config import load_config
from hwsim.figures import LOSS_FIELDS, mean_figures
from hwsim.models import registry
from hwsim.trace import GateGrid, make_layer
from hwsim.workload import lower
from tests.hwsim.helpers import ROOT


def test_every_table_entry_is_a_model_with_its_config_class():
    for name in registry.MODELS:
        model = registry.get(name)
        assert model.name == name and model.config_class.model_fields["model"].annotation.__args__ == (name,)


@pytest.mark.parametrize("path", sorted((ROOT / "accel_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_typed_loss_fields_are_the_declared_counters(path):
    cfg = load_config(path)
    model = registry.get(cfg.model)
    spec = make_layer("g", "conv", (16, 8, 8), 16, 3, 1, 1, gate=GateGrid(G=2, S=4, b=2))
    masks = np.random.default_rng(0).random((3, 16, 8, 8)) < 0.5
    work = lower(spec)
    figs = model.sparse(work, cfg, masks) + [model.dense(work, cfg)]
    columns = model.loss_columns.columns()
    for f in figs + [mean_figures(figs)]:
        for fld in LOSS_FIELDS:
            value = getattr(f, fld)
            if fld in columns:
                assert value == f.counters[columns[fld]]
            else:
                assert value is None
