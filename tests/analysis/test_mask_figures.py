"""The dashboard's mask-overlay figure, from the committed digits trace."""
import shutil
from pathlib import Path

import numpy as np

from analysis.mask_figures import mask_overlay_figure, run_traces
from hwsim.trace import load_trace
from hwsim.trace.mask_maps import stage_gate_maps

TRACE = Path(__file__).resolve().parents[1] / "data" / "cdg_digits_trace"


def test_one_row_per_run_image_and_the_maps_are_the_traces(tmp_path):
    run = tmp_path / "runs" / "cdg_s0"
    shutil.copytree(TRACE, run / "trace")
    points = [{"run": "cdg_s0", "gate_method": "cdg", "run_path": str(run)},
              {"run": "cdg_s0", "gate_method": "cdg", "run_path": str(run)},  # second accelerator: same run
              {"run": "dense", "gate_method": "none", "run_path": str(tmp_path / "runs" / "dense")}]
    traces = run_traces(points, tmp_path)
    assert list(traces) == ["cdg_s0 (cdg)", "dense (none)"]
    warnings = []
    fig = mask_overlay_figure(traces, images=2, warn=warnings.append)
    assert not warnings and "(1 runs without trace gate masks left out)" in fig.layout.title.text
    maps = [t for t in fig.data if t.name]
    assert len(maps) == 2 * 4 and len(fig.data) == 2 * 2 * 4  # (2 images x 4 stages), each over its proxy
    expected = stage_gate_maps(load_trace(TRACE), 2)
    layer3 = [t for t in maps if t.name == "cdg_s0 (cdg) #1 layer3"][0]
    assert np.allclose(np.array(layer3.z), expected["layer3"][1])
    assert list(layer3.x) == [0.125, 0.375, 0.625, 0.875]  # every resolution on the unit square


def test_a_broken_trace_warns_and_an_empty_sweep_says_so(tmp_path):
    broken = tmp_path / "r" / "trace"
    broken.mkdir(parents=True)
    (broken / "trace.json").write_text("{")
    warnings = []
    fig = mask_overlay_figure({"r (cdg)": broken}, warn=warnings.append)
    assert len(warnings) == 1 and "leaves run r (cdg) out" in warnings[0]
    assert "no run of this sweep has gate masks" in fig.layout.title.text
