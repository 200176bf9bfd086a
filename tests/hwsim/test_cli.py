"""python -m hwsim.run end to end, and its one-line errors (exit code 2, nothing written)."""
import json
import os
import subprocess
import sys

import yaml

from tests.hwsim.helpers import ROOT, config_dict, write_trace

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hwsim.run", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=300)


def test_trace_run_writes_table_csv_json_and_dense(tmp_path):
    trace = write_trace(tmp_path / "trace", n_images=3)
    cfg = tmp_path / "acc.yaml"
    cfg.write_text(yaml.safe_dump(config_dict()))
    out = tmp_path / "out"
    r = run("--accel", str(cfg), "--trace", str(trace), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "TOTAL" in r.stdout and "g1" in r.stdout and "images 3" in r.stdout
    doc = json.loads((out / "hwsim.json").read_text())
    assert doc["n_images"] == 3 and len(doc["layers"]) == 5
    tot = doc["totals"]
    assert tot["macs"] < tot["dense_macs"] and tot["speedup"] >= 1.0 and tot["energy_saving"] > 0
    csv_lines = (out / "hwsim_layers.csv").read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("layer,")
    d = run("--accel", str(cfg), "--trace", str(trace), "--dense", "--dataflow", "ws", "--quiet")
    assert d.returncode == 0 and d.stdout.startswith("TOTAL") and "1.000" in d.stdout


def test_network_run(tmp_path):
    r = run("--accel", "accel_configs/systolic_32x32_os.yaml", "--network", "resnet18_cifar", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("TOTAL")


def _assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    trace = write_trace(tmp_path / "trace", n_images=2)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config_dict()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config_dict(dataflow="diagonal")))
    out = tmp_path / "out"
    _assert_one_line_error(run("--accel", str(bad), "--trace", str(trace), "--out", str(out)), "bad.yaml", "dataflow")
    mask = trace / "masks" / "L001.npz"
    mask.write_bytes(mask.read_bytes()[:-10])
    _assert_one_line_error(run("--accel", str(good), "--trace", str(trace), "--out", str(out)), "L001.npz", "bytes")
    _assert_one_line_error(run("--accel", str(tmp_path / "nope.yaml"), "--network", "resnet18_cifar"), "nope.yaml")
    _assert_one_line_error(run("--accel", str(good)), "command line")
    assert not out.exists()


def test_hwsim_never_imports_torch_or_cdg():
    code = ("import sys, hwsim.api, hwsim.run, hwsim.trace, hwsim.report, hwsim.graph; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m == 'cdg' "
            "or m.startswith('cdg.')]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr


def test_granularity_report_names_each_layers_skip_unit(tmp_path):
    trace = write_trace(tmp_path / "trace", n_images=2)
    r = run("--accel", "accel_configs/systolic_32x32_os.yaml", "--trace", str(trace), "--quiet", "--granularity")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:] if line.strip()}
    assert rows["g1"].endswith("fold of 32x32 outputs") and "%" in rows["g1"]
    assert rows["stem"].endswith("none (ungated)")


def test_systolic_overrides_are_refused_for_other_models(tmp_path):
    trace = write_trace(tmp_path / "trace", n_images=2)
    r = run("--accel", "accel_configs/gpu_a100.yaml", "--trace", str(trace), "--dataflow", "ws")
    _assert_one_line_error(r, "gpu_a100.yaml", "--dataflow")


def test_undefined_ratios_print_as_a_dash_and_overflows_are_refused(tmp_path, capsys):
    """An ungated layer has no gated-off work to realise: its ``realised`` is '-', never 'nan%'.
    A cost so large that the energy overflows (``mac_pj: 1e308``) is one line, exit 2, not 'inf'."""
    import pytest

    from hwsim.run import main

    trace = write_trace(tmp_path / "trace", n_images=2)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config_dict()))
    assert main(["--accel", str(good), "--trace", str(trace)]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table and " - " in table.splitlines()[4] + " "
    energy = dict(config_dict()["energy"], mac_pj=1e308)
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump(config_dict(energy=energy)))
    with pytest.raises(SystemExit) as exc:
        main(["--accel", str(huge), "--trace", str(trace), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "energy_pj" in err and "inf" in err
    assert not (tmp_path / "out").exists()
