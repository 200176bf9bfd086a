"""The recipe *add an accelerator model* (docs/hwsim.md), followed from a test so it cannot go stale.

A model is a config class (a subclass of ``hwsim.models.base.AccelConfig`` with ``model:
Literal[<name>]``), three functions (``dense``, ``sparse``, ``granularity``) returning
``hwsim.figures.Figures``, and one ``Model`` entry: inside hwsim a package
``hwsim/models/<name>/`` plus one line in ``hwsim.models.registry.MODELS``, from outside (here)
``registry.register``. The toy machine computes ``macs_per_cycle`` MACs per cycle and skips
exactly the gated-off work, so its speed-up must equal the trace's FLOPs reduction.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
import yaml
from pydantic import Field

from hwsim.api import simulate_trace
from hwsim.config import load_config
from hwsim.figures import DRAM_KEYS, Figures, LossColumns
from hwsim.models import registry
from hwsim.models.base import AccelConfig
from hwsim.trace import GateGrid, TraceWriter, make_layer
from hwsim.trace.errors import HwsimError


class ToyConfig(AccelConfig):
    model: Literal["toy"]
    macs_per_cycle: int = Field(gt=0)

    def peak_macs_per_cycle(self) -> float:
        return float(self.macs_per_cycle)


def _figures(macs: float, outputs_on: float, cfg: ToyConfig) -> Figures:
    cycles = macs / cfg.macs_per_cycle
    return Figures(cycles=cycles, total_cycles=cycles, macs=macs, energy_pj={"mac": macs, "total": macs},
                   traffic_bytes={k: 0.0 for k in DRAM_KEYS}, counters={"outputs_on": outputs_on},
                   skip_units=None, units_run=None, imbalance_cycles=None)


def dense(work, cfg):
    return _figures(float(work.dense_macs), float(np.prod(work.spec.out_shape)), cfg)


def sparse(work, cfg, gate_masks, act_masks=None, act_density=None):
    if gate_masks is None:
        return [dense(work, cfg)]
    spec = work.spec
    out = []
    for mask in gate_masks:
        on = float(mask.sum())
        out.append(_figures(spec.base_macs() + on * spec.cond_macs_per_output(), on, cfg))
    return out


def granularity(work, cfg):
    return "output element" if work.gated else "none (ungated)"


TOY = registry.Model(name="toy", config_class=ToyConfig, dense=dense, sparse=sparse,
                     granularity=granularity, loss_columns=LossColumns())


@pytest.fixture
def toy_yaml(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"name": "toy", "model": "toy", "clock_mhz": 100, "macs_per_cycle": 8,
                                    "word_bytes": {"ifmap": 1, "filter": 1, "ofmap": 1}}))
    registry.register(TOY)
    yield path
    registry.unregister("toy")


def _trace(path):
    """A 3x3 conv (4 -> 4 channels, 4x4 pixels), half its input channels gated, 2 images."""
    spec = make_layer("g", "conv", (4, 4, 4), 4, 3, 1, 1, gate=GateGrid(G=2, S=1, b=1))
    masks = np.zeros((2, 4, 4, 4), dtype=bool)
    masks[0, :2] = True          # image 0: half the outputs on
    masks[1] = True              # image 1: all on
    with TraceWriter(path, meta={"model": "toy"}) as tw:
        tw.add_layer(spec, gate_masks=masks)
    return path, spec


def test_a_registered_toy_model_runs_a_trace(toy_yaml, tmp_path):
    cfg = load_config(toy_yaml)
    assert isinstance(cfg, ToyConfig) and cfg.describe() == "toy" and "toy" in registry.names()
    path, spec = _trace(tmp_path / "trace")
    run = simulate_trace(path, cfg)
    assert run.model == "toy" and run.n_images == 2 and run.mask_source == "masks"
    layer = run.layers[0]
    dense_macs = 16 * 4 * 9 * 4                        # 2304
    base = 16 * 4 * 9 * 2                              # the always-computed half: 1152
    needed = base + (32 + 64) / 2 * 9 * 2              # mean over the two images: 2016
    assert spec.dense_macs == dense_macs and layer.needed_macs == needed
    assert layer.macs == needed and layer.cycles == needed / 8 and layer.dense.cycles == dense_macs / 8
    assert layer.granularity == "output element" and layer.figures.counters == {"outputs_on": 48.0}
    t = run.totals()
    assert t["speedup"] == pytest.approx(dense_macs / needed) == t["flops_reduction"]
    assert t["zero_work_removed"] == pytest.approx(1.0) and t["utilisation"] == 1.0
    assert t["time_us"] == pytest.approx(needed / 8 / 100)


def test_an_unregistered_model_is_a_one_line_error(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("name: toy\nmodel: toy\nclock_mhz: 100\nmacs_per_cycle: 8\n")
    with pytest.raises(HwsimError) as exc:
        load_config(path)
    assert exc.value.field == "model" and "unknown model 'toy'" in exc.value.message
