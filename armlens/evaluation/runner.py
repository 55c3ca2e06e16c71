"""``armlens eval``: every method on every dataset and seed, with honest statistics, resumable.

Context
-------
One evaluation is a grid of *units* ``(dataset, seed, method)``. For each dataset and seed the pairs are split
(:func:`armlens.data.split_pairs`: few-shot, head-selection and test pools, no prompt on two sides); every method is
fitted on that same draw (:mod:`armlens.evaluation.baselines`), scores the test pairs and the bias suite built from
them (:func:`armlens.data.build_bias_suite`), and its unit is written to disk at once. A new seed is a new few-shot
draw, a new head selection and (with ``limit``) a new sample of test pairs.

Statistics (the RewardBench protocol of :mod:`armlens.evaluation.protocol`)
--------------------------------------------------------------------------
- A pair is correct iff ``score(chosen) > score(rejected)`` strictly; ties are wrong and counted.
- Per method: accuracy per seed, their mean and standard deviation across seeds (``ddof=1``; 0 with one seed),
  per-subset and per-section accuracy (mean over seeds).
- ``ci95``: the mean over seeds with a 95% interval that crosses seeds and test prompts
  (:func:`armlens.stats.crossed_interval`): the seeds share their test pairs (on the test partition every seed scores
  every test pair), so a prompt scored by five seeds is one cluster, not five independent items; the interval is the
  Student-t interval on the crossed variance decomposition (seeds, prompts, their interaction), shaped by the crossed
  bootstrap. Every seed's own interval is also recorded, and the seed-to-seed standard deviation.
- ``vs_arm``: ``acc(arm) - acc(method)`` on the same ``(seed, pair)`` items, with the same crossed interval and its
  two-sided p-value; the bias suite's hack rates the same way.
- Bias suite: per kind, the hack rate (share of biased pairs where the judge strictly prefers the hacked rejected
  response), beside accuracy on the untouched test pairs; transforms also report the flip rate (correct when clean,
  not once hacked). Every method here is pointwise, so only the hacked rejected responses are scored again; real
  slices (``length-real``, ``format-real``) are subsets of the test pairs and reuse their scores.

Files under ``out`` (all written atomically)
--------------------------------------------
::

    <dataset>/seed<s>/split.json.gz           the split (ids, sizes, hashes) and the test sample
    <dataset>/seed<s>/<method>/items.jsonl.gz  per-item scores (test and bias pairs)
    <dataset>/seed<s>/<method>/result.json     the unit's metrics, fit info, timings, and its key (written last)
    <dataset>/seed<s>/<method>/fit-<key>.*      a trained judge's fit (.arm: the ARM's), read back on a resume
    <dataset>/branch-pass/part-<k>.json        the shared scoring pass's finished parts, while it is unfinished
    <dataset>/<method>-memo/part-<k>.json      what a seed-free method's job computed so far, while it is unfinished
    <dataset>/seed<s>/<method>-memo/part-<k>.json  the same for a long unit of one seed (few-shot-icl)
    items.jsonl.gz                             every unit's items, concatenated
    summary.json                               protocol, config, versions, model, data hashes, splits, results
    results.md                                 the tables

The per-item files (``*.jsonl.gz``, ``split.json.gz``) are gzip-compressed with deterministic bytes
(:func:`armlens.io.gzip_bytes`: a rerun writes identical files); a folder written before, with plain ``items.jsonl``
and ``split.json``, is read and resumed the same, and a rewritten file replaces its plain form.

Resuming
--------
A unit is finished iff its ``result.json`` exists and holds the same *key*: a hash of everything that decides its
numbers (model id, dataset name and content hash, the split's ids, the test sample, bias kinds, method and the
method's settings for that seed). A rerun recomputes only missing or stale units (a changed setting makes exactly the
affected units stale) and rebuilds the summary from the unit files. The model is loaded only when a unit needs it.
Within a dataset's shared scoring pass (hours at full size), a trained judge is read back from its fit file rather
than fitted again, and the pass resumes from its saved parts (:func:`armlens.evaluation.branches.score_mask_judges`),
so a run stopped in it loses at most one part. A seed-free method's job (``generative``, ``implicit``: every seed of a
dataset in one process, each answer computed once) keeps what it computed in ``<method>-memo/`` as it goes
(:func:`armlens.evaluation.output_judges.per_model_memo`), and so does a ``few-shot-icl`` unit (tens of minutes at
full size) in its seed's folder. Commit the fit files, ``branch-pass/`` and ``*-memo/`` to
resume on another machine. ``adopt``: a unit that another folder finished as the very same computation (its key, or
a key written before keys recorded the criteria with every pair's criterion unchanged) is taken from there, and says
so in its ``result.json`` (:mod:`armlens.evaluation.adopt`).

Scoring at the physical limit
-----------------------------
Branch-pass methods (:meth:`armlens.evaluation.baselines.Judge.in_branch_pass`: ``arm``, ``mean-ablation``,
``zero-shot``, ``random-heads``, ``topk-heads``, and the activation baselines ``probe``, ``savs`` and ``steering``)
read the same zero-shot judge prompt and differ only at its last token: what they write into hook_z, a steering
vector added to the residual stream there, or the activations they read there. Their pending units of a dataset,
over every seed, are fitted first and then scored together (:func:`armlens.evaluation.branches.score_mask_judges`):
one prefix forward per distinct judge prompt, every (method, seed) patch that prompt is asked under as a side-by-side
branch of its last token. Every other method keeps its own path. The unit files are the same either way;
``timings_s`` says how the scoring time was shared.

Field cuts and the context
--------------------------
By default judge prompts keep whole fields. With ``max_field_tokens`` an over-long field is cut in its middle (head
and tail kept, a visible marker between: :func:`armlens.prompts.cut_to_tokens`) and every unit records how many test
pairs had a field cut (``truncation``; the summary adds them up per dataset). A judge prompt longer than the model's
context stops the run before any fit, with an error naming the pairs (never a silent cut).

Where it lives
--------------
One module per step of the pipeline, each handed the part of :class:`EvalConfig` it reads
(:mod:`armlens.evaluation.eval_config`): :mod:`~armlens.evaluation.planning` plans each dataset's seeds (pools, test
sample, bias suite), :mod:`~armlens.evaluation.keys` keys every unit, :mod:`~armlens.evaluation.store` reads finished
units back and writes new ones (every file name and form under ``out``), :mod:`~armlens.evaluation.jobs` runs the
pending units as jobs on a loaded model (here, or on Ray workers: :mod:`~armlens.evaluation.distributed`), each unit
fitted (:mod:`~armlens.evaluation.fitting`) and scored (:mod:`~armlens.evaluation.scoring`), and
:mod:`~armlens.evaluation.summary` summarises the units (``summary.json``, ``results.md``). This module runs the
steps in that order (:func:`run_eval`), or re-reports a finished folder (:func:`resummarize`).
"""


from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from armlens import model as M
from armlens.errors import BadInputError, NotFoundError
from armlens.evaluation.adopt import adopt_unit, check_adopt_source
from armlens.evaluation.baselines import JudgeConfig
from armlens.evaluation.eval_config import REFERENCE, EvalConfig
from armlens.evaluation.jobs import Job, Outcome, load_config_model, plan_jobs, run_jobs_here
from armlens.evaluation.keys import unit_key
from armlens.evaluation.planning import Plan, dataset_slug, plan_dataset, recorded_plans
from armlens.evaluation.store import (
    RESULT_FORMAT,
    check_out,
    read_config,
    read_items,
    read_recorded_unit,
    read_summary,
    read_unit,
    write_start,
    write_summary,
    write_unit,
)
from armlens.evaluation.summary import results_markdown, summarize_eval
from armlens.io import ResultsLock
from armlens.typing import Model

__all__ = ["REFERENCE", "EvalConfig", "check_out", "results_markdown", "resummarize", "run_eval"]

logger = logging.getLogger(__name__)


def run_eval(config: EvalConfig, model: Model | None = None, *, allow_changed_settings: bool = False) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the summary (also written to ``<out>/summary.json``).

    ``model``: an already loaded bridge (its :func:`armlens.model.model_id` keys the cached units); otherwise
    ``config.model`` is loaded, and only if some unit is not finished yet. The folder is locked for the run
    (:class:`armlens.io.ResultsLock`: a second writer is refused); a folder holding an evaluation with other settings
    is refused unless ``allow_changed_settings`` (:func:`armlens.evaluation.store.check_out`).
    """
    methods = config.validate()
    if model is not None and config.workers > 1:
        raise BadInputError("workers > 1 loads the model in each worker from config.model; pass no model object")
    out = check_out(config, allow_changed_settings)
    check_adopt_source(config.adopt, out)
    plans, datasets = [], {}
    for name in config.data:  # every dataset is loaded and split before anything is written
        p, d = plan_dataset(config, name, out)
        plans += p
        datasets[name] = d
    with ResultsLock(out, "armlens eval"):
        return _run_eval(config, methods, out, model, plans, datasets)


def _run_eval(config: EvalConfig, methods: list[str], out: Path, model: Model | None, plans: list[Plan],
              datasets: dict[str, Any]) -> dict[str, Any]:
    model_id = M.model_id(model) if model is not None else (config.model or M.DEFAULT_MODEL)

    # key every unit; read back those finished under the same key
    units = [(plan.with_bias_kinds(config.bias_kinds_for(method)), method, config.judge_config(plan.seed))
             for plan in plans for method in methods]
    finished: dict[tuple[str, int, str], Outcome] = {}
    pending: list[tuple[Plan, str, JudgeConfig]] = []
    keys: dict[tuple[str, int, str], str] = {}
    adopted = 0
    for plan, method, jcfg in units:
        key = unit_key(plan, method, jcfg, model_id, config.bias_kinds_for(method))
        result = read_unit(plan.folder / method, key)
        if result is None and config.adopt is not None:  # the same computation, finished in another folder
            taken = adopt_unit(Path(config.adopt), plan, method, jcfg, model_id, config.bias_kinds_for(method), key)
            if taken is not None:
                result, rows = taken
                write_unit(plan.folder / method, result, rows)
                adopted += 1
                logger.info("%s seed %d %s: adopted from %s (%s)", plan.dataset, plan.seed, method, config.adopt,
                            result["adopted"]["rule"])
        if result is None:
            pending.append((plan, method, jcfg))
            keys[(plan.dataset, plan.seed, method)] = key
        else:
            finished[(plan.dataset, plan.seed, method)] = (result, read_items(plan.folder / method))

    # fit and score the others, job by job, here or on Ray workers
    jobs = plan_jobs(pending)
    bar = tqdm(total=len(pending), desc="eval", disable=not config.show_progress, unit="unit")
    stream: Iterator[tuple[Job, list[Outcome]]] = iter(())  # either stream runs only once iterated, below
    if jobs and config.workers > 1:
        from armlens.evaluation.distributed import run_jobs

        stream = run_jobs(config, jobs)
    elif jobs:
        if model is None:
            logger.info("loading model %s", model_id)
            model = load_config_model(config)
        stream = run_jobs_here(model, jobs, config.n_bootstrap, bar, show_progress=config.show_progress)
    # the settings and splits are written only once the model has loaded, so a run that fails before it leaves no
    # settings that would refuse the corrected rerun
    write_start(out, {plan.folder: plan.split_record for plan in plans}, config.to_dict())
    for job, done in stream:  # each job's units are written as soon as it finishes
        for (plan, method, jcfg), (result, items) in zip(job.units, done, strict=True):
            result.update(key=keys[(plan.dataset, plan.seed, method)], format=RESULT_FORMAT,
                          judge_config=jcfg.to_dict())
            write_unit(plan.folder / method, result, items)
            finished[(plan.dataset, plan.seed, method)] = (result, items)
            logger.info("%s seed %d %s: accuracy %.3f (%.1f s)", plan.dataset, plan.seed, method,
                        result["test"]["accuracy"], result["timings_s"]["total"])
            bar.update(1)
        for folder in job.scratch():  # its saved parts, or what its judges kept, are in the units now
            shutil.rmtree(folder, ignore_errors=True)
    bar.close()

    # summarise every unit, reused or computed
    computed = len(pending)
    results: list[dict[str, Any]] = []
    all_items: list[dict[str, Any]] = []
    for plan, method, _ in units:
        result, items = finished[(plan.dataset, plan.seed, method)]
        results.append(result)
        all_items += items
    logger.info("%d unit(s) computed, %d reused from %s (%d of them adopted)", computed, len(units) - computed, out,
                adopted)
    summary = summarize_eval(config, methods, plans, datasets, results, all_items, model_id)
    summary["run"] = {"units": len(units), "computed": computed, "reused": len(units) - computed}
    if adopted:
        summary["run"]["adopted"] = adopted
    markdown = results_markdown(summary)
    write_summary(out, summary, markdown, all_items)
    return summary


def resummarize(out: str | Path, *, into: str | Path | None = None) -> dict[str, Any]:
    """Rebuild ``summary.json`` and ``results.md`` of a finished evaluation folder from its files alone: its
    ``config.json``, each seed's ``split.json`` and each unit's ``result.json`` and items. No model loads and nothing
    is computed; a unit that is not on file is an error. For re-reporting committed results with today's statistics
    (the intervals), whatever has changed in the methods' settings since: the units are reported as they were
    computed, under the config they record.

    ``into``: report a folder that is still running instead: only the datasets whose every seed has finished the
    methods that have finished somewhere (:func:`finished_part`), written to ``into`` (never into ``out``, whose
    run would take the summary for its own), with ``interim`` saying what is still missing.
    """
    out = Path(out)
    config = read_config(out)
    interim: dict[str, Any] | None = None
    if into is not None:
        full = config
        config = finished_part(config, out)
        interim = {"of": str(out), "datasets_missing": [d for d in full.data if d not in config.data],
                   "methods_missing": [m for m in full.validate() if m not in config.methods]}
    methods = config.validate()
    old = read_summary(out) if into is None else {}
    plans: list[Plan] = []
    datasets: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for name in config.data:
        p, datasets[name] = recorded_plans(config, name, out, old.get("datasets", {}).get(name, {}))
        plans += p
        for plan in p:
            for method in methods:
                result, rows = read_recorded_unit(plan.folder / method)
                results.append(result)
                items += rows
    summary = summarize_eval(config, methods, plans, datasets, results, items, old.get("model") or M.DEFAULT_MODEL)
    if "versions" in old:  # the versions the units were computed with; today's summarised them
        summary["resummarized_with"] = summary["versions"]
        summary["versions"] = old["versions"]
    summary["run"] = old.get("run", {})
    if interim is not None:
        summary["interim"] = interim
    markdown = results_markdown(summary)
    write_summary(Path(into) if into is not None else out, summary, markdown)
    return summary


def finished_part(config: EvalConfig, out: Path) -> EvalConfig:
    """``config`` narrowed to what a running folder has finished: the methods finished on every seed of some
    dataset, and the datasets on which every seed has finished all of those."""
    def done(name: str, method: str) -> bool:
        folder = out / dataset_slug(name)
        return all((folder / f"seed{s}" / method / "result.json").is_file() for s in config.seed_list())

    methods = [m for m in config.validate() if any(done(d, m) for d in config.data)]
    data = [d for d in config.data if methods and all(done(d, m) for m in methods)]
    if not data:
        raise NotFoundError(f"{out}: no dataset has finished a method on every seed yet")
    bias = None if config.bias_methods is None else [m for m in config.bias_methods if m in methods]
    return dataclasses.replace(config, data=data, methods=methods, bias_methods=bias)
