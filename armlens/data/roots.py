"""Where preference data lives on disk: the data root and the download cache.

Context
-------
The offline loaders (LLMBar, HHH, TruthfulQA, HH-RLHF, XSTest) read files laid out like this under a *data root*::

    llmbar/Natural.json, llmbar/Adversarial_{Neighbor,GPTInst,GPTOut,Manual}.json
    hhh_alignment/{harmless,helpful,honest,other}.json
    truthfulqa_bigbench/questions.json
    hh_rlhf/harmless-base_test.jsonl.gz
    xstest/xstest_prompts.csv, xstest/<model>.csv

The root is resolved in this order (:func:`data_root`):

1. the ``root`` argument (``--root DIR`` on the command line);
2. the environment variable ``ARMLENS_DATA_ROOT``;
3. ``../shared/data/preference`` relative to the working directory, if it exists (the project's test data);
4. the BIG-bench cache filled by ``armlens data fetch bigbench`` (``$ARMLENS_CACHE/bigbench``, default
   ``~/.cache/armlens/bigbench``), which holds ``hhh_alignment/`` and ``truthfulqa_bigbench/`` in the same layout.

A loader that needs one particular file searches every candidate root (:func:`candidate_roots`) unless the caller
named a root explicitly, so HHH is found in the cache even when ``../shared/data/preference`` exists without it.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "ARMLENS_DATA_ROOT"
"""Environment variable naming the preference data root."""
CACHE_ENV = "ARMLENS_CACHE"
"""Environment variable naming armlens' cache folder (default ``~/.cache/armlens``)."""
SHARED_RELATIVE = Path("..") / "shared" / "data" / "preference"
"""The project's shared data folder, relative to the project root (the usual working directory)."""


def cache_dir() -> Path:
    """armlens' cache folder: ``$ARMLENS_CACHE`` if set, else ``~/.cache/armlens``. Not created here."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "armlens"


def bigbench_cache_dir() -> Path:
    """Where ``armlens data fetch bigbench`` puts HHH and TruthfulQA: ``cache_dir() / "bigbench"``."""
    return cache_dir() / "bigbench"


def candidate_roots(root: str | Path | None = None) -> list[Path]:
    """The roots a loader searches, in priority order.

    An explicit ``root`` is the only candidate (and must exist). Otherwise: ``$ARMLENS_DATA_ROOT`` (must exist if
    set), ``../shared/data/preference`` if it exists, and the BIG-bench cache if it exists.
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data root {path} does not exist or is not a folder")
        return [path]
    roots: list[Path] = []
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{DATA_ROOT_ENV}={env} does not exist or is not a folder")
        roots.append(path)
    shared = (Path.cwd() / SHARED_RELATIVE).resolve()
    if shared.is_dir():
        roots.append(shared)
    cache = bigbench_cache_dir()
    if cache.is_dir():
        roots.append(cache)
    return roots


def data_root(root: str | Path | None = None) -> Path:
    """The data root: the first of (``root``, ``$ARMLENS_DATA_ROOT``, ``../shared/data/preference``, BIG-bench cache).

    When nothing exists yet, the (missing) BIG-bench cache path is returned so that messages can point at it.
    """
    roots = candidate_roots(root)
    return roots[0] if roots else bigbench_cache_dir()


def find_data_file(relative: str | Path, root: str | Path | None = None) -> Path | None:
    """The first ``<candidate root>/relative`` that exists, or None."""
    for r in candidate_roots(root):
        path = r / relative
        if path.exists():
            return path
    return None


def describe_roots(root: str | Path | None = None) -> str:
    """A short human-readable list of the roots searched, for error messages."""
    try:
        roots = candidate_roots(root)
    except FileNotFoundError as e:
        return str(e)
    if not roots:
        return (f"no data root found (tried ${DATA_ROOT_ENV}, {SHARED_RELATIVE} from {Path.cwd()}, "
                f"{bigbench_cache_dir()})")
    return ", ".join(str(r) for r in roots)
