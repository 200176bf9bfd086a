"""Sweeps: ``analysis.dse`` over run directories whose ``summary.json``, ``config.yaml`` or trace is
damaged or belongs to another run, over an output directory that holds something else, and
``analysis.pareto`` / ``analysis.dashboard`` over sweep directories that are not (whole) sweeps.

Every bad input must be refused in one line naming the file, writing nothing new and changing
nothing already there. Damage to the sweep's own output directory (its journal, CSVs, sweep.json)
is not an input error: the sweep recomputes what it cannot trust, and the outputs must then equal
those of a fresh sweep byte for byte.
"""
from __future__ import annotations

import json
import shutil

import pytest

from analysis.dashboard import main as dashboard_main
from analysis.dse import main as dse_main
from analysis.pareto import main as pareto_main
from hwsim.trace.fileio import exclusive_lock
from hwsim.trace.errors import UserError

from tests.faults.conftest import call, refused, snapshot

SUMMARY_BAD = ["x", True, [1], {"a": 1}, float("nan"), float("inf"), float("-inf")]
SUMMARY_FIELDS = {
    "linear_top1": SUMMARY_BAD + [-0.5, 1.5], "knn_top1": SUMMARY_BAD + [2.0],
    "dense_macs": SUMMARY_BAD + [-1, "half"], "effective_macs": SUMMARY_BAD + [-1, "half", "double"],
    "reduction": SUMMARY_BAD, "target_reduction": SUMMARY_BAD,
}


def _sweep(world, runs, out, capsys, *extra):
    return call(dse_main, ["--runs", *runs, "--accel", world["accel"], "--grid", world["grid"], "--out", out,
                           "--workers", "1", "--no-progress", *extra], capsys)


def _runs_copy(world, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(world["runs"], runs)
    return runs, sorted(runs.iterdir())


SUMMARY_CASES = [(f, i) for f, values in SUMMARY_FIELDS.items() for i in range(len(values))]


@pytest.mark.parametrize("field,index", SUMMARY_CASES)
def test_summary_fields(world, tmp_path, capsys, field, index):
    runs, dirs = _runs_copy(world, tmp_path)
    path = dirs[0] / "summary.json"
    summary = json.loads(path.read_text())
    value = SUMMARY_FIELDS[field][index]
    if value in ("half", "double"):
        value = summary[field] * (0.5 if value == "half" else 2.0)
    summary[field] = value
    path.write_text(json.dumps(summary))
    out = tmp_path / "sweep"
    refused(_sweep(world, dirs, out, capsys), "summary.json", field)
    assert not out.exists()


def _write(name: str, data: bytes):
    return lambda run: (run / name).write_bytes(data)


def _edit_json(name: str, change):
    def apply(run):
        doc = json.loads((run / name).read_text())
        change(doc)
        (run / name).write_text(json.dumps(doc))
    return apply


def _retrace_meta(key, value):
    """The trace says it is of another run (meta edited, manifest recomputed)."""
    def apply(run):
        from tests.faults.test_trace_faults import recompute_manifest

        doc = json.loads((run / "trace" / "trace.json").read_text())
        doc["meta"][key] = value
        (run / "trace" / "trace.json").write_text(json.dumps(doc))
        recompute_manifest(run / "trace")
    return apply


RUN_FAULTS = {
    "summary_missing": (lambda run: (run / "summary.json").unlink(), "summary.json"),
    "summary_binary": (_write("summary.json", bytes(range(256))), "summary.json"),
    "summary_not_json": (_write("summary.json", b"{linear_top1: 0.9"), "summary.json"),
    "summary_a_list": (_write("summary.json", b"[0.9]"), "summary.json"),
    "summary_huge_int": (_write("summary.json", b'{"dense_macs": ' + b"9" * 5000 + b"}"), "summary.json"),
    "summary_deep": (_write("summary.json", b"[" * 100000 + b"]" * 100000), "summary.json"),
    "config_binary": (_write("config.yaml", bytes(range(256))), "config.yaml"),
    "config_duplicate_key": (_write("config.yaml", b"model: {arch: tiny}\nmodel: {arch: tiny}\n"), "config.yaml"),
    "config_a_list": (_write("config.yaml", b"- model\n"), "config.yaml"),
    "config_model_not_mapping": (_write("config.yaml", b"model: 5\n"), "config.yaml"),
    "config_seed_text": (_write("config.yaml", b"train: {seed: abc}\n"), "train.seed"),
    "config_seed_bool": (_write("config.yaml", b"train: {seed: true}\n"), "train.seed"),
    "config_width_text": (_write("config.yaml", b"model: {width: wide}\n"), "model.width"),
    "trace_missing": (lambda run: shutil.rmtree(run / "trace"), "trace"),
    "manifest_missing": (lambda run: (run / "trace" / "MANIFEST.json").unlink(), "MANIFEST.json"),
    "trace_json_corrupted": (_write("trace/trace.json", b"{"), "trace.json"),
    "trace_of_another_method": (_retrace_meta("ssl_method", "byol"), "ssl_method"),
    "trace_of_another_dataset": (_retrace_meta("dataset", "cifar10"), "dataset"),
    "trace_of_another_run": (_retrace_meta("run_name", "someone_else"), "run_name"),
    "trace_macs_halved": (None, "effective_macs"),
}


def _halve_trace_macs(run):
    from tests.faults.test_trace_faults import recompute_manifest

    doc = json.loads((run / "trace" / "trace.json").read_text())
    for layer in doc["layers"]:
        layer["stats"]["effective_macs"] /= 2
    (run / "trace" / "trace.json").write_text(json.dumps(doc))
    recompute_manifest(run / "trace")


RUN_FAULTS["trace_macs_halved"] = (_halve_trace_macs, "effective_macs")


@pytest.mark.parametrize("case", sorted(RUN_FAULTS))
def test_damaged_runs(world, tmp_path, capsys, case):
    runs, dirs = _runs_copy(world, tmp_path)
    apply, needle = RUN_FAULTS[case]
    apply(dirs[1])
    out = tmp_path / "sweep"
    refused(_sweep(world, dirs, out, capsys), needle)
    assert not out.exists()


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    """A finished sweep over the shared runs (its journal, points and layers)."""
    out = tmp_path_factory.mktemp("finished") / "sweep"
    code = dse_main(["--runs", *map(str, sorted(world["runs"].iterdir())), "--accel", str(world["accel"]), "--grid",
                     str(world["grid"]), "--out", str(out), "--workers", "1", "--no-progress"])
    assert code in (0, None)
    return out


RESUMABLE = {  # the output directory is the sweep's own: damage to it is recomputed, never trusted
    "other_grid": "a re-run with another grid: the outputs list exactly the new grid's points",
    "sweep_json_binary": "sweep.json is an output: rebuilt from the journal",
    "sweep_json_not_json": "likewise",
    "journal_damaged_middle": "a damaged journal line is dropped and its point computed again",
    "journal_torn_tail": "a kill mid-append: the torn line is dropped and recomputed",
    "points_csv_garbage": "points.csv is an output: rebuilt",
    "out_is_some_other_dir": "an existing directory with other files: they are left alone",
}


def _damage(case: str, out, tmp_path, world):
    grid = world["grid"]
    if case == "other_grid":
        grid = tmp_path / "grid.yaml"
        grid.write_text("systolic:\n  array.rows: [2, 16]\n")
    elif case.startswith("sweep_json"):
        (out / "sweep.json").write_bytes(bytes(range(256)) if case.endswith("binary") else b"{")
    elif case == "journal_damaged_middle":
        lines = (out / "journal.jsonl").read_text().splitlines()
        (out / "journal.jsonl").write_text("\n".join(lines[:1] + ["{torn"] + lines[1:]) + "\n")
    elif case == "journal_torn_tail":
        raw = (out / "journal.jsonl").read_bytes()
        (out / "journal.jsonl").write_bytes(raw[: len(raw) - 40])
    elif case == "points_csv_garbage":
        (out / "points.csv").write_bytes(b"\x00\xff garbage")
    elif case == "out_is_some_other_dir":
        shutil.rmtree(out)
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    return grid


@pytest.mark.parametrize("case", sorted(RESUMABLE))
def test_a_damaged_sweep_directory_is_recomputed_not_trusted(world, finished, tmp_path, capsys, case):
    out = tmp_path / "sweep"
    shutil.copytree(finished, out)
    grid = _damage(case, out, tmp_path, world)
    runs = sorted(world["runs"].iterdir())
    args = ["--accel", world["accel"], "--grid", grid, "--workers", "1", "--no-progress"]
    assert call(dse_main, ["--runs", *runs, "--out", out, *args], capsys)[0] == 0
    fresh = tmp_path / "fresh"
    assert call(dse_main, ["--runs", *runs, "--out", fresh, *args], capsys)[0] == 0
    assert (out / "points.csv").read_bytes() == (fresh / "points.csv").read_bytes()
    assert (out / "layers.csv").read_bytes() == (fresh / "layers.csv").read_bytes()
    if case == "out_is_some_other_dir":
        assert (out / "notes.txt").read_text() == "mine\n"


def test_a_sweep_locked_by_another_is_refused(world, finished, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(finished, out)
    argv = ["--runs", *sorted(world["runs"].iterdir()), "--accel", world["accel"], "--grid", world["grid"],
            "--out", out, "--workers", "1", "--no-progress"]
    with exclusive_lock(out / ".lock", lambda: UserError("held")):
        before = snapshot(out)
        refused(call(dse_main, argv, capsys), "another sweep")
        assert snapshot(out) == before


READ_FAULTS = {
    "empty_dir": lambda sweep: [p.unlink() for p in sweep.iterdir() if p.is_file()],
    "no_points": lambda sweep: (sweep / "points.csv").unlink(),
    "not_a_sweep": lambda sweep: (shutil.rmtree(sweep), sweep.mkdir(), (sweep / "notes.txt").write_text("x")),
}


@pytest.mark.parametrize("reader", ["pareto", "dashboard"])
@pytest.mark.parametrize("case", sorted(READ_FAULTS))
def test_reading_a_sweep_that_is_not_one(world, tmp_path, capsys, reader, case):
    sweep = tmp_path / "sweep"
    shutil.copytree(world["sweep"], sweep)
    READ_FAULTS[case](sweep)
    before = snapshot(tmp_path)
    if reader == "pareto":
        result = call(pareto_main, ["--sweep", sweep], capsys)
    else:
        result = call(dashboard_main, ["--sweep", sweep, "--out", tmp_path / "dash.html"], capsys)
    refused(result, str(sweep))
    assert snapshot(tmp_path) == before
