"""Taking finished units from another evaluation folder, where they are provably the same computation.

Context
-------
A headline rerun (issue 37: the test partition) repeats many units exactly: a test-only dataset (TruthfulQA, HH-RLHF)
draws the same few-shot pools and test pairs under every partition choice, so a unit of an earlier folder on it is
the very computation the new run would do again (hours, for the decoding methods). ``armlens eval --adopt FOLDER``
takes such a unit instead of computing it, and says so in its ``result.json`` (``adopted``).

Intuition
---------
A unit is adopted only on one of two rules, both checked on the unit's own plan, never on its numbers:

- ``same key``: the other folder's unit holds the key this run asks for (:func:`armlens.evaluation.keys.unit_key`:
  model, dataset, pools, test sample, bias kinds, method settings). It is what a resume of this folder would accept.
- ``criteria unchanged``: the unit was written before keys recorded the criteria (it holds
  :func:`armlens.evaluation.keys.legacy_unit_key`: every setting but the criteria texts), when every pair was judged
  under its subset's criterion (today's ``routing="oracle"``, :data:`armlens.prompts.ORACLE_CRITERIA`, which kept
  those texts); and every pair the unit scored or was fitted on (pools, test pairs, bias suite) gets the same
  criterion text under this run's routing. So its prompts are this run's prompts. On XSTest the criteria differ
  (the oracle texts name the gold label), so nothing is adopted there.

Anything else is computed. Fit files are not copied: an adopted unit is finished, nothing refits it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from armlens.data.records import PreferencePair
from armlens.errors import BadInputError
from armlens.evaluation.baselines import JudgeConfig
from armlens.evaluation.keys import legacy_unit_key
from armlens.evaluation.planning import Plan
from armlens.evaluation.store import read_items, read_unit_as_recorded
from armlens.prompts import criterion_for

logger = logging.getLogger(__name__)


def _plan_pairs(plan: Plan) -> list[PreferencePair]:
    return [*plan.fewshot, *plan.select, *plan.test, *(p for pairs in plan.suite.values() for p in pairs)]


def adoption_rule(recorded_key: str, key: str, plan: Plan, method: str, jcfg: JudgeConfig, model_id: str,
                  bias_kinds: list[str]) -> str | None:
    """Why a unit recorded under ``recorded_key`` is this run's unit of key ``key``
    (:func:`armlens.evaluation.keys.unit_key` of the other arguments): ``same key`` or ``criteria unchanged``; or
    ``None`` when it may not be."""
    if recorded_key == key:
        return "same key"
    if recorded_key != legacy_unit_key(plan, method, jcfg, model_id, bias_kinds) or jcfg.criterion is not None:
        return None
    if all(criterion_for(p, "oracle") == criterion_for(p, jcfg.routing) for p in _plan_pairs(plan)):
        return "criteria unchanged"
    return None


def adopt_unit(source: Path, plan: Plan, method: str, jcfg: JudgeConfig, model_id: str, bias_kinds: list[str],
               key: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The unit of ``plan`` and ``method`` from the evaluation folder ``source`` (same dataset folder and seed),
    restamped with this run's ``key`` and an ``adopted`` record, if :func:`adoption_rule` admits it; else None."""
    folder = source / plan.folder.parent.name / plan.folder.name / method
    result = read_unit_as_recorded(folder)
    if result is None:
        return None
    rule = adoption_rule(result.get("key", ""), key, plan, method, jcfg, model_id, bias_kinds)
    if rule is None:
        logger.info("%s: not the same computation as this run's unit; computing it", folder)
        return None
    adopted = {"from": os.path.relpath(folder, plan.folder / method), "key": result["key"], "rule": rule}
    return {**result, "key": key, "adopted": adopted}, read_items(folder)


def check_adopt_source(source: str | None, out: Path) -> None:
    """Check the ``--adopt`` folder before any work: an evaluation folder other than ``out``."""
    if source is None:
        return
    path = Path(source)
    if not (path / "config.json").is_file():
        raise BadInputError(f"--adopt {source}: not an evaluation folder (no config.json)")
    if path.resolve() == out.resolve():
        raise BadInputError(f"--adopt {source}: that is --out itself; a rerun resumes its own units without it")
