"""Rows to preference pairs: reading local JSON/JSONL/CSV/parquet files, checking fields, and turning each row into
a :class:`~armlens.data.records.PreferencePair` through a *field map* (which column holds the prompt, the chosen and
the rejected response, or two responses and a label). The generic ``path:FILE`` loader is registered here.

A row that cannot be used raises an error naming the file, the row and the field; only a row with nothing to judge
(identical responses) is dropped, and counted in the :class:`~armlens.data.loaders.LoadReport`.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from armlens.data.loaders import LoadReport, jsonable, register
from armlens.data.records import PreferencePair, Prompt
from armlens.errors import BadDataError, MissingFieldError, NotFoundError
from armlens.io import decode_error_message

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
            raise BadDataError(f"{path}: not a readable gzip file ({e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadDataError(decode_error_message(path, data, e)) from e


class LineRow(dict):
    """A row of a JSON-lines file that knows its line (blank lines skipped), so messages name the line."""

    def __init__(self, row: Mapping[str, Any], *, line: int) -> None:
        super().__init__(row)
        self.line = line


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local JSON (a list of objects), JSONL, CSV or parquet file; ``.gz`` works for JSON/JSONL/CSV.

    Errors name the file and the line: a missing file is FileNotFoundError, a bad line or a non-object row
    ValueError. CSV cells are kept as strings (empty cells stay ``""``, never NaN).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}")
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
                raise BadDataError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise BadDataError(f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(LineRow(row, line=lineno))
        return rows
    if kind == ".json":
        try:
            data = json.loads(_read_text(path, compressed))
        except json.JSONDecodeError as e:
            raise BadDataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from e
        if isinstance(data, dict):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) == 1 and lists[0] in ("examples", "data", "rows", "pairs"):
                data = data[lists[0]]
            else:
                raise BadDataError(f"{path}: expected a JSON list of rows (or an object with one of examples/data/"
                                   f"rows/pairs), got an object with keys {sorted(data)[:10]}")
        if not isinstance(data, list):
            raise BadDataError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise BadDataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
        return data
    if kind == ".csv":
        import pandas as pd

        try:
            df = pd.read_csv(io.StringIO(_read_text(path, compressed)), dtype=str, keep_default_na=False)
        except Exception as e:  # pandas raises several parser error types
            raise BadDataError(f"{path}: could not parse CSV ({type(e).__name__}: {e})") from e
        return df.to_dict(orient="records")
    if kind == ".parquet" and not compressed:
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError
            raise BadDataError(f"{path}: could not read parquet ({type(e).__name__}: {e})") from e
    raise BadDataError(f"{path}: unsupported file type {''.join(path.suffixes) or '(none)'}; "
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


def require_keys(row: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """A KeyError naming the row, every one of ``keys`` it lacks and the keys present, where it lacks any."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise MissingFieldError(f"{where} is missing key(s) {missing}; keys present: {sorted(row)}")


def check_text(value: Any, where: str, fieldname: str) -> str:
    """``value`` if it is a string, else ValueError naming the row and field."""
    if is_missing(value):
        raise BadDataError(f"{where}: field {fieldname!r} is missing (null)")
    if not isinstance(value, str):
        raise BadDataError(f"{where}: field {fieldname!r} must be a string, got {type(value).__name__}")
    return value


def check_messages(value: Any, where: str, fieldname: str) -> list[dict[str, str]]:
    """A list of ``{"role", "content"}`` chat messages (extra keys dropped), else ValueError."""
    if not isinstance(value, list) or not value:
        raise BadDataError(f"{where}: field {fieldname!r} must be a non-empty list of chat messages")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadDataError(f"{where}: field {fieldname!r} message {j} must be an object with string "
                               f"'role' and 'content', got {m!r:.80}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def check_prompt(value: Any, where: str, fieldname: str = "prompt") -> Prompt:
    """A prompt: text, or chat messages whose last one is the user's turn."""
    if isinstance(value, list):
        messages = check_messages(value, where, fieldname)
        if messages[-1]["role"] != "user":
            raise BadDataError(f"{where}: field {fieldname!r}: the last prompt message must be the user's, "
                               f"got role {messages[-1]['role']!r}")
        return messages
    return check_text(value, where, fieldname)


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
                raise MissingFieldError(f"{self.loc} has no key {k!r} for field {f!r}; keys present: {sorted(self.row)}; "
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
        raise BadDataError(f"{where}: field map names unknown field(s) {bad}; allowed in "
                           f"{'label' if label_mode else 'direct'} mode: {list(allowed)}")
    loc = f"{where}: line {row.line}" if isinstance(row, LineRow) else f"{where}: row {index}"
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
            raise BadDataError(f"{loc}: field {key('label')!r} = {label!r} is outside its domain "
                               f"{sorted(map(str, values))}")
        chosen, rejected = (a, b) if side == "a" else (b, a)
        prompt = check_prompt(get("prompt", True), loc, key("prompt"))
        extra_meta: dict[str, Any] = {"label": jsonable(label), "chosen_position": side}
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
                raise BadDataError(f"{loc}: conversations in {key('chosen')!r} and {key('rejected')!r} differ "
                                   "before their last turn, so they do not share one prompt")
            if conv_c[-1]["role"] != "assistant" or conv_r[-1]["role"] != "assistant":
                raise BadDataError(f"{loc}: the last turn of {key('chosen')!r}/{key('rejected')!r} must be the "
                                   "assistant's")
            chosen, rejected = conv_c[-1]["content"], conv_r[-1]["content"]
            history = conv_c[:-1]
            if raw_p is None:
                if not history:
                    raise BadDataError(f"{loc}: no prompt: {key('prompt')!r} is absent and the conversations "
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
        metadata.update({k: jsonable(v) for k, v in row.items() if k not in used})
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
            raise BadDataError(f"field map item {item!r} must look like FIELD=KEY, e.g. prompt=question")
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
