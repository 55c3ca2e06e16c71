"""Loading preference pairs: the registry, ``load_pairs``, file readers, field maps and load reports.

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
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from armlens.data.records import PreferencePair, Prompt, pairs_hash
from armlens.io import decode_error_message, sha256_file

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
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))}, or {PATH_PREFIX}FILE")


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
            raise ValueError(f"{PATH_PREFIX} needs a file, e.g. {PATH_PREFIX}/data/pairs.jsonl")
        spec = get_spec("path")
        options = {"path": path, **options}
    else:
        spec = get_spec(name)
    accepted = spec.options()
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(f"dataset {spec.name!r} does not take option(s) {unknown}; it takes {accepted}")
    report.options = {k: _jsonable(v) for k, v in options.items()}
    pairs = drop_empty_responses(spec.loader(root=root, report=report, **options), report)

    if subsets is not None:
        wanted = list(dict.fromkeys(subsets))
        present = list(dict.fromkeys(p.subset for p in pairs))
        unknown_subsets = [s for s in wanted if s not in present]
        if unknown_subsets:
            raise ValueError(f"{name}: unknown subset(s) {unknown_subsets}; available: {present}")
        before = len(pairs)
        pairs = [p for p in pairs if p.subset in set(wanted)]
        report.filtered["subsets"] = before - len(pairs)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if len(pairs) > limit:
            report.filtered["limit"] = len(pairs) - limit
            pairs = pairs[:limit]
    if not pairs:
        raise ValueError(f"{name}: no preference pairs loaded ({report.summary()})")
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
            raise ValueError(f"{where}: duplicate pair id {p.id!r}")
        seen.add(p.id)


# ----------------------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------------------


def _read_text(path: Path, compressed: bool) -> str:
    """A (gzip-compressed) UTF-8 text file; bytes that are not UTF-8 are a ValueError naming the file and line."""
    data = path.read_bytes()
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(decode_error_message(path, data, e)) from e


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local JSON (a list of objects), JSONL, CSV or parquet file; ``.gz`` works for JSON/JSONL/CSV.

    Errors name the file and the line: a missing file is FileNotFoundError, a bad line or a non-object row
    ValueError. CSV cells are kept as strings (empty cells stay ``""``, never NaN).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) >= 2 else (suffixes[-1] if suffixes else "")
    if kind == ".jsonl":
        rows = []
        for lineno, line in enumerate(_read_text(path, compressed).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    if kind == ".json":
        try:
            data = json.loads(_read_text(path, compressed))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from e
        if isinstance(data, dict):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) == 1 and lists[0] in ("examples", "data", "rows", "pairs"):
                data = data[lists[0]]
            else:
                raise ValueError(f"{path}: expected a JSON list of rows (or an object with one of examples/data/"
                                 f"rows/pairs), got an object with keys {sorted(data)[:10]}")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise ValueError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
        return data
    if kind == ".csv":
        import pandas as pd

        try:
            df = pd.read_csv(io.StringIO(_read_text(path, compressed)), dtype=str, keep_default_na=False)
        except Exception as e:  # pandas raises several parser error types
            raise ValueError(f"{path}: could not parse CSV ({type(e).__name__}: {e})") from e
        return df.to_dict(orient="records")
    if kind == ".parquet" and not compressed:
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError
            raise ValueError(f"{path}: could not read parquet ({type(e).__name__}: {e})") from e
    raise ValueError(f"{path}: unsupported file type {''.join(path.suffixes) or '(none)'}; "
                     "use .json, .jsonl, .csv, .parquet (optionally .gz for the text formats)")


# ----------------------------------------------------------------------------------------------------------------------
# Rows -> pairs
# ----------------------------------------------------------------------------------------------------------------------

PAIR_FIELDS = ("prompt", "chosen", "rejected", "id", "subset")
"""Fields a field map can name in direct mode (the response columns hold chosen and rejected)."""
LABEL_FIELDS = ("prompt", "response_a", "response_b", "label", "id", "subset")
"""Fields a field map can name in label mode (two responses and a label saying which one is preferred)."""
DEFAULT_LABEL_VALUES: dict[Any, str] = {1: "a", 2: "b", "a": "a", "b": "b", "A": "a", "B": "b"}
"""Label mode default: label 1/"a" means response_a is preferred, 2/"b" means response_b is."""


def is_missing(value: Any) -> bool:
    """None or a float NaN (as pandas gives for empty cells)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_text(value: Any, where: str, fieldname: str) -> str:
    """``value`` if it is a string, else ValueError naming the row and field."""
    if is_missing(value):
        raise ValueError(f"{where}: field {fieldname!r} is missing (null)")
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {fieldname!r} must be a string, got {type(value).__name__}")
    return value


def check_messages(value: Any, where: str, fieldname: str) -> list[dict[str, str]]:
    """A list of ``{"role", "content"}`` chat messages (extra keys dropped), else ValueError."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: field {fieldname!r} must be a non-empty list of chat messages")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: field {fieldname!r} message {j} must be an object with string "
                             f"'role' and 'content', got {m!r:.80}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def check_prompt(value: Any, where: str, fieldname: str = "prompt") -> Prompt:
    """A prompt: text, or chat messages whose last one is the user's turn."""
    if isinstance(value, list):
        messages = check_messages(value, where, fieldname)
        if messages[-1]["role"] != "user":
            raise ValueError(f"{where}: field {fieldname!r}: the last prompt message must be the user's, "
                             f"got role {messages[-1]['role']!r}")
        return messages
    return check_text(value, where, fieldname)


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it (recursively), else its ``str``."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


class _FieldKeys:
    """``key(field)``: the row key a field map assigns to ``field`` (the field's own name by default)."""

    def __init__(self, fmap: Mapping[str, str]) -> None:
        self.fmap = fmap

    def __call__(self, f: str) -> str:
        return self.fmap.get(f, f)


class _FieldGetter:
    """``get(field, required)``: the row's value for ``field``; a missing key is a KeyError naming row, key and the
    keys present, unless the field is optional and not named by the field map (then None)."""

    def __init__(self, row: Mapping[str, Any], fmap: Mapping[str, str], loc: str) -> None:
        self.row, self.fmap, self.loc = row, fmap, loc

    def __call__(self, f: str, required: bool) -> Any:
        k = self.fmap.get(f, f)
        if k not in self.row:
            if required or f in self.fmap:
                raise KeyError(f"{self.loc} has no key {k!r} for field {f!r}; keys present: {sorted(self.row)}; "
                               f"map it with field_map={{'{f}': '<key>'}}")
            return None
        return self.row[k]


def row_pair(
    row: Mapping[str, Any],
    index: int,
    *,
    where: str,
    source: str,
    field_map: Mapping[str, str] | None = None,
    default_subset: str,
    label_values: Mapping[Any, str] | None = None,
    keep_extra: bool = True,
    id_prefix: str | None = None,
    report: LoadReport,
) -> PreferencePair | None:
    """Turn one row into a pair through a field map; None when the row is dropped on purpose (counted in ``report``).

    Two row shapes are understood:

    * **direct**: ``prompt``, ``chosen``, ``rejected`` (texts; or ``chosen``/``rejected`` as whole conversations,
      lists of chat messages that share every turn but the last, with ``prompt`` then optional);
    * **label**: ``prompt``, ``response_a``, ``response_b`` and ``label`` (mode chosen when the field map names a
      ``label``); ``label_values`` maps each label value to ``"a"`` or ``"b"`` (default 1/2, a/b).

    ``id`` and ``subset`` are optional unless the field map names them (the id defaults to the row number and is
    prefixed with ``id_prefix``, default ``source``). Other columns go to ``metadata`` unless ``keep_extra`` is off.
    A missing key is a KeyError naming the row, the key and the keys present; a wrong type or a label outside its
    domain is a ValueError. Only a row whose two responses are identical is dropped (nothing to judge).
    """
    fmap = dict(field_map or {})
    label_mode = "label" in fmap
    allowed = LABEL_FIELDS if label_mode else PAIR_FIELDS
    bad = sorted(set(fmap) - set(allowed))
    if bad:
        raise ValueError(f"{where}: field map names unknown field(s) {bad}; allowed in "
                         f"{'label' if label_mode else 'direct'} mode: {list(allowed)}")
    loc = f"{where}: row {index}"
    key = _FieldKeys(fmap)
    get = _FieldGetter(row, fmap, loc)
    used = set()
    if label_mode:
        a = check_text(get("response_a", True), loc, key("response_a"))
        b = check_text(get("response_b", True), loc, key("response_b"))
        label = get("label", True)
        values = dict(label_values or DEFAULT_LABEL_VALUES)
        try:
            side = values.get(label)
        except TypeError:  # unhashable label (a list, ...)
            side = None
        if side is None and isinstance(label, str):  # CSV labels arrive as strings ("1")
            side = next((v for k, v in values.items() if str(k) == label.strip()), None)
        if side not in ("a", "b"):
            raise ValueError(f"{loc}: field {key('label')!r} = {label!r} is outside its domain "
                             f"{sorted(map(str, values))}")
        chosen, rejected = (a, b) if side == "a" else (b, a)
        prompt = check_prompt(get("prompt", True), loc, key("prompt"))
        extra_meta: dict[str, Any] = {"label": _jsonable(label), "chosen_position": side}
        used |= {key(f) for f in ("response_a", "response_b", "label", "prompt")}
    else:
        raw_c, raw_r = get("chosen", True), get("rejected", True)
        raw_p = get("prompt", not isinstance(raw_c, list))
        used |= {key("chosen"), key("rejected"), key("prompt")}
        extra_meta = {}
        if isinstance(raw_c, list) or isinstance(raw_r, list):
            conv_c = check_messages(raw_c, loc, key("chosen"))
            conv_r = check_messages(raw_r, loc, key("rejected"))
            if conv_c[:-1] != conv_r[:-1]:
                raise ValueError(f"{loc}: conversations in {key('chosen')!r} and {key('rejected')!r} differ "
                                 "before their last turn, so they do not share one prompt")
            if conv_c[-1]["role"] != "assistant" or conv_r[-1]["role"] != "assistant":
                raise ValueError(f"{loc}: the last turn of {key('chosen')!r}/{key('rejected')!r} must be the "
                                 "assistant's")
            chosen, rejected = conv_c[-1]["content"], conv_r[-1]["content"]
            history = conv_c[:-1]
            if raw_p is None:
                if not history:
                    raise ValueError(f"{loc}: no prompt: {key('prompt')!r} is absent and the conversations "
                                     "have no turns before the response")
                prompt = check_prompt(history, loc, key("chosen"))
            else:
                prompt = check_prompt(raw_p, loc, key("prompt"))
        else:
            chosen = check_text(raw_c, loc, key("chosen"))
            rejected = check_text(raw_r, loc, key("rejected"))
            prompt = check_prompt(raw_p, loc, key("prompt"))

    raw_id = get("id", False)
    pair_id = str(index) if is_missing(raw_id) else str(raw_id)
    raw_subset = get("subset", False)
    subset = default_subset if is_missing(raw_subset) else check_text(raw_subset, loc, key("subset"))
    used |= {key("id"), key("subset")}
    if chosen == rejected:
        report.drop("chosen and rejected are identical (nothing to judge)")
        return None
    metadata = dict(extra_meta)
    if keep_extra:
        metadata.update({k: _jsonable(v) for k, v in row.items() if k not in used})
    prefix = f"{id_prefix or source}/"
    return PreferencePair(id=pair_id if pair_id.startswith(prefix) else prefix + pair_id, source=source,
                          subset=subset, prompt=prompt, chosen=chosen, rejected=rejected, metadata=metadata)


def rows_to_pairs(
    rows: Sequence[Mapping[str, Any]],
    *,
    where: str,
    source: str,
    default_subset: str,
    field_map: Mapping[str, str] | None = None,
    label_values: Mapping[Any, str] | None = None,
    id_prefix: str | None = None,
    keep_extra: bool = True,
    report: LoadReport,
) -> list[PreferencePair]:
    """:func:`row_pair` over every row (row numbers are 0-based positions in ``rows``)."""
    report.rows_read += len(rows)
    pairs = []
    for i, row in enumerate(rows):
        p = row_pair(row, i, where=where, source=source, field_map=field_map, default_subset=default_subset,
                     label_values=label_values, id_prefix=id_prefix, keep_extra=keep_extra, report=report)
        if p is not None:
            pairs.append(p)
    return pairs


def parse_field_map(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """A field map from ``{"prompt": "question"}`` or CLI items ``["prompt=question", ...]``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"field map item {item!r} must look like FIELD=KEY, e.g. prompt=question")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@register("path", description="any local JSON/JSONL/CSV/parquet file (use path:FILE), read through a field map",
          origin="file")
def load_generic(
    root: str | Path | None,
    report: LoadReport,
    path: str | Path,
    field_map: Mapping[str, str] | Sequence[str] | None = None,
    label_values: Mapping[Any, str] | None = None,
    source: str | None = None,
    subset: str | None = None,
) -> list[PreferencePair]:
    """Generic loader: rows of ``path`` (relative paths are tried against ``root`` too) through ``field_map``.

    ``source`` defaults to the file stem, ``subset`` (for rows without a subset column) to ``source``.
    See :func:`row_pair` for the row shapes.
    """
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and root is not None and (Path(root) / p).exists():
        p = Path(root) / p
    rows = read_rows(p)
    report.add_file(p)
    name = source or p.name.split(".")[0]
    return rows_to_pairs(rows, where=str(p), source=name, default_subset=subset or name,
                         field_map=parse_field_map(field_map), label_values=label_values, report=report)
