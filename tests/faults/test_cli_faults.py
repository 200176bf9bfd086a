"""Command lines of every CLI: each path option given every kind of wrong path, each other option
bad values, missing and conflicting options, unknown flags. Built from one valid command line per
CLI and a table of (option, bad value), so every combination is tried.

Every case must be refused in one line naming the option or the path, with nothing written to the
command's output location. None of these cases gets as far as training or simulating.
"""
from __future__ import annotations

import pytest

from analysis.dashboard import main as dashboard_main
from analysis.dse import main as dse_main
from analysis.pareto import main as pareto_main
from cdg.eval import main as eval_main
from cdg.trace import main as trace_main
from cdg.train import main as train_main
from hwsim.run import main as hwsim_main

from tests.faults.conftest import call, refused, snapshot

# what each kind of wrong path is made of (built per case in tmp_path), and what the error must name
PATH_KINDS = ("empty", "missing", "directory", "regular_file", "binary_file", "under_a_file", "too_long", "blank")


def make_path(kind: str, tmp_path):
    """(the wrong path, a needle its error line must contain)."""
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("a plain text file\n")
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    (tmp_path / "a_dir").mkdir(exist_ok=True)
    return {
        "empty": ("", "empty path"),
        "blank": ("  ", "empty path"),
        "missing": (tmp_path / "no_such_thing", "no_such_thing"),
        "directory": (tmp_path / "a_dir", "a_dir"),
        "regular_file": (blocker, "a_file.txt"),
        "binary_file": (binary, "binary.bin"),
        "under_a_file": (blocker / "below", "a_file.txt"),
        "too_long": (tmp_path / ("x" * 300), "x" * 40),
    }[kind]


def _cli_table(world):
    """Per CLI: its ``main`` and a valid command line as {option: value} (``True``: a flag)."""
    runs = sorted(world["runs"].iterdir())
    return {
        "cdg.train": (train_main, {"--config": None, "--print-config": True}),
        "cdg.eval": (eval_main, {"--run": runs[0]}),
        "cdg.trace": (trace_main, {"--run": runs[0]}),
        "hwsim.run": (hwsim_main, {"--accel": world["accel"], "--trace": world["trace"]}),
        "analysis.dse": (dse_main, {"--runs": runs[0], "--accel": world["accel"], "--grid": world["grid"],
                                    "--workers": "1", "--no-progress": True}),
        "analysis.pareto": (pareto_main, {"--sweep": world["sweep"]}),
        "analysis.dashboard": (dashboard_main, {"--sweep": world["sweep"]}),
    }


OUT_NAMES = {"analysis.dse": "sweep_out", "analysis.dashboard": "dash.html", "hwsim.run": "hw_out"}
CLIS = ("cdg.train", "cdg.eval", "cdg.trace", "hwsim.run", "analysis.dse", "analysis.pareto", "analysis.dashboard")

FILE_KINDS = ("empty", "blank", "missing", "directory", "binary_file", "under_a_file", "too_long")
OUT_KINDS = ("empty", "blank", "regular_file", "binary_file", "under_a_file", "too_long")
PATH_CASES = [(cli, opt, k) for cli, opt, kinds in (  # (cli, path option, kind of wrong path)
    ("cdg.train", "--config", FILE_KINDS), ("cdg.train", "--resume", PATH_KINDS),
    ("cdg.eval", "--run", PATH_KINDS), ("cdg.eval", "--checkpoint", PATH_KINDS), ("cdg.trace", "--run", PATH_KINDS),
    ("hwsim.run", "--accel", FILE_KINDS), ("hwsim.run", "--trace", PATH_KINDS), ("hwsim.run", "--out", OUT_KINDS),
    ("analysis.dse", "--runs", ("empty", "blank", "missing", "regular_file", "binary_file", "directory")),
    ("analysis.dse", "--accel", FILE_KINDS), ("analysis.dse", "--grid", FILE_KINDS), ("analysis.dse", "--out", OUT_KINDS),
    ("analysis.pareto", "--sweep", PATH_KINDS), ("analysis.dashboard", "--sweep", PATH_KINDS),
    ("analysis.dashboard", "--out", ("empty", "blank", "directory", "under_a_file", "too_long")),
) for k in kinds]


def _argv(options: dict) -> list:
    argv = []
    for opt, value in options.items():
        if value is True:
            argv.append(opt)
        elif value is not None:
            argv += [opt, value]
    return argv


def _run_case(world, tmp_path, capsys, cli, changes: dict, needle: str) -> None:
    main, base = _cli_table(world)[cli]
    options = dict(base)
    out_before = None
    if cli in OUT_NAMES and "--out" not in changes:
        options["--out"] = tmp_path / OUT_NAMES[cli]
    if cli == "cdg.eval" and "--checkpoint" in changes:
        options.pop("--run")
    options.update(changes)
    out = options.get("--out")
    if out not in (None, "") and str(out).strip():
        out_before = snapshot(tmp_path)
    line = refused(call(main, _argv(options), capsys))
    assert needle in line, (needle, line)
    if out_before is not None:
        assert snapshot(tmp_path) == out_before, "a refused command wrote something"


@pytest.mark.parametrize("cli,option,kind", PATH_CASES)
def test_wrong_paths(world, tmp_path, capsys, cli, option, kind):
    path, needle = make_path(kind, tmp_path)
    _run_case(world, tmp_path, capsys, cli, {option: path}, needle)


OTHER_CASES = [(cli, opt, value) for cli, opts in (
    ("cdg.train", {"--bogus": ["1"]}),
    ("cdg.eval", {"--device": ["tpu", ""], "--bogus": ["1"], "--data-dir": ["", "  "]}),
    ("cdg.trace", {"--images": ["x", "1.5", ""], "--act-images": ["x", ""], "--device": ["tpu"], "--bogus": ["1"],
                   "--data-dir": [""]}),
    ("hwsim.run", {"--network": ["no_such_net"], "--dataflow": ["diagonal", ""], "--sparse-mode": ["nope", ""],
                   "--bogus": ["1"]}),
    ("analysis.dse", {"--workers": ["x", "1.5", ""], "--bogus": ["1"]}),
    ("analysis.pareto", {"--tolerance": ["x", ""], "--by": ["nope"], "--cost": ["no_such_column"],
                         "--accuracy": ["no_such_column"], "--bogus": ["1"]}),
    ("analysis.dashboard", {"--accuracy": ["nope"], "--point": ["no_such_point"], "--bogus": ["1"],
                            "--png": [""]}),
) for opt, values in opts.items() for value in values]


@pytest.mark.parametrize("cli,option,value", OTHER_CASES)
def test_bad_option_values(world, tmp_path, capsys, cli, option, value):
    changes = {option: value}
    if cli == "hwsim.run" and option == "--network":
        changes["--trace"] = None
    needle = option if option != "--bogus" else "unrecognized"
    if option in ("--cost", "--accuracy", "--point") and value.startswith("no_such"):
        needle = value
    _run_case(world, tmp_path, capsys, cli, changes, needle)


MISSING_REQUIRED = [
    ("cdg.eval", ["--run"], "--run"), ("cdg.trace", ["--run"], "--run"), ("hwsim.run", ["--accel"], "--accel"),
    ("hwsim.run", ["--trace"], "--trace"), ("analysis.dse", ["--runs"], "--runs"),
    ("analysis.dse", ["--accel"], "--accel"), ("analysis.pareto", ["--sweep"], "--sweep"),
    ("analysis.dashboard", ["--sweep"], "--sweep"),
]


@pytest.mark.parametrize("cli,drop,needle", MISSING_REQUIRED)
def test_missing_required_options(world, tmp_path, capsys, cli, drop, needle):
    main, base = _cli_table(world)[cli]
    options = {k: v for k, v in base.items() if k not in drop}
    if cli in OUT_NAMES:
        options["--out"] = tmp_path / OUT_NAMES[cli]
    refused(call(main, _argv(options), capsys), needle)


@pytest.mark.parametrize("cli", ["analysis.dse", "analysis.dashboard"])
def test_missing_out(world, capsys, cli):
    main, base = _cli_table(world)[cli]
    refused(call(main, _argv(base), capsys), "--out")


def test_conflicting_sources(world, tmp_path, capsys):
    refused(call(eval_main, ["--run", world["runs"] / "cdg_a_s0", "--checkpoint", tmp_path / "x.pt"], capsys),
            "not allowed with")
    refused(call(hwsim_main, ["--accel", world["accel"], "--trace", world["trace"], "--network", "resnet18_cifar"],
                 capsys), "not allowed with")


@pytest.mark.parametrize("cli", CLIS)
def test_option_without_its_value(world, capsys, cli):
    main, base = _cli_table(world)[cli]
    last = {"cdg.train": "--config", "cdg.eval": "--run", "cdg.trace": "--run", "hwsim.run": "--accel",
            "analysis.dse": "--out", "analysis.pareto": "--sweep", "analysis.dashboard": "--out"}[cli]
    argv = [a for a in _argv({k: v for k, v in base.items() if k != last})] + [last]
    refused(call(main, argv, capsys), last)
