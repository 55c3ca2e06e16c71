"""The README and docs/ cannot go stale: every ```python block runs, the README's command-line block runs, every
relative link (and ``#anchor`` into a markdown page) resolves, and the README stays a front door (at most 10,000
bytes).

Python blocks run in a subprocess, one shared namespace per page (a page's blocks build on each other), in one
working folder shared by all pages: the README's quickstart saves ``helpful.arm`` there and the docs' snippets load
it, so the README's page runs first (the ``readme_run`` fixture) whichever test asks for it. A block opts out only
with a first line ``# not run: <why>`` (a GPU, several GPUs, Hub downloads, long runs); the reason is required.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_BYTES = 10_000
OPT_OUT = re.compile(r"^#\s*not run:\s*(?P<why>\S.*)$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
SNIPPET_TIMEOUT_S = 1800


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block of a markdown text as (language, code), dedented, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        blocks.append((m["lang"], textwrap.dedent("\n".join(lines[i + 1:j]))))
        i = j + 1
    return blocks


def python_blocks(page: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(blocks to run, [(first line, reason) of each opted-out block]) of a page's ```python blocks."""
    run, skipped = [], []
    for lang, code in fenced_blocks(page.read_text(encoding="utf-8")):
        if lang != "python":
            continue
        first = code.strip().splitlines()[0] if code.strip() else ""
        if m := OPT_OUT.match(first):
            skipped.append((first, m["why"]))
        else:
            run.append(code)
    return run, skipped


def _label(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


RUNNER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for i, code in enumerate(blocks):
    try:
        exec(compile(code, f"<{sys.argv[2]} python block {i + 1}>", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: {sys.argv[2]}, python block {i + 1} of {len(blocks)}", file=sys.stderr)
        sys.exit(1)
print(f"ran {len(blocks)} python block(s) of {sys.argv[2]}")
"""


def run_python_blocks(page: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    blocks, _ = python_blocks(page)
    spec = workdir / f".{page.stem}.blocks.json"
    spec.write_text(json.dumps(blocks), encoding="utf-8")
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", RUNNER, str(spec), _label(page)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def workdir():
    """A folder of its own (not under pytest's rotating base folder, which a concurrent session may prune)."""
    with tempfile.TemporaryDirectory(prefix="armlens-docs-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def readme_run(workdir) -> subprocess.CompletedProcess[str]:
    """The README's python blocks, run once: they save ``helpful.arm``, which the docs' snippets and the README's
    command-line block use."""
    return run_python_blocks(README, workdir)


def _loads_default_model(page: Path) -> bool:
    return any("load_model(" in code for code in python_blocks(page)[0])


DOC_PAGES_WITH_PYTHON = [p for p in DOCS if python_blocks(p)[0]]


@pytest.mark.slow
def test_readme_python_quickstart_runs(readme_run, workdir):
    _check(readme_run, "README.md's python blocks")
    assert (workdir / "helpful.arm").is_file()


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=p.name, marks=[pytest.mark.slow] if _loads_default_model(p) else []) for p in
     DOC_PAGES_WITH_PYTHON],
)
def test_docs_python_blocks_run(page, readme_run, workdir):
    _check(readme_run, "README.md's python blocks (the docs load the ARM they save)")
    _check(run_python_blocks(page, workdir), f"{_label(page)}'s python blocks")


def readme_cli_lines() -> list[str]:
    """The README's command-line block: the bash block whose every line runs ``armlens``."""
    for lang, code in fenced_blocks(README.read_text(encoding="utf-8")):
        lines = [line for line in code.splitlines() if line.strip()]
        if lang == "bash" and lines and all(line.startswith(".venv/bin/armlens ") for line in lines):
            return lines
    return []


def _armlens_command() -> list[str]:
    script = Path(sys.executable).parent / "armlens"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from armlens.cli import main; sys.exit(main())"]


def test_readme_has_its_two_commands_and_a_cli_block():
    blocks = [code for lang, code in fenced_blocks(README.read_text(encoding="utf-8")) if lang == "bash"]
    assert blocks[0].strip().splitlines() == ["bash scripts/setup.sh && .venv/bin/armlens demo", ".venv/bin/pytest"]
    assert len(readme_cli_lines()) == 4


@pytest.mark.slow
@pytest.mark.parametrize("line", readme_cli_lines(), ids=lambda line: " ".join(shlex.split(line, comments=True)[1:3]))
def test_readme_cli_line_runs(line, readme_run, workdir):
    _check(readme_run, "README.md's python blocks (the command line scores the ARM they save)")
    argv = _armlens_command() + shlex.split(line, comments=True)[1:]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
    _check(proc, f"README command {line!r}")


def test_opt_outs_say_why():
    """Opt-outs are explicit and few: each names its reason, and the README opts nothing out."""
    out = {_label(p): python_blocks(p)[1] for p in PAGES if python_blocks(p)[1]}
    assert README.name not in out
    for page, skipped in out.items():
        for first, why in skipped:
            assert len(why.split()) >= 3, f"{page}: opt-out without a reason: {first!r}"
    assert sum(len(s) for s in out.values()) <= 3, out


def test_readme_is_a_front_door():
    assert len(README.read_bytes()) <= MAX_README_BYTES


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line) or line.strip() == "```":
            in_code = not in_code
            continue
        if not in_code and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _without_indented_code(text: str) -> str:
    """``text`` less its indented code blocks: runs of lines indented 4+ spaces that start after a blank line."""
    out, in_code, prev_blank = [], False, True
    for line in text.splitlines():
        in_code = line.startswith("    ") and (prev_blank or in_code)
        out.append("" if in_code else line)
        prev_blank = not line.strip()
    return "\n".join(out)


def links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", "", text, flags=re.M | re.S)  # fenced code
    text = _without_indented_code(text)
    text = re.sub(r"`[^`]*`", "", text)  # inline code (may span lines)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_relative_links_and_anchors_resolve():
    bad = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # external URL
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            if not path.exists():
                bad.append(f"{_label(page)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                bad.append(f"{_label(page)}: {target} (no heading #{anchor} in {path.name})")
    assert bad == []


def test_the_checks_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title here\n\n```python\n# not run: needs a GPU with 80 GB\nx = 1\n```\n\n```python\ny = 2\n```\n"
                    "[a](missing.md) [b](#title-here) `[c](nowhere.md)`\n\n    code(x)[0]\n", encoding="utf-8")
    run, skipped = python_blocks(page)
    assert run == ["y = 2"] and skipped == [("# not run: needs a GPU with 80 GB", "needs a GPU with 80 GB")]
    assert links(page) == ["missing.md", "#title-here"]
    assert anchors(page) == {"title-here"}
    assert slug("A second model: not Gemma 3 270M") == "a-second-model-not-gemma-3-270m"
    assert slug("Speed and memory, measured") == "speed-and-memory-measured"
