"""Dense layer tables from torchvision models: ResNet-18 equals hwsim's built-in table, depthwise
and attention rows have the right GEMMs, every accelerator simulates them, the CLI fails in one line."""
from pathlib import Path

import pytest
import torchvision

from cdg import trace as cdg_trace
from cdg.tracing.any_model import layer_table, load_model
from hwsim.api import simulate_trace
from hwsim.networks import get_network

REPO = Path(__file__).resolve().parents[3]


def test_resnet18_matches_the_built_in_imagenet_table():
    ours = layer_table(load_model("torchvision:resnet18"), 224)
    built_in = get_network("resnet18_imagenet")
    torchvision_name = lambda n: n.replace("downsample.0", "shortcut")  # noqa: E731  (hwsim's name)
    assert [torchvision_name(s.name) for s in ours] == [s.name for s in built_in]
    for a, b in zip(ours, built_in):
        assert (a.in_shape, a.out_shape, a.kernel, a.stride, a.groups) == (b.in_shape, b.out_shape, b.kernel, b.stride, b.groups), a.name
        assert {torchvision_name(i) for i in a.inputs} == set(b.inputs), a.name
    assert sum(s.dense_macs for s in ours) == 1_814_073_344


def test_mobilenet_depthwise_rows_are_grouped_convs():
    rows = {s.name: s for s in layer_table(load_model("torchvision:mobilenet_v2"), 32)}
    dw = rows["features.2.conv.1.0"]              # 96-channel depthwise 3x3, stride 2
    assert dw.groups == dw.in_shape[0] == dw.out_shape[0] == 96
    assert dw.dense_macs == 96 * dw.out_shape[1] * dw.out_shape[2] * 9
    assert rows["features.2.conv.1.0"].inputs == ("features.2.conv.0.0",)


def test_vit_attention_is_four_gemms_per_block_and_the_total_is_analytic():
    model = torchvision.models.vit_b_16(weights=None, image_size=32)   # 2 x 2 patches + class token
    rows = {s.name: s for s in layer_table(model, 32)}
    n, d, heads = 5, 768, 12
    att = "encoder.layers.encoder_layer_0.self_attention"
    assert rows[f"{att}.scores"].groups == heads and rows[f"{att}.scores"].dense_macs == n * n * d
    assert rows[f"{att}.values"].dense_macs == n * n * d
    assert rows[f"{att}.in_proj"].dense_macs == n * d * 3 * d
    per_block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * 4 * d
    patches = 4 * d * 3 * 16 * 16
    assert sum(s.dense_macs for s in rows.values()) == 12 * per_block + patches + d * 1000


def test_cli_writes_a_trace_every_accelerator_simulates(tmp_path, capsys):
    out = tmp_path / "mnv2"
    cdg_trace.main(["--model", "torchvision:mobilenet_v2", "--input-size", "32", "--out", str(out)])
    assert "53 layers" in capsys.readouterr().out
    for accel in sorted((REPO / "accel_configs").glob("*.yaml")):
        run = simulate_trace(out, accel)
        totals = run.totals()
        assert totals["cycles"] > 0 and totals["speedup"] == pytest.approx(1.0), accel.name


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet50", "--input-size", "32", "--out", "x"], "expected torchvision:NAME"),
    (["--model", "torchvision:no_such_net", "--input-size", "32", "--out", "x"], "has no model"),
    (["--model", "torchvision:resnet18", "--out", "x"], "needs --input-size and --out"),
    (["--model", "torchvision:resnet18", "--input-size", "2", "--out", "x"], "expected 8..4096"),
    (["--run", "runs/x", "--out", "y"], "go with --model"),
])
def test_bad_command_lines_fail_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cdg_trace.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
