"""Folders: the cache folder, output paths checked before the work, the results-folder lock, resuming a folder.

Context
-------
Output paths are checked before any long work starts (:func:`check_output_file`, :func:`check_output_dir`), so a
finished fit is never lost to a bad ``--out``. A results folder has one writer at a time (:class:`ResultsLock`): a
kernel file lock (``filelock``), released by the kernel when its process ends, however it ends. A folder is resumed
only with the settings it was started with (:func:`settings_diff`), and read back by :func:`read_results`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from armlens.errors import BadOutputError, LockedOutputError, NotFoundError
from armlens.io.atomic import atomic_write
from armlens.io.formats import read_json, to_json

logger = logging.getLogger(__name__)

LOCK_NAME = ".armlens.lock"
"""Name of the lock file inside a results folder (:class:`ResultsLock`)."""
HOLDER_NAME = ".armlens.lock.holder"
"""Name of the side file naming the lock's holder (for the "in use" message only)."""
CACHE_ENV = "ARMLENS_CACHE"
"""Environment variable naming armlens' cache folder (default ``~/.cache/armlens``)."""


def cache_dir() -> Path:
    """armlens' cache folder (models, data, downloads): ``$ARMLENS_CACHE`` if set, else ``~/.cache/armlens``. Not
    created here."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "armlens"


# ---------------------------------------------------------------------------------------------------- output checks


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parents(path: Path, what: str, start: Path | None = None) -> None:
    """Refuse a ``path`` below an existing file, or whose nearest existing folder cannot be written (searched from
    ``start``, default ``path``'s parent)."""
    base = _nearest_existing(start if start is not None else path.parent)
    if not base.is_dir():
        raise BadOutputError(f"{what} {path} cannot be created: {base} is a file, not a folder")
    if not _can_create_in(base):
        raise BadOutputError(f"{what} {path} cannot be created: the folder {base} is not writable")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, not guessed (``os.access`` says yes to root in ``/proc``
    and on read-only mounts)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    probe = folder / f".armlens-probe-{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def check_output_file(path: str | Path, *, overwrite: bool = True, what: str = "output file",
                      hint: str = "") -> Path:
    """Check, before any work, that ``path`` can be written as a file; returns it.

    Refused (ValueError, one line): an existing folder, a path below a file, an unwritable folder or file, and an
    existing file when ``overwrite`` is False (``hint`` then says how to allow it).
    """
    if str(path).endswith(("/", os.sep)) or Path(path).expanduser().is_dir():  # Path() drops a trailing slash
        raise BadOutputError(f"{what} {path} is a folder; give a file name")
    path = Path(path).expanduser()
    _check_parents(path, what)
    if path.exists():
        if not overwrite:
            raise BadOutputError(f"{what} {path} already exists" + (f"; {hint}" if hint else ""))
        if not os.access(path, os.W_OK) or not _can_create_in(path.parent):
            raise BadOutputError(f"{what} {path} exists and cannot be replaced (no write permission)")
    return path


def check_output_dir(path: str | Path, *, resumable: Callable[[Path], bool] | None = None,
                     what: str = "output folder", hint: str = "") -> Path:
    """Check, before any work, that ``path`` can be used as a results folder; returns it.

    Refused (ValueError, one line): an existing file, a path below a file, an unwritable folder, a folder held by a
    live writer (:class:`ResultsLock`), and, when ``resumable`` is given, a non-empty folder it does not accept.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise BadOutputError(f"{what} {path} is a file, not a folder")
    if path.is_dir():
        if not _can_create_in(path):
            raise BadOutputError(f"{what} {path} is not writable")
        holder = ResultsLock(path).holder()
        if holder is not None:
            raise LockedOutputError(_busy_message(path, holder))
        entries = [e for e in path.iterdir() if e.name not in (LOCK_NAME, HOLDER_NAME)]
        if entries and resumable is not None and not resumable(path):
            raise BadOutputError(f"{what} {path} is not empty and holds no results this command can resume"
                                 + (f"; {hint}" if hint else "; choose another folder"))
    else:
        _check_parents(path, what, start=path)
    return path


# ---------------------------------------------------------------------------------------------------- results lock

_HELD: dict[Path, list[Any]] = {}
"""The results folders this process holds: folder (resolved) -> [its FileLock, handles holding it]."""


def _busy_message(folder: Path, holder: Mapping[str, Any]) -> str:
    if holder.get("pid") is None:
        who = "another process"
    else:
        command = f"`{holder['command']}`, " if holder.get("command") else ""
        who = f"process {holder['pid']} ({command}on {holder.get('host', '?')} since {holder.get('started', '?')})"
    return f"results folder {folder} is in use by {who}; wait for it to finish or use another --out"


class ResultsLock:
    """One writer per results folder: ``with ResultsLock(folder, "armlens eval"): ...``.

    A kernel lock (``filelock.FileLock``, ``flock`` on ``folder/.armlens.lock``): the kernel releases it when its
    process ends, however it ends (Ctrl-C, ``kill``, ``kill -9``, a crash), so there is no stale lock to take over
    and no race between two processes taking one over. Acquiring never waits: a folder held by another process is a
    :class:`~armlens.errors.LockedOutputError` naming that process, read from the side file
    ``folder/.armlens.lock.holder`` (pid, host, command, start; for the message only, never trusted for the lock).
    Re-entrant within one process, across handles. The lock file stays in the folder after release (removing it
    would let two processes lock two different files).
    """

    def __init__(self, folder: str | Path, command: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.holder_path = self.folder / HOLDER_NAME
        self.command = command
        self._held = 0

    def _key(self) -> Path:
        return self.folder.expanduser().resolve()

    def _record(self) -> dict[str, Any]:
        try:
            info = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def holder(self) -> dict[str, Any] | None:
        """The record of another process holding the lock (``{}`` if it left none), or None when the folder is free
        or held by this process."""
        if self._key() in _HELD or not self.path.is_file():
            return None
        from filelock import FileLock, Timeout

        probe = FileLock(self.path, thread_local=False)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return self._record()
        probe.release()
        return None

    def acquire(self) -> ResultsLock:
        """Take the lock (see the class docstring)."""
        if self._held:
            self._held += 1
            return self
        key = self._key()
        if key in _HELD:  # held by this process through another handle
            _HELD[key][1] += 1
            self._held = 1
            return self
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise LockedOutputError(_busy_message(self.folder, self._record())) from None
        _HELD[key] = [lock, 1]
        self._held = 1
        try:
            atomic_write(self.holder_path, json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        except OSError as e:  # the record only words the message a second writer sees
            logger.debug("could not write %s: %s", self.holder_path, e)
        return self

    def release(self) -> None:
        """Release the lock (the kernel lock goes when the last handle of this process releases it)."""
        if not self._held:
            return
        self._held -= 1
        if self._held:
            return
        key = self._key()
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1]:
            return
        del _HELD[key]
        self.holder_path.unlink(missing_ok=True)  # while still locked, so a next holder's record is never removed
        entry[0].release()

    def __enter__(self) -> ResultsLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------- settings


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Keys whose JSON values differ between two settings records, nested keys dotted (``judge.arm.mode``).

    ``ignore``: top-level keys never compared (the output folder itself, progress bars).
    """
    skip = set(ignore)

    def walk(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            out: list[str] = []
            for k in sorted(set(a) | set(b)):
                if not prefix and k in skip:
                    continue
                out += walk(a.get(k), b.get(k), f"{prefix}{k}.")
            return out
        return [] if a == b else [prefix.rstrip(".")]

    return walk(json.loads(to_json(old)), json.loads(to_json(new)), "")


def read_results(folder: str | Path, name: str = "summary.json") -> dict[str, Any]:
    """Read a results folder's ``name`` JSON file; a clear FileNotFoundError when the folder or file is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"results folder {folder} does not exist" if not folder.exists()
                            else f"{folder} is a file, not a results folder")
    path = folder / name
    if not path.is_file():
        raise NotFoundError(f"{folder} holds no {name} (is it a finished results folder?)")
    return read_json(path)
