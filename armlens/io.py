"""Files on disk: one atomic writer, JSON/JSONL helpers, output-path checks, the results-folder lock, the cache folder.

Context
-------
Everything armlens writes goes through one temp-file-and-rename tail (``_staged``), behind :func:`atomic_open`,
:func:`atomic_write`, :func:`atomic_write_with` (a library writer that takes a file name) and
:func:`atomic_write_files` (several files in one call): the bytes go to a temporary file in the destination's own
folder, are flushed and ``fsync``-ed, and the temporary file is renamed over the destination with ``os.replace``.
A reader therefore sees either the old file or the new one, never half of one; on any failure (including Ctrl-C)
the temporary file is removed. The final file gets the usual mode of a new file, ``0o666`` minus the process umask
(the temporary file is made ``0o600``). A whole folder (the de-quantised model cache) is written the
same way by :func:`atomic_dir`.

Output paths are checked before any long work starts (:func:`check_output_file`, :func:`check_output_dir`), so a
finished fit is never lost to a bad ``--out``. A results folder has one writer at a time (:class:`ResultsLock`): a
kernel file lock (``filelock``), released by the kernel when its process ends, however it ends.

Per-item results are written gzip-compressed with deterministic bytes (``items.jsonl.gz``: :func:`gzip_bytes`,
:func:`write_text_maybe_gz`), and every reader here takes either form of a name (:func:`resolve_compressed`), so
folders written before, with plain files, still read and resume.

This module sits at the bottom of armlens: it imports only :mod:`armlens.errors`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from armlens.errors import BadDataError, BadOutputError, LockedOutputError, NotFoundError

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


DIGEST_KEY = "armlens_sha256"
"""Metadata key of the SHA-256 of a tensors file's tensors (:func:`tensors_digest`), checked on every read."""


def tensors_digest(tensors: Mapping[str, Any]) -> str:
    """SHA-256 of ``tensors``: each one's name, dtype, shape and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensors(path: str | Path, tensors: Mapping[str, Any], meta: Any) -> Path:
    """One safetensors file of ``tensors`` with ``meta`` as JSON under the ``armlens`` metadata key and the tensors'
    digest (:func:`tensors_digest`) under ``armlens_sha256``, written atomically (saved ARMs, judges' fit files)."""
    from safetensors.torch import save_file

    metadata = {"armlens": to_json(meta, None), DIGEST_KEY: tensors_digest(tensors)}
    return atomic_write_with(path, lambda tmp: save_file(dict(tensors), tmp, metadata=metadata))


def read_tensors(path: str | Path, what: str) -> tuple[dict[str, Any], Any]:
    """``(tensors, meta)`` of a file :func:`write_tensors` wrote; a :class:`~armlens.errors.BadDataError` naming the
    file where it cannot be read, holds no armlens metadata, or its tensors differ from the digest saved with them
    (files written before digests have none, and are read unchecked)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise BadDataError(f"{path} is not a readable {what}: {' '.join(str(e).split())}") from e
    raw = metadata.get("armlens")
    if raw is None:
        raise BadDataError(f"{path} is a safetensors file but holds no armlens metadata (not a {what})")
    saved = metadata.get(DIGEST_KEY)
    if saved is not None and saved != tensors_digest(tensors):
        raise BadDataError(f"{path} is corrupt: its tensors differ from the SHA-256 saved with them; restore or "
                           "recreate it")
    try:
        return tensors, json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadDataError(f"{path}: its armlens metadata is not valid JSON ({e.msg}); not a readable {what}") from e


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


# ---------------------------------------------------------------------------------------------------- compressed results

GZ = ".gz"
"""Suffix of a gzip-compressed results file (``items.jsonl.gz``, ``selection-reference.json.gz``)."""


def other_form(path: str | Path) -> Path:
    """The other form of a results file: ``x.jsonl.gz`` for ``x.jsonl``, ``x.jsonl`` for ``x.jsonl.gz``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(GZ)) if path.name.endswith(GZ) else path.with_name(path.name + GZ)


def resolve_compressed(path: str | Path) -> Path:
    """The file to read for ``path``: ``path`` itself where it exists, else its other form (:func:`other_form`)
    where that exists, else ``path`` (so a missing file's error names what was asked for).

    Per-item results are committed gzip-compressed (a fifteenth of the bytes) while folders written before keep
    their plain files; every reader goes through here, so code may name either form and reads whichever is on disk.
    The writers keep one form per file (:func:`write_text_maybe_gz` removes the other), so the order matters only
    for files copied in by hand: the name asked for wins.
    """
    path = Path(path)
    if path.exists():
        return path
    other = other_form(path)
    return other if other.exists() else path


def result_exists(path: str | Path) -> bool:
    """Whether ``path`` or its other form (:func:`other_form`) is a file: a finished result, in either form."""
    return resolve_compressed(path).is_file()


def result_files(folder: str | Path, pattern: str) -> list[Path]:
    """The files under ``folder`` matching the glob ``pattern`` in either form, each named by its plain form
    (``.gz`` dropped; :func:`read_json` and the others find the file), sorted and without duplicates, so a folder
    lists the same names, in the same order, before and after its files are compressed."""
    folder = Path(folder)
    found = [*folder.glob(pattern), *folder.glob(pattern + GZ)]
    return sorted({f.with_name(f.name.removesuffix(GZ)) for f in found if f.is_file()})


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed with deterministic bytes: no file name and a zero time stamp in the header, so the
    same content always gives the same file (a rerun of a results folder changes nothing that git sees)."""
    buf = BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, decompressed where its name ends in ``.gz``; a corrupt compressed file is a ValueError naming
    it. ``path`` is read as given (see :func:`resolve_compressed` for either form)."""
    path = Path(path)
    data = path.read_bytes()
    if not path.name.endswith(GZ):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise BadDataError(f"{path} is not a readable gzip file: {e}") from e


def write_text_maybe_gz(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically, gzip-compressed (:func:`gzip_bytes`) when ``path`` ends in
    ``.gz``; then remove ``path``'s other form (:func:`other_form`), which would otherwise be a stale copy that a
    reader naming that form reads first. Returns ``path``."""
    path = Path(path)
    data = text.encode("utf-8")
    atomic_write(path, gzip_bytes(data) if path.name.endswith(GZ) else data)
    other_form(path).unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------- JSON


def _default(o: Any) -> Any:
    """JSON fallback for numpy values, paths, dataclasses, objects with ``to_dict`` and sets."""
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", None) == 0:  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist") and callable(o.tolist):  # numpy arrays, tensors
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def _nan_to_none(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o


def to_json(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as JSON text: numpy values, paths and dataclasses converted; NaN and infinity written as ``null``."""
    return json.dumps(_nan_to_none(obj), indent=indent, default=_default, allow_nan=False)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (indented, or on one line with ``indent=None``) to ``path`` atomically (see
    :func:`to_json`); gzip-compressed when ``path`` ends in ``.gz`` (:func:`write_text_maybe_gz`)."""
    return write_text_maybe_gz(path, to_json(obj, indent) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write one JSON object per line to ``path`` atomically; gzip-compressed when ``path`` ends in ``.gz``."""
    return write_text_maybe_gz(path, "".join(to_json(r, indent=None) + "\n" for r in rows))


def read_json(path: str | Path) -> Any:
    """Read a JSON file, or its gzip-compressed form (:func:`resolve_compressed`); a malformed file is a ValueError
    naming the file and the line."""
    path = resolve_compressed(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadDataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e


def read_jsonl(path: str | Path) -> list[Any]:
    """Read a JSON-lines file, or its gzip-compressed form (:func:`resolve_compressed`; blank lines skipped); a bad
    line is a ValueError naming the file and the line."""
    path = resolve_compressed(path)
    rows = []
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BadDataError(f"{path}, line {i}: not valid JSON ({e.msg})") from e
    return rows


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a text file, or its gzip-compressed form (:func:`read_bytes`); bytes that are not ``encoding`` are a
    ValueError naming the file, line and byte offset."""
    path = resolve_compressed(path)
    data = read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise BadDataError(decode_error_message(path, data, e)) from e


def decode_error_message(path: str | Path, data: bytes, error: UnicodeDecodeError) -> str:
    """``FILE, line N: not valid UTF-8 (byte 0x.. at offset K)`` for a decoding error in ``data`` read from ``path``."""
    line = data.count(b"\n", 0, error.start) + 1
    bad = data[error.start:error.start + 1].hex()
    return f"{path}, line {line}: not valid {error.encoding} (byte 0x{bad} at offset {error.start}); save it as UTF-8"


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
