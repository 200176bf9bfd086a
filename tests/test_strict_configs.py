"""Strict scalars in the shared config bases (``cdg.sections.Section``, ``hwsim.models.base.StrictModel``,
and through the latter every ``analysis`` grid value): no boolean for a number, finite floats
only, 64-bit integers, a bounded image size; and the one YAML reader's duplicate-key and
binary-file errors, seen from the command lines. Valid configs are unchanged (the
``--print-config`` tests in ``tests/cdg/test_config.py`` and every shipped YAML below)."""
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pytest
import yaml

from analysis.grid import apply, parse_grid, assignments
from cdg.config import load_config as load_cdg_config
from hwsim.config import load_config as load_accel_config, parse_config
from hwsim.trace.errors import UserError
from hwsim.trace.strict import scalar_problem

from tests.hwsim.helpers import ROOT, config_dict

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("override, field, needle", [
    ("train.epochs=true", "train.epochs", "not the boolean true"),
    ("train.batch_size=false", "train.batch_size", "not the boolean false"),
    ("optim.lr=.inf", "optim.lr", "finite"),
    ("optim.lr=.nan", "optim.lr", "finite"),
    ("gate.target_reduction=.inf", "gate.target_reduction", "finite"),
    ("train.seed=123456789012345678901234567890", "train.seed", "64 bits"),
    ("train.seed=-9223372036854775809", "train.seed", "64 bits"),
    ("data.image_size=100000", "data.image_size", "less than or equal to 2048"),
])
def test_cdg_config_refuses(override, field, needle):
    with pytest.raises(UserError) as exc:
        load_cdg_config(None, [override])
    message = exc.value.one_line()
    assert f"{field}:" in message and needle in message, message


def test_cdg_config_edges_still_accepted():
    cfg = load_cdg_config(None, ["train.seed=9223372036854775807", "optim.lr=1", "train.progress=true",
                                 "data.image_size=2048"])
    assert cfg.train.seed == 2**63 - 1 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.train.progress is True


@pytest.mark.parametrize("path, value, needle", [
    (("array", "rows"), True, "not the boolean true"),
    (("clock_mhz",), float("inf"), "finite"),
    (("dram", "bandwidth_gb_s"), float("nan"), "finite"),
    (("energy", "sram", 0, "kb"), float("-inf"), "finite"),
    (("array", "cols"), 2**80, "64 bits"),
])
def test_accel_config_refuses(path, value, needle):
    data = copy.deepcopy(config_dict())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(UserError) as exc:
        parse_config(data, "acc.yaml")
    message = exc.value.one_line()
    assert ".".join(map(str, path)) in message and needle in message, message


def test_every_shipped_accel_config_still_loads_unchanged():
    for path in sorted((ROOT / "accel_configs").glob("*.yaml")):
        cfg = load_accel_config(path)
        assert cfg.model_dump(mode="json")["name"] == yaml.safe_load(path.read_text())["name"]


def test_grid_values_are_held_to_the_same_rule():
    base = parse_config(config_dict(), "acc.yaml")
    grid = parse_grid({"systolic": {"array.rows": [4, True]}}, "grid.yaml")
    four, boolean = assignments(grid, "systolic")
    assert apply(base, four, "grid.yaml").array.rows == 4
    with pytest.raises(UserError, match="array.rows.*boolean true"):
        apply(base, boolean, "grid.yaml")
    with pytest.raises(UserError, match="clock_mhz.*finite"):
        apply(base, assignments(parse_grid({"clock_mhz": [float("inf")]}, "grid.yaml"), "systolic")[0], "grid.yaml")


def test_scalar_rule_follows_the_annotation():
    assert scalar_problem(bool, True) is None
    assert scalar_problem(Optional[int], None) is None
    assert scalar_problem(Union[int, Literal["all"]], True) is not None
    assert scalar_problem(Union[bool, int], True) is None
    assert scalar_problem(str, True) is None  # not a number field: left to pydantic
    assert scalar_problem(Any, float("inf")) is not None
    assert scalar_problem(list[float], [1.0, float("nan")]).startswith("[1]")
    assert scalar_problem(dict[str, int], {"a": True}).startswith("['a']")
    assert scalar_problem(float, 10**400) is not None and scalar_problem(float, 10**30) is None


def _one_line(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_command_lines_give_one_line(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    run = lambda *a: subprocess.run([sys.executable, "-m", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT, env=ENV, timeout=300)
    _one_line(run("cdg.train", "--config", str(binary), "--print-config"), str(binary), "UTF-8")
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  epochs: 2\n  epochs: 3\n")
    _one_line(run("cdg.train", "--config", str(dup), "--print-config"), "line 3", "duplicate key 'epochs'")
    _one_line(run("cdg.train", "train.epochs=true", "--print-config"), "train.epochs", "boolean")
    accel = tmp_path / "acc.yaml"
    data = config_dict()
    data["array"]["rows"] = True
    accel.write_text(yaml.safe_dump(data))
    _one_line(run("hwsim.run", "--accel", str(accel), "--network", "resnet18_cifar", "--quiet"), "array.rows", "boolean")
    data["array"]["rows"], data["clock_mhz"] = 8, float("inf")
    accel.write_text(yaml.safe_dump(data))
    _one_line(run("hwsim.run", "--accel", str(accel), "--network", "resnet18_cifar", "--quiet"), "clock_mhz", "finite")
