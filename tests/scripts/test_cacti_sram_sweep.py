"""scripts/cacti_sram_sweep.py without CACTI: a stand-in binary that writes CACTI's CSV shows the
script's cfg, its parsing into per-byte energies, the JSON it writes and its one-line errors."""
import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import cacti_sram_sweep  # noqa: E402

# What CACTI 7 appends to "<infile>.out": a header and one row per run (subset of its columns).
FAKE = """#!/bin/sh
cfg="$2"
size=$(sed -n 's/^-size (bytes) //p' "$cfg")
echo "---------- CACTI (version 7.0.3DD Prerelease of Aug, 2012), Uniform Cache Access SRAM Model ----------"
echo "Tech node (nm), Capacity (bytes), Number of banks, Associativity, Output width (bits), Access time (ns), \
Random cycle time (ns), Dynamic search energy (nJ), Dynamic read energy (nJ), Dynamic write energy (nJ), \
Standby leakage per bank(mW), Area (mm2)" > "$cfg.out"
echo "45, $size, 1, 1, 64, 1.5, 0.5, 0, 0.$size, 0.002, 3.0, 0.25" >> "$cfg.out"
"""


def _fake(tmp_path: Path, body: str = FAKE) -> Path:
    exe = tmp_path / "cacti"
    exe.write_text(body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_cfg_holds_size_width_and_node():
    cfg = cacti_sram_sweep.render_cfg(65536, 8, 45.0)
    assert "-size (bytes) 65536\n" in cfg and "-block size (bytes) 8\n" in cfg
    assert "-output/input bus width 64\n" in cfg and "-technology (u) 0.045\n" in cfg
    assert '-cache type "ram"' in cfg and "{" not in cfg


@pytest.mark.skipif(os.name != "posix", reason="a shell-script stand-in for CACTI")
def test_sweep_writes_per_byte_energies_and_the_provenance(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    rc = cacti_sram_sweep.main(["--cacti", str(_fake(tmp_path)), "--out", str(out), "--source", "unit test",
                                "--sizes-kb", "2", "1", "--jobs", "2"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["version"] == "7.0.3DD Prerelease of Aug, 2012" and doc["source"] == "unit test"
    assert [p["kb"] for p in doc["points"]] == [1, 2]
    p1 = doc["points"][0]                     # read 0.1024 nJ, write 0.002 nJ per 8-byte access
    assert p1["read_pj_per_access"] == pytest.approx(102.4) and p1["read_pj_per_byte"] == pytest.approx(12.8)
    assert p1["write_pj_per_byte"] == pytest.approx(0.25) and p1["area_mm2"] == 0.25
    assert doc["cfg_template"] == cacti_sram_sweep.CFG_TEMPLATE
    assert "1 kB" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="a shell-script stand-in for CACTI")
def test_a_failing_cacti_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    exe = _fake(tmp_path, "#!/bin/sh\necho 'Floating point exception' >&2\nexit 136\n")
    with pytest.raises(SystemExit) as exc:
        cacti_sram_sweep.main(["--cacti", str(exe), "--out", str(out), "--source", "x", "--sizes-kb", "4"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "4 kB" in err and "136" in err
    assert not out.exists()


def test_missing_binary_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cacti_sram_sweep.main(["--cacti", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json"), "--source", "x"])
    assert "--cacti" in capsys.readouterr().err


def test_check_prints_each_scaling_and_refuses_an_unknown_table(capsys):
    sweep = str(REPO / "tests" / "data" / "cacti7_45nm_sram.json")
    assert cacti_sram_sweep.main(["--check", sweep, "--table", "horowitz_cacti7_45nm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and {line.split()[1] for line in out} == {"log_linear", "power_law"}
    with pytest.raises(SystemExit):
        cacti_sram_sweep.main(["--check", sweep, "--table", "tsmc_3nm"])
    assert "--table" in capsys.readouterr().err
