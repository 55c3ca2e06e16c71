"""Build the notebooks from their percent-format sources: ``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``.

The ``.py`` sources are what we edit and review (readable diffs); the ``.ipynb`` files are generated from them with
outputs stripped, and ``tests/test_notebooks.py`` checks that the two never drift apart.

Source format (the ``# %%`` "percent" format that VS Code, Spyder and jupytext understand):

- ``# %%`` starts a code cell (anything after the marker on that line is ignored);
- ``# %% [markdown]`` starts a markdown cell, whose lines are comments: ``# text`` becomes ``text``, ``#`` a blank line;
- leading and trailing blank lines of a cell are dropped; nothing but blank lines may precede the first marker.

Usage::

    .venv/bin/python notebooks/build.py            # (re)write every notebook
    .venv/bin/python notebooks/build.py --check    # exit 1 if a notebook differs from its source
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
MARKER = re.compile(r"^# %%(?P<rest>.*)$")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class SourceError(ValueError):
    """A percent-format source that cannot be turned into a notebook."""


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _markdown(lines: list[str], path: Path, start: int) -> str:
    out = []
    for i, line in enumerate(lines):
        if line.strip() == "":
            out.append("")
        elif line == "#" or line.startswith("# "):
            out.append(line[2:])
        else:
            raise SourceError(f"{path}:{start + i + 1}: a markdown cell line must start with '# ' (got {line!r})")
    return "\n".join(_trim(out))


def parse_cells(text: str, path: Path = Path("<source>")) -> list[tuple[str, str]]:
    """``[(cell_type, source), ...]`` of a percent-format script."""
    cells: list[tuple[str, int, list[str]]] = []
    for n, line in enumerate(text.splitlines()):
        m = MARKER.match(line)
        if m:
            rest = m.group("rest").strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            if rest.startswith("[") and kind != "markdown":
                raise SourceError(f"{path}:{n + 1}: unknown cell type {rest!r} (use '# %%' or '# %% [markdown]')")
            cells.append((kind, n + 1, []))
        elif cells:
            cells[-1][2].append(line)
        elif line.strip():
            raise SourceError(f"{path}:{n + 1}: text before the first '# %%' marker")
    out = []
    for kind, start, lines in cells:
        body = _markdown(lines, path, start) if kind == "markdown" else "\n".join(_trim(lines))
        if body:
            out.append((kind, body))
    if not out:
        raise SourceError(f"{path}: no cells")
    return out


def _cell_id(kind: str, source: str, seen: set[str]) -> str:
    """A stable id from the cell's content (inserting a cell does not renumber the others)."""
    base = hashlib.sha1(f"{kind}\n{source}".encode()).hexdigest()[:8]
    cid, k = base, 1
    while cid in seen:
        cid, k = f"{base}-{k}", k + 1
    seen.add(cid)
    return cid


def build_notebook(src: Path) -> nbformat.NotebookNode:
    """The notebook for one source, outputs empty."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"},
                   "armlens": {"source": f"src/{src.name}", "generated_by": "notebooks/build.py"}}
    seen: set[str] = set()
    for kind, body in parse_cells(src.read_text(encoding="utf-8"), src):
        cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
        cell.id = _cell_id(kind, body, seen)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(src: Path) -> str:
    """The exact text of the ``.ipynb`` built from ``src``."""
    return nbformat.writes(build_notebook(src)) + "\n"


def sources() -> list[Path]:
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def target(src: Path) -> Path:
    return HERE / f"{src.stem}.ipynb"


def stale() -> list[str]:
    """Problems: notebooks that differ from their source, or have no source."""
    problems = []
    for src in sources():
        nb = target(src)
        if not nb.is_file():
            problems.append(f"{nb.name} is missing (build it from src/{src.name})")
        elif nb.read_text(encoding="utf-8") != render(src):
            problems.append(f"{nb.name} differs from src/{src.name}")
    known = {target(s).name for s in sources()}
    problems += [f"{p.name} has no source in src/" for p in sorted(HERE.glob("*.ipynb")) if p.name not in known]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that every notebook matches its source")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: .venv/bin/python notebooks/build.py", file=sys.stderr)
        return 1 if problems else 0
    for src in sources():
        text = render(src)
        out = target(src)
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
