"""Every relative link and every repository path named in README.md and docs/*.md exists, so the
docs cannot point outside the repository or at a module that has moved."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# `path/inside/the/repo.ext` in backticks, starting at a top-level folder of the repository
TOP = ("cdg", "hwsim", "analysis", "bench", "scripts", "tests", "docs", "configs", "accel_configs", ".ci")
PATH = re.compile(r"`((?:%s)/[\w./-]*\w)`" % "|".join(re.escape(t) for t in TOP))
GENERATED = ("runs/", "sweeps/")  # written by the commands, not part of a checkout
BUILD = "__pycache__"


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_relative_links_resolve_inside_the_repository(doc):
    bad = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists() or ROOT not in path.parents and path != ROOT:
            bad.append(target)
    assert not bad, f"{doc.name}: links that do not resolve inside the repository: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_named_repository_paths_exist(doc):
    bad = []
    for name in PATH.findall(doc.read_text(encoding="utf-8")):
        if any(ch in name for ch in "*<>{}") or name.startswith(GENERATED) or BUILD in name:
            continue  # a pattern or a placeholder, not one path
        if not (ROOT / name).exists():
            bad.append(name)
    assert not bad, f"{doc.name}: paths that do not exist in the repository: {bad}"


@pytest.mark.parametrize("folder, doc", [("accel_configs", "docs/accel-config.md"), ("configs", "README.md")])
def test_every_shipped_config_is_listed_in_its_doc(folder, doc):
    """The list of shipped configs once named 3 of 7: a new file must be added to its table."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = [p.name for p in sorted((ROOT / folder).glob("*.yaml")) if p.name not in text and p.stem not in text]
    assert not missing, f"{doc} does not list {missing}"
