"""Hub-hosted benchmarks: RewardBench v1, RewardBench 2 and PreferenceHack, from the Hub or a local copy.

Context
-------
These datasets live on the Hugging Face Hub. Each loader takes its rows, in this order, from:

1. ``path=FILE``: a local parquet/JSON/JSONL/CSV file with the Hub's columns (e.g. a saved
   ``load_dataset("allenai/reward-bench", split="filtered").to_parquet(...)``);
2. ``<data root>/<name>/<split>.{parquet,jsonl,json}`` (``--root DIR`` or ``ARMLENS_DATA_ROOT``);
3. the Hub, through ``datasets.load_dataset`` when ``datasets`` is installed and the Hub is reachable.

Offline (``HF_HUB_OFFLINE=1``/``HF_DATASETS_OFFLINE=1``, or any failure to reach the Hub) is a
:class:`HubUnavailableError` that says how to pass a local file instead. Tests exercise the Hub-shaped code with
small local files; nothing in the test suite touches the network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from armlens.data.loaders import LoadReport, register
from armlens.data.records import PreferencePair
from armlens.data.roots import candidate_roots
from armlens.data.rows import (
    check_prompt,
    check_text,
    is_missing,
    parse_field_map,
    read_rows,
    require_keys,
    rows_to_pairs,
)
from armlens.errors import BadDataError

log = logging.getLogger(__name__)

REWARDBENCH_REPO = "allenai/reward-bench"
"""RewardBench v1 on the Hub; evaluation uses split ``filtered`` (2,985 pairs)."""
REWARDBENCH2_REPO = "allenai/reward-bench-2"
"""RewardBench 2 on the Hub (split ``test``): one or more chosen and several rejected completions per prompt."""
PREFERENCEHACK_REPO = "PreferenceHack/PreferenceHack"
"""Default Hub id for PreferenceHack (Chai et al. 2025, "Activation Reward Models for Few-Shot Model Alignment").

This is an unverified guess: the paper does not document a Hub id or the field names. Pass ``repo_id=`` /
``--repo-id`` for the real one, or ``path=`` for a local JSONL, and ``field_map=`` for its column names."""
_OFFLINE_VALUES = {"1", "on", "yes", "true"}


class HubUnavailableError(FileNotFoundError):
    """A Hub dataset could not be read (offline, ``datasets`` missing, network or auth failure)."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` asks for offline mode."""
    return any(os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _local_hint(name: str, split: str) -> str:
    return (f"pass a local file: load_pairs({name!r}, path='FILE.parquet'), `armlens data stats {name} --path FILE`, "
            f"`armlens data stats path:FILE`, or --root DIR with {name}/{split}.parquet (or .jsonl/.json)")


def load_hub_rows(repo_id: str, split: str, name: str) -> list[dict[str, Any]]:
    """Rows of a Hub dataset split, via ``datasets``; HubUnavailableError (with the local-file hint) otherwise."""
    hint = _local_hint(name, split)
    if hub_offline():
        raise HubUnavailableError(f"{name}: the Hub is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set), so "
                                  f"{repo_id} cannot be downloaded; {hint}")
    try:
        import datasets
    except ImportError as e:
        raise HubUnavailableError(f"{name}: reading {repo_id} from the Hub needs the `datasets` package; {hint}") from e
    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except Exception as e:  # ConnectionError, HfHubHTTPError, DatasetNotFoundError, ...: all mean "not available"
        raise HubUnavailableError(f"{name}: could not load {repo_id} (split {split!r}) from the Hub "
                                  f"({type(e).__name__}: {str(e)[:200]}); {hint}") from e
    return ds.to_list()


def rows_for(name: str, root: str | Path | None, report: LoadReport, path: str | Path | None, repo_id: str,
             split: str) -> tuple[list[dict[str, Any]], str]:
    """Rows from ``path``, else ``<root>/<name>/<split>.*``, else the Hub; also where they came from."""
    if path is not None:
        p = Path(path).expanduser()
        rows = read_rows(p)
        report.add_file(p)
        return rows, str(p)
    for r in candidate_roots(root):
        for ext in ("parquet", "jsonl", "json", "jsonl.gz", "csv"):
            p = r / name / f"{split}.{ext}"
            if p.is_file():
                rows = read_rows(p)
                report.add_file(p)
                return rows, str(p)
    log.info("%s: no local copy (%s/%s.*) under the data roots; reading %s from the Hub", name, name, split, repo_id)
    rows = load_hub_rows(repo_id, split, name)
    report.files.append(f"hf://{repo_id}@{split}")
    return rows, f"{repo_id}@{split}"


@register("rewardbench", description="RewardBench v1 (allenai/reward-bench, split filtered), Hub or local file",
          origin="hub", files=("rewardbench/filtered.parquet",))
def load_rewardbench(
    root: str | Path | None,
    report: LoadReport,
    path: str | Path | None = None,
    repo_id: str = REWARDBENCH_REPO,
    split: str = "filtered",
) -> list[PreferencePair]:
    """RewardBench v1: rows ``{prompt, chosen, chosen_model, rejected, rejected_model, subset, id}``.

    Pair ids are ``rewardbench/<id>``; the models go to ``metadata``.
    """
    rows, where = rows_for("rewardbench", root, report, path, repo_id, split)
    report.rows_read += len(rows)
    pairs = []
    for i, row in enumerate(rows):
        loc = f"{where}: row {i}"
        require_keys(row, ("prompt", "chosen", "rejected", "subset", "id"), loc)
        chosen, rejected = check_text(row["chosen"], loc, "chosen"), check_text(row["rejected"], loc, "rejected")
        if chosen == rejected:
            report.drop("chosen and rejected are identical (nothing to judge)")
            continue
        pairs.append(PreferencePair(
            id=f"rewardbench/{row['id']}", source="rewardbench", subset=check_text(row["subset"], loc, "subset"),
            prompt=check_prompt(row["prompt"], loc), chosen=chosen, rejected=rejected,
            metadata={"chosen_model": row.get("chosen_model"), "rejected_model": row.get("rejected_model"),
                      "rewardbench_id": row["id"]}))
    return pairs


@register("rewardbench2", description="RewardBench 2 (allenai/reward-bench-2): every chosen x rejected as a pair",
          origin="hub", files=("rewardbench2/test.parquet",))
def load_rewardbench2(
    root: str | Path | None,
    report: LoadReport,
    path: str | Path | None = None,
    repo_id: str = REWARDBENCH2_REPO,
    split: str = "test",
) -> list[PreferencePair]:
    """RewardBench 2: rows ``{id, prompt, chosen: [..], rejected: [..], subset, ...}`` with lists of completions.

    Each (chosen i, rejected j) combination becomes a pair ``rewardbench2/<id>/c<i>-r<j>`` with
    ``metadata["group"] = <id>``: RewardBench 2's best-of-N accuracy counts a prompt correct when every pair of its
    group is (its ``Ties`` subset is scored differently again and is not reproduced by per-pair accuracy).
    """
    rows, where = rows_for("rewardbench2", root, report, path, repo_id, split)
    report.rows_read += len(rows)
    pairs = []
    for i, row in enumerate(rows):
        loc = f"{where}: row {i}"
        require_keys(row, ("id", "prompt", "chosen", "rejected", "subset"), loc)
        lists = {}
        for k in ("chosen", "rejected"):
            v = row[k]
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise BadDataError(f"{loc}: field {k!r} must be a non-empty list of strings (RewardBench 2 format)")
            lists[k] = v
        prompt = check_prompt(row["prompt"], loc)
        subset = check_text(row["subset"], loc, "subset")
        meta = {k: row[k] for k in ("num_correct", "num_incorrect", "total_completions", "models")
                if k in row and not is_missing(row[k])}
        for ci, c in enumerate(lists["chosen"]):
            for rj, r in enumerate(lists["rejected"]):
                if c == r:
                    report.drop("chosen and rejected are identical (nothing to judge)")
                    continue
                pairs.append(PreferencePair(
                    id=f"rewardbench2/{row['id']}/c{ci}-r{rj}", source="rewardbench2", subset=subset, prompt=prompt,
                    chosen=c, rejected=r, metadata={"group": str(row["id"]), "chosen_index": ci,
                                                    "rejected_index": rj, **meta}))
    return pairs


PREFERENCEHACK_FIELDS = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
"""Default PreferenceHack field map (a guess: the release does not document its field names)."""


@register("preferencehack", description="PreferenceHack (ARM paper) reward-hacking pairs: Hub JSONL + field map",
          origin="hub", files=("preferencehack/train.jsonl",))
def load_preferencehack(
    root: str | Path | None,
    report: LoadReport,
    path: str | Path | None = None,
    repo_id: str = PREFERENCEHACK_REPO,
    split: str = "train",
    field_map: Mapping[str, str] | Sequence[str] | None = None,
) -> list[PreferencePair]:
    """PreferenceHack pairs through a field map (defaults :data:`PREFERENCEHACK_FIELDS`; ``subset`` and ``id`` too).

    A key the field map names but a row lacks is a KeyError naming the key, the field and the keys the row has, so
    the right map is one look away. Label-style rows work too (``field_map`` with ``label``, ``response_a``,
    ``response_b``; see :func:`armlens.data.rows.row_pair`).
    """
    rows, where = rows_for("preferencehack", root, report, path, repo_id, split)
    fmap = parse_field_map(field_map)
    if "label" not in fmap:
        fmap = {**PREFERENCEHACK_FIELDS, **fmap}
    return rows_to_pairs(rows, where=where, source="preferencehack", default_subset="preferencehack",
                         field_map=fmap, report=report)
