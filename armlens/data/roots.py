"""Where preference data lives on disk: the data root and the download cache.

Context
-------
The offline loaders (LLMBar, HHH, TruthfulQA, HH-RLHF, XSTest) read files laid out like this under a *data root*::

    llmbar/Natural.json, llmbar/Adversarial_{Neighbor,GPTInst,GPTOut,Manual}.json
    hhh_alignment/{harmless,helpful,honest,other}.json
    truthfulqa_bigbench/questions.json
    hh_rlhf/harmless-base_test.jsonl.gz
    xstest/xstest_prompts.csv, xstest/<model>.csv

Every root belongs to the user. It is resolved in this order (:func:`data_root`):

1. the ``root`` argument (``--root DIR`` on the command line), which must be a folder;
2. the environment variable ``ARMLENS_DATA_ROOT``;
3. the user's data folder ``$ARMLENS_CACHE/data`` (default ``~/.cache/armlens/data``), if it exists;
4. the BIG-bench cache filled by ``armlens data fetch bigbench`` (``$ARMLENS_CACHE/bigbench``, default
   ``~/.cache/armlens/bigbench``), which holds ``hhh_alignment/`` and ``truthfulqa_bigbench/`` in the same layout;
5. the copy bundled inside the package (:mod:`armlens.data.bundle`), which holds all five sets and always exists.

A loader that needs one particular file searches every candidate root (:func:`candidate_roots`) unless the caller
named a root explicitly, so HHH is found in the package even when ``ARMLENS_DATA_ROOT`` names a folder without it,
and a user's own copy of a set (roots 1-4) is read instead of the bundled one. An explicit ``root`` is the only root
searched: ``--root DIR`` means "read this folder". :func:`where_from` says which root a dataset is read from.
A single file of pairs is not a root: it is loaded with ``--data path:FILE``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from armlens.data.bundle import bundled_root
from armlens.errors import NotFoundError
from armlens.io import CACHE_ENV, cache_dir  # noqa: F401  (the cache folder is defined once, in io)

DATA_ROOT_ENV = "ARMLENS_DATA_ROOT"
"""Environment variable naming the preference data root."""


def user_data_dir() -> Path:
    """The user's own data root: ``cache_dir() / "data"`` (searched when it exists; never created here)."""
    return cache_dir() / "data"


def bigbench_cache_dir() -> Path:
    """Where ``armlens data fetch bigbench`` puts HHH and TruthfulQA: ``cache_dir() / "bigbench"``."""
    return cache_dir() / "bigbench"


def _check_root(path: Path, name: str) -> Path:
    """``path`` if it is a folder; else a FileNotFoundError saying what it is instead."""
    if path.is_dir():
        return path
    if path.exists():
        raise NotFoundError(f"{name} {path} is a file; a data root is a folder (load a single file of pairs "
                            f"with --data path:{path})")
    raise NotFoundError(f"{name} {path} does not exist (a data root is a folder)")


def candidate_roots(root: str | Path | None = None) -> list[Path]:
    """The roots a loader searches, in priority order.

    An explicit ``root`` is the only candidate (and must be a folder). Otherwise: ``$ARMLENS_DATA_ROOT`` (must be a
    folder if set), the user's data folder if it exists, the BIG-bench cache if it exists, and the bundled copy.
    """
    if root is not None:
        return [_check_root(Path(root).expanduser(), "data root")]
    roots: list[Path] = []
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        roots.append(_check_root(Path(env).expanduser(), DATA_ROOT_ENV))
    for folder in (user_data_dir(), bigbench_cache_dir()):
        if folder.is_dir():
            roots.append(folder)
    roots.append(bundled_root())
    return roots


def data_root(root: str | Path | None = None) -> Path:
    """The data root: the first of (``root``, ``$ARMLENS_DATA_ROOT``, the user's data folder, the BIG-bench cache,
    the bundled copy); the bundled copy when the user has none of the others."""
    return candidate_roots(root)[0]


def find_data_file(relative: str | Path, root: str | Path | None = None) -> Path | None:
    """The first ``<candidate root>/relative`` that exists, or None."""
    for r in candidate_roots(root):
        path = r / relative
        if path.exists():
            return path
    return None


def root_label(path: Path) -> str:
    """Which of the candidate roots ``path`` is, in words: ``package``, ``$ARMLENS_DATA_ROOT``, ``user data``,
    ``BIG-bench cache`` or ``--root``."""
    if path == bundled_root():
        return "package"
    env = os.environ.get(DATA_ROOT_ENV)
    if env and path == Path(env).expanduser():
        return f"${DATA_ROOT_ENV}"
    return {user_data_dir(): "user data", bigbench_cache_dir(): "BIG-bench cache"}.get(path, "--root")


def where_from(files: Sequence[str], root: str | Path | None = None) -> Path | None:
    """The first candidate root holding every one of ``files`` (relative paths; a ``<name>`` part matches any
    file), or None."""
    for r in candidate_roots(root):
        if all(any(r.glob(f.replace("<model>", "*"))) if "<" in f else (r / f).is_file() for f in files):
            return r
    return None


def describe_roots(root: str | Path | None = None) -> str:
    """A short human-readable list of the roots searched, for error messages."""
    try:
        roots = candidate_roots(root)
    except FileNotFoundError as e:
        return str(e)
    return ", ".join(f"{r} ({root_label(r)})" for r in roots)
