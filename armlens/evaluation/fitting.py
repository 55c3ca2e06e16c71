"""Fitting a unit: one method's judge fitted on a plan's pools (few-shot and head-selection pairs).

A trained judge's fit (the ARM's and its variants', and the activation baselines' :attr:`Judge.fit_state`) is kept
in the unit's folder as ``fit-<fit_key>`` (``.arm`` or ``.safetensors``, :func:`armlens.evaluation.store.fit_file`)
and read back instead of fitting again: a run stopped before the end of a long shared scoring pass resumes with the
same judges, so its saved parts stay valid (:func:`armlens.evaluation.store.branch_pass_folder`).
"""

from __future__ import annotations

import time

from armlens.evaluation.baselines import Judge, JudgeConfig, make_judge
from armlens.evaluation.keys import fit_key
from armlens.evaluation.planning import Plan
from armlens.evaluation.store import fit_file
from armlens.typing import Model


def fit_unit(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig) -> tuple[Judge, float]:
    """A judge fitted on the plan's pools, and the seconds the fit took. A fit read back from its file names the file
    in the unit's ``info.fit_cache``, and its fit time is the load's."""
    judge = make_judge(method, model, judge_cfg)
    t0 = time.perf_counter()
    cache = fit_file(plan.folder / method, fit_key(model, plan, method, judge_cfg), judge.fit_suffix)
    judge.fit(plan.fewshot, plan.select, cache=cache)
    return judge, time.perf_counter() - t0
