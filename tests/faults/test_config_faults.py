"""Bad configs: every cdg config field of a table given bad values (as a ``--config`` YAML and as a
``section.key=value`` override), accelerator YAML fields through ``hwsim.run``, sweep grids through
``analysis.dse``, and files that are not YAML configs at all (binary, NUL bytes, duplicate keys,
alias bombs, Python tags, huge or deeply nested documents).

cdg cases use ``--print-config``: the whole config is validated and resolved, nothing is trained.
"""
from __future__ import annotations

import copy

import pytest
import yaml

from analysis.dse import main as dse_main
from cdg.train import main as train_main
from hwsim.run import main as hwsim_main

from tests.faults.conftest import call, refused, snapshot
from tests.hwsim.helpers import config_dict

BAD_NUMBERS = ["true", "false", ".inf", "-.inf", ".nan", "abc", "[1]", "{a: 1}", "1e400"]
INT_FIELDS = {  # also refused: -1 and a 70-bit integer
    "train.epochs", "train.batch_size", "data.image_size", "eval.knn_k", "gate.groups", "gate.spatial_block",
    "gate.trace_images", "run.checkpoint_every_steps", "eval.linear_epochs", "method.proj_dim",
}
FLOAT_FIELDS = {  # also refused: -1
    "model.width", "optim.lr", "gate.target_reduction", "aug.jitter_prob", "method.temperature", "optim.weight_decay",
}
CHOICE_FIELDS = {
    "data.dataset", "method.name", "gate.method", "optim.name", "model.arch", "train.device", "gate.branches",
    "gate.accounting", "gate.hw_aware_prices",
}
BAD_CHOICES = ["nope", "5", "true", "[x]", "null", "''"]
STRING_FIELDS = {
    "run.dir": ['"a\\0b"', "''", "'  '", "[1]", "{a: 1}"],
    "run.name": ['"a\\0b"', "''", "'  '", "'a/b'", "'..'", "[1]"],
    "data.data_dir": ['"a\\0b"', "''", "'  '", "[1]"],
    "gate.hw_aware": ['"a\\0b"', "''", "[1]", "no_such_accel.yaml"],
    "gate.static_off": ["[1]", "''", "layer4", "[layer4]", "['']", "{a: 1}"],
}


def _cdg_cases():
    for field in sorted(INT_FIELDS):
        for value in BAD_NUMBERS + ["-1", str(2**70)]:
            yield field, value
    for field in sorted(FLOAT_FIELDS):
        for value in BAD_NUMBERS + ["-1"]:
            yield field, value
    for field in sorted(CHOICE_FIELDS):
        for value in BAD_CHOICES:
            yield field, value
    for field, values in STRING_FIELDS.items():
        for value in values:
            yield field, value


CDG_CASES = list(_cdg_cases())


@pytest.mark.parametrize("field,value", CDG_CASES)
def test_cdg_config_file_field(tmp_path, capsys, field, value):
    section, key = field.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {key}: {value}\n")
    refused(call(train_main, ["--config", path, "--print-config"], capsys), field if field != "gate.hw_aware" else "hw_aware")


@pytest.mark.parametrize("field,value", CDG_CASES)
def test_cdg_override_field(capsys, field, value):
    refused(call(train_main, [f"{field}={value}", "--print-config"], capsys), field if field != "gate.hw_aware" else "hw_aware")


NOT_A_CONFIG = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "nul_bytes": b"train:\n  epochs: 2\x00\n",
    "latin1": "train:\n  name: caf\xe9\n".encode("latin-1"),
    "duplicate_key": b"train:\n  epochs: 2\n  epochs: 3\n",
    "duplicate_section": b"train:\n  epochs: 2\ntrain:\n  seed: 1\n",
    "top_level_list": b"- train\n- epochs\n",
    "top_level_scalar": b"just words\n",
    "unknown_section": b"trian:\n  epochs: 2\n",
    "unknown_key": b"train:\n  epoch: 2\n",
    "section_not_mapping": b"train: 5\n",
    "bad_indent": b"train:\n  epochs: 2\n   seed: 1\n",
    "unclosed_bracket": b"train: {epochs: 2\n",
    "python_tag": b"train: !!python/object/apply:os.system ['true']\n",
    "alias_bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                  b"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "deep_nesting": b"train: " + b"[" * 1200 + b"]" * 1200 + b"\n",
    "huge_document": b"train:\n" + b"".join(b"  k%d: %d\n" % (i, i) for i in range(3000)),
    "tabs": b"train:\n\tepochs: 2\n",
    "bom_then_binary": b"\xef\xbb\xbf\xff\xfe",
}


@pytest.mark.parametrize("case", sorted(NOT_A_CONFIG))
def test_cdg_config_that_is_not_a_config(tmp_path, capsys, case):
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(NOT_A_CONFIG[case])
    refused(call(train_main, ["--config", path, "--print-config"], capsys), path.name)


@pytest.mark.parametrize("case", sorted(NOT_A_CONFIG))
def test_accel_config_that_is_not_a_config(world, tmp_path, capsys, case):
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(NOT_A_CONFIG[case])
    refused(call(hwsim_main, ["--accel", path, "--trace", world["trace"]], capsys), path.name)


@pytest.mark.parametrize("case", sorted(NOT_A_CONFIG))
def test_grid_that_is_not_a_grid(world, tmp_path, capsys, case):
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(NOT_A_CONFIG[case])
    out = tmp_path / "sweep"
    result = call(dse_main, ["--runs", *sorted(world["runs"].iterdir()), "--accel", world["accel"], "--grid", path,
                             "--out", out, "--workers", "1", "--no-progress"], capsys)
    refused(result, path.name)
    assert not out.exists() or snapshot(out) == {}


# ------------------------------------------------------------------------ accelerator YAML fields
ACCEL_BAD = [True, float("inf"), float("nan"), -1, "abc", [1], {"a": 1}, None]
ACCEL_FIELDS = {
    "array.rows": ACCEL_BAD + [0, 2**70, 1.5], "array.cols": ACCEL_BAD + [0, 2**70],
    "clock_mhz": ACCEL_BAD + [0, 1e308], "sram_kb.ifmap": ACCEL_BAD + [0, 1e308],
    "word_bytes.ifmap": ACCEL_BAD + [0, 1.5], "dram.bandwidth_gb_s": ACCEL_BAD + [0],
    "sparse.mode": ["nope", 5, True, None, [1]], "sparse.index_bits": [True, -1, "abc", 1.5, 2**70],
    "energy.mac_pj": ACCEL_BAD + [0, 1e308], "energy.dram_pj_per_bit": ACCEL_BAD + [0, 1e308],
    "energy.static_mw": [True, float("inf"), float("nan"), -1, "abc", None, 1e308],
    "energy.rf_accesses_per_mac": ACCEL_BAD, "energy.sram": [[], "abc", [{"kb": -1}], [{"kb": float("inf")}], None],
    "dataflow": ["xs", 5, True, None], "model": ["nope", 5, None], "name": ["", 5, None, [1]],
    "unknown_field": [1],
}


def _accel_cases():
    for field, values in ACCEL_FIELDS.items():
        for i, value in enumerate(values):
            yield f"{field}-{i}", field, value


ACCEL_CASES = {case: (field, value) for case, field, value in _accel_cases()}


@pytest.mark.parametrize("case", sorted(ACCEL_CASES))
def test_accel_field(world, tmp_path, capsys, case):
    field, value = ACCEL_CASES[case]
    data = copy.deepcopy(config_dict())
    node, parts = data, field.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    path = tmp_path / "accel.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = call(hwsim_main, ["--accel", path, "--trace", world["trace"], "--out", out, "--quiet"], capsys)
    line = refused(result)
    overflow = "float64" in line or "out of the range" in line
    assert str(path) in line or (overflow and "accelerator 'tiny'" in line), line
    assert not out.exists()


# ------------------------------------------------------------------------ sweep grids
GRID_BAD = {
    "array.rows": [[True], [float("inf")], [-1], ["abc"], [], 5, None, [2**70], [[4]]],
    "clock_mhz": [[float("nan")], [0], ["fast"], [True]],
    "energy.mac_pj": [[-1.0], [float("inf")]],
    "dataflow": [["xs"], [5]],
    "no_such.key": [[1]],
}


def _grid_cases():
    for key, values in GRID_BAD.items():
        for i, value in enumerate(values):
            yield f"{key}-{i}", {"systolic": {key: value}}
    yield "unknown-model", {"nope": {"array.rows": [4]}}
    yield "not-a-mapping", ["array.rows"]
    yield "model-not-a-mapping", {"systolic": [4, 8]}


GRID_CASES = dict(_grid_cases())


@pytest.mark.parametrize("case", sorted(GRID_CASES))
def test_grid_values(world, tmp_path, capsys, case):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(GRID_CASES[case]))
    out = tmp_path / "sweep"
    result = call(dse_main, ["--runs", *sorted(world["runs"].iterdir()), "--accel", world["accel"], "--grid", path,
                             "--out", out, "--workers", "1", "--no-progress"], capsys)
    line = refused(result)
    assert "grid.yaml" in line or "accel.yaml" in line, line
    assert not out.exists() or snapshot(out) == {}
