"""Packaging: every third-party module armlens, its tests and its notebooks import is a declared dependency."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported(folder: Path) -> dict[str, str]:
    """Top-level modules imported anywhere under ``folder`` (absolute imports, also inside functions) -> a file."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                out.setdefault(name.split(".")[0], str(path.relative_to(folder.parent)))
    return out


def _undeclared(folder: Path, declared: set[str]) -> list[str]:
    dists = packages_distributions()
    problems = []
    for module, where in sorted(_imported(folder).items()):
        if module in sys.stdlib_module_names or module in ("armlens", "__future__"):
            continue
        if (folder / f"{module}.py").is_file():  # a module of the folder itself (a test sharing another's helpers)
            continue
        owners = {_dist(d) for d in dists.get(module, [])}
        if not owners & declared:
            problems.append(f"{module} (imported in {where}; distribution {sorted(owners) or 'not installed'})")
    return problems


def _requirements(extra: str = "test") -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_dist(r) for r in project["dependencies"]}, {_dist(r) for r in project["optional-dependencies"][extra]}


WIDGETS = "armlens/widgets/"
"""The one package of armlens that may import the optional ``notebooks`` extra (the head picker)."""


RL = "armlens/grpo.py"
"""The one module of armlens that may import the optional ``rl`` extra (trl, inside its functions)."""

DISTRIBUTED = "armlens/evaluation/distributed.py"
"""The one module of armlens that may import the optional ``distributed`` extra (ray, inside its functions)."""


def test_package_imports_are_declared():
    runtime, _ = _requirements()
    _, notebooks = _requirements("notebooks")
    _, rl = _requirements("rl")
    _, distributed = _requirements("distributed")
    problems = _undeclared(ROOT / "armlens", runtime)
    assert all(any(f"imported in {m}" in p for m in (WIDGETS, RL, DISTRIBUTED)) for p in problems), problems
    assert _undeclared(ROOT / "armlens", runtime | notebooks | rl | distributed) == []


def test_ray_is_imported_only_inside_functions():
    """``armlens eval`` works without the distributed extra: ray loads only when ``workers > 1``."""
    tree = ast.parse((ROOT / DISTRIBUTED).read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert "ray" not in top


def test_optional_widget_imports_stay_in_functions():
    """``import armlens.widgets`` works without the notebooks extra: ipywidgets and anywidget load on first use."""
    files = sorted((ROOT / WIDGETS).glob("*.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not top & {"ipywidgets", "anywidget"}, f


def test_test_and_notebook_imports_are_declared():
    runtime, test = _requirements()
    _, notebooks = _requirements("notebooks")
    _, rl = _requirements("rl")
    _, distributed = _requirements("distributed")
    assert _undeclared(ROOT / "tests", runtime | test | notebooks | rl | distributed) == []
    assert _undeclared(ROOT / "notebooks", runtime | test | notebooks) == []


def test_the_check_can_fail(tmp_path):
    (tmp_path / "m.py").write_text("import json\nimport numpy\n\ndef f():\n    from scipy.stats import t\n")
    assert _undeclared(tmp_path, {"numpy"}) == [f"scipy (imported in {tmp_path.name}/m.py; distribution ['scipy'])"]


def test_doc_links_stay_in_the_repository():
    """Relative links in the README and docs/ name files of this repository (a user's clone has nothing beside it)."""
    bad = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"`[^`]*`|^ {4}.*$", "", page.read_text(encoding="utf-8"), flags=re.M)  # no code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # external URL or in-page anchor
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                bad.append(f"{page.name}: {target}")
    assert bad == []
    assert {"method.md", "architecture.md", "defaults.md"} <= {p.name for p in (ROOT / "docs").glob("*.md")}
    assert "# How the defaults were chosen" in (ROOT / "docs" / "defaults.md").read_text(encoding="utf-8")
