"""The one atomic writer: every file armlens writes goes through a temporary file beside it, fsync and rename.

Context
-------
One temp-file-and-rename tail (``_staged``) sits behind :func:`atomic_open`, :func:`atomic_write`,
:func:`atomic_write_with` (a library writer that takes a file name) and :func:`atomic_write_files` (several files in
one call): the bytes go to a temporary file in the destination's own folder, are flushed and ``fsync``-ed, and the
temporary file is renamed over the destination with ``os.replace``. A reader therefore sees either the old file or
the new one, never half of one; on any failure (including Ctrl-C) the temporary file is removed. The final file gets
the usual mode of a new file, ``0o666`` minus the process umask (:func:`default_file_mode`; the temporary file is
made ``0o600``). A whole folder (the de-quantised model cache) is written the same way by :func:`atomic_dir`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# ---------------------------------------------------------------------------------------------------- file modes


def default_file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666`` minus the process umask (read without changing it)."""
    try:  # Linux exposes the umask without a race
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # elsewhere: read by setting and restoring it
    os.umask(mask)
    return 0o666 & ~mask


# ---------------------------------------------------------------------------------------------------- atomic writes


@contextmanager
def _staged(paths: Sequence[Path], *, keep_suffix: bool = False) -> Iterator[list[str]]:
    """The one temp-file-and-rename tail every atomic writer shares.

    Yields one empty temporary file per path, in that path's own folder (created). When the block ends normally
    each is ``fsync``-ed, given :func:`default_file_mode` and renamed over its path; on any exception (Ctrl-C
    included) every temporary file is removed and no path is touched. ``keep_suffix``: the temporary names end in
    the path's suffix (for writers that pick the format from the name).
    """
    tmps: list[str] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            suffix = ".tmp" + (path.suffix if keep_suffix else "")
            while True:  # the name is recorded before the file exists, so a Ctrl-C at any point leaves no stray file
                tmps.append(str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"))
                try:
                    os.close(os.open(tmps[-1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                    break
                except FileExistsError:
                    tmps.pop()
        yield tmps
        for tmp, path in zip(tmps, paths, strict=True):
            _fsync(tmp)
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)


def _fsync(path: str | Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path`` atomically.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). The parent folder is created. On any exception the temporary file
    is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with _staged([Path(path)]) as (tmp,), open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[str], Any]) -> Path:
    """Atomically create ``path`` with a library writer that takes a file name (``safetensors``, ``DataFrame.to_csv``).

    ``writer(tmp)`` writes a temporary file in ``path``'s folder, which is then fsync-ed, given the default mode and
    renamed over ``path``; it is removed on failure.
    """
    path = Path(path)
    with _staged([path]) as (tmp,):
        writer(tmp)
    return path

def atomic_write_files(paths: Sequence[Path], writer: Callable[[list[str]], Any]) -> list[Path]:
    """Like :func:`atomic_write_with` for a writer that makes several files in one call (kaleido's PNG export).

    ``writer(tmps)`` writes one temporary file per path (each in its path's folder, named with the path's suffix);
    all are then moved into place. On failure every temporary file is removed and no path is touched.
    """
    paths = [Path(p) for p in paths]
    with _staged(paths, keep_suffix=True) as tmps:
        writer(tmps)
    return paths


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on success its files are fsync-ed and the folder is renamed to
    ``path`` (which must not exist, or be an empty folder). On any exception the temporary folder is removed, so a
    half-written folder is never found at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:  # named before it exists (as in _staged): a Ctrl-C between making and entering cannot strand it
        while tmp is None:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
            try:
                tmp.mkdir()
            except FileExistsError:  # another writer's folder: never ours to remove
                tmp = None
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync(f)
        os.replace(tmp, path)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
