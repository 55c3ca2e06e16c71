"""Result files: JSON and JSON lines, their gzip-compressed forms, text with clear decoding errors, tensors files.

Context
-------
Per-item results are written gzip-compressed with deterministic bytes (``items.jsonl.gz``: :func:`gzip_bytes`,
:func:`write_text_maybe_gz`), and every reader here takes either form of a name (:func:`resolve_compressed`), so
folders written before, with plain files, still read and resume. JSON is written with numpy values, paths and
dataclasses converted and NaN as ``null`` (:func:`to_json`). Saved ARMs and judges' fit files are one safetensors
file each, with their metadata and a digest of their tensors (:func:`write_tensors`, :func:`read_tensors`). Every
writer here goes through :mod:`armlens.io.atomic`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import zlib
from collections.abc import Iterable, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

from armlens.errors import BadDataError
from armlens.io.atomic import atomic_write, atomic_write_with

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


# ---------------------------------------------------------------------------------------------------- tensors files


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
