"""scripts/sparse_pe_design_point.py reproduces its committed result (tests/data/scnn_design_point.json)."""
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import sparse_pe_design_point  # noqa: E402


def _same(a, b, path="result"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, path


def test_design_point_reproduces_the_committed_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "dp.json"
    assert sparse_pe_design_point.main(["--json", str(out)]) == 0
    _same(json.loads(out.read_text()), json.loads((REPO / "tests" / "data" / "scnn_design_point.json").read_text()))
    table = capsys.readouterr().out
    assert table.count("| 1 | 0.79 |") == 4 and table.count("| 0.1 | 24 |") == 4


def test_published_points_say_where_they_come_from():
    pub = json.loads((REPO / "tests" / "data" / "scnn_published.json").read_text())
    assert "arXiv:1708.04485" in pub["source"] and pub["provenance"].startswith("THIRD-PARTY SUMMARY")
    assert [p["weight_density"] for p in pub["points"]] == [1.0, 0.85, 0.1]
