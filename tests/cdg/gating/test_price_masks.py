"""gate.hw_aware_prices: real: masks of the model's own at the target density, prices fitted on
them, and the iid default unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cdg.config import load_config
from cdg.gating.base import gated_layers
from cdg.gating.controller import GateController
from cdg.gating.price_masks import masks_at_density
from cdg.run.builders import build_model
from cdg.tracing.hw_prices import layer_weights, target_density
from cdg.tracing.inventory import conv_inventory, layer_spec
from cdg.train import main
from hwsim.api import stats_masks
from hwsim.trace.errors import UserError

from tests.cdg.helpers import TINY

ROOT = Path(__file__).parents[3]
SKIP = str(ROOT / "accel_configs" / "systolic_32x32_os.yaml")  # folds with no active output are not run
COMPACT = str(ROOT / "accel_configs" / "systolic_32x32_os_compact.yaml")
SHORT = ["train.epochs=3", "gate.warmup_epochs=1", "gate.ramp_epochs=1", "gate.method=cdg", "gate.target_reduction=2",
         "gate.channel_block=all", "data.image_size=16"]


def _model(*extra):
    torch.manual_seed(0)
    cfg = load_config(None, [*TINY, *SHORT, *extra])
    model = build_model(cfg)
    return cfg, model, conv_inventory(model.backbone, cfg.data.image_size)


def test_masks_meet_the_density_per_layer_and_leave_the_model_unchanged():
    torch.set_num_threads(1)
    _, model, infos = _model("gate.static_off=[layer4.1]")
    backbone = model.backbone
    before = {n: {k: v.clone() for k, v in l.state_dict().items()} for n, l in gated_layers(backbone)}
    images = torch.randn(16, 3, 16, 16)
    density = target_density(infos, 0.5)
    masks = masks_at_density(backbone, images, density)
    dynamic = [n for n, l in gated_layers(backbone) if not l.gate.static_off]
    assert list(masks) == dynamic                        # the static layers have no gate to price
    shapes = {i.name: i.out_shape for i in infos}
    for name, m in masks.items():
        assert m.dtype == bool and m.shape == (16, *shapes[name])
        # 2x2 maps (layer4 at 16 px) give 4 decisions per image: only coarse densities are reachable
        assert abs(m.mean() - density) <= (0.005 if not name.startswith("layer4") else 1 / 64 + 1e-9)
    assert backbone.training
    for n, l in gated_layers(backbone):
        assert all(torch.equal(v, before[n][k]) for k, v in l.state_dict().items())


def _clustered(spec, density: float, n: int) -> np.ndarray:
    """Masks on only in the first ``density`` of each image's pixels (raster order): the most
    clustered masks a per-pixel gate can have at that density."""
    c, h, w = spec.out_shape
    on = np.arange(h * w) < round(density * h * w)
    return np.broadcast_to(on.reshape(1, 1, h, w), (n, c, h, w)).copy()


def test_clustered_real_masks_raise_the_price_on_hardware_that_skips_empty_folds():
    _, _, infos = _model()
    density = target_density(infos, 0.5)
    gated = [i for i in infos if i.gate is not None]
    target = gated[0]                                    # a 16x16 map: several output folds per image
    masks = {i.name: stats_masks(layer_spec(i.name, i), density, n_images=8) for i in gated}
    masks[target.name] = _clustered(layer_spec(target.name, target), density, 8)
    iid = layer_weights(infos, SKIP, 0.5)
    real = layer_weights(infos, SKIP, 0.5, masks)
    # iid scatter leaves an active output in every fold: nothing to skip; clustered masks empty whole folds
    assert iid[target.name]["saved_cycles_per_mac"] == pytest.approx(0.0, abs=1e-12)
    assert real[target.name]["saved_cycles_per_mac"] > 0
    assert real[target.name]["weight"] > 2 * iid[target.name]["weight"]
    for i in gated[1:]:                                  # the same iid masks elsewhere: same cycles saved
        assert real[i.name]["saved_cycles_per_mac"] == pytest.approx(iid[i.name]["saved_cycles_per_mac"])
        # relative to the clustered layer, every other layer is cheaper than under iid prices
        assert real[i.name]["weight"] / real[target.name]["weight"] < iid[i.name]["weight"] / iid[target.name]["weight"]
    assert real[target.name]["density"] == pytest.approx(density, abs=0.01)
    assert "density" not in iid[target.name]


def test_iid_default_is_the_plain_price_fit():
    cfg, model, infos = _model(f"gate.hw_aware={COMPACT}")
    assert cfg.gate.hw_aware_prices == "iid"
    controller = GateController(cfg, model, steps_per_epoch=1)
    assert controller.hw_layers == layer_weights(infos, COMPACT, 0.5)
    with pytest.raises(ValueError, match="price_images"):
        GateController(load_config(None, [*TINY, *SHORT, f"gate.hw_aware={COMPACT}", "gate.hw_aware_prices=real"]),
                       model, steps_per_epoch=1)


def test_bad_price_source_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*TINY, f"run.dir={tmp_path}", "run.name=bad", *SHORT, f"gate.hw_aware={COMPACT}", "gate.hw_aware_prices=clustered"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gate.hw_aware_prices" in err[0]


def test_real_price_run_trains_and_records_the_masks_densities(tmp_path):
    main([*TINY, f"run.dir={tmp_path}", "run.name=real", *SHORT, "gate.trace_images=4",
          f"gate.hw_aware={COMPACT}", "gate.hw_aware_prices=real"])
    doc = json.loads((tmp_path / "real" / "hw_aware.json").read_text())
    rows = doc["layers"]
    assert rows and all(row["weight"] > 0 and 0 < row["density"] <= 1 for row in rows.values())
    assert (tmp_path / "real" / "summary.json").exists()


def test_real_prices_are_refitted_identically_from_the_same_seed_and_images():
    torch.set_num_threads(1)
    images = torch.randn(8, 3, 16, 16)
    fits = []
    for _ in range(2):
        cfg, model, _ = _model(f"gate.hw_aware={COMPACT}", "gate.hw_aware_prices=real")
        fits.append(GateController(cfg, model, steps_per_epoch=1, price_images=images).hw_layers)
    assert fits[0] == fits[1] and all("density" in row for row in fits[0].values())
