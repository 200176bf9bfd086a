"""Recipe "add an SSL method": a toy method added through the documented extension point trains.

The recipe is: write the method's module (an ``SSLMethod`` subclass: its heads, ``forward`` returning
a ``MethodOutput``, and ``momentum_update`` if it has a target network), then add one ``MethodSpec``
entry to ``cdg.methods.registry.METHOD_SPECS`` naming the class and declaring its config fields with
their presets, its optimiser presets and its augmentation preset. Here the module is this test file
and the entry is added for the test only; if the extension point breaks (config validation, preset
resolution, augmentation, builders, trainer, checkpoint, evaluation), this test fails.
"""
import json

import torch
import torch.nn.functional as F

from cdg.config import load_config, to_commented_yaml
from cdg.methods.base import MethodOutput, SSLMethod, logs_to_floats, mlp
from cdg.methods.losses import nt_xent_logits
from cdg.methods.registry import METHOD_SPECS, AugmentPreset, MethodSpec
from cdg.run.builders import build_augment, build_model, load_sources
from cdg.train import main

from tests.cdg.helpers import TINY, final_state, records


class ToyMethod(SSLMethod):
    """SimCLR with a one-hidden-layer projector without BN: the smallest contrastive method."""

    name = "toy"

    def __init__(self, backbone, proj_hidden_dim: int, proj_dim: int, temperature: float):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, proj_hidden_dim, proj_dim, batch_norm=False)
        self.temperature = float(temperature)

    def forward(self, view1, view2):
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        logits, targets = nt_xent_logits(z1, z2, self.temperature)
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            pos_sim = F.cosine_similarity(z1.float(), z2.float(), dim=1).mean()
        return MethodOutput(loss, logs_to_floats({"pos_sim": pos_sim}))


TOY = MethodSpec(
    target=f"{__name__}:ToyMethod",
    presets={"proj_hidden_dim": 24, "proj_dim": 12, "temperature": 0.3},
    optim={"sgd": (0.2, 1e-4), "lars": (0.4, 1e-6)},
    augment=AugmentPreset(scale=0.5, jitter=(0.2, 0.2, 0.2, 0.05), blur=(0.0, 0.0), solarize=(0.0, 0.3)),
)


def test_a_toy_method_registered_in_one_entry_trains_through_the_real_trainer(tmp_path, monkeypatch):
    monkeypatch.setitem(METHOD_SPECS, "toy", TOY)  # the one registry entry

    # the config accepts the name and fills the method's fields and optimiser settings from its presets
    cfg = load_config(None, ["method.name=toy"])
    assert (cfg.method.proj_hidden_dim, cfg.method.proj_dim, cfg.method.temperature) == (24, 12, 0.3)
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (0.2, 1e-4)
    assert "  name: toy\n" in to_commented_yaml(cfg)
    # the builders make the method and its augmentation preset
    model = build_model(cfg)
    assert isinstance(model, ToyMethod) and model.projector[-1].out_features == 12
    train = load_sources(cfg).train
    view1, view2 = build_augment(cfg, train.mean, train.std).recipes
    assert view1.crop_scale == (0.5, 1.0) and (view1.solarize_prob, view2.solarize_prob) == (0.0, 0.3)

    # and the trainer pre-trains it end to end: checkpoint, metrics, kNN and linear probe
    summary = main([*TINY, f"run.dir={tmp_path}", "run.name=toy", "method.name=toy", "train.epochs=2"])
    run_dir = tmp_path / "toy"
    assert summary["steps"] == 2 * (len(train) // 128)
    assert 0 <= summary["knn_top1"] <= 1 and 0 <= summary["linear_top1"] <= 1
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert "projector.0.weight" in final_state(run_dir)
    losses = [r["loss"] for r in records(run_dir, "train")]
    assert losses and all(torch.isfinite(torch.tensor(losses))) and "pos_sim" in records(run_dir, "train")[0]
    assert "name: toy" in (run_dir / "config.yaml").read_text()
