"""Every CLI has a console script, each script resolves to a callable that exits 0 on success, and
every ``python -m`` CLI module of the product has its script."""
import importlib
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def cli_modules() -> set[str]:
    """Product modules with a ``__main__`` block and a ``main`` (the ``python -m`` CLIs)."""
    out = set()
    for path in [*REPO.glob("cdg/*.py"), *REPO.glob("hwsim/*.py"), *REPO.glob("analysis/*.py")]:
        text = path.read_text()
        if 'if __name__ == "__main__":' in text and re.search(r"^def main\(", text, re.M):
            out.add(f"{path.parent.name}.{path.stem}")
    return out


def test_every_cli_module_has_a_console_script():
    targets = {entry.split(":")[0] for entry in SCRIPTS.values()}
    assert cli_modules() <= targets, sorted(cli_modules() - targets)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_resolves_to_a_callable(name):
    module, _, attr = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    assert name.split("-")[0] == module.split(".")[0]  # cdg-*, hwsim-*, analysis-*


def test_cdg_console_scripts_exit_zero_on_success(capsys, monkeypatch):
    from cdg import train

    monkeypatch.setattr("sys.argv", ["cdg-train", "--print-config"])
    assert train.console() == 0
    assert "dataset: digits" in capsys.readouterr().out
