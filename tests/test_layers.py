"""The import rules of docs/architecture.md (the layers and no import circles), as import-linter contracts in
pyproject.toml, run with ``lint-imports``; imports inside functions and under TYPE_CHECKING count."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}  # the armlens under `where`, not the installed one
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=where, env=env,
                          timeout=120)


def test_the_import_contracts_are_kept():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_the_contracts_can_fail(tmp_path):
    """A copy of the package with a low module importing the test models, and a circle made by an import inside a
    function: both contracts break, naming the imports."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "armlens", tmp_path / "armlens", ignore=shutil.ignore_patterns("bundled", "__pycache__"))
    hooks = tmp_path / "armlens" / "model" / "hooks.py"
    hooks.write_text(hooks.read_text() + "\n\ndef _tiny():\n    from armlens.testing import tiny_model\n")
    sources = tmp_path / "armlens" / "model" / "sources.py"
    sources.write_text(sources.read_text() + "\n\ndef _boot():\n    from armlens.model.loading import boot\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and "Contracts: 0 kept, 2 broken." in proc.stdout, proc.stdout + proc.stderr
    assert "armlens.model.hooks -> armlens.testing" in proc.stdout
    assert "No cycles are allowed in armlens.model" in proc.stdout and ".sources -> .loading" in proc.stdout
