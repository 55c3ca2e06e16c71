"""The head picker live in JupyterLab, clicked in a real browser.

``tests/test_widgets.py`` drives the picker through Python calls and ``tests/test_notebooks.py`` renders notebook 04
to static HTML; neither shows that the widget works where its users use it. Here JupyterLab (the ``notebooks``
extra) serves a copy of notebook 04 from a temporary root on the loopback address with a random token; headless
Chromium (Debian's ``chromium``, driven by Playwright; nothing downloads a browser) opens it, runs every cell from
the Run menu, and then acts as a person does:

1. clicks a cell of the layer x head grid (the first of ``CLICK_HEADS`` the ARM does not patch): the patch set
   gains exactly that head, the readout's patched P(Yes) changes, the unpatched one does not, and the value shown is
   what ``ActivationRM.score`` gives for the new head set (asked of the notebook's kernel);
2. clicks the presets "none" (patched = unpatched) and "ARM heads" (the fit's heads, the first readout again);
3. types a new response into its text box and leaves the box: the judge is re-read for the new text, and the keys
   stayed in the box (none reached JupyterLab's notebook shortcuts);
4. clicks 20 cells (10 heads on, then off) on the ~300-token judge prompt that notebook 04 times in its kernel, and
   measures in the page, for each click, the time from the mousedown to the first frame after the readout redrew
   (``performance.now()``, a ``MutationObserver``), beside the kernel's own time for the same clicks
   (``HeadPickerView.latencies``) and the notebook's in-kernel figure.

The browser console must log no error and the page must throw none. The server, its kernel and the browser are
stopped on the way out, failure or not, and the test fails if any process it started outlives it. Where no Chromium
is installed the test is skipped with one line saying so; anywhere else a dead widget fails it (with the grid's click
handler disconnected it fails at the first click: the readout does not redraw).

``ARMLENS_UPDATE_SCREENSHOT=1`` writes the screenshot taken after the first click, and the measurements with the
versions they were taken with, to ``docs/images/picker_live.png`` and ``.json`` (``docs/picker.md`` shows them);
otherwise both go to a temporary folder and the tree stays clean.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_interactive_patching.ipynb"
UPDATE_ENV = "ARMLENS_UPDATE_SCREENSHOT"
SCREENSHOT = ROOT / "docs" / "images" / "picker_live.png"
RECORD = SCREENSHOT.with_suffix(".json")
VIEWPORT = {"width": 1280, "height": 1400}
TIMING_HEADS = [(2, 5), (6, 0), (9, 3), (13, 1), (15, 7), (17, 6), (20, 2), (22, 4), (25, 5), (28, 8)]
"""Notebook 04's timing clicks: each head on, then off again (20 clicks)."""
CLICK_HEADS = [(13, 1), *TIMING_HEADS]
"""The first click goes to the first of these that the ARM does not patch (L13H1 is the head notebook 04 clicks by
code), so that it adds a head: a new cross on the grid, and the attention plot turns to that head."""
NEW_RESPONSE = "Buy earplugs."
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"
"""JupyterLab's "get notified about Jupyter news?" toast, which would cover part of the page; disabled."""
NOTEBOOK_TIMEOUT_MS = 900_000
CLICK_TIMEOUT_MS = 30_000
TEXT_TIMEOUT_MS = 90_000
PACKAGES = ["jupyterlab", "jupyter_server", "ipywidgets", "jupyterlab_widgets", "anywidget", "plotly", "ipykernel",
            "playwright"]


# ---------------------------------------------------------------------------------------------------- processes


@pytest.fixture
def own_processes() -> Iterator[Callable[[], None]]:
    """Notes every process started during the test (call the fixture's value while they run: the server, its
    kernel, Playwright's driver, Chromium and its helpers), and after the other fixtures have stopped them fails
    the test if any is still running, killing it first."""
    import psutil

    me = psutil.Process()
    existing = {p.pid for p in me.children(recursive=True)}
    started: dict[int, psutil.Process] = {}

    def note() -> None:
        for p in me.children(recursive=True):
            if p.pid not in existing:
                started.setdefault(p.pid, p)

    yield note

    def running(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 20
    while (left := [p for p in started.values() if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = []
    for p in left:
        try:
            names.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    assert not names, f"processes left running after the test (now killed): {names}"
    print(f"{len(started)} processes started by the test, none left running")


# ---------------------------------------------------------------------------------------------------- JupyterLab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str, timeout: float = 10) -> bytes:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-n:] if self.log.is_file() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut the kernels and the server down through the API, then make sure: the server's process group and
        every process under it (the kernel runs in a session of its own) are killed if still there."""
        import psutil

        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown")
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        for p in tree[1:]:
            try:
                p.wait(timeout=10)
            except psutil.TimeoutExpired:
                p.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
def lab(own_processes) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a random token, serving a temporary root that holds a copy of notebook 04, with
    its configuration, data, runtime, settings and workspaces folders temporary too (the user's are not read or
    written). ``expose_app_in_browser`` lets the page reach the notebook's kernel (``window.jupyterapp``)."""
    pytest.importorskip("jupyterlab", reason='JupyterLab is in the notebooks extra: pip install -e ".[notebooks]"')
    pytest.importorskip("psutil")
    # Not pytest's tmp_path: a concurrent pytest session may prune its base folder.
    state = Path(tempfile.mkdtemp(prefix="armlens-lab-"))
    root = state / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    dirs = {name: state / name for name in ("config", "data", "runtime", "settings", "workspaces")}  # + ipython
    (dirs["config"] / "labconfig").mkdir(parents=True)
    (dirs["config"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {ANNOUNCEMENTS: True}}), encoding="utf-8")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
           "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(state / "ipython"),
           "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    log = state / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=root, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        server.wait_ready(90)
        own_processes()
        yield server
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- browser


@dataclass
class Browser:
    page: Any
    version: str
    console: list[str]
    """Console errors and uncaught page errors, as they were logged."""


@pytest.fixture
def browser(own_processes) -> Iterator[Browser]:
    """Headless Chromium (the system's, never a downloaded one) driven by Playwright, one page."""
    from armlens.plots import find_browser

    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium to drive (scripts/setup.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason='Playwright is in the notebooks extra: pip install -e ".[notebooks]"')
    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=["--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = chromium.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text} ({m.location.get('url', '')})")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"page error: {e}"))
            own_processes()
            yield Browser(page, chromium.version, console)
        finally:
            chromium.close()


# ---------------------------------------------------------------------------------------------------- page helpers

NOTEBOOK_READY = """() => {
  const app = window.jupyterapp, w = app && app.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle' || !w.content || !w.content.widgets.length) return false;
  window.__nb = w;
  return true;
}"""

NOTEBOOK_DONE = """() => {
  const nb = window.__nb, kernel = nb.sessionContext.session.kernel;
  const error = document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]');
  if (error) return 'error: ' + error.innerText.slice(-3000);
  const code = nb.content.widgets.filter(c => c.model.type === 'code');
  return kernel.status === 'idle' && code.every(c => c.model.executionCount !== null) ? 'done' : false;
}"""

KERNEL_RUN = """async ([code, expr]) => {
  const kernel = window.__nb.sessionContext.session.kernel;
  const request = {code, silent: true, store_history: false, user_expressions: expr ? {value: expr} : {}};
  const timeout = new Promise((_, no) => setTimeout(() => no(new Error('no reply from the kernel in 120 s')), 120000));
  const reply = await Promise.race([kernel.requestExecute(request).done, timeout]);
  if (reply.content.status !== 'ok') throw new Error(reply.content.ename + ': ' + reply.content.evalue);
  if (!expr) return null;
  const value = reply.content.user_expressions.value;
  if (value.status !== 'ok') throw new Error(value.ename + ': ' + value.evalue);
  return value.data['text/plain'];
}"""

INSTRUMENT = """() => {
  const box = document.querySelector('.armlens-picker-readout');
  const grid = document.querySelector('.armlens-picker-grid');
  const lat = window.__lat = {t0: null, clicks: [], redraws: 0};
  grid.addEventListener('mousedown', () => { lat.t0 = performance.now(); }, true);
  new MutationObserver(() => {
    lat.redraws += 1;
    const t0 = lat.t0;
    if (t0 === null) return;
    lat.t0 = null;
    const readout = performance.now() - t0;
    requestAnimationFrame(() => lat.clicks.push({wall0: performance.timeOrigin + t0, readout,
                                                 frame: performance.now() - t0}));
  }).observe(box, {childList: true, subtree: true, characterData: true});
}"""
"""Counts the readout's redraws and, for each click on the grid, notes the time from the mousedown to the readout's
redraw and to the first frame after it (the redrawn view), and the mousedown's wall-clock time."""

STAMP_CLICKS = """
import time as _time
_click_wall_ms = []
def _stamped_click(layer, head, _click=view.click):
    t0 = _time.time()
    try:
        return _click(layer, head)
    finally:
        _click_wall_ms.append((t0 * 1000, _time.time() * 1000))
view.click = _stamped_click
"""
"""Run in the notebook's kernel: the grid's click handler (``view._on_click`` calls ``view.click``) notes when each
click's work began and ended, on the wall clock the page's ``performance.timeOrigin`` shares, so a click's time in
the page splits into getting to the kernel, the kernel's work, and getting back to the screen."""

READOUT = """() => {
  const box = document.querySelector('.armlens-picker-readout');
  const row = Array.from(box.querySelectorAll('tr')).find(
    tr => tr.querySelector('th') && tr.querySelector('th').textContent.trim() === 'P(Yes)');
  return {
    p_yes: row ? Array.from(row.querySelectorAll('td')).map(td => td.textContent.trim()) : null,
    first_line: box.innerText.trim().split('\\n')[0],
    text: box.innerText,
    status: document.querySelector('.armlens-picker-status').innerText,
  };
}"""

CELL_POINT = """([layer, head]) => {
  const gd = document.querySelector('.armlens-picker-grid');
  const fl = gd._fullLayout, box = gd.getBoundingClientRect();
  const x = box.left + fl.xaxis._offset + fl.xaxis.d2p(head), y = box.top + fl.yaxis._offset + fl.yaxis.d2p(layer);
  const hit = document.elementFromPoint(x, y);
  return {x, y, on_grid: !!(hit && hit.closest('.armlens-picker-grid'))};
}"""


@dataclass
class Readout:
    """What the page shows: P(Yes) unpatched and patched (the readout's table), the patched heads, the status."""

    unpatched: str
    patched: str
    n_heads: int
    first_line: str
    text: str
    status: str

    @property
    def n_tokens(self) -> int:
        return int(re.search(r"judge prompt (\d+) tokens", self.text)[1])


class Picker:
    """The live picker in the page, and the notebook's kernel behind it."""

    def __init__(self, page: Any, console: list[str]):
        self.page, self.console = page, console

    def kernel(self, expr: str, code: str = "") -> Any:
        """Run ``code`` silently in the notebook's kernel, then return ``expr``'s value (through JSON)."""
        text = self.page.evaluate(KERNEL_RUN, [code, f"__import__('json').dumps({expr})" if expr else ""])
        return None if text is None else json.loads(ast.literal_eval(text))

    def readout(self) -> Readout:
        r = self.page.evaluate(READOUT)
        assert r["p_yes"] and len(r["p_yes"]) == 3, f"no P(Yes) row in the readout: {r['text'][:500]!r}"
        n = re.match(r"(\d+) heads patched", r["first_line"])
        assert n, f"the readout does not start with the patched heads: {r['first_line']!r}"
        return Readout(r["p_yes"][0], r["p_yes"][1], int(n[1]), r["first_line"], r["text"], r["status"])

    def redraws(self) -> int:
        return self.page.evaluate("() => window.__lat.redraws")

    def wait_redraw(self, before: int, what: str, timeout_ms: int = CLICK_TIMEOUT_MS) -> Readout:
        """Wait until the readout has redrawn since ``before`` and the status line shows the same numbers."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(f"() => window.__lat.redraws > {before}", timeout=timeout_ms)
        except PlaywrightTimeout:
            pytest.fail(f"{what}: the readout did not redraw within {timeout_ms / 1000:.0f} s (the handler did not "
                        f"fire, the widget's comm is closed, or the kernel is blocked); console: {self.console}",
                        pytrace=False)
        r = self.readout()
        try:  # the status line is drawn right after the readout
            self.page.wait_for_function(
                "([a, b]) => document.querySelector('.armlens-picker-status').innerText.includes(a + ' \u2192 ' + b)",
                arg=[r.unpatched, r.patched], timeout=10_000)
        except PlaywrightTimeout:
            pytest.fail(f"{what}: the status line {self.readout().status!r} does not show the readout's P(Yes) "
                        f"{r.unpatched} -> {r.patched}", pytrace=False)
        return self.readout()

    def click_cell(self, layer: int, head: int) -> None:
        """A mouse click in the middle of the cell, scrolled into view first if need be (JupyterLab scrolls the
        notebook to its active cell, e.g. when the focus moves between the text boxes)."""
        self.page.locator(".armlens-picker-grid").scroll_into_view_if_needed()
        point = self.page.evaluate(CELL_POINT, [layer, head])
        assert point["on_grid"], f"cell L{layer}H{head} at ({point['x']:.0f}, {point['y']:.0f}) is covered or off screen"
        self.page.mouse.click(point["x"], point["y"])

    def arm_score(self) -> float:
        """``ActivationRM.score`` for the picker's current head set and texts (the notebook's kernel)."""
        return self.kernel("picker.arm().score(picker.prompt, picker.response, picker.criterion)")

    def heads(self) -> list[str]:
        return self.kernel("picker.heads")


def _run_notebook(page: Any, lab: Lab) -> float:
    """Open notebook 04 in JupyterLab and run all its cells from the Run menu; the seconds the run took."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
    page.wait_for_function(NOTEBOOK_READY, timeout=180_000, polling=250)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    t0 = time.perf_counter()
    try:
        done = page.wait_for_function(NOTEBOOK_DONE, timeout=NOTEBOOK_TIMEOUT_MS, polling=500).json_value()
    except PlaywrightTimeout:
        pytest.fail(f"notebook 04 did not finish in JupyterLab within {NOTEBOOK_TIMEOUT_MS / 1000:.0f} s:\n"
                    f"{lab.log_tail()}", pytrace=False)
    assert done == "done", f"notebook 04 failed in JupyterLab: {done}"
    return time.perf_counter() - t0


def _show_picker(page: Any) -> None:
    """The left sidebar closed and the picker's cell at the top of the view, as a person would look at it."""
    if page.evaluate("() => !window.jupyterapp.shell.leftCollapsed"):
        page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    page.locator(".armlens-picker-prompt").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)


# ---------------------------------------------------------------------------------------------------- the test


def test_head_picker_live_in_jupyterlab(own_processes, lab, browser, tmp_path):
    page = browser.page
    out = SCREENSHOT.parent if os.environ.get(UPDATE_ENV) == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    try:
        t_run = _run_notebook(page, lab)
        own_processes()
        picker = Picker(page, browser.console)
        where = picker.kernel("__import__('armlens').__file__")
        print(f"notebook 04 ran in JupyterLab in {t_run:.0f} s; the kernel's armlens: {where}")
        assert page.locator(".armlens-picker-grid .main-svg").count() >= 1, "the grid (a plotly FigureWidget) is drawn"
        assert picker.kernel("type(view).__name__") == "HeadPickerView", "notebook 04 shows the widget, not the snapshot"
        _show_picker(page)
        page.evaluate(INSTRUMENT)
        k = page.locator(".armlens-picker-k input")
        width = k.evaluate("e => e.clientWidth")
        assert k.input_value() == "8" and width >= 40, f"the k box has {width} px for its number {k.input_value()!r}"

        # 1. A click on a cell of the grid.
        start, start_heads = picker.readout(), picker.heads()
        assert start.n_heads == len(start_heads) and start.patched != start.unpatched
        layer, head = next((c for c in CLICK_HEADS if f"L{c[0]}H{c[1]}" not in start_heads), CLICK_HEADS[0])
        label = f"L{layer}H{head}"
        before = picker.redraws()
        picker.click_cell(layer, head)
        clicked = picker.wait_redraw(before, f"a click on cell {label}")
        expected = sorted(set(start_heads) ^ {label}, key=lambda h: tuple(map(int, h[1:].split("H"))))
        assert picker.heads() == expected, "the click toggled exactly the clicked head"
        assert clicked.n_heads == len(expected)
        assert clicked.patched != start.patched, f"the patched P(Yes) did not change: {clicked.patched}"
        assert clicked.patched != clicked.unpatched and clicked.unpatched == start.unpatched
        score = picker.arm_score()
        assert abs(float(clicked.patched) - score) <= 1.5e-4, \
            f"the page shows patched P(Yes) {clicked.patched}, ActivationRM.score gives {score:.6f}"
        if label not in start_heads:
            assert picker.kernel("view.head.value") == label, "the attention plot shows the head just added"
            page.wait_for_function("h => document.body.innerText.includes(h + ': attention from the read position')",
                                   arg=label, timeout=10_000)
        page.mouse.move(5, VIEWPORT["height"] // 2)  # off the grid: no hover label or plotly toolbar in the picture
        _show_picker(page)
        shot = out / SCREENSHOT.name
        page.screenshot(path=str(shot))
        print(f"click on {label}: P(Yes) {start.unpatched} -> {start.patched} became {clicked.unpatched} -> "
              f"{clicked.patched}; ActivationRM.score {score:.6f}; screenshot {shot}")

        # 2. The presets.
        before = picker.redraws()
        page.locator(".armlens-picker-preset-none").click()
        none = picker.wait_redraw(before, "the preset 'none'")
        assert none.n_heads == 0 and none.patched == none.unpatched == start.unpatched and picker.heads() == []
        before = picker.redraws()
        page.locator(".armlens-picker-preset-arm").click()
        arm = picker.wait_redraw(before, "the preset 'ARM heads'")
        assert picker.heads() == start_heads and arm.patched == start.patched and arm.n_heads == start.n_heads

        # 3. Typing a new response: the box is read when it is left (continuous_update is off).
        box = page.locator(".armlens-picker-response textarea")
        cells = page.evaluate("() => window.__nb.content.widgets.length")
        before = picker.redraws()
        box.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(NEW_RESPONSE, delay=20)
        page.keyboard.press("Tab")
        typed = picker.wait_redraw(before, "a new response typed into its box", TEXT_TIMEOUT_MS)
        assert box.input_value() == NEW_RESPONSE
        assert picker.kernel("picker.response") == NEW_RESPONSE, "the kernel got the typed response"
        assert picker.kernel("len(view.prompt.value) > 0 and view.criterion.value == picker.criterion")
        assert typed.unpatched != start.unpatched and typed.n_tokens < start.n_tokens, "the new text was judged"
        score = picker.arm_score()
        assert abs(float(typed.patched) - score) <= 1.5e-4, \
            f"after the edit the page shows patched P(Yes) {typed.patched}, ActivationRM.score gives {score:.6f}"
        # Keys typed into a widget stay there: in JupyterLab's command mode "b" or "a" would add cells.
        assert page.evaluate("() => window.__nb.content.widgets.length") == cells, "keystrokes reached the notebook"

        # 4. Click to redrawn view, 20 clicks on the ~300-token judge prompt notebook 04 times in its kernel.
        before = picker.redraws()
        picker.kernel("", "view.set_text(prompt=long_pair.prompt, response=long_pair.chosen)")
        long = picker.wait_redraw(before, "the timing prompt set by code", TEXT_TIMEOUT_MS)
        n_kernel = picker.kernel("len(view.latencies)")
        mask = picker.heads()
        picker.kernel("", STAMP_CLICKS)
        page.evaluate("() => { window.__lat.clicks = []; }")
        for i, (layer, head) in enumerate(TIMING_HEADS + TIMING_HEADS):
            page.wait_for_timeout(400)  # apart, as a person clicks: plotly reads two clicks within 300 ms as a double
            before = picker.redraws()
            picker.click_cell(layer, head)
            picker.wait_redraw(before, f"timing click {i + 1} on L{layer}H{head}")
        page.wait_for_function("() => window.__lat.clicks.length >= 20", timeout=5_000)
        clicks = page.evaluate("() => window.__lat.clicks")
        kernel_ms = [s * 1000 for s in picker.kernel(f"view.latencies[{n_kernel}:]")]
        stamps = picker.kernel("_click_wall_ms")
        assert len(clicks) == len(kernel_ms) == len(stamps) == 20, "each click toggled one head, once"
        browser_ms = [c["frame"] for c in clicks]
        assert picker.heads() == mask, "10 heads on, then off: the patch set is back"
        notebook = picker.kernel("{'latency_ms': LATENCY_S * 1000, 'n': len(latencies), 'n_tokens': n_tokens, "
                                 "'text_s': t_text, 'threads': torch.get_num_threads()}")

        assert not browser.console, "the browser logged errors:\n" + "\n".join(browser.console)
    except BaseException:
        failure = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(failure))
            print(f"page at the failure: {failure}\nconsole: {browser.console}\nserver log:\n{lab.log_tail()}")
        except Exception:
            pass
        raise

    def summary(ms: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(ms), 1), "min": round(min(ms), 1), "max": round(max(ms), 1)}

    record = {
        "what": "notebook 04's head picker in JupyterLab, clicked in headless Chromium (tests/test_picker_browser.py)",
        "date": date.today().isoformat(),
        "versions": {name: version(name) for name in PACKAGES} | {"chromium": browser.version,
                                                                  "python": platform.python_version()},
        "machine": f"{os.cpu_count()} CPU cores; kernel on {notebook['threads']} torch threads",
        "judge_prompt_tokens": long.n_tokens,
        "click_to_redraw_ms_in_browser": {"n": len(browser_ms), **summary(browser_ms),
                                          "measured": "mousedown on the grid to the first frame after the readout "
                                                      "redrew (performance.now(), MutationObserver)"},
        "same_clicks_in_kernel_ms": {"n": len(kernel_ms), **summary(kernel_ms),
                                     "measured": "HeadPickerView.click: toggle, readout, redraw sent"},
        "same_clicks_timeline_ms": {
            "measured": "medians over the 20 clicks, from the mousedown; kernel times from its wall clock",
            "kernel starts": round(statistics.median(k0 - c["wall0"] for c, (k0, _) in zip(clicks, stamps, strict=True)), 1),
            "kernel done": round(statistics.median(k1 - c["wall0"] for c, (_, k1) in zip(clicks, stamps, strict=True)), 1),
            "readout redrawn": round(statistics.median(c["readout"] for c in clicks), 1),
            "next frame": round(statistics.median(browser_ms), 1)},
        "notebook_in_kernel_ms": {"n": notebook["n"], "median": round(notebook["latency_ms"], 1),
                                  "judge_prompt_tokens": notebook["n_tokens"],
                                  "new_text_s": round(notebook["text_s"], 2)},
        "notebook_run_s": round(t_run, 1),
        "screenshot": f"{SCREENSHOT.name}: after the click on {label}: {len(expected)} heads patched (the ARM's "
                      f"{len(start_heads)} {'+' if label in expected else '-'} {label}), P(Yes) {clicked.unpatched} "
                      f"unpatched, {start.patched} -> {clicked.patched} patched",
        "judge_prompt_tokens_in_screenshot": clicked.n_tokens,
    }
    (out / RECORD.name).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
