"""hwsim.trace.fileio: outputs get a normal file's mode, temp files of killed writers are
cleaned on the next write of the same path (a live writer's are not), and the one YAML reader
refuses duplicate keys and binary files."""
import os
import signal
import stat
import subprocess
import sys

import pytest

from hwsim.trace import TraceWriter, make_layer
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_open, atomic_write_text, clean_stale_temps, load_yaml

from tests.hwsim.helpers import ROOT


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def test_mode_follows_the_umask_like_open_does(tmp_path, umask):
    atomic_write_text(tmp_path / "a.yaml", "x: 1\n")
    assert _mode(tmp_path / "a.yaml") == 0o644
    umask(0o077)
    atomic_write_text(tmp_path / "b.yaml", "x: 1\n")
    assert _mode(tmp_path / "b.yaml") == 0o600
    (tmp_path / "a.yaml").chmod(0o640)  # an existing file keeps its mode, as with open(path, "w")
    atomic_write_text(tmp_path / "a.yaml", "x: 2\n")
    assert _mode(tmp_path / "a.yaml") == 0o640 and (tmp_path / "a.yaml").read_text() == "x: 2\n"


def test_trace_files_are_readable_by_the_group_and_others(tmp_path, umask):
    with TraceWriter(tmp_path / "trace", meta={"producer": "test"}) as tw:
        tw.add_layer(make_layer("conv1", "conv", (3, 8, 8), 8, 3, 1, 1))
    files = [p for p in (tmp_path / "trace").rglob("*") if p.is_file()]
    assert files and all(_mode(p) == 0o644 for p in files)


KILLED_WRITER = """
import sys, time
from hwsim.trace.fileio import atomic_open
with atomic_open(sys.argv[1], "w") as handle:
    handle.write("half")
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def _start_writer(path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(path):
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*.tmp"))


def test_temp_file_of_a_killed_writer_is_cleaned_on_the_next_write(tmp_path):
    target = tmp_path / "summary.json"
    proc = _start_writer(target)
    try:
        assert len(_temps(target)) == 1
        assert clean_stale_temps(target) == []  # its writer is alive: left alone
        assert len(_temps(target)) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_temps(target)) == 1 and not target.exists()  # what a kill leaves
    (tmp_path / ".other.json.abcdefgh.tmp").write_text("another file's temp")
    atomic_write_text(target, "{}\n")
    assert _temps(target) == [] and target.read_text() == "{}\n"
    assert (tmp_path / ".other.json.abcdefgh.tmp").exists()  # only the same path's temps


def test_a_live_writer_in_this_process_keeps_its_temp(tmp_path):
    target = tmp_path / "x.csv"
    with atomic_open(target, "w") as handle:
        handle.write("a")
        assert clean_stale_temps(target) == [] and len(_temps(target)) == 1
    assert target.read_text() == "a" and _temps(target) == []


def test_trace_temp_dir_of_a_dead_writer_is_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that is no longer running
    stale = tmp_path / f".trace.tmp-{proc.pid}"
    (stale / "masks").mkdir(parents=True)
    live = tmp_path / f".trace.tmp-{os.getppid()}"  # the parent is alive
    live.mkdir()
    with TraceWriter(tmp_path / "trace", meta={}) as tw:
        tw.add_layer(make_layer("conv1", "conv", (3, 8, 8), 8, 3, 1, 1))
    assert not stale.exists() and live.exists()


def test_yaml_duplicate_keys_and_binary_files_are_one_line_errors(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\narray:\n  rows: 4\n  cols: 4\n  rows: 8\n")
    with pytest.raises(HwsimError, match=r"line 5: duplicate key 'rows' \(first on line 3\)"):
        load_yaml(dup)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(HwsimError, match="not a UTF-8 text file"):
        load_yaml(binary)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"a: 1\x00\n")
    with pytest.raises(HwsimError, match="NUL"):
        load_yaml(nul)
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: {x: 1, y: 2}\nb: [1, 2]\nc: {x: 1}\n")  # the same key in different mappings is fine
    assert load_yaml(ok) == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": {"x": 1}}
