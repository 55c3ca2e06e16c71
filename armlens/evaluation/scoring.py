"""Scoring a unit: a fitted judge's scores of a plan's test pairs and bias suite, turned into the unit's result
(accuracy with its interval, ties, subsets, sections, hack rates) and its item rows; and the checks of the judge
prompts that scoring reads (the model's context, fields cut).

Scores come from a :data:`Scorer`: a judge's own ``score_responses``, or a look-up of scores computed before for
several judges at once (:func:`armlens.evaluation.branches.score_mask_judges`). Either way :func:`score_unit` makes
the same files of them. (The readings of the model's logits are :mod:`armlens.scoring`'s.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from armlens import model as M
from armlens.data import hack_rate
from armlens.data.records import PreferencePair
from armlens.errors import BadInputError
from armlens.evaluation.baselines import Judge, JudgeConfig
from armlens.evaluation.planning import Plan, unit_items
from armlens.evaluation.protocol import (
    accuracy_by_subset,
    accuracy_ci,
    item_records,
    pairwise_correct,
    section_scores,
)
from armlens.prompts import Example, JudgeTemplate, count_cuts, scalar_prompt
from armlens.typing import Model

Scorer = Callable[[Sequence[tuple[PreferencePair, str]]], torch.Tensor]
"""Scores of ``(pair, response)`` items (a judge's ``score_responses``, or a look-up of scores computed before)."""

PROMPTLESS = ("longer", "shorter")
"""Methods that never build a prompt (no field cuts, no context limit)."""


def _split_metrics(pairs: Sequence[PreferencePair], chosen: np.ndarray, rejected: np.ndarray, n_bootstrap: int,
                   seed: int) -> dict[str, Any]:
    correct, ties = pairwise_correct(chosen, rejected)
    per_subset = accuracy_by_subset(correct, [p.subset for p in pairs], chosen == rejected)
    ci = accuracy_ci(correct, pairs, n_bootstrap, seed)
    return {"n": len(pairs), "accuracy": ci.estimate, "ci95": [ci.low, ci.high], "ties": ties, "subsets": per_subset,
            "sections": section_scores(per_subset, sources={p.subset: p.source for p in pairs})}


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


# ---------------------------------------------------------------------------------------------- the judge prompts


def check_context(model: Model, plan: Plan, judge_cfg: JudgeConfig) -> None:
    """Refuse, before any fit, a plan whose zero-shot judge prompts do not fit the model's context."""
    limit = model.cfg.n_ctx
    judge = Judge(model, judge_cfg)
    over = []
    for pair, response in unit_items(plan):
        example = Example(pair.prompt, response, None, judge._criterion(pair), tuple(pair.images))
        text = scalar_prompt(model, example, judge_cfg.template)
        n = len(M.encode(model, text))
        if n > limit:
            over.append(f"{pair.id} ({n} tokens)")
    if over:
        raise BadInputError(
            f"{plan.dataset} seed {plan.seed}: {len(over)} judge prompt(s) exceed the model's context of {limit} "
            f"tokens: {', '.join(over[:5])}{' ...' if len(over) > 5 else ''}. Cut long fields in their middle with "
            "--max-field-tokens N (recorded in the summary), or leave those pairs out (--subsets)."
        )


def truncation_record(model: Model, plan: Plan, template: JudgeTemplate) -> dict[str, Any]:
    """How many of the plan's test pairs had a field (prompt, chosen or rejected) cut by ``max_field_tokens``."""
    items_cut, fields_cut = count_cuts(model, plan.test, template.max_field_tokens)
    return {"max_field_tokens": template.max_field_tokens, "items_cut": items_cut, "fields_cut": fields_cut,
            "n_items": len(plan.test), "cut": "middle"}
