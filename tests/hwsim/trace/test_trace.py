import json
import os

import numpy as np
import pytest

from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_write_json
from hwsim.trace import GateGrid, TraceWriter, expand_gate_blocks, load_trace, make_layer, sha256
from hwsim.trace.layout import MANIFEST, TRACE_JSON
from tests.hwsim.helpers import tiny_network, write_trace


def test_roundtrip_masks_stats_and_graph(tmp_path):
    rng = np.random.default_rng(1)
    specs = tiny_network()
    blocks = {s.name: rng.random(s.gate_grid(3)) < 0.4 for s in specs if s.gate is not None}
    acts = rng.random((2, *specs[1].in_shape)) < 0.3
    with TraceWriter(tmp_path / "t", meta={"run": "x"}) as tw:
        for s in specs:
            full = expand_gate_blocks(blocks[s.name], s) if s.name in blocks else None
            tw.add_layer(s, gate_masks=full, act_masks=acts if s.name == "g1" else None)
    tr = load_trace(tmp_path / "t")
    assert tr.meta == {"run": "x"} and tr.n_mask_images == 3
    assert [l.spec for l in tr.layers] == specs
    g1 = tr.layer("g1")
    np.testing.assert_array_equal(g1.gate_blocks, blocks["g1"])
    full = g1.gate_masks()
    assert full.shape == (3, 8, 8, 8)
    # density and effective MACs are computed from the real masks
    assert g1.stats.gate_density_mean == pytest.approx(full.mean())
    eff = g1.spec.base_macs() + full.reshape(3, -1).sum(1).mean() * g1.spec.cond_macs_per_output()
    assert g1.stats.effective_macs == pytest.approx(eff)
    assert sum(g1.stats.gate_density_hist) == 3
    np.testing.assert_array_equal(g1.act_masks, acts)
    assert g1.stats.input_act_density == pytest.approx(acts.mean())
    assert tr.layer("stem").gate_blocks is None and tr.layer("stem").stats.effective_macs == specs[0].dense_macs


def test_masks_not_constant_per_block_are_refused(tmp_path):
    stem, spec = tiny_network()[:2]
    masks = np.zeros((1, *spec.out_shape), dtype=bool)
    masks[0, 0, 0, 0] = True  # S=2, b=2 block only partly on
    tw = TraceWriter(tmp_path / "t")
    tw.add_layer(stem)
    with pytest.raises(HwsimError, match="not constant over gate blocks"):
        tw.add_layer(spec, gate_masks=masks)
    tw.abort()
    assert not (tmp_path / "t").exists() and not list(tmp_path.iterdir())


def test_writer_is_atomic_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with TraceWriter(tmp_path / "t") as tw:
            tw.add_layer(tiny_network()[0])
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_ungated_layer_with_masks_refused(tmp_path):
    spec = tiny_network()[0]
    tw = TraceWriter(tmp_path / "t")
    with pytest.raises(HwsimError, match="ungated layer has no gate masks"):
        tw.add_layer(spec, gate_masks=np.ones((1, *spec.out_shape), dtype=bool))
    tw.abort()


def _rewrite(root, mutate):
    """Edit trace.json and re-sign the manifest (a consistent but wrong trace)."""
    doc = json.loads((root / TRACE_JSON).read_text())
    mutate(doc)
    atomic_write_json(root / TRACE_JSON, doc)
    man = json.loads((root / MANIFEST).read_text())
    man["files"][TRACE_JSON] = {"bytes": (root / TRACE_JSON).stat().st_size, "sha256": sha256(root / TRACE_JSON)}
    atomic_write_json(root / MANIFEST, man)


def test_truncated_mask_file_names_file_and_field(tmp_path):
    root = write_trace(tmp_path / "t")
    mask = root / "masks" / "L001.npz"
    data = mask.read_bytes()
    mask.write_bytes(data[: len(data) // 2])
    with pytest.raises(HwsimError) as exc:
        load_trace(root)
    assert "L001.npz" in str(exc.value) and exc.value.field == "bytes"


def test_corrupted_mask_file_detected(tmp_path):
    root = write_trace(tmp_path / "t")
    mask = root / "masks" / "L002.npz"
    data = bytearray(mask.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mask.write_bytes(bytes(data))
    with pytest.raises(HwsimError) as exc:
        load_trace(root)
    assert exc.value.field == "sha256" and "L002.npz" in exc.value.source


def test_other_format_version_refused(tmp_path):
    root = write_trace(tmp_path / "t")
    _rewrite(root, lambda d: d.update(format_version=99))
    with pytest.raises(HwsimError) as exc:
        load_trace(root)
    assert exc.value.field == "format_version"


def test_layer_shape_disagreeing_with_masks_refused(tmp_path):
    root = write_trace(tmp_path / "t")

    def grow(doc):  # g1 claims 16 output channels (and a consistent in_shape downstream is not needed)
        layer = doc["layers"][1]
        layer["out_shape"][0] = 16
        layer["dense_macs"] = 16 * 8 * 8 * 9 * 8
        layer["stats"]["effective_macs"] = 0
    _rewrite(root, grow)
    with pytest.raises(HwsimError) as exc:
        load_trace(root)
    assert exc.value.field == "gate_grid" and "L001.npz" in exc.value.source


def test_bad_fields_name_the_field(tmp_path):
    root = write_trace(tmp_path / "t")
    _rewrite(root, lambda d: d["layers"][2].update(stride=[0, 2]))
    with pytest.raises(HwsimError) as exc:
        load_trace(root)
    assert "stride" in exc.value.field and exc.value.source.endswith(TRACE_JSON)


def test_missing_manifest(tmp_path):
    root = write_trace(tmp_path / "t")
    os.unlink(root / MANIFEST)
    with pytest.raises(HwsimError, match="file missing"):
        load_trace(root)


def test_size_budget_resnet18_1000_images():
    """Full-resolution (S=1, b=1) random masks: the packed size per image extrapolated to
    1,000 CIFAR ResNet-18 images stays under 100 MB (random bits do not compress)."""
    from dataclasses import replace

    from hwsim.networks import resnet18_cifar
    bits = 0
    for s in resnet18_cifar():
        if s.op == "conv" and s.name != "conv1":
            s = replace(s, gate=GateGrid(G=2, S=1, b=1).resolved(s.in_shape[0]))
            bits += int(np.prod(s.gate_grid(1)))
    assert bits / 8 * 1000 < 100e6


def test_make_layer_validates():
    with pytest.raises(HwsimError, match="kernel"):
        make_layer("x", "conv", (3, 2, 2), 4, 5, 1, 0)
    with pytest.raises(HwsimError, match="base_channels"):
        make_layer("x", "conv", (4, 8, 8), 4, 3, 1, 1, gate=GateGrid(G=2, S=1, base_channels=4))
