"""The keys of an evaluation: short hashes of everything that decides a unit's numbers, or a judge's fit, so that a
rerun reuses exactly what is still valid.

A unit key (:func:`unit_key`) is stored in the unit's ``result.json``: a rerun whose key differs recomputes the unit.
A fit key (:func:`fit_key`) names a trained judge's fit file, read back instead of fitting again. Both hold only the
settings that can change the method's numbers (:meth:`armlens.evaluation.judge.Judge.key_settings`), so a new
setting left at its old behaviour keeps every saved unit and fit. A key must never change for the same settings:
``tests/test_config_keys.py`` recomputes the keys of committed folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from armlens import model as M
from armlens.data.records import pairs_hash
from armlens.evaluation.baselines import JUDGES, JudgeConfig
from armlens.evaluation.planning import Plan
from armlens.evaluation.store import RESULT_FORMAT
from armlens.typing import Model


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def unit_key(plan: Plan, method: str, judge_cfg: JudgeConfig, model_id: str, bias_kinds: Sequence[str]) -> str:
    """A hash of everything a unit's numbers depend on: model, dataset, method, its settings, seed, the plan's pools
    and test pairs, and the bias kinds it reports."""
    cfg = JUDGES[method].key_settings(judge_cfg)  # only the settings that can change this method's numbers
    return _unit_hash(plan, method, cfg, model_id, bias_kinds)


def legacy_unit_key(plan: Plan, method: str, judge_cfg: JudgeConfig, model_id: str, bias_kinds: Sequence[str]) -> str:
    """:func:`unit_key` as it was before keys recorded the criteria (their routing and texts): every pair judged
    under its subset's criterion. Only :mod:`armlens.evaluation.adopt` reads it, to recognise a unit of such a folder
    (its other settings must match), never to resume one."""
    cfg = {k: v for k, v in JUDGES[method].key_settings(judge_cfg).items() if k not in ("criteria", "routing")}
    return _unit_hash(plan, method, cfg, model_id, bias_kinds)


def _unit_hash(plan: Plan, method: str, cfg: dict[str, Any], model_id: str, bias_kinds: Sequence[str]) -> str:
    return _hash({
        "format": RESULT_FORMAT, "model": model_id, "dataset": plan.dataset, "method": method, "seed": plan.seed,
        "fewshot": pairs_hash(plan.fewshot), "select": pairs_hash(plan.select), "test": pairs_hash(plan.test),
        "bias_kinds": list(bias_kinds), "judge": cfg,
    })


def fit_key(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig) -> str:
    """A hash of everything a unit's fit depends on: model, method, its settings and the plan's pools (not the test
    pairs or the bias suite, which only scoring reads)."""
    return _hash({"format": RESULT_FORMAT, "model": M.model_id(model), "method": method, "seed": plan.seed,
                  "fewshot": pairs_hash(plan.fewshot), "select": pairs_hash(plan.select),
                  "judge": JUDGES[method].key_settings(judge_cfg)})
