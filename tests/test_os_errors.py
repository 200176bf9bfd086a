"""OS errors in every CLI (``cli_entry``): one stderr line naming the path, exit 2, no traceback;
and paired outputs (``atomic_write_files``) land together or not at all.

The failures used are ones that happen even for root, who ignores permission bits: a path under
a regular file (ENOTDIR) and a name longer than the file system allows (ENAMETOOLONG). A
read-only directory is tried too where the test does not run as root."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hwsim.trace import fileio
from hwsim.trace.errors import cli_entry
from hwsim.trace.fileio import atomic_write_files

from tests.analysis.test_dashboard import make_sweep
from tests.analysis.test_dse import make_run
from tests.cdg.helpers import TINY
from tests.hwsim.helpers import ROOT, config_dict, write_trace

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
LONG = "x" * 300  # over NAME_MAX (255) on every common file system


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=300)


def _one_line(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("warning: ")]  # the sweep's own
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oserr")
    trace = write_trace(tmp / "trace", n_images=2)
    accel = tmp / "acc.yaml"
    accel.write_text(yaml.safe_dump(config_dict()))
    blocker = tmp / "a_file"
    blocker.write_text("not a directory\n")
    make_run(tmp / "runs", "cdg_s0")
    return tmp, trace, accel, blocker


def _bad_outs(tmp: Path, blocker: Path):
    """(path that cannot be created, what the error line must name)."""
    return [(blocker / "sub", "Not a directory"), (tmp / LONG, "File name too long")]


def test_cli_entry_turns_os_errors_into_one_line(capsys):
    @cli_entry
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.csv")

    with pytest.raises(SystemExit) as exc:
        full_disk()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: /data/out.csv: failed: No space left on device (ENOSPC)"


def test_a_nameless_write_error_names_the_target(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", no_space)
    with pytest.raises(OSError) as exc:
        fileio.atomic_write_text(tmp_path / "summary.json", "{}")
    assert exc.value.filename == str(tmp_path / "summary.json") and exc.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # neither the file nor its temp file


def test_hwsim_run_out(inputs):
    tmp, trace, accel, blocker = inputs
    for out, reason in _bad_outs(tmp, blocker):
        _one_line(_cli("hwsim.run", "--accel", str(accel), "--trace", str(trace), "--out", str(out), "--quiet"),
                  reason, str(out)[:40])


def test_cdg_train_run_dir(inputs):
    tmp, _, _, blocker = inputs
    for out, reason in _bad_outs(tmp, blocker):
        _one_line(_cli("cdg.train", *TINY, f"run.dir={out}", "run.name=r"), reason)


def test_analysis_dse_and_dashboard_out(inputs, tmp_path):
    tmp, trace, accel, blocker = inputs
    sweep = make_sweep(tmp_path)
    for out, reason in _bad_outs(tmp, blocker):
        _one_line(_cli("analysis.dse", "--runs", str(tmp / "runs" / "*"), "--accel", str(accel), "--out", str(out),
                       "--workers", "1", "--no-progress"), reason)
        _one_line(_cli("analysis.dashboard", "--sweep", str(sweep), "--out", str(out / "d.html")), reason)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits, so chmod cannot make a directory read-only")
def test_read_only_directory(inputs, tmp_path):
    _, trace, accel, _ = inputs
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _one_line(_cli("hwsim.run", "--accel", str(accel), "--trace", str(trace), "--out", str(locked / "o"),
                       "--quiet"), "Permission denied")
    finally:
        locked.chmod(0o755)


def test_paired_outputs_land_together_or_not_at_all(tmp_path, monkeypatch):
    csv_path, json_path = tmp_path / "hwsim_layers.csv", tmp_path / "hwsim.json"
    atomic_write_files({csv_path: "old csv\n", json_path: json.dumps({"old": 1})})
    calls = {"n": 0}
    real = os.fsync

    def second_fails(fd):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", second_fails)
    with pytest.raises(OSError) as exc:
        atomic_write_files({csv_path: "new csv\n", json_path: json.dumps({"new": 1})})
    assert exc.value.filename == str(json_path)
    assert csv_path.read_text() == "old csv\n" and json.loads(json_path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hwsim.json", "hwsim_layers.csv"]  # no temp left
    monkeypatch.setattr(fileio.os, "fsync", real)
    atomic_write_files({csv_path: "new csv\n", json_path: b"{}"})
    assert csv_path.read_text() == "new csv\n" and json_path.read_text() == "{}"


def test_argparse_mistakes_are_one_line_in_every_cli():
    for args in (("cdg.train", "--no-such-flag"), ("cdg.eval",), ("cdg.trace", "--run"), ("hwsim.run", "--bogus"),
                 ("analysis.dse",), ("analysis.pareto",), ("analysis.dashboard", "--sweep")):
        _one_line(_cli(*args), "command line:")
