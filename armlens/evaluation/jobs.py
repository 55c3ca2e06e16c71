"""The pending work of an evaluation as *jobs*, and running a job on a loaded model.

A job is done in one go: the branch-pass units of a dataset over every seed (fitted, then scored together as branches
over shared prefixes: :func:`armlens.evaluation.units.run_mask_units`), or one other unit. :func:`run_jobs_here`
runs them in this process; :mod:`armlens.evaluation.distributed` runs them on Ray workers. Either way a job's result
is what :func:`compute_job` returns, and the runner writes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from armlens import model as M
from armlens.evaluation.baselines import JUDGES, JudgeConfig
from armlens.evaluation.eval_config import EvalConfig
from armlens.evaluation.units import (
    PROMPTLESS,
    Plan,
    check_context,
    run_mask_units,
    run_unit,
    truncation_record,
)
from armlens.typing import Model

logger = logging.getLogger(__name__)


def load_config_model(config: EvalConfig) -> Model:
    """The model ``config`` names, placed as it says (``device``, ``dtype``, ``device_map``)."""
    return M.load_model(config.model, device=config.device, dtype=config.dtype,
                        device_map=M.parse_device_map(config.device_map))


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


def plan_jobs(config: EvalConfig, pending: list[tuple[Plan, str, JudgeConfig]]) -> list[Job]:
    """The pending units as jobs: per dataset its branch-pass units as one shared job first, then every other unit
    on its own, except that a seed-free method's units of one dataset (:meth:`Judge.seed_free`: ``generative``,
    ``implicit``, which keep what they computed per model) form one job, so that one process answers the test pairs
    every seed shares once."""
    jobs = []
    for name in config.data:
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
                cuts: dict[tuple[str, int, int | None], dict[str, Any]] | None = None) -> list[
        tuple[dict[str, Any], list[dict[str, Any]]]]:
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


def run_jobs_here(model: Model, jobs: list[Job], config: EvalConfig, bar: Any) -> Iterator[tuple[Job, list[Any]]]:
    check_jobs(model, jobs)
    cuts: dict[tuple[str, int, int | None], dict[str, Any]] = {}
    for job in jobs:
        plan, method, _ = job.units[0]
        bar.set_postfix_str(f"{plan.dataset}: {len(job.units)} branch-pass unit(s) over shared prefixes"
                            if job.shared else f"{plan.dataset} seed {plan.seed} {method}")
        yield job, compute_job(model, job, config.n_bootstrap, show_progress=config.show_progress, cuts=cuts)
