"""The sweep CSVs that analysis.pareto and analysis.dashboard read are checked: a bad cell, a duplicate
row, a CSV of another sweep or version is one line naming the file, line and column, never a row
dropped in silence or a traceback."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis import dashboard, dse, pareto
from analysis.results import load_sweep
from hwsim.trace.errors import HwsimError

from tests.analysis.test_dse import ENV, ROOT, make_run
from tests.hwsim.helpers import config_dict


@pytest.fixture(scope="module")
def good_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("check")
    make_run(tmp / "runs", "cdg_s0", S=2, acc=0.9)
    make_run(tmp / "runs", "cdg_s1", S=2, seed=1, acc=0.91)
    accel = tmp / "tiny.yaml"
    accel.write_text(yaml.safe_dump(config_dict()))
    dse.run_sweep([str(tmp / "runs")], [str(accel)], tmp / "sweep", workers=1, progress=False)
    return tmp / "sweep"


@pytest.fixture
def sweep(good_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(good_sweep, out)
    return out


def rows_of(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def set_cell(path: Path, index: int, column: str, value: str) -> None:
    cols, rows = rows_of(path)
    rows[index][column] = value
    write_rows(path, cols, rows)


def edit_meta(sweep: Path, **changes) -> None:
    meta = json.loads((sweep / "sweep.json").read_text())
    meta.update(changes)
    (sweep / "sweep.json").write_text(json.dumps(meta))


def _dup_row(path: Path, index: int) -> None:
    cols, rows = rows_of(path)
    write_rows(path, cols, rows + [rows[index]])


def _drop_first_point(sweep: Path) -> None:
    cols, rows = rows_of(sweep / "points.csv")
    write_rows(sweep / "points.csv", cols, rows[1:])
    lcols, lrows = rows_of(sweep / "layers.csv")
    write_rows(sweep / "layers.csv", lcols, [r for r in lrows if r["point_id"] != rows[0]["point_id"]])


def _two_names(sweep: Path) -> None:
    meta = json.loads((sweep / "sweep.json").read_text())
    edit_meta(sweep, accels=meta["accels"] + [{**meta["accels"][0], "file": "other.yaml"}])


P, L, J = "points.csv", "layers.csv", "sweep.json"
CASES = {
    "missing_column": (lambda s: write_rows(s / P, *(lambda c, r: ([x for x in c if x != "time_us"], [
        {k: v for k, v in x.items() if k != "time_us"} for x in r]))(*rows_of(s / P))), P, ["time_us: column missing"]),
    "text_cost": (lambda s: set_cell(s / P, 1, "time_us", "fast"), P, ["line 3, column time_us", "'fast'"]),
    "nan_energy": (lambda s: set_cell(s / P, 0, "energy_pj", "nan"), P, ["line 2, column energy_pj", "nan"]),
    "inf_time": (lambda s: set_cell(s / P, 0, "time_us", "inf"), P, ["line 2, column time_us", "inf"]),
    "huge_negative": (lambda s: set_cell(s / P, 1, "energy_pj", "-1e308"), P, ["line 3, column energy_pj", ">= 0"]),
    "empty_cost": (lambda s: set_cell(s / P, 0, "total_cycles", ""), P, ["line 2, column total_cycles", "empty"]),
    "accuracy_range": (lambda s: set_cell(s / P, 0, "linear_top1", "1.5"), P, ["line 2, column linear_top1", "[0, 1]"]),
    "component": (lambda s: set_cell(s / L, 2, "energy_mac_pj", "-3"), L, ["line 4, column energy_mac_pj"]),
    "layer_density": (lambda s: set_cell(s / L, 1, "gate_density", "abc"), L, ["line 3, column gate_density"]),
    "gated_not_bool": (lambda s: set_cell(s / L, 1, "gated", "2"), L, ["line 3, column gated", "True or False"]),
    "duplicate_point": (lambda s: _dup_row(s / P, 0), P, ["line 4, column point_id", "duplicate of line 2"]),
    "duplicate_layer": (lambda s: _dup_row(s / L, 3), L, ["column point_id/layer", "duplicate of line 5"]),
    "foreign_layers": (lambda s: set_cell(s / L, 0, "point_id", "0123456789abcdef"), L,
                       ["line 2, column point_id", "not a point of"]),
    "run_outside": (lambda s: set_cell(s / P, 0, "run_path", "/elsewhere/run"), P,
                    ["line 2, column run_path", "not a run of this sweep"]),
    "accel_outside": (lambda s: set_cell(s / P, 1, "accel", "other"), P, ["line 3, column accel", "not an accelerator"]),
    "one_name_two_configs": (_two_names, J, ["accels t", "one name for 2 configs"]),
    "other_version": (lambda s: edit_meta(s, schema_version=1), J, ["schema_version", "re-run"]),
    "not_from_dse": (lambda s: edit_meta(s, runs=None), J, ["runs", "not written by"]),
    "count_mismatch": (_drop_first_point, P, ["rows", "counts.done is 2"]),
    "binary": (lambda s: (s / P).write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), P, ["file", "not a UTF-8"]),
    "ragged": (lambda s: (s / P).write_text((s / P).read_text() + "x,y\n"), P, ["line 4", "2 cells for"]),
    "header_twice": (lambda s: (s / P).write_text("run," + (s / P).read_text().replace("\n", ",x\n", 1)), P,
                     ["line 1, column run", "named twice"]),
}


def _one_line(fn, parts):
    with pytest.raises(HwsimError) as info:
        fn()
    msg = info.value.one_line()
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg
    return msg


@pytest.mark.parametrize("case", list(CASES))
def test_bad_sweep_files_are_one_line_naming_file_line_column(sweep, case):
    mutate, where, parts = CASES[case]
    mutate(sweep)
    for reader in (load_sweep, dashboard.load):
        msg = _one_line(lambda: reader(sweep), parts)
        assert msg.startswith(str(sweep / where)), msg


def test_the_good_sweep_passes(sweep):
    points, layers, _ = load_sweep(sweep)
    assert len(points) == 2 and dashboard.load(sweep).points == points
    # a component another model reports is an empty cell, not an error; an ungated layer has no density
    set_cell(sweep / L, 0, "energy_mac_pj", "")
    assert any(r["gate_density"] is None for r in load_sweep(sweep)[1])


def test_dse_refuses_two_configs_with_one_name(tmp_path):
    make_run(tmp_path / "runs", "r")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(config_dict()))
    b.write_text(yaml.safe_dump(config_dict(clock_mhz=500)))
    _one_line(lambda: dse.run_sweep([str(tmp_path / "runs")], [str(a), str(b)], tmp_path / "s", workers=1,
                                    progress=False), ["b.yaml", "name", "also the name of"])


def test_pareto_cli_is_one_line_and_exit_2(sweep):
    set_cell(sweep / P, 1, "energy_pj", "-1e308")
    r = subprocess.run([sys.executable, "-m", "analysis.pareto", "--sweep", str(sweep)], capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {sweep / P}: line 3, column energy_pj: -1e+308 is not a "
                                             "finite number >= 0"]
