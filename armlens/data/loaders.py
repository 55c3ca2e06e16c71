"""Loading preference pairs: the registry, ``load_pairs`` and load reports.

Context
-------
Every dataset armlens knows is a *registered loader*: a function that reads its files (or the Hugging Face Hub) and
returns :class:`~armlens.data.records.PreferencePair` records. ``load_pairs("llmbar")`` looks the name up in the
registry; ``load_pairs("path:/some/file.jsonl")`` reads any local JSON/JSONL/CSV/parquet file through a *field map*
(which column holds the prompt, the chosen and the rejected response).

Intuition
---------
Bad data must never be silently skipped. Loaders therefore do one of two things with a row they cannot use:

* **raise** a clear error naming the file, the row and the field (a missing key, a wrong type, a label outside its
  domain, an empty result); or
* **drop it on purpose** for a documented reason (e.g. HH-RLHF transcripts whose chosen and rejected differ before
  the last turn), counting it in a :class:`LoadReport` that is returned beside the pairs, logged, and shown by
  ``armlens data stats``.

Reading files and turning rows into pairs through a field map (and the generic ``path:`` loader) is
:mod:`armlens.data.rows`; the registered datasets are in :mod:`armlens.data.benchmarks` and :mod:`armlens.data.hub`.
"""


from __future__ import annotations

import hashlib
import inspect
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError, UnknownNameError
from armlens.io import sha256_file

log = logging.getLogger(__name__)


PATH_PREFIX = "path:"
"""``load_pairs("path:FILE")`` reads any local file through the generic loader."""


# ----------------------------------------------------------------------------------------------------------------------
# Load reports
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a loader read, what it produced, and every row it dropped or changed on purpose (never silently)."""

    name: str
    """Dataset name as passed to ``load_pairs`` (``"llmbar"``, ``"path:/x.jsonl"``, ...)."""
    files: list[str] = field(default_factory=list)
    """Local files read, or ``hf://<repo>@<split>`` for Hub datasets."""
    file_sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of each local file read, for provenance in result files."""
    rows_read: int = 0
    """Raw rows (examples, lines, CSV rows) read before any filtering."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Rows dropped on purpose: reason -> count."""
    adjusted: dict[str, int] = field(default_factory=dict)
    """Rows kept but changed on purpose (e.g. consecutive same-role turns merged): reason -> count."""
    filtered: dict[str, int] = field(default_factory=dict)
    """Pairs removed by the caller's ``subsets``/``limit`` options: option -> count."""
    n_pairs: int = 0
    """Pairs returned."""
    pairs_sha256: str = ""
    """:func:`~armlens.data.records.pairs_hash` of the returned pairs."""
    options: dict[str, Any] = field(default_factory=dict)
    """Loader options used (seed, field map, ...), JSON-serialisable."""

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` rows dropped for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def adjust(self, reason: str, n: int = 1) -> None:
        """Count ``n`` rows kept but changed for ``reason``."""
        self.adjusted[reason] = self.adjusted.get(reason, 0) + n

    def add_file(self, path: Path) -> None:
        """Record a local file read (with its SHA-256)."""
        self.files.append(str(path))
        self.file_sha256[str(path)] = sha256_file(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "files": list(self.files), "file_sha256": dict(self.file_sha256),
            "rows_read": self.rows_read, "dropped": dict(self.dropped), "adjusted": dict(self.adjusted),
            "filtered": dict(self.filtered), "n_pairs": self.n_pairs, "pairs_sha256": self.pairs_sha256,
            "options": dict(self.options),
        }

    def summary(self) -> str:
        """One line: pairs returned, rows read, drops and adjustments."""
        parts = [f"{self.name}: {self.n_pairs} pairs from {self.rows_read} rows"]
        if self.dropped:
            parts.append("dropped " + ", ".join(f"{n} ({r})" for r, n in self.dropped.items()))
        if self.adjusted:
            parts.append("adjusted " + ", ".join(f"{n} ({r})" for r, n in self.adjusted.items()))
        if self.filtered:
            parts.append("filtered " + ", ".join(f"{n} (by {r})" for r, n in self.filtered.items()))
        return "; ".join(parts)


def stable_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts`` through SHA-256: the same parts give the same stream on any machine.

    Loaders seed one stream per item (``stable_rng("xstest", seed, prompt_id)``) so a choice for one item never
    depends on which other items were loaded or in which order.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it (recursively), else its ``str``."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ----------------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------------


Loader = Callable[..., list[PreferencePair]]
"""``loader(root: Path | None, report: LoadReport, **options) -> list[PreferencePair]``."""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader and what ``armlens data list`` says about it."""

    name: str
    """Registry name (``"llmbar"``)."""
    loader: Loader
    """The function that reads it."""
    description: str
    """One line for ``armlens data list``."""
    origin: Literal["local", "hub", "file"]
    """``local``: files under a data root; ``hub``: Hugging Face Hub or a local copy; ``file``: any local file."""
    subsets: tuple[str, ...] = ()
    """Known subset names, in a stable order (empty when open-ended)."""
    files: tuple[str, ...] = ()
    """Files looked for under the data root (relative paths)."""

    def options(self) -> list[str]:
        """Keyword options the loader accepts beyond ``root`` and ``report``."""
        params = inspect.signature(self.loader).parameters
        return [p for p in params if p not in ("root", "report")]


_REGISTRY: dict[str, DatasetSpec] = {}


def register(
    name: str,
    *,
    description: str,
    origin: Literal["local", "hub", "file"] = "local",
    subsets: Sequence[str] = (),
    files: Sequence[str] = (),
) -> Callable[[Loader], Loader]:
    """Decorator adding a loader to the registry under ``name``."""

    def deco(fn: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetSpec(name, fn, description, origin, tuple(subsets), tuple(files))
        return fn

    return deco


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (case and ``_``/``-`` insensitive); KeyError lists the known names."""
    key = _normalise_name(name)
    for spec_name, spec in _REGISTRY.items():
        if _normalise_name(spec_name) == key:
            return spec
    raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))}, or {PATH_PREFIX}FILE")


def list_datasets() -> list[DatasetSpec]:
    """All registered datasets, in registration order."""
    return list(_REGISTRY.values())


# ----------------------------------------------------------------------------------------------------------------------
# load_pairs
# ----------------------------------------------------------------------------------------------------------------------


EMPTY_RESPONSE = "empty chosen or rejected response"
"""The load-report reason for pairs dropped because a response is empty or only whitespace."""


def drop_empty_responses(pairs: list[PreferencePair], report: LoadReport) -> list[PreferencePair]:
    """Drop pairs whose chosen or rejected response is empty (or whitespace only), counting them in ``report``: a
    judge cannot compare an empty answer, and scoring it would silently count as a real preference."""
    kept = [p for p in pairs if p.chosen.strip() and p.rejected.strip()]
    if len(kept) < len(pairs):
        report.drop(EMPTY_RESPONSE, len(pairs) - len(kept))
    return kept


def load_pairs_with_report(
    name: str,
    root: str | Path | None = None,
    subsets: Sequence[str] | None = None,
    limit: int | None = None,
    **options: Any,
) -> tuple[list[PreferencePair], LoadReport]:
    """Like :func:`load_pairs`, but also return the :class:`LoadReport` (files, hashes, drops)."""
    report = LoadReport(name=name)
    if name.startswith(PATH_PREFIX):
        path = name[len(PATH_PREFIX):]
        if not path:
            raise BadInputError(f"{PATH_PREFIX} needs a file, e.g. {PATH_PREFIX}/data/pairs.jsonl")
        spec = get_spec("path")
        options = {"path": path, **options}
    else:
        spec = get_spec(name)
    accepted = spec.options()
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise BadInputError(f"dataset {spec.name!r} does not take option(s) {unknown}; it takes {accepted}")
    report.options = {k: jsonable(v) for k, v in options.items()}
    pairs = drop_empty_responses(spec.loader(root=root, report=report, **options), report)

    if subsets is not None:
        wanted = list(dict.fromkeys(subsets))
        present = list(dict.fromkeys(p.subset for p in pairs))
        unknown_subsets = [s for s in wanted if s not in present]
        if unknown_subsets:
            raise BadInputError(f"{name}: unknown subset(s) {unknown_subsets}; available: {present}")
        before = len(pairs)
        pairs = [p for p in pairs if p.subset in set(wanted)]
        report.filtered["subsets"] = before - len(pairs)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise BadInputError(f"limit must be a positive integer, got {limit!r}")
        if len(pairs) > limit:
            report.filtered["limit"] = len(pairs) - limit
            pairs = pairs[:limit]
    if not pairs:
        raise BadInputError(f"{name}: no preference pairs loaded ({report.summary()})")
    check_unique_ids(pairs, name)

    report.n_pairs = len(pairs)
    report.pairs_sha256 = pairs_hash(pairs)
    log.info("%s", report.summary())  # includes every drop and adjustment, with counts
    return pairs, report


def load_pairs(
    name: str,
    root: str | Path | None = None,
    subsets: Sequence[str] | None = None,
    limit: int | None = None,
    **options: Any,
) -> list[PreferencePair]:
    """Load preference pairs by registry name or from any local file.

    Args:
        name: a registered name (see :func:`list_datasets`: ``"llmbar"``, ``"hhh"``, ``"rewardbench"``, ...) or
            ``"path:/some/file.jsonl"`` for a JSON/JSONL/CSV/parquet file read through a field map.
        root: data root for the offline loaders (default: see :func:`armlens.data.roots.data_root`).
        subsets: keep only these subsets (an unknown name is an error).
        limit: keep the first ``limit`` pairs, in file order (use :func:`armlens.data.splits.split_pairs` for a
            seeded sample).
        **options: loader options, e.g. ``seed`` (XSTest, TruthfulQA), ``path`` / ``repo_id`` (Hub datasets),
            ``field_map`` (generic files, PreferenceHack). An option the loader does not take is an error.

    Returns:
        The pairs, in a deterministic order. Rows dropped on purpose are logged; use :func:`load_pairs_with_report`
        to get the counts.
    """
    pairs, _ = load_pairs_with_report(name, root=root, subsets=subsets, limit=limit, **options)
    return pairs


def check_unique_ids(pairs: Iterable[PreferencePair], where: str) -> None:
    """Raise ValueError naming the first duplicated pair id."""
    seen: set[str] = set()
    for p in pairs:
        if p.id in seen:
            raise BadInputError(f"{where}: duplicate pair id {p.id!r}")
        seen.add(p.id)
