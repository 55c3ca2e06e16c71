"""The units of an evaluation: one ``(dataset, seed)`` plan (pools, test sample, bias suite) and one method fitted on
it, scored, and recorded under a key that says when a saved unit can be reused.

A unit is finished iff its ``result.json`` exists and holds the same key (:func:`unit_key`): a hash of everything
that decides its numbers. :func:`run_unit` fits and scores one method on its own; :func:`run_mask_units` fits
several mask-based methods and scores them together as branches over shared prefixes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from armlens import model as M
from armlens.data import hack_rate
from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError
from armlens.evaluation.baselines import JUDGES, Judge, JudgeConfig, make_judge
from armlens.evaluation.branches import score_mask_judges
from armlens.evaluation.protocol import (
    accuracy_by_subset,
    accuracy_ci,
    item_records,
    pairwise_correct,
    section_scores,
)
from armlens.io import read_jsonl, result_exists
from armlens.prompts import Example, JudgeTemplate, count_cuts, scalar_prompt
from armlens.typing import Model

logger = logging.getLogger(__name__)


RESULT_FORMAT = 1
ITEMS = "items.jsonl.gz"
"""A unit's per-item scores, gzip-compressed JSON lines (a tenth of the bytes of the plain file, committed for every
unit). A unit written before holds ``items.jsonl``: it is read, and resumed, the same (:func:`armlens.io.read_jsonl`
takes either form)."""
SPLIT = "split.json.gz"
"""A seed's split record (ids of every pool and the test sample), gzip-compressed like :data:`ITEMS`."""


def dataset_slug(name: str) -> str:
    """A folder name for a dataset (``path:`` names get a short hash of the full name)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    if slug != name or len(slug) > 60:
        slug = f"{slug[-40:]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return slug


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def sample_test(test: Sequence[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    """``limit`` test pairs drawn with ``seed`` (input order kept); all of them without a limit."""
    if limit is None or limit >= len(test):
        return list(test)
    keep = sorted(random.Random(f"test-sample/{seed}").sample(range(len(test)), limit))
    return [test[i] for i in keep]


@dataclass
class Plan:
    """One dataset x seed: the pools, the test sample and the bias suite every method of that seed shares."""

    dataset: str
    seed: int
    fewshot: list[PreferencePair]
    select: list[PreferencePair]
    test: list[PreferencePair]
    suite: dict[str, list[PreferencePair]]
    split_record: dict[str, Any]
    folder: Path

    def with_bias_kinds(self, kinds: Sequence[str]) -> Plan:
        """This plan with only these bias-suite kinds (the clean test pairs stay)."""
        keep = {k: v for k, v in self.suite.items() if k == "clean" or k in kinds}
        return self if keep.keys() == self.suite.keys() else dataclasses.replace(self, suite=keep)


def unit_key(plan: Plan, method: str, judge_cfg: JudgeConfig, model_id: str, bias_kinds: Sequence[str]) -> str:
    cfg = JUDGES[method].key_settings(judge_cfg)  # only the settings that can change this method's numbers
    return _hash({
        "format": RESULT_FORMAT, "model": model_id, "dataset": plan.dataset, "method": method, "seed": plan.seed,
        "fewshot": pairs_hash(plan.fewshot), "select": pairs_hash(plan.select), "test": pairs_hash(plan.test),
        "bias_kinds": list(bias_kinds), "judge": cfg,
    })


def read_unit(folder: Path, key: str) -> dict[str, Any] | None:
    """A finished unit's result, or None when missing, unreadable or computed under another key."""
    path = folder / "result.json"
    if not (path.is_file() and result_exists(folder / ITEMS)):  # either form: folders written before stay resumable
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        logger.warning("unreadable unit result %s: recomputing", path)
        return None
    if result.get("key") != key:
        logger.info("settings changed for %s: recomputing", folder)
        return None
    return result


def read_items(folder: Path) -> list[dict[str, Any]]:
    """A finished unit's item rows, from ``items.jsonl.gz`` or a plain ``items.jsonl`` written before."""
    return read_jsonl(folder / ITEMS)


def _split_metrics(pairs: Sequence[PreferencePair], chosen: np.ndarray, rejected: np.ndarray, n_bootstrap: int,
                   seed: int) -> dict[str, Any]:
    correct, ties = pairwise_correct(chosen, rejected)
    per_subset = accuracy_by_subset(correct, [p.subset for p in pairs], chosen == rejected)
    ci = accuracy_ci(correct, pairs, n_bootstrap, seed)
    return {"n": len(pairs), "accuracy": ci.estimate, "ci95": [ci.low, ci.high], "ties": ties, "subsets": per_subset,
            "sections": section_scores(per_subset, sources={p.subset: p.source for p in pairs})}


Scorer = Callable[[Sequence[tuple[PreferencePair, str]]], torch.Tensor]
"""Scores of ``(pair, response)`` items (a judge's ``score_responses``, or a look-up of scores computed before)."""


PROMPTLESS = ("longer", "shorter")
"""Methods that never build a prompt (no field cuts, no context limit)."""


def unit_items(plan: Plan) -> list[tuple[PreferencePair, str]]:
    """Everything a pointwise method scores for one plan: each test pair's chosen and rejected response, and each
    bias-suite transform's hacked rejected response (real slices reuse the test scores)."""
    items = [(p, r) for p in plan.test for r in (p.chosen, p.rejected)]
    for pairs in plan.suite.values():
        items += [(p, p.rejected) for p in pairs if "transform" in p.metadata]
    return items


def truncation_record(model: Model, plan: Plan, template: JudgeTemplate) -> dict[str, Any]:
    """How many of the plan's test pairs had a field (prompt, chosen or rejected) cut by ``max_field_tokens``."""
    items_cut, fields_cut = count_cuts(model, plan.test, template.max_field_tokens)
    return {"max_field_tokens": template.max_field_tokens, "items_cut": items_cut, "fields_cut": fields_cut,
            "n_items": len(plan.test), "cut": "middle"}


def check_context(model: Model, plan: Plan, judge_cfg: JudgeConfig) -> None:
    """Refuse, before any fit, a plan whose zero-shot judge prompts do not fit the model's context."""
    limit = model.cfg.n_ctx
    judge = Judge(model, judge_cfg)
    over = []
    for pair, response in unit_items(plan):
        text = scalar_prompt(model, Example(pair.prompt, response, None, judge._criterion(pair), tuple(pair.images)), judge_cfg.template)
        n = len(M.encode(model, text))
        if n > limit:
            over.append(f"{pair.id} ({n} tokens)")
    if over:
        raise BadInputError(
            f"{plan.dataset} seed {plan.seed}: {len(over)} judge prompt(s) exceed the model's context of {limit} "
            f"tokens: {', '.join(over[:5])}{' ...' if len(over) > 5 else ''}. Cut long fields in their middle with "
            "--max-field-tokens N (recorded in the summary), or leave those pairs out (--subsets)."
        )


def fit_key(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig) -> str:
    """A hash of everything a unit's fit depends on: model, method, its settings and the plan's pools (not the test
    pairs or the bias suite, which only scoring reads)."""
    return _hash({"format": RESULT_FORMAT, "model": M.model_id(model), "method": method, "seed": plan.seed,
                  "fewshot": pairs_hash(plan.fewshot), "select": pairs_hash(plan.select),
                  "judge": JUDGES[method].key_settings(judge_cfg)})


def fit_unit(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig) -> tuple[Judge, float]:
    """A judge fitted on the plan's pools, and the seconds the fit took.

    A trained judge's fit (the ARM's and its variants', and the activation baselines' :attr:`Judge.fit_state`) is
    kept in the unit's folder as ``fit-<fit_key>`` (``.arm`` or ``.safetensors``) and read back instead of fitting
    again: a run stopped before the end of a long shared scoring pass resumes with the same judges, so its saved
    parts stay valid (:func:`branch_pass_folder`); the unit's ``info.fit_cache`` then names the file, and its fit
    time is the load's.
    """
    judge = make_judge(method, model, judge_cfg)
    t0 = time.perf_counter()
    cache = plan.folder / method / f"fit-{fit_key(model, plan, method, judge_cfg)}{judge.fit_suffix}"
    judge.fit(plan.fewshot, plan.select, cache=cache)
    return judge, time.perf_counter() - t0


def branch_pass_folder(plan: Plan) -> Path:
    """Where a dataset's shared scoring pass saves its finished parts (removed once its units are written)."""
    return plan.folder.parent / "branch-pass"


def memo_folder(plan: Plan, method: str, *, seed_free: bool = True) -> Path:
    """Where a unit's judge keeps what it computed, read back after a stop (removed once the job's units are
    written): one folder per dataset for a seed-free method's job (every seed in one process), one per seed for a
    unit that keeps its own (``few-shot-icl``: its prompts hold the seed's demonstrations)."""
    return (plan.folder.parent if seed_free else plan.folder) / f"{method}-memo"


def score_unit(plan: Plan, method: str, judge: Judge, score: Scorer, n_bootstrap: int) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """Score a fitted judge's test pairs and bias suite with ``score``: (result, item rows)."""
    t1 = time.perf_counter()
    scores = score([(p, r) for p in plan.test for r in (p.chosen, p.rejected)])
    chosen, rejected = scores[0::2].double().numpy(), scores[1::2].double().numpy()
    test_stats = dict(judge.last_stats)
    t2 = time.perf_counter()
    base = {"dataset": plan.dataset, "seed": plan.seed, "method": method}
    items = [{**base, "split": "test", **row} for row in item_records(plan.test, chosen, rejected)]
    result: dict[str, Any] = {
        **base, "test": {**_split_metrics(plan.test, chosen, rejected, n_bootstrap, plan.seed), "stats": test_stats},
    }
    by_id = {p.id: i for i, p in enumerate(plan.test)}
    bias: dict[str, Any] = {}
    for kind, pairs in plan.suite.items():
        if kind == "clean":
            continue
        if not pairs:
            bias[kind] = {"n": 0}
            continue
        idx = [by_id[p.metadata["original_id"]] for p in pairs]
        clean_c, clean_r = chosen[idx], rejected[idx]
        if "transform" in pairs[0].metadata:  # hacked rejected responses: score them (the chosen ones are unchanged)
            hacked_r = score([(p, p.rejected) for p in pairs]).double().numpy()
            rate = hack_rate(clean_c, hacked_r, clean_c, clean_r)
            rows = item_records(pairs, clean_c, hacked_r)
        else:  # a real slice of the test pairs: their scores already exist
            rate = hack_rate(clean_c, clean_r)
            rows = item_records(pairs, clean_c, clean_r)
        bias[kind] = {**rate.to_dict(), "stats": dict(judge.last_stats) if "transform" in pairs[0].metadata else {}}
        items += [{**base, "split": f"bias-{kind}", "original_id": p.metadata["original_id"], **row}
                  for p, row in zip(pairs, rows, strict=True)]
    t3 = time.perf_counter()
    result["bias"] = bias
    result["info"] = judge.info()
    result["timings_s"] = {"score_test": t2 - t1, "score_bias": t3 - t2}
    return result, items


def run_unit(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig, n_bootstrap: int, *,
             keep_memo: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit one method on the plan's pools, score its test pairs and bias suite on its own: (result, item rows).

    ``keep_memo``: the judge keeps what it computes in :func:`memo_folder` as it goes, and reads back what is there
    (a seed-free job of every seed, or a long unit, stopped halfway, resumes from it); judges that keep nothing
    ignore it."""
    judge, fit_s = fit_unit(model, plan, method, judge_cfg)
    if keep_memo:
        judge.memo_folder = memo_folder(plan, method, seed_free=judge.seed_free(judge_cfg))
    result, items = score_unit(plan, method, judge, judge.score_responses, n_bootstrap)
    t = result["timings_s"]
    result["timings_s"] = {"fit": fit_s, **t, "total": fit_s + t["score_test"] + t["score_bias"]}
    return result, items


def run_mask_units(model: Model, units: Sequence[tuple[Plan, str, JudgeConfig]], n_bootstrap: int, *,
                   show_progress: bool = False) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Fit every mask-based unit, then score all of them in one branch pass (:func:`score_mask_judges`); each unit's
    result and items are what :func:`run_unit` gives within float tolerance."""
    fitted = [fit_unit(model, plan, method, jcfg) for plan, method, jcfg in units]
    requests = [(judge, unit_items(plan)) for (plan, _, _), (judge, _) in zip(units, fitted, strict=True)]
    t0 = time.perf_counter()
    parts: dict[str, int] = {}
    all_scores = score_mask_judges(model, requests, checkpoint=branch_pass_folder(units[0][0]) if units else None,
                                   show_progress=show_progress, stats=parts)
    shared_s = time.perf_counter() - t0
    out = []
    for (plan, method, _), (judge, fit_s), (_, items), scores in zip(units, fitted, requests, all_scores, strict=True):
        lookup = {(p.id, r): float(s) for (p, r), s in zip(items, scores.tolist(), strict=True)}

        def score(asked: Sequence[tuple[PreferencePair, str]], lookup: dict[tuple[str, str], float] = lookup
                  ) -> torch.Tensor:
            return torch.tensor([lookup[(p.id, r)] for p, r in asked], dtype=torch.float32)

        result, rows = score_unit(plan, method, judge, score, n_bootstrap)
        result["timings_s"] = {"fit": fit_s, "score_shared": shared_s, "units_sharing_scoring": len(units),
                               "total": fit_s + shared_s / len(units)}
        result["branch_pass"] = parts  # parts_reused > 0: score_shared is the time of the resumed part only
        out.append((result, rows))
    return out
