"""The public surface (``armlens.__all__``): what it exports, that editors see the same names with their types, and
that mypy accepts the typed uses of tests/typecheck/public_api.py."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import armlens

ROOT = Path(__file__).resolve().parents[1]
TYPED_USES = ROOT / "tests" / "typecheck" / "public_api.py"


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of the imports under ``if TYPE_CHECKING:`` in armlens/__init__.py."""
    tree = ast.parse((ROOT / "armlens" / "__init__.py").read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, ast.unparse(imp)
                names.update({a.asname or a.name: imp.module for a in imp.names})
    return names


def test_editors_see_the_names_the_package_exports():
    lazy = armlens._LAZY
    assert sorted(armlens.__all__) == sorted(lazy)
    assert _type_checking_imports() == lazy  # the TYPE_CHECKING block imports each name from where it is loaded


def test_the_exports_resolve_to_their_modules_objects():
    for name, module in armlens._LAZY.items():
        assert getattr(armlens, name) is getattr(importlib.import_module(module), name), name
    from armlens.rm import ActivationRM, CriterionARM

    assert armlens.CriterionARM is CriterionARM  # what rm.fits holds and rm.fit_for() returns
    assert ActivationRM.fit_for.__annotations__["return"] in ("CriterionARM", CriterionARM)


def test_the_test_models_are_not_exported():
    assert "tiny_model" not in armlens.__all__ and not hasattr(armlens, "tiny_model")
    from armlens import model as M

    assert not any(name.startswith("tiny") for name in M.__all__) and not hasattr(M, "tiny_model")
    from armlens.testing import tiny_model  # their one home

    assert callable(tiny_model)


def test_importing_armlens_stays_light():
    code = "import sys, armlens; armlens.__all__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_mypy_accepts_the_typed_uses_and_refuses_a_wrong_claim(tmp_path):
    """mypy on tests/typecheck/public_api.py (settings: [tool.mypy] in pyproject.toml), beside a file whose claims
    are wrong: the check passes on the first and fails on each line of the second, so it can fail."""
    wrong = tmp_path / "wrong_claims.py"
    wrong.write_text(textwrap.dedent("""\
        from typing import assert_type

        import armlens
        from armlens import ActivationRM

        def use(rm: ActivationRM) -> None:
            assert_type(rm.score("p", "r"), list[float])
            assert_type(rm.score("p", ["r"]), float)
            armlens.load_modle()
        """))
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(TYPED_USES),
                           str(wrong)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "public_api.py" in e], proc.stdout + proc.stderr
    assert {int(e.split(":")[1]) for e in errors if "wrong_claims.py" in e} == {7, 8, 9}, proc.stdout + proc.stderr
