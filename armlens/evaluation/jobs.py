"""Running an evaluation's pending units on a loaded model, grouped as *jobs*: each unit fitted
(:mod:`armlens.evaluation.fitting`), then scored (:mod:`armlens.evaluation.scoring`).

A job is done in one go: the branch-pass units of a dataset over every seed (fitted, then scored together as branches
over shared prefixes: :func:`run_mask_units`), a seed-free method's units of a dataset, or one other unit
(:func:`run_unit`). :func:`run_jobs_here` runs them in this process; :mod:`armlens.evaluation.distributed` runs them
on Ray workers. Either way a job's result is what :func:`compute_job` returns, and the runner writes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from armlens import model as M
from armlens.data.records import PreferencePair
from armlens.evaluation.baselines import JUDGES, JudgeConfig
from armlens.evaluation.branches import score_mask_judges
from armlens.evaluation.eval_config import EvalConfig
from armlens.evaluation.fitting import fit_unit
from armlens.evaluation.planning import Plan, unit_items
from armlens.evaluation.scoring import PROMPTLESS, check_context, score_unit, truncation_record
from armlens.evaluation.store import branch_pass_folder, memo_folder
from armlens.typing import Model

logger = logging.getLogger(__name__)

Outcome = tuple[dict[str, Any], list[dict[str, Any]]]
"""What a unit's computation gives: its result and its item rows."""


def load_config_model(config: EvalConfig) -> Model:
    """The model ``config`` names, placed as it says (``device``, ``dtype``, ``device_map``)."""
    return M.load_model(config.model, device=config.device, dtype=config.dtype,
                        device_map=M.parse_device_map(config.device_map))


# -------------------------------------------------------------------------------------------------------- one unit


def run_unit(model: Model, plan: Plan, method: str, judge_cfg: JudgeConfig, n_bootstrap: int, *,
             keep_memo: bool = False) -> Outcome:
    """Fit one method on the plan's pools, score its test pairs and bias suite on its own: (result, item rows).

    ``keep_memo``: the judge keeps what it computes in :func:`armlens.evaluation.store.memo_folder` as it goes, and
    reads back what is there (a seed-free job of every seed, or a long unit, stopped halfway, resumes from it);
    judges that keep nothing ignore it."""
    judge, fit_s = fit_unit(model, plan, method, judge_cfg)
    if keep_memo:
        judge.memo_folder = memo_folder(plan.folder, method, seed_free=judge.seed_free(judge_cfg))
    result, items = score_unit(plan, method, judge, judge.score_responses, n_bootstrap)
    t = result["timings_s"]
    result["timings_s"] = {"fit": fit_s, **t, "total": fit_s + t["score_test"] + t["score_bias"]}
    return result, items


def run_mask_units(model: Model, units: Sequence[tuple[Plan, str, JudgeConfig]], n_bootstrap: int, *,
                   show_progress: bool = False) -> list[Outcome]:
    """Fit every mask-based unit, then score all of them in one branch pass (:func:`score_mask_judges`); each unit's
    result and items are what :func:`run_unit` gives within float tolerance."""
    fitted = [fit_unit(model, plan, method, jcfg) for plan, method, jcfg in units]
    requests = [(judge, unit_items(plan)) for (plan, _, _), (judge, _) in zip(units, fitted, strict=True)]
    t0 = time.perf_counter()
    parts: dict[str, int] = {}
    all_scores = score_mask_judges(model, requests,
                                   checkpoint=branch_pass_folder(units[0][0].folder) if units else None,
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


# ------------------------------------------------------------------------------------------------------------ jobs


@dataclass
class Job:
    """Work done in one go: the branch-pass units of a dataset (every seed; ``shared``: fitted, then scored together
    as branches over shared prefixes), one other unit, or a seed-free method's units of one dataset, one after the
    other (:func:`plan_jobs`)."""

    units: list[tuple[Plan, str, JudgeConfig]]
    shared: bool

    def describe(self) -> str:
        """One line for the logs: dataset(s), methods, seeds, unit count."""
        def names(values: Iterator[Any]) -> str:
            return ",".join(str(v) for v in dict.fromkeys(values))

        return (f"{names(p.dataset for p, _, _ in self.units)}: {names(m for _, m, _ in self.units)} "
                f"(seeds {names(p.seed for p, _, _ in self.units)}; {len(self.units)} unit(s)"
                + ("; shared scoring)" if self.shared else ")"))

    def scratch(self) -> list[Path]:
        """The folders where this job keeps its unfinished work (the branch pass's saved parts, or what its judges
        computed), to remove once its units are written."""
        if self.shared:
            return [branch_pass_folder(self.units[0][0].folder)]
        return [memo_folder(plan.folder, method, seed_free=JUDGES[method].seed_free(jcfg))
                for plan, method, jcfg in self.units]


def plan_jobs(pending: list[tuple[Plan, str, JudgeConfig]]) -> list[Job]:
    """The pending units as jobs: per dataset (in the order of ``pending``) its branch-pass units as one shared job
    first, then every other unit on its own, except that a seed-free method's units of one dataset
    (:meth:`Judge.seed_free`: ``generative``, ``implicit``, which keep what they computed per model) form one job, so
    that one process answers the test pairs every seed shares once."""
    jobs = []
    for name in dict.fromkeys(plan.dataset for plan, _, _ in pending):
        batch = [u for u in pending if u[0].dataset == name and JUDGES[u[1]].in_branch_pass(u[2])]
        if batch:
            jobs.append(Job(batch, shared=True))
    together: dict[tuple[str, str], Job] = {}
    for unit in pending:
        plan, method, jcfg = unit
        judge = JUDGES[method]
        if judge.in_branch_pass(jcfg):
            continue
        if not judge.seed_free(jcfg):
            jobs.append(Job([unit], shared=False))
        elif (plan.dataset, method) in together:
            together[(plan.dataset, method)].units.append(unit)
        else:
            jobs.append(together.setdefault((plan.dataset, method), Job([unit], shared=False)))
    return jobs


def check_jobs(model: Model, jobs: list[Job]) -> None:
    """Refuse, before any fit, a run with a judge prompt beyond the model's context (:func:`check_context`)."""
    checked: set[tuple[str, int]] = set()
    for job in jobs:
        for plan, method, jcfg in job.units:
            if method not in PROMPTLESS and (plan.dataset, plan.seed) not in checked:
                check_context(model, plan, jcfg)
                checked.add((plan.dataset, plan.seed))


def compute_job(model: Model, job: Job, n_bootstrap: int, *, show_progress: bool = False,
                cuts: dict[tuple[str, int, int | None], dict[str, Any]] | None = None) -> list[Outcome]:
    """Fit and score one job's units on ``model``: per unit (result, item rows), the result holding the model's
    fingerprint and, for prompt-reading methods, how many test pairs had a field cut (counted once per dataset, seed
    and cap: pass the same ``cuts`` dict to every job of a run)."""
    what = job.describe()
    logger.info("job started: %s", what)  # a long run's only sign of life between finished units (Ray workers too)
    t0 = time.perf_counter()
    if job.shared:
        done = run_mask_units(model, job.units, n_bootstrap, show_progress=show_progress)
    else:
        done = [run_unit(model, *unit, n_bootstrap, keep_memo=True) for unit in job.units]
    logger.info("job done in %.0f s: %s", time.perf_counter() - t0, what)
    cuts = {} if cuts is None else cuts
    fingerprint = M.model_fingerprint(model)
    for (plan, method, jcfg), (result, _) in zip(job.units, done, strict=True):
        if method not in PROMPTLESS:
            key = (plan.dataset, plan.seed, jcfg.template.max_field_tokens)
            if key not in cuts:
                cuts[key] = truncation_record(model, plan, jcfg.template)
            result["truncation"] = cuts[key]
        result["model"] = fingerprint
    return done


def run_jobs_here(model: Model, jobs: list[Job], n_bootstrap: int, bar: Any, *, show_progress: bool = False
                  ) -> Iterator[tuple[Job, list[Outcome]]]:
    """Run ``jobs`` one after the other in this process, every prompt checked against the context first; yields
    ``(job, per-unit (result, items))`` as jobs finish."""
    check_jobs(model, jobs)
    cuts: dict[tuple[str, int, int | None], dict[str, Any]] = {}
    for job in jobs:
        plan, method, _ = job.units[0]
        bar.set_postfix_str(f"{plan.dataset}: {len(job.units)} branch-pass unit(s) over shared prefixes"
                            if job.shared else f"{plan.dataset} seed {plan.seed} {method}")
        yield job, compute_job(model, job, n_bootstrap, show_progress=show_progress, cuts=cuts)
