"""The fault-injection suite's shared world and its one assertion.

Every case calls a CLI's ``main(argv)`` in this process (no subprocess start-up) on inputs built
once per session: a tiny hand-made trace and accelerator, two hand-made sweep runs, a finished
sweep, and (only for the checkpoint cases) one tiny trained digits run. A case copies what it
corrupts into its own ``tmp_path``, so the shared inputs are never changed.

``refused`` is what every bad input must give: exit code 2, exactly one stderr line
``error: ...`` naming the file or field, no traceback; ``unchanged`` checks that nothing already
written was changed or lost.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from tests.analysis.test_dashboard import make_sweep
from tests.analysis.test_dse import make_run
from tests.hwsim.helpers import config_dict, write_trace


def call(main, argv, capsys) -> tuple[int, str, str]:
    """Run one CLI's ``main`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        result = main([str(a) for a in argv])
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def refused(result: tuple[int, str, str], *needles: str) -> str:
    """Assert a clean refusal; returns the error line."""
    code, _, err = result
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The shared inputs (see the module docstring); never modified by a case."""
    root = tmp_path_factory.mktemp("faults")
    trace = write_trace(root / "trace", n_images=4)
    accel = root / "accel.yaml"
    accel.write_text(yaml.safe_dump(config_dict()))
    runs = root / "runs"
    make_run(runs, "cdg_a_s0", S=2)
    make_run(runs, "cdg_b_s0", S=4, seed=1, density=0.6)
    grid = root / "grid.yaml"
    grid.write_text(yaml.safe_dump({"systolic": {"array.rows": [4, 8]}}))
    sweep_root = root / "sweep_root"
    sweep_root.mkdir()
    sweep = make_sweep(sweep_root)
    return {"root": root, "trace": trace, "accel": accel, "runs": runs, "grid": grid, "sweep": sweep}


@pytest.fixture
def copy_of(tmp_path):
    """``copy_of(path)``: a private copy of a shared file or directory in the case's tmp_path."""
    def make(src: Path, name: str | None = None) -> Path:
        dst = tmp_path / (name or src.name)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        return dst
    return make
