"""The notebooks: committed ``.ipynb`` hold the cells of their jupytext-paired ``notebooks/src/*.py`` scripts and no
outputs, and each one runs top to bottom.

Pairing is jupytext's (``notebooks/jupytext.toml``: ``ipynb,src//py:percent``); after editing a script, run
``.venv/bin/jupytext --sync notebooks/src/*.py``. Execution uses nbclient with the ``python3`` kernel. jupyter_client
starts that kernel with ``sys.executable`` (the kernelspec's ``argv[0]`` is plain ``python``), so the kernel runs in
the same virtual environment as pytest; :func:`test_kernel_runs_in_this_environment` checks it. A failing cell fails
the test with that cell's number, its first lines and the error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import jupytext
import pytest
from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file
from jupytext.paired_paths import paired_paths

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ROOT = NOTEBOOKS.parent
CELL_TIMEOUT_S = 900
"""Per-cell limit; a notebook takes ~1-2 minutes on an idle 2-core CPU."""
SOURCES = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]_*.py"))
SYNC = "run `.venv/bin/jupytext --sync notebooks/src/*.py`"


def notebook_of(src: Path) -> Path:
    return NOTEBOOKS / f"{src.stem}.ipynb"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


# ---------------------------------------------------------------------------------------------------- sources


def test_there_are_four_notebooks():
    assert [s.stem for s in SOURCES] == [
        "01_quickstart", "02_head_attributions", "03_ablation_figures", "04_interactive_patching"]
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [s.stem for s in SOURCES], "a notebook has no script"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_jupytext_pairs_notebook_with_source(src):
    """The repository's jupytext configuration pairs each notebook with its percent-format script."""
    nb = notebook_of(src)
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(NOTEBOOKS)))
    paired = paired_paths(str(nb), "ipynb", config.default_formats(str(nb)))
    assert (str(src), {"prefix": "src/", "format_name": "percent", "extension": ".py"}) in paired


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_source(src):
    nb = notebook_of(src)
    assert nb.is_file(), f"{nb.name} is missing: {SYNC}"
    cells = _cells(src)
    assert cells and all(body.strip() for _, body in cells), f"src/{src.name} has empty cells"
    assert _cells(nb) == cells, f"{nb.name} differs from src/{src.name}: {SYNC}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(src):
    data = json.loads(notebook_of(src).read_text(encoding="utf-8"))
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(data["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {i} keeps outputs"


def test_drift_is_detected(tmp_path):
    """The comparison above can fail: an edited script no longer matches its notebook."""
    src = SOURCES[0]
    edited = tmp_path / src.name
    edited.write_text(src.read_text(encoding="utf-8") + "\n# %%\nprint('new cell')\n", encoding="utf-8")
    assert _cells(edited)[:-1] == _cells(notebook_of(src))
    assert _cells(edited) != _cells(notebook_of(src))


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
    nb, seconds = execute(notebook_of(src))
    print(f"{src.stem}: {seconds:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
