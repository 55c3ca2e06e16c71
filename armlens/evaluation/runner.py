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
- ``ci95``: 95% percentile bootstrap over the *pooled* test items of all seeds (each ``(seed, pair)`` one unit);
  every seed's own interval is also recorded. The seed-to-seed standard deviation is the few-shot-draw variance the
  pooled interval does not hold.
- ``vs_arm``: paired bootstrap of ``acc(arm) - acc(method)`` on the same ``(seed, pair)`` items, with its interval
  and two-sided p-value.
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
resume on another machine.

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
This module runs the grid (:func:`run_eval`); :mod:`armlens.evaluation.eval_config` holds :class:`EvalConfig`,
:mod:`armlens.evaluation.units` one unit (plan, key, fit, score), :mod:`armlens.evaluation.jobs` the pending units
as jobs run here, :mod:`armlens.evaluation.distributed` the same jobs on Ray workers (``--workers N``), and
:mod:`armlens.evaluation.summary` the summary and ``results.md``.
"""


from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from armlens import model as M
from armlens.data import build_bias_suite, load_pairs_with_report, split_pairs
from armlens.data.partition import sides
from armlens.data.records import pairs_hash
from armlens.errors import BadInputError, BadOutputError, NotFoundError
from armlens.evaluation.baselines import JUDGES, JudgeConfig
from armlens.evaluation.eval_config import REFERENCE, EvalConfig
from armlens.evaluation.jobs import load_config_model, plan_jobs, run_jobs_here
from armlens.evaluation.protocol import write_json_atomic, write_jsonl_atomic
from armlens.evaluation.summary import results_markdown, summarize_eval
from armlens.evaluation.units import (
    ITEMS,
    RESULT_FORMAT,
    SPLIT,
    Plan,
    branch_pass_folder,
    dataset_slug,
    memo_folder,
    read_items,
    read_unit,
    run_unit,
    sample_test,
    unit_items,
    unit_key,
)
from armlens.io import ResultsLock, atomic_write, check_output_dir, read_json, settings_diff
from armlens.typing import Model

__all__ = ["REFERENCE", "EvalConfig", "check_out", "dataset_slug", "results_markdown", "run_eval", "run_unit",
           "sample_test", "summarize_eval", "unit_items"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------- the run


def _plans(config: EvalConfig, name: str, out: Path) -> tuple[list[Plan], dict[str, Any]]:
    """Load one dataset and build its per-seed plans (cheap: no model involved; nothing is written)."""
    pairs, report = load_pairs_with_report(name, root=config.root, subsets=config.subsets)
    if not pairs:  # load_pairs already refuses this; kept for loaders that return nothing silently
        raise BadInputError(f"{name}: no preference pairs")
    folder = out / dataset_slug(name)
    choice, scored, side = sides(pairs, name, config.partition)
    plans = []
    for seed in config.seed_list():
        if not side["apart"]:  # dev, all, or a test-only set: few-shot, selection and scored pairs from one pool
            split = split_pairs(choice, seed, config.n_fewshot, config.n_select, stratify=config.stratify)
            pool = split.test
        else:  # test: few-shot and selection pairs from dev, scored pairs from test
            split = split_pairs(choice, seed, config.n_fewshot, config.n_select, n_test=0, stratify=config.stratify,
                                trim=True)  # the dev pairs left over are used nowhere
            pool = scored
        test = sample_test(pool, config.limit, seed)
        if not test:
            raise BadInputError(f"{name}: no test pairs left after {config.n_fewshot} few-shot and {config.n_select} "
                                f"selection pairs out of {len(choice)}; lower --n-fewshot/--n-select")
        suite = build_bias_suite(test, seed, kinds=config.bias_kinds) if config.bias_kinds else {}
        record = {**split.to_dict(), "partition": side,
                  "test_sample": {"limit": config.limit, "ids": [p.id for p in test], "pairs_sha256": pairs_hash(test)},
                  "bias_suite": {k: len(v) for k, v in suite.items()}}
        plans.append(Plan(name, seed, split.fewshot, split.select, test, suite, record, folder / f"seed{seed}"))
    data = {"name": name, "folder": folder.name, "n_pairs": len(pairs), "pairs_sha256": pairs_hash(pairs),
            "partition": {**side, "n_choice": len(choice), "n_scored": len(scored)}, "report": report.to_dict()}
    return plans, data


def resummarize(out: str | Path) -> dict[str, Any]:
    """Rebuild ``summary.json`` and ``results.md`` of a finished evaluation folder from its files alone: its
    ``config.json``, each seed's ``split.json`` and each unit's ``result.json`` and items. No model loads and nothing
    is computed; a unit that is not on file is an error. For re-reporting committed results with today's statistics
    (the intervals), whatever has changed in the methods' settings since: the units are reported as they were
    computed, under the config they record.

    A folder written before partitions existed records no ``partition``: it used every pair (``all``).
    """
    out = Path(out)
    raw = read_json(out / "config.json")
    raw.setdefault("partition", "all")
    config = EvalConfig.from_dict(raw)
    methods = config.validate()
    old = read_json(out / "summary.json") if (out / "summary.json").is_file() else {}
    plans: list[Plan] = []
    datasets: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for name in config.data:
        pairs, report = load_pairs_with_report(name, root=config.root, subsets=config.subsets)
        by_id = {p.id: p for p in pairs}
        folder = out / dataset_slug(name)
        for seed in config.seed_list():
            record = read_json(folder / f"seed{seed}" / SPLIT)
            pools = {k: [by_id[i] for i in record["ids"][k]] for k in ("fewshot", "select")}
            test = [by_id[i] for i in record["test_sample"]["ids"]]
            if pairs_hash(test) != record["test_sample"]["pairs_sha256"]:
                raise BadInputError(f"{folder}/seed{seed}: the test pairs' content differs from when they were scored")
            plan = Plan(name, seed, pools["fewshot"], pools["select"], test, {}, record, folder / f"seed{seed}")
            plans.append(plan)
            for method in methods:
                unit = plan.folder / method
                if not (unit / "result.json").is_file():
                    raise NotFoundError(f"{unit}: no result.json; run `armlens eval` on this folder to finish it")
                results.append(read_json(unit / "result.json"))
                items += read_items(unit)
        entry = {k: v for k, v in old.get("datasets", {}).get(name, {}).items() if k != "splits"}
        datasets[name] = {**entry, "name": name, "folder": folder.name, "n_pairs": len(pairs),
                          "pairs_sha256": pairs_hash(pairs),
                          "partition": entry.get("partition", {"side": config.partition})}
    summary = summarize_eval(config, methods, plans, datasets, results, items, old.get("model") or M.DEFAULT_MODEL)
    if "versions" in old:  # the versions the units were computed with; today's summarised them
        summary["resummarized_with"] = summary["versions"]
        summary["versions"] = old["versions"]
    summary["run"] = old.get("run", {})
    write_json_atomic(out / "summary.json", summary)
    atomic_write(out / "results.md", results_markdown(summary))
    return summary


SETTINGS_IGNORED = ("out", "show_progress", "workers", "ray_address", "worker_gpus", "device", "device_map")
"""EvalConfig fields that may differ from a results folder's ``config.json`` without ``allow_changed_settings``."""


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


def run_eval(config: EvalConfig, model: Model | None = None, *, allow_changed_settings: bool = False) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the summary (also written to ``<out>/summary.json``).

    ``model``: an already loaded bridge (its :func:`armlens.model.model_id` keys the cached units); otherwise
    ``config.model`` is loaded, and only if some unit is not finished yet. The folder is locked for the run
    (:class:`armlens.io.ResultsLock`: a second writer is refused); a folder holding an evaluation with other settings
    is refused unless ``allow_changed_settings`` (:func:`check_out`).
    """
    methods = config.validate()
    if model is not None and config.workers > 1:
        raise BadInputError("workers > 1 loads the model in each worker from config.model; pass no model object")
    out = check_out(config, allow_changed_settings)
    plans, datasets = [], {}
    for name in config.data:  # every dataset is loaded and split before anything is written
        p, d = _plans(config, name, out)
        plans += p
        datasets[name] = d
    with ResultsLock(out, "armlens eval"):
        return _run_eval(config, methods, out, model, plans, datasets)


def _start(config: EvalConfig, out: Path, plans: list[Plan]) -> None:
    """Write the run's settings and splits: only once its model has loaded, so a run that fails before it leaves no
    settings that would refuse the corrected rerun."""
    for plan in plans:
        write_json_atomic(plan.folder / SPLIT, plan.split_record)
    write_json_atomic(out / "config.json", config.to_dict())


def _run_eval(config: EvalConfig, methods: list[str], out: Path, model: Model | None, plans: list[Plan],
              datasets: dict[str, Any]) -> dict[str, Any]:
    model_id = M.model_id(model) if model is not None else (config.model or M.DEFAULT_MODEL)

    units = [(plan.with_bias_kinds(config.bias_kinds_for(method)), method) for plan in plans for method in methods]
    finished: dict[tuple[str, int, str], tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    pending: list[tuple[Plan, str, JudgeConfig, str]] = []
    for plan, method in units:
        jcfg = config.judge_config(plan.seed)
        key = unit_key(plan, method, jcfg, model_id, config.bias_kinds_for(method))
        result = read_unit(plan.folder / method, key)
        if result is None:
            pending.append((plan, method, jcfg, key))
        else:
            finished[(plan.dataset, plan.seed, method)] = (result, read_items(plan.folder / method))
    jobs = plan_jobs(config, [(plan, method, jcfg) for plan, method, jcfg, _ in pending])
    keys = {(plan.dataset, plan.seed, method): key for plan, method, _, key in pending}
    bar = tqdm(total=len(pending), desc="eval", disable=not config.show_progress, unit="unit")

    def finish(plan: Plan, method: str, jcfg: JudgeConfig, result: dict[str, Any], items: list[dict[str, Any]]) -> None:
        key = keys[(plan.dataset, plan.seed, method)]
        result.update(key=key, format=RESULT_FORMAT, judge_config=jcfg.to_dict())
        folder = plan.folder / method
        write_jsonl_atomic(folder / ITEMS, items)
        write_json_atomic(folder / "result.json", result)  # last: its presence marks the unit finished
        finished[(plan.dataset, plan.seed, method)] = (result, items)
        logger.info("%s seed %d %s: accuracy %.3f (%.1f s)", plan.dataset, plan.seed, method,
                    result["test"]["accuracy"], result["timings_s"]["total"])
        bar.update(1)

    if jobs and config.workers > 1:
        from armlens.evaluation.distributed import run_jobs

        _start(config, out, plans)
        stream = run_jobs(config, jobs)
    elif jobs:
        if model is None:
            logger.info("loading model %s", model_id)
            model = load_config_model(config)
        _start(config, out, plans)
        stream = run_jobs_here(model, jobs, config, bar)
    else:
        _start(config, out, plans)
        stream = iter(())
    for job, done in stream:  # each job's units are written as soon as it finishes
        for (plan, method, jcfg), (result, items) in zip(job.units, done, strict=True):
            finish(plan, method, jcfg, result, items)
        if job.shared:  # its saved parts are in the units now
            shutil.rmtree(branch_pass_folder(job.units[0][0]), ignore_errors=True)
        else:  # so is what its judge kept
            for plan, method, jcfg in job.units:
                shutil.rmtree(memo_folder(plan, method, seed_free=JUDGES[method].seed_free(jcfg)), ignore_errors=True)
    bar.close()
    computed = len(pending)
    results: list[dict[str, Any]] = []
    all_items: list[dict[str, Any]] = []
    for plan, method in units:
        result, items = finished[(plan.dataset, plan.seed, method)]
        results.append(result)
        all_items += items
    logger.info("%d unit(s) computed, %d reused from %s", computed, len(units) - computed, out)

    summary = summarize_eval(config, methods, plans, datasets, results, all_items, model_id)
    summary["run"] = {"units": len(units), "computed": computed, "reused": len(units) - computed}
    write_jsonl_atomic(out / ITEMS, all_items)
    write_json_atomic(out / "summary.json", summary)
    atomic_write(out / "results.md", results_markdown(summary))
    return summary
