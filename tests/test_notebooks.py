"""The notebooks: committed ``.ipynb`` match their ``notebooks/src/*.py`` sources, and each one runs top to bottom.

Execution uses nbclient with the ``python3`` kernel. jupyter_client starts that kernel with ``sys.executable`` (the
kernelspec's ``argv[0]`` is plain ``python``), so the kernel runs in the same virtual environment as pytest;
:func:`test_kernel_runs_in_this_environment` checks it. A failing cell fails the test with that cell's number, its
first lines and the error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ROOT = NOTEBOOKS.parent
CELL_TIMEOUT_S = 900
"""Per-cell limit; a notebook takes ~1-2 minutes on an idle 2-core CPU."""


def _build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


build = _build_module()
SOURCES = build.sources()


# ---------------------------------------------------------------------------------------------------- sources


def test_there_are_four_notebooks():
    assert [s.stem for s in SOURCES] == [
        "01_quickstart", "02_head_attributions", "03_ablation_figures", "04_interactive_patching"]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_source(src):
    nb = build.target(src)
    assert nb.is_file(), f"{nb.name} is missing: run `.venv/bin/python notebooks/build.py`"
    assert nb.read_text(encoding="utf-8") == build.render(src), (
        f"{nb.name} differs from src/{src.name}: run `.venv/bin/python notebooks/build.py`")


def test_no_notebook_without_source():
    assert build.stale() == []


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(src):
    data = json.loads(build.target(src).read_text(encoding="utf-8"))
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(data["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {i} keeps outputs"


def test_percent_format_parser(tmp_path):
    src = tmp_path / "99_x.py"
    src.write_text("\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n\n# %% [markdown]\n# end\n")
    assert build.parse_cells(src.read_text(), src) == [
        ("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("markdown", "end")]
    nb = build.build_notebook(src)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown"]
    assert len({c.id for c in nb.cells}) == 3
    with pytest.raises(build.SourceError, match="must start with '# '"):
        build.parse_cells("# %% [markdown]\nnot a comment\n", src)
    with pytest.raises(build.SourceError, match="before the first"):
        build.parse_cells("x = 1\n# %%\ny = 2\n", src)


# ---------------------------------------------------------------------------------------------------- execution

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def execute(nb_path: Path, timeout: int = CELL_TIMEOUT_S) -> tuple[object, float]:
    """Run a notebook cell by cell in a fresh ``python3`` kernel; a failing cell is a pytest failure naming it."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(nb_path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel(env={**os.environ, "PYTHONUNBUFFERED": "1"}):
        failure = None
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError) as e:
                head = "\n".join(cell.source.splitlines()[:6])
                error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
                detail = (f"{error['ename']}: {error['evalue']}\n" + _ANSI.sub("", "\n".join(error["traceback"][-6:]))
                          if error else str(e)[-3000:])
                failure = f"{nb_path.name}: cell {index} failed\n--- cell source ---\n{head}\n--- error ---\n{detail}"
                break
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return nb, time.perf_counter() - t0


@pytest.mark.notebook
def test_kernel_runs_in_this_environment(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, armlens\nprint(sys.prefix)\nprint(armlens.__file__)")]
    path = tmp_path / "env.ipynb"
    nbformat.write(nb, path)
    done, _ = execute(path, timeout=120)
    prefix, package = done.cells[0].outputs[0]["text"].split()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), "the kernel must use this virtual environment"
    assert Path(package).resolve().parent == (ROOT / "armlens").resolve()


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(src):
    nb, seconds = execute(build.target(src))
    print(f"{src.stem}: {seconds:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
