"""The package boundaries of docs/architecture.md, held by import-linter contracts
(``[tool.importlinter]`` in pyproject.toml), so they cannot silently break."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("contract", [c["id"] for c in contracts()])
def test_contract_is_kept(contract, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), limit_to_contracts=(contract,),
                        no_cache=True) == 0, f"import contract {contract!r} is broken: run lint-imports"


def test_contracts_cover_the_promised_boundaries():
    """The contracts the docs promise are all there (deleting one fails here, not silently)."""
    assert {c["id"] for c in contracts()} >= {
        "hwsim-standalone", "trace-contract-numpy-only", "cdg-uses-hwsim-through-trace", "cdg-not-analysis",
        "no-cycles",
    }


MAX_MODULE_LINES = 450
PACKAGES = ("cdg", "hwsim", "analysis")


def test_no_product_module_is_a_god_file():
    """Each module has one job; past ~450 lines it has several (docs/architecture.md)."""
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_product_points_nowhere_outside_the_repository():
    """A user who clones the repository has no ../shared: no file of the product may name it."""
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
             *(p for pkg in (*PACKAGES, "bench", "scripts", "configs", "accel_configs")
               for p in (ROOT / pkg).rglob("*") if p.suffix in (".py", ".md", ".yaml"))]
    bad = [str(p.relative_to(ROOT)) for p in texts if re.search(r"\.\./shared|DESIGN\.md", p.read_text(encoding="utf-8"))]
    assert not bad, f"files that point outside the repository: {bad}"
