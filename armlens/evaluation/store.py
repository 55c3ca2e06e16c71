"""The results folder of ``armlens eval``: where each file lives, reading finished units back, writing them.

Context
-------
A results folder is the evaluation's memory: a rerun on it computes only what is not on file yet. This module is the
one that knows the file names and forms under ``out`` (the layout is in :mod:`armlens.evaluation.runner`); what a
unit is and how it is computed is not its business. Its functions take folders, not plans: the plan names its seed
folder (:attr:`armlens.evaluation.planning.Plan.folder`), a unit's folder is that folder and the method's name.

Intuition
---------
A unit is finished iff its ``result.json`` exists, its items exist in either form, and the result holds the key it
is asked for (:func:`read_unit`). So a unit is written items first and result last (:func:`write_unit`), and a stop
between the two leaves an unfinished unit, never a half-finished one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from armlens.errors import BadOutputError, NotFoundError
from armlens.evaluation.eval_config import EvalConfig
from armlens.io import (
    atomic_write,
    check_output_dir,
    read_json,
    read_jsonl,
    result_exists,
    settings_diff,
    write_json,
    write_jsonl,
)

logger = logging.getLogger(__name__)

RESULT_FORMAT = 1
"""The version of ``result.json``; part of every unit key (:mod:`armlens.evaluation.keys`)."""
ITEMS = "items.jsonl.gz"
"""A unit's per-item scores, gzip-compressed JSON lines (a tenth of the bytes of the plain file, committed for every
unit). A unit written before holds ``items.jsonl``: it is read, and resumed, the same (:func:`armlens.io.read_jsonl`
takes either form)."""
SPLIT = "split.json.gz"
"""A seed's split record (ids of every pool and the test sample), gzip-compressed like :data:`ITEMS`."""

SETTINGS_IGNORED = ("out", "adopt", "show_progress", "workers", "ray_address", "worker_gpus", "device", "device_map")
"""EvalConfig fields that may differ from a results folder's ``config.json`` without ``allow_changed_settings``."""


# ------------------------------------------------------------------------------------------------------ the folder


def check_out(config: EvalConfig, allow_changed_settings: bool = False) -> Path:
    """Check ``config.out`` before any work: a usable folder, free (no live writer), and either new or holding an
    evaluation with the same settings (``config.json``), unless ``allow_changed_settings``. Returns the folder."""
    out = check_output_dir(config.out, resumable=lambda p: (p / "config.json").is_file(), what="--out",
                           hint="it holds no config.json, so it is not an evaluation folder; choose another --out")
    old = out / "config.json"
    if old.is_file() and not allow_changed_settings:
        saved = EvalConfig.from_dict(read_json(old)).to_dict()  # fields added since take their defaults
        diff = settings_diff(saved, config.to_dict(), ignore=SETTINGS_IGNORED)
        if diff:
            shown = ", ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
            raise BadOutputError(f"{out} holds an evaluation with other settings ({shown} differ); use a new --out, "
                                 "or pass --change-settings to reuse it (only units whose settings match are kept)")
    return out


def read_config(out: Path) -> EvalConfig:
    """The settings a finished folder was run with. A folder written before partitions existed records no
    ``partition``: it used every pair (``all``)."""
    raw = read_json(out / "config.json")
    raw.setdefault("partition", "all")
    return EvalConfig.from_dict(raw)


def write_start(out: Path, splits: dict[Path, dict[str, Any]], settings: dict[str, Any]) -> None:
    """Write a run's split records (per seed folder) and its settings: only once its model has loaded, so a run
    that fails before it leaves no settings that would refuse the corrected rerun."""
    for folder, record in splits.items():
        write_json(folder / SPLIT, record)
    write_json(out / "config.json", settings)


def read_split(seed_folder: Path) -> dict[str, Any]:
    """A seed's split record (plain ``split.json`` in a folder written before)."""
    return read_json(seed_folder / SPLIT)


def write_summary(out: Path, summary: dict[str, Any], markdown: str, items: list[dict[str, Any]] | None = None
                  ) -> None:
    """Write the summary, its tables (``results.md``) and, when given, every unit's items concatenated."""
    if items is not None:
        write_jsonl(out / ITEMS, items)
    write_json(out / "summary.json", summary)
    atomic_write(out / "results.md", markdown)


def read_summary(out: Path) -> dict[str, Any]:
    """The summary on file, or ``{}``."""
    return read_json(out / "summary.json") if (out / "summary.json").is_file() else {}


# ------------------------------------------------------------------------------------------------------- the units


def read_unit(folder: Path, key: str) -> dict[str, Any] | None:
    """A finished unit's result, or None when missing, unreadable or computed under another key."""
    result = read_unit_as_recorded(folder, unreadable="recomputing")
    if result is None:
        return None
    if result.get("key") != key:
        logger.info("settings changed for %s: recomputing", folder)
        return None
    return result


def read_unit_as_recorded(folder: Path, *, unreadable: str = "not adopted") -> dict[str, Any] | None:
    """A finished unit's result whatever its key, or None when missing or unreadable (logged with ``unreadable``,
    what happens instead). Its items may be in either form: folders written before stay readable."""
    path = folder / "result.json"
    if not (path.is_file() and result_exists(folder / ITEMS)):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        logger.warning("unreadable unit result %s: %s", path, unreadable)
        return None


def read_items(folder: Path) -> list[dict[str, Any]]:
    """A finished unit's item rows, from ``items.jsonl.gz`` or a plain ``items.jsonl`` written before."""
    return read_jsonl(folder / ITEMS)


def read_recorded_unit(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A unit's result and items as they are on file, whatever its key (re-reporting a finished folder)."""
    if not (folder / "result.json").is_file():
        raise NotFoundError(f"{folder}: no result.json; run `armlens eval` on this folder to finish it")
    return read_json(folder / "result.json"), read_items(folder)


def write_unit(folder: Path, result: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Write a unit: its items, then its result (last: its presence marks the unit finished)."""
    write_jsonl(folder / ITEMS, items)
    write_json(folder / "result.json", result)


# ------------------------------------------------------------------------------------- what unfinished work keeps


def fit_file(unit_folder: Path, key: str, suffix: str) -> Path:
    """Where a unit's trained judge is kept (``fit-<fit_key>.arm`` or ``.safetensors``), read back on a resume."""
    return unit_folder / f"fit-{key}{suffix}"


def branch_pass_folder(seed_folder: Path) -> Path:
    """Where a dataset's shared scoring pass saves its finished parts (removed once its units are written)."""
    return seed_folder.parent / "branch-pass"


def memo_folder(seed_folder: Path, method: str, *, seed_free: bool = True) -> Path:
    """Where a unit's judge keeps what it computed, read back after a stop (removed once the job's units are
    written): one folder per dataset for a seed-free method's job (every seed in one process), one per seed for a
    unit that keeps its own (``few-shot-icl``: its prompts hold the seed's demonstrations)."""
    return (seed_folder.parent if seed_free else seed_folder) / f"{method}-memo"
