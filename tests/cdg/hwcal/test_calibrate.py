"""python -m cdg.calibrate_cpu: the fits recover known parameters, a quick calibration writes a
YAML hwsim's cpu model loads, and mistakes are one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cdg.calibrate_cpu import main
from cdg.hwcal import fit
from hwsim.config import load_config
from hwsim.models.cpu.config import CPUConfig
from tests.hwsim.helpers import ROOT


def test_throughput_fit_recovers_known_parameters():
    truth = {"peak_gflops": 150.0, "m_half": 40.0, "n_half": 12.0, "k_half": 60.0}
    shapes = [(m, n, k) for m in (16, 64, 256, 1024) for n in (8, 32, 128) for k in (36, 288, 1152)]
    points = [(s, fit.predict_throughput(truth, s, 2.0)) for s in shapes]
    got = fit.fit_throughput(points, 2.0)
    for key, value in truth.items():
        assert got[key] == pytest.approx(value, rel=0.02), key


def test_rowcopy_fit_recovers_known_parameters():
    truth = {"gb_s": 20.0, "row_ns": 8.0}
    points = [((r, b), fit.predict_rowcopy(truth, (r, b), 1.5)) for r in (256, 4096, 32768) for b in (64, 256, 1024)]
    got = fit.fit_rowcopy(points, 1.5)
    assert got["gb_s"] == pytest.approx(20.0, rel=1e-3) and got["row_ns"] == pytest.approx(8.0, rel=1e-3)


def test_far_rate_comes_from_the_points_beyond_the_cache():
    near = {"gb_s": 20.0, "row_ns": 8.0}
    far = {"gb_s": 2.0, "row_ns": 8.0}
    sizes = [(r, b) for r in (256, 4096, 32768) for b in (64, 256, 1024)]
    pts = [((r, b), fit.predict_rowcopy(near if r * b <= 2**20 else far, (r, b), 1.5)) for r, b in sizes]
    assert fit.fit_far(pts, 1.5, near, 2**20, 5.0) == pytest.approx(2.0)
    assert fit.fit_far(pts[:2], 1.5, near, 2**20, 5.0) == 5.0     # none beyond the cache: the fallback


def test_usable_points_drop_call_bound_and_out_of_cache_shapes():
    pts = [((1,), 1.0), ((2,), 50.0), ((3,), 60.0), ((4,), 70.0), ((5,), 80.0)]
    kept = fit.usable(pts, 2.0, [10, 10, 10, 10, 1e9], cache_bytes=100)
    assert [p[0] for p in kept] == [(2,), (3,), (4,)]


def test_quick_calibration_writes_a_config_the_cpu_model_loads(tmp_path, capsys):
    out = tmp_path / "host.yaml"
    assert main(["--threads", "1", "--out", str(out), "--quick", "--note", "test"]) == 0
    cfg = load_config(out)
    assert isinstance(cfg, CPUConfig) and cfg.name == "host" and cfg.calibrated_threads == cfg.threads == 1
    assert cfg.host.note == "test" and cfg.host.torch_version and cfg.op_us > 0
    text = out.read_text()
    assert text.startswith("# The host CPU") and "python -m cdg.calibrate_cpu --threads 1" in text
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["--threads", "0", "--out", "x.yaml"], "--threads"),
    (["--threads", "1", "--out", "x.txt"], "--out"),
    (["--threads", "100000", "--out", "x.yaml"], "logical CPUs"),
])
def test_mistakes_are_one_line_exit_2(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "cdg.calibrate_cpu", *args], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.iterdir())
