"""Writing figures: HTML always (``include_plotlyjs="cdn"``), PNG through kaleido, which needs a Chrome-family
browser (:func:`find_browser`, :class:`BrowserNotFoundError`); every file atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go

from armlens.errors import BadInputError, SetupError
from armlens.io import atomic_write, atomic_write_files


class BrowserNotFoundError(SetupError):
    """PNG export needs a Chrome-family browser (kaleido renders through it) and none was found."""


BROWSER_HELP = (
    "PNG export needs a Chrome-family browser (kaleido renders figures through it) and none was found. "
    "Install one (Debian/Ubuntu: `apt-get install -y chromium`; or run scripts/setup.sh, which does it), or point "
    "BROWSER_PATH at a Chrome/Chromium executable, or pass --formats html to write only the interactive HTML."
)


def find_browser() -> str | None:
    """Path of a Chrome-family browser kaleido can use (``BROWSER_PATH``, PATH, usual install places), or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # choreographer missing or its search failed: fall back to PATH
        import shutil

        for exe in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
            if path := shutil.which(exe):
                return path
    return None


def quiet_export_logs() -> None:
    """kaleido / choreographer log every browser start at INFO; keep the CLI's output to the written paths."""
    import logging

    for name in ("choreographer", "kaleido", "logistro"):
        logging.getLogger(name).setLevel(logging.WARNING)


def write_figures(
    figures: Mapping[str, go.Figure],
    out: str | Path,
    *,
    formats: Sequence[str] = ("png", "html"),
    html_figures: Mapping[str, go.Figure] | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write each figure as ``OUT/{name}.html`` (plotly.js from the CDN) and ``OUT/{name}.png`` (kaleido, one
    browser session for all), each file atomically. ``html_figures`` overrides the HTML version of a figure (e.g. a
    slider instead of small multiples). HTML is written first; a missing browser for PNG is then a
    :class:`BrowserNotFoundError` whose message names the HTML files already written."""
    unknown = [f for f in formats if f not in ("png", "html")]
    if unknown:
        raise BadInputError(f"unknown figure format(s) {unknown}; choose png and/or html")
    out = Path(out)
    written = []
    if "html" in formats:
        for name, fig in figures.items():
            html = (html_figures or {}).get(name, fig).to_html(include_plotlyjs="cdn", full_html=True)
            written.append(atomic_write(out / f"{name}.html", html))
    if "png" in formats and figures:
        if find_browser() is None:
            done = f"{len(written)} HTML figure(s) were written to {out}. " if written else ""
            raise BrowserNotFoundError(done + BROWSER_HELP)
        import plotly.io as pio

        quiet_export_logs()
        names = list(figures)
        paths = [out / f"{n}.png" for n in names]
        figs = [figures[n] for n in names]
        written += atomic_write_files(paths, lambda tmps: pio.write_images(
            figs, tmps, format="png", scale=scale,
            width=[f.layout.width for f in figs], height=[f.layout.height for f in figs]))
    return written
