"""What every long command shares: output checks before the model loads, a fallback when a save still fails, and
the one line printed on Ctrl-C.

Each command calls :func:`on_interrupt` as soon as it knows where its results go, with a function that says what is
finished and how to resume; :func:`armlens.cli.main` prints that line and exits 130 on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from armlens.errors import SaveError
from armlens.io import check_output_dir, check_output_file, result_files

logger = logging.getLogger(__name__)

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


_interrupt_note: Callable[[], str] | str | None = None


def on_interrupt(note: Callable[[], str] | str | None) -> None:
    """Record what :func:`interrupt_message` says if the command is interrupted from now on."""
    global _interrupt_note
    _interrupt_note = note


def interrupt_message(command: str) -> str:
    """The one line printed on Ctrl-C: what finished and how to resume (or that nothing was written)."""
    note = _interrupt_note
    try:
        text = note() if callable(note) else note
    except Exception:  # never let the message itself fail
        text = None
    return f"armlens {command}: interrupted; {text or 'nothing was written'}"


@contextmanager
def show_warnings(command: str) -> Iterator[None]:
    """Within the block, armlens' own warnings (:class:`armlens.errors.ArmlensWarning`) print as one line,
    ``armlens CMD: warning: ...``; other warnings print as Python prints them."""
    from armlens.errors import ArmlensWarning

    shown = warnings.showwarning

    def show(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, ArmlensWarning):
            print(f"armlens {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def count_files(folder: str | Path, pattern: str) -> int:
    """How many files under ``folder`` match the glob ``pattern``, each counted once whether plain or
    gzip-compressed (:func:`armlens.io.result_files`); 0 if the folder does not exist."""
    folder = Path(folder)
    return len(result_files(folder, pattern)) if folder.is_dir() else 0


def resume_note(folder: str | Path, pattern: str, what: str) -> Callable[[], str]:
    """A note counting finished ``what`` (files matching ``pattern`` under ``folder``) and telling how to resume."""

    def note() -> str:
        n = count_files(folder, pattern)
        return f"{n} finished {what} saved in {folder}; rerun the same command to resume"

    return note


def output_file(path: str | Path, *, overwrite: bool = True, flag: str = "--overwrite") -> Path:
    """:func:`armlens.io.check_output_file` for an ``--out`` option (hint: ``flag`` replaces an existing file)."""
    return check_output_file(path, overwrite=overwrite, what="--out", hint=f"pass {flag} to replace it")


def output_dir(path: str | Path, marker: str | None = None, *, option: str = "--out") -> Path:
    """:func:`armlens.io.check_output_dir`; with ``marker``, a non-empty folder must hold that file to be resumed."""
    resumable = (lambda p: (p / marker).is_file()) if marker else None
    return check_output_dir(path, resumable=resumable, what=option,
                            hint=f"it holds no {marker}, so it is not this command's results; choose another folder")


def save_or_fallback(save: Callable[[Path], Path], path: Path, stem: str) -> tuple[Path, str | None]:
    """``save(path)``; if that fails with an OSError, save to a fallback file instead so the work is never lost.

    Fallbacks, in order: the current folder, armlens' cache folder, the system temporary folder, each as
    ``<stem>-<time>-<pid><suffix>``. Returns ``(saved path, None)`` or ``(fallback path, the original error)``.
    """
    try:
        return save(path), None
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    from armlens.data.roots import cache_dir

    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{path.suffix}"
    for folder in (Path.cwd(), cache_dir() / "rescued", Path(tempfile.gettempdir())):
        try:
            return save(folder / name), error
        except OSError as e:
            logger.debug("fallback %s failed: %s", folder / name, e)
    raise SaveError(f"could not save to {path} ({error}) nor to any fallback folder")


@dataclass(frozen=True)
class ModelFlags:
    """Where and how a command's model is placed: ``--device``, ``--dtype``, ``--device-map`` (mixed into the options
    of every command that loads a model by ``--model``)."""

    device: str | None = field(default=None, kw_only=True)
    """cpu, cuda, cuda:1, ... (default: cuda when available)."""
    dtype: Literal["float32", "bfloat16", "float16"] = field(default="float32", kw_only=True)
    """Parameter dtype: float32, bfloat16 or float16 (bfloat16 halves a GPU judge's memory)."""
    device_map: str | None = field(default=None, kw_only=True)
    """Spread the layers over devices through accelerate: auto, balanced, sequential, or a JSON {module: device}
    map (instead of --device; see docs/scaling.md)."""

    def check(self) -> None:
        """Refuse bad placement flags before anything is read or written (``main`` calls this)."""
        from armlens.model import check_device, parse_device_map

        check_device(self.device)
        parse_device_map(self.device_map)

    def load(self, name: str | None) -> Any:
        """Load ``name`` (:func:`armlens.model.load_model`) as these flags place it."""
        from armlens.model import load_model, parse_device_map

        return load_model(name, device=self.device, dtype=self.dtype, device_map=parse_device_map(self.device_map))
