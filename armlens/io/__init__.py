"""Files on disk: one atomic writer, JSON/JSONL helpers, output-path checks, the results-folder lock, the cache folder.

Context
-------
Everything armlens writes goes through one atomic writer (a temporary file in the destination's own folder, fsync,
rename over the destination, the umask's mode; removed on any failure, Ctrl-C included), so a reader sees either the
old file or the new one, never half of one. Output paths are checked before any long work starts, a results folder
has one writer at a time (a kernel file lock, released when its process ends, however it ends), and per-item results
are written gzip-compressed while every reader takes either form of a name, so folders written before, with plain
files, still read and resume. Everything is imported from here (``from armlens import io as aio``); the modules are:

- :mod:`~armlens.io.atomic`   the atomic writer (:func:`atomic_write`, :func:`atomic_write_with`,
  :func:`atomic_write_files`, :func:`atomic_open`, :func:`atomic_dir`), file modes, :func:`sha256_file`
- :mod:`~armlens.io.formats`  result files: JSON and JSON lines (:func:`write_json`, :func:`read_jsonl`, ...), their
  gzip-compressed forms (:func:`resolve_compressed`, :func:`result_files`), text with clear decoding errors,
  safetensors files with a digest (:func:`write_tensors`, :func:`read_tensors`)
- :mod:`~armlens.io.folders`  folders: :func:`cache_dir`, output checks (:func:`check_output_file`,
  :func:`check_output_dir`), the results-folder lock (:class:`ResultsLock`), resuming (:func:`settings_diff`,
  :func:`read_results`)

This package sits at the bottom of armlens: it imports only :mod:`armlens.errors`.
"""

from armlens.io.atomic import (
    atomic_dir,
    atomic_open,
    atomic_write,
    atomic_write_files,
    atomic_write_with,
    default_file_mode,
    sha256_file,
)
from armlens.io.folders import (
    CACHE_ENV,
    HOLDER_NAME,
    LOCK_NAME,
    ResultsLock,
    cache_dir,
    check_output_dir,
    check_output_file,
    read_results,
    settings_diff,
)
from armlens.io.formats import (
    DIGEST_KEY,
    GZ,
    decode_error_message,
    gzip_bytes,
    other_form,
    read_bytes,
    read_json,
    read_jsonl,
    read_tensors,
    read_text,
    resolve_compressed,
    result_exists,
    result_files,
    tensors_digest,
    to_json,
    write_json,
    write_jsonl,
    write_tensors,
    write_text_maybe_gz,
)

__all__ = [
    "CACHE_ENV",
    "DIGEST_KEY",
    "GZ",
    "HOLDER_NAME",
    "LOCK_NAME",
    "ResultsLock",
    "atomic_dir",
    "atomic_open",
    "atomic_write",
    "atomic_write_files",
    "atomic_write_with",
    "cache_dir",
    "check_output_dir",
    "check_output_file",
    "decode_error_message",
    "default_file_mode",
    "gzip_bytes",
    "other_form",
    "read_bytes",
    "read_json",
    "read_jsonl",
    "read_results",
    "read_tensors",
    "read_text",
    "resolve_compressed",
    "result_exists",
    "result_files",
    "settings_diff",
    "sha256_file",
    "tensors_digest",
    "to_json",
    "write_json",
    "write_jsonl",
    "write_tensors",
    "write_text_maybe_gz",
]
