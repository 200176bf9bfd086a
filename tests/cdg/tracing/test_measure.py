"""Traces of gated and dense runs (cdg.tracing.measure, python -m cdg.trace): the real masks round-trip,
the CLI rewrites a trace, every baseline's trace simulates in hwsim, bad input is a one-line error."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cdg.config import load_config
from cdg.gating.base import full_resolution_mask, gated_layers
from cdg.run.trainer import Trainer
from cdg.train import main
from hwsim.trace import load_trace

from tests.cdg.gating.helpers import gated
from tests.cdg.helpers import TINY, records


def test_trace_round_trips_the_real_masks(tmp_path):
    main(gated(tmp_path, "tr", "gate.method=cdg", "gate.target_reduction=1.6", "gate.channel_block=2"))
    run = tmp_path / "tr"
    trace = load_trace(run / "trace")
    assert trace.n_mask_images == 8
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    cfg = load_config(None, gated(tmp_path, "tr", "gate.method=cdg", "gate.target_reduction=1.6", "gate.channel_block=2"))
    trainer = Trainer(cfg, run, resume=True)  # loads the calibrated final weights
    assert all(torch.equal(v, payload["model"][k]) for k, v in trainer.model.state_dict().items())
    backbone = trainer.model.backbone.eval()
    from cdg.run.builders import build_eval_augment

    transform = build_eval_augment(cfg, trainer.sources.test.mean, trainer.sources.test.std)
    images, _ = next(trainer.sources.test.iter_batches([torch.arange(8)]))
    with torch.no_grad():
        backbone(transform(images))
    for name, layer in gated_layers(backbone):
        expected = full_resolution_mask(layer.record).numpy()
        assert np.array_equal(trace.layer(name).gate_masks(), expected), name
    assert trace.layer("conv1").spec.gate is None and trace.layer("conv1").act_masks.shape[0] == 8
    computation = records(run, "computation")[0]
    assert computation["dense_macs"] == sum(layer.spec.dense_macs for layer in trace.layers)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reduction"] == pytest.approx(computation["reduction"])


def test_trace_cli_rewrites_the_trace(tmp_path):
    from cdg.trace import main as trace_main

    main([*TINY, f"run.dir={tmp_path}", "run.name=dense", "gate.trace_images=4"])
    report = trace_main(["--run", str(tmp_path / "dense"), "--images", "2"])
    assert report["reduction"] == pytest.approx(1.0)
    assert load_trace(tmp_path / "dense" / "trace").n_mask_images == 0  # dense: no gate masks
    assert load_trace(tmp_path / "dense" / "trace").layer("conv1").act_masks.shape[0] == 2


@pytest.mark.parametrize("gate", ["fbs", "dgnet", "cgnet"])
def test_baseline_runs_finish_with_a_trace_hwsim_can_simulate(tmp_path, gate):
    from hwsim import api

    summary = main(gated(tmp_path, gate, f"gate.method={gate}", "gate.target_reduction=1.6",
                         *(["gate.spatial_block=2"] if gate == "dgnet" else [])))
    # the target is met in the full convention (gate.accounting: full, the default)
    assert summary["accounting"] == "full"
    assert abs(summary["reduction_full"] - 1.6) / 1.6 < 0.1
    if gate == "cgnet":  # a skipped cgnet output is not zero (base path): nothing more to credit
        assert summary["reduction_full"] == summary["reduction"]
    else:
        assert summary["reduction_full"] > summary["reduction"]
    trace = load_trace(tmp_path / gate / "trace")
    gated_specs = [layer.spec for layer in trace.layers if layer.spec.gate is not None]
    assert gated_specs
    if gate in ("fbs", "dgnet"):
        assert all(spec.gate.base_channels == 0 for spec in gated_specs)
    config = api.load_config(Path(__file__).resolve().parents[3] / "accel_configs" / "systolic_32x32_os.yaml")
    sparse, dense = api.simulate_trace(trace, config), api.simulate_trace(trace, config, dense=True)
    assert sparse.totals()["cycles"] <= dense.totals()["cycles"]


def test_trace_cli_bad_image_count_is_a_one_line_error(tmp_path):
    from tests.cdg.helpers import run_cli

    main([*TINY, f"run.dir={tmp_path}", "run.name=dense", "train.epochs=1", "optim.warmup_epochs=0",
          "gate.trace_images=2"])
    result = run_cli("-m", "cdg.trace", "--run", str(tmp_path / "dense"), "--images", "-3")
    assert result.returncode == 2 and "gate.trace_images" in result.stderr and "Traceback" not in result.stderr
