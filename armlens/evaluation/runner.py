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

    <dataset>/seed<s>/split.json              the split (ids, sizes, hashes) and the test sample
    <dataset>/seed<s>/<method>/items.jsonl     per-item scores (test and bias pairs)
    <dataset>/seed<s>/<method>/result.json     the unit's metrics, fit info, timings, and its key (written last)
    items.jsonl                                every unit's items, concatenated
    summary.json                               protocol, config, versions, model, data hashes, splits, results
    results.md                                 the tables

Resuming
--------
Scoring at the physical limit
-----------------------------
Mask-based methods (:attr:`armlens.evaluation.baselines.Judge.mask_based`: ``arm``, ``zero-shot``,
``random-heads``, ``topk-heads``) read the same zero-shot judge prompt and differ only in what they write into the
last token's hook_z. Their pending units of a dataset, over every seed, are fitted first and then scored together
(:func:`armlens.evaluation.branches.score_mask_judges`): one prefix forward per distinct judge prompt, every
(method, seed) patch that prompt is asked under as a side-by-side branch of its last token. Every other method keeps
its own path. The unit files are the same either way; ``timings_s`` says how the scoring time was shared.

Field cuts and the context
--------------------------
By default judge prompts keep whole fields. With ``max_field_tokens`` an over-long field is cut in its middle (head
and tail kept, a visible marker between: :func:`armlens.prompts.cut_to_tokens`) and every unit records how many test
pairs had a field cut (``truncation``; the summary adds them up per dataset). A judge prompt longer than the model's
context stops the run before any fit, with an error naming the pairs (never a silent cut).

A unit is finished iff its ``result.json`` exists and holds the same *key*: a hash of everything that decides its
numbers (model id, dataset name and content hash, the split's ids, the test sample, bias kinds, method and the
method's settings for that seed). A rerun recomputes only missing or stale units (a changed setting makes exactly the
affected units stale) and rebuilds the summary from the unit files. The model is loaded only when a unit needs it.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from armlens import config as C
from armlens import model as M
from armlens.data import BIAS_KINDS, build_bias_suite, hack_rate, load_pairs_with_report, split_pairs
from armlens.data.records import PreferencePair, pairs_hash
from armlens.evaluation.baselines import JUDGES, METHODS, Judge, JudgeConfig, make_judge, parse_methods
from armlens.evaluation.branches import score_mask_judges
from armlens.evaluation.protocol import (
    PROTOCOL,
    accuracy_by_subset,
    environment_versions,
    item_records,
    pairwise_correct,
    section_scores,
    write_json_atomic,
    write_jsonl_atomic,
)
from armlens.io import ResultsLock, atomic_write, check_output_dir, read_json, settings_diff
from armlens.prompts import Example, JudgeTemplate, count_cuts, scalar_prompt
from armlens.stats import bootstrap_ci, paired_bootstrap
from armlens.typing import Model

logger = logging.getLogger(__name__)

RESULT_FORMAT = 1
REFERENCE = "arm"
"""The method every other one is compared with (paired bootstrap)."""


@dataclass
class EvalConfig:
    """One evaluation: which data, methods, seeds and sizes; every method setting (the judge's words and field cap,
    the ARM's config with its defaults, the ICL judge's demonstrations) lives in ``judge``, defined once there."""

    data: list[str] = field(default_factory=lambda: ["hhh"])
    """Datasets: registry names (``armlens data list``) or ``path:FILE``."""
    out: str = "runs/eval"
    """Output folder (per-unit files, ``summary.json``, ``results.md``); reused to resume."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Methods (``armlens.evaluation.baselines.METHODS``); ``arm`` is the reference of the paired tests."""
    seeds: int = 3
    """Number of seeds (``first_seed``, ``first_seed + 1``, ...): each a new few-shot draw and head selection."""
    first_seed: int = 0
    """The first seed."""
    root: str | None = None
    """Data root for the offline loaders (default: ``armlens.data.data_root``)."""
    subsets: list[str] | None = None
    """Keep only these subsets of every dataset (``None``: all)."""
    limit: int | None = 40
    """Test pairs per dataset and seed, a seeded sample of the test pool (``None``: the whole pool)."""
    n_fewshot: int = 8
    """Pairs in the few-shot pool (ARM means, ICL demonstrations, probe/steering/SAVs training)."""
    n_select: int = 8
    """Pairs in the head-selection pool (ARM REINFORCE, SAVs head ranking, steering layer choice, probe training)."""
    stratify: bool = True
    """Fill the few-shot and selection pools per subset, proportionally (each criterion's ARM needs its own pairs)."""
    bias_kinds: list[str] = field(default_factory=lambda: list(BIAS_KINDS))
    """Bias-suite kinds (``armlens.data.BIAS_KINDS``) built from each seed's test pairs; empty: no bias suite."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for intervals and paired tests."""
    model: str | None = None
    """Model name, folder, ``.gguf`` file or Hub id (``None``: the embedded SmolLM2-135M-Instruct)."""
    device: str | None = None
    """``cpu``, ``cuda``, ... (``None``: cuda when available)."""
    dtype: str = "float32"
    """Model parameter dtype."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """Every other method setting (judge words, score reading, voting, probe, steering, SAVs, the ARM's config)."""
    show_progress: bool = True
    """tqdm progress bars."""

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def judge_config(self, seed: int) -> JudgeConfig:
        """The judge settings of one seed."""
        return dataclasses.replace(self.judge, seed=seed, show_progress=self.show_progress)

    def validate(self) -> list[str]:
        """Checks that need no data or model; returns the parsed method names."""
        if not self.data:
            raise ValueError("no datasets given (--data NAME[,NAME...])")
        methods = parse_methods(self.methods)
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be a positive number of test pairs, got {self.limit}")
        unknown = [k for k in self.bias_kinds if k not in BIAS_KINDS]
        if unknown:
            raise ValueError(f"unknown bias kind(s) {unknown}; choose from {', '.join(BIAS_KINDS)}")
        if REFERENCE in methods and self.n_fewshot < 1:
            raise ValueError("the ARM needs few-shot pairs (n_fewshot >= 1)")
        return methods

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        return C.from_dict(cls, d)


# ---------------------------------------------------------------------------------------------------- units


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
class _Plan:
    """One dataset x seed: the pools, the test sample and the bias suite every method of that seed shares."""

    dataset: str
    seed: int
    fewshot: list[PreferencePair]
    select: list[PreferencePair]
    test: list[PreferencePair]
    suite: dict[str, list[PreferencePair]]
    split_record: dict[str, Any]
    folder: Path


def _unit_key(plan: _Plan, method: str, judge_cfg: JudgeConfig, model_id: str, bias_kinds: Sequence[str]) -> str:
    cfg = JUDGES[method].key_settings(judge_cfg)  # only the settings that can change this method's numbers
    return _hash({
        "format": RESULT_FORMAT, "model": model_id, "dataset": plan.dataset, "method": method, "seed": plan.seed,
        "fewshot": pairs_hash(plan.fewshot), "select": pairs_hash(plan.select), "test": pairs_hash(plan.test),
        "bias_kinds": list(bias_kinds), "judge": cfg,
    })


def _read_unit(folder: Path, key: str) -> dict[str, Any] | None:
    """A finished unit's result, or None when missing, unreadable or computed under another key."""
    path = folder / "result.json"
    if not (path.is_file() and (folder / "items.jsonl").is_file()):
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


def _read_items(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines() if line.strip()]


def _split_metrics(pairs: Sequence[PreferencePair], chosen: np.ndarray, rejected: np.ndarray, n_bootstrap: int,
                   seed: int) -> dict[str, Any]:
    correct, ties = pairwise_correct(chosen, rejected)
    per_subset = accuracy_by_subset(correct, [p.subset for p in pairs], chosen == rejected)
    ci = bootstrap_ci(correct.astype(float), n=n_bootstrap, seed=seed)
    return {"n": len(pairs), "accuracy": ci.estimate, "ci95": [ci.low, ci.high], "ties": ties, "subsets": per_subset,
            "sections": section_scores(per_subset, sources={p.subset: p.source for p in pairs})}


Scorer = Callable[[Sequence[tuple[PreferencePair, str]]], torch.Tensor]
"""Scores of ``(pair, response)`` items (a judge's ``score_responses``, or a look-up of scores computed before)."""

PROMPTLESS = ("longer", "shorter")
"""Methods that never build a prompt (no field cuts, no context limit)."""


def unit_items(plan: _Plan) -> list[tuple[PreferencePair, str]]:
    """Everything a pointwise method scores for one plan: each test pair's chosen and rejected response, and each
    bias-suite transform's hacked rejected response (real slices reuse the test scores)."""
    items = [(p, r) for p in plan.test for r in (p.chosen, p.rejected)]
    for pairs in plan.suite.values():
        items += [(p, p.rejected) for p in pairs if "transform" in p.metadata]
    return items


def truncation_record(model: Model, plan: _Plan, template: JudgeTemplate) -> dict[str, Any]:
    """How many of the plan's test pairs had a field (prompt, chosen or rejected) cut by ``max_field_tokens``."""
    items_cut, fields_cut = count_cuts(model, plan.test, template.max_field_tokens)
    return {"max_field_tokens": template.max_field_tokens, "items_cut": items_cut, "fields_cut": fields_cut,
            "n_items": len(plan.test), "cut": "middle"}


def check_context(model: Model, plan: _Plan, judge_cfg: JudgeConfig) -> None:
    """Refuse, before any fit, a plan whose zero-shot judge prompts do not fit the model's context."""
    limit = model.cfg.n_ctx
    judge = Judge(model, judge_cfg)
    over = []
    for pair, response in unit_items(plan):
        text = scalar_prompt(model, Example(pair.prompt, response, None, judge._criterion(pair)), judge_cfg.template)
        n = len(M.encode(model, text))
        if n > limit:
            over.append(f"{pair.id} ({n} tokens)")
    if over:
        raise ValueError(
            f"{plan.dataset} seed {plan.seed}: {len(over)} judge prompt(s) exceed the model's context of {limit} "
            f"tokens: {', '.join(over[:5])}{' ...' if len(over) > 5 else ''}. Cut long fields in their middle with "
            "--max-field-tokens N (recorded in the summary), or leave those pairs out (--subsets)."
        )


def fit_unit(model: Model, plan: _Plan, method: str, judge_cfg: JudgeConfig) -> tuple[Judge, float]:
    """A judge fitted on the plan's pools, and the seconds the fit took."""
    judge = make_judge(method, model, judge_cfg)
    t0 = time.perf_counter()
    judge.fit(plan.fewshot, plan.select)
    return judge, time.perf_counter() - t0


def score_unit(plan: _Plan, method: str, judge: Judge, score: Scorer, n_bootstrap: int) -> tuple[
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


def run_unit(model: Model, plan: _Plan, method: str, judge_cfg: JudgeConfig, n_bootstrap: int) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """Fit one method on the plan's pools, score its test pairs and bias suite on its own: (result, item rows)."""
    judge, fit_s = fit_unit(model, plan, method, judge_cfg)
    result, items = score_unit(plan, method, judge, judge.score_responses, n_bootstrap)
    t = result["timings_s"]
    result["timings_s"] = {"fit": fit_s, **t, "total": fit_s + t["score_test"] + t["score_bias"]}
    return result, items


def run_mask_units(model: Model, units: Sequence[tuple[_Plan, str, JudgeConfig]], n_bootstrap: int, *,
                   show_progress: bool = False) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Fit every mask-based unit, then score all of them in one branch pass (:func:`score_mask_judges`); each unit's
    result and items are what :func:`run_unit` gives within float tolerance."""
    fitted = [fit_unit(model, plan, method, jcfg) for plan, method, jcfg in units]
    requests = [(judge, unit_items(plan)) for (plan, _, _), (judge, _) in zip(units, fitted, strict=True)]
    t0 = time.perf_counter()
    all_scores = score_mask_judges(model, requests, show_progress=show_progress)
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
        out.append((result, rows))
    return out


# ---------------------------------------------------------------------------------------------------- the run


def _plans(config: EvalConfig, name: str, out: Path) -> tuple[list[_Plan], dict[str, Any]]:
    """Load one dataset and build its per-seed plans (cheap: no model involved)."""
    pairs, report = load_pairs_with_report(name, root=config.root, subsets=config.subsets)
    if not pairs:  # load_pairs already refuses this; kept for loaders that return nothing silently
        raise ValueError(f"{name}: no preference pairs")
    folder = out / dataset_slug(name)
    plans = []
    for seed in config.seed_list():
        split = split_pairs(pairs, seed, config.n_fewshot, config.n_select, stratify=config.stratify)
        test = sample_test(split.test, config.limit, seed)
        if not test:
            raise ValueError(f"{name}: no test pairs left after {config.n_fewshot} few-shot and {config.n_select} "
                             f"selection pairs out of {len(pairs)}; lower --n-fewshot/--n-select")
        suite = build_bias_suite(test, seed, kinds=config.bias_kinds) if config.bias_kinds else {}
        record = {**split.to_dict(), "test_sample": {"limit": config.limit, "ids": [p.id for p in test],
                                                     "pairs_sha256": pairs_hash(test)},
                  "bias_suite": {k: len(v) for k, v in suite.items()}}
        plan = _Plan(name, seed, split.fewshot, split.select, test, suite, record, folder / f"seed{seed}")
        write_json_atomic(plan.folder / "split.json", record)
        plans.append(plan)
    data = {"name": name, "folder": folder.name, "n_pairs": len(pairs), "pairs_sha256": pairs_hash(pairs),
            "report": report.to_dict()}
    return plans, data


SETTINGS_IGNORED = ("out", "show_progress")
"""EvalConfig fields that may differ from a results folder's ``config.json`` without ``allow_changed_settings``."""


def check_out(config: EvalConfig, allow_changed_settings: bool = False) -> Path:
    """Check ``config.out`` before any work: a usable folder, free (no live writer), and either new or holding an
    evaluation with the same settings (``config.json``), unless ``allow_changed_settings``. Returns the folder."""
    out = check_output_dir(config.out, resumable=lambda p: (p / "config.json").is_file(), what="--out",
                           hint="it holds no config.json, so it is not an evaluation folder; choose another --out")
    old = out / "config.json"
    if old.is_file() and not allow_changed_settings:
        diff = settings_diff(read_json(old), config.to_dict(), ignore=SETTINGS_IGNORED)
        if diff:
            shown = ", ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
            raise ValueError(f"{out} holds an evaluation with other settings ({shown} differ); use a new --out, "
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
    out = check_out(config, allow_changed_settings)
    with ResultsLock(out, "armlens eval"):
        return _run_eval(config, methods, out, model)


def _run_eval(config: EvalConfig, methods: list[str], out: Path, model: Model | None) -> dict[str, Any]:
    model_id = M.model_id(model) if model is not None else (config.model or M.DEFAULT_MODEL)
    plans, datasets = [], {}
    for name in config.data:
        p, d = _plans(config, name, out)
        plans += p
        datasets[name] = d
    write_json_atomic(out / "config.json", config.to_dict())

    units = [(plan, method) for plan in plans for method in methods]
    finished: dict[tuple[str, int, str], tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    pending: list[tuple[_Plan, str, JudgeConfig, str]] = []
    for plan, method in units:
        jcfg = config.judge_config(plan.seed)
        key = _unit_key(plan, method, jcfg, model_id, config.bias_kinds)
        result = _read_unit(plan.folder / method, key)
        if result is None:
            pending.append((plan, method, jcfg, key))
        else:
            finished[(plan.dataset, plan.seed, method)] = (result, _read_items(plan.folder / method))
    if pending and model is None:
        logger.info("loading model %s", model_id)
        model = M.load_model(config.model, device=config.device, dtype=config.dtype)
    checked: set[tuple[str, int]] = set()
    for plan, method, jcfg, _ in pending:  # before any fit: a prompt beyond the context stops the run here
        if method not in PROMPTLESS and (plan.dataset, plan.seed) not in checked:
            check_context(model, plan, jcfg)
            checked.add((plan.dataset, plan.seed))

    bar = tqdm(total=len(pending), desc="eval", disable=not config.show_progress, unit="unit")
    cuts: dict[tuple[str, int], dict[str, Any]] = {}

    def finish(plan: _Plan, method: str, jcfg: JudgeConfig, key: str, result: dict[str, Any],
               items: list[dict[str, Any]]) -> None:
        if method not in PROMPTLESS:
            if (plan.dataset, plan.seed) not in cuts:
                cuts[(plan.dataset, plan.seed)] = truncation_record(model, plan, jcfg.template)
            result["truncation"] = cuts[(plan.dataset, plan.seed)]
        result.update(key=key, format=RESULT_FORMAT, model=M.model_fingerprint(model), judge_config=jcfg.to_dict())
        folder = plan.folder / method
        write_jsonl_atomic(folder / "items.jsonl", items)
        write_json_atomic(folder / "result.json", result)  # last: its presence marks the unit finished
        finished[(plan.dataset, plan.seed, method)] = (result, items)
        logger.info("%s seed %d %s: accuracy %.3f (%.1f s)", plan.dataset, plan.seed, method,
                    result["test"]["accuracy"], result["timings_s"]["total"])
        bar.update(1)

    for name in config.data:  # mask-based methods of a dataset: every seed's units scored in one branch pass
        batch = [u for u in pending if u[0].dataset == name and JUDGES[u[1]].mask_based]
        if batch:
            bar.set_postfix_str(f"{name}: {len(batch)} mask-based unit(s) over shared prefixes")
            done = run_mask_units(model, [(p, m, j) for p, m, j, _ in batch], config.n_bootstrap,
                                  show_progress=config.show_progress)
            for (plan, method, jcfg, key), (result, items) in zip(batch, done, strict=True):
                finish(plan, method, jcfg, key, result, items)
    for plan, method, jcfg, key in pending:
        if JUDGES[method].mask_based:
            continue
        bar.set_postfix_str(f"{plan.dataset} seed {plan.seed} {method}")
        finish(plan, method, jcfg, key, *run_unit(model, plan, method, jcfg, config.n_bootstrap))
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
    write_jsonl_atomic(out / "items.jsonl", all_items)
    write_json_atomic(out / "summary.json", summary)
    atomic_write(out / "results.md", results_markdown(summary))
    return summary


# ---------------------------------------------------------------------------------------------------- summary


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarize_eval(
    config: EvalConfig,
    methods: Sequence[str],
    plans: Sequence[_Plan],
    datasets: dict[str, Any],
    results: Sequence[dict[str, Any]],
    items: Sequence[dict[str, Any]],
    model_id: str,
) -> dict[str, Any]:
    """The evaluation summary from the unit results and items (pure: no model, no files)."""
    by_unit = {(r["dataset"], r["seed"], r["method"]): r for r in results}
    test_items: dict[tuple[str, str], dict[tuple[int, str], bool]] = {}
    for row in items:
        if row["split"] == "test":
            test_items.setdefault((row["dataset"], row["method"]), {})[(row["seed"], row["id"])] = bool(row["correct"])
    out: dict[str, Any] = {}
    for name in datasets:
        seeds = [p.seed for p in plans if p.dataset == name]
        per_method: dict[str, Any] = {}
        for method in methods:
            runs = [by_unit[(name, s, method)] for s in seeds]
            accs = [r["test"]["accuracy"] for r in runs]
            mean, std = _mean_std(accs)
            pooled = test_items[(name, method)]
            keys = sorted(pooled)
            ci = bootstrap_ci(np.array([pooled[k] for k in keys], dtype=float), n=config.n_bootstrap, seed=0)
            subsets: dict[str, list[float]] = {}
            sections: dict[str, list[float]] = {}
            for r in runs:
                for s, v in r["test"]["subsets"].items():
                    subsets.setdefault(s, []).append(v["accuracy"])
                for s, v in r["test"]["sections"].items():
                    sections.setdefault(s, []).append(v)
            entry: dict[str, Any] = {
                "accuracy_mean": mean, "accuracy_std": std, "ci95": [ci.low, ci.high], "n_items": len(keys),
                "ties": int(sum(r["test"]["ties"] for r in runs)),
                "subsets": {s: float(np.mean(v)) for s, v in subsets.items()},
                "sections": {s: float(np.mean(v)) for s, v in sections.items()},
                "per_seed": [{"seed": r["seed"], "accuracy": r["test"]["accuracy"], "ci95": r["test"]["ci95"],
                              "ties": r["test"]["ties"], "n": r["test"]["n"], "stats": r["test"].get("stats", {}),
                              "info": r.get("info", {}), "timings_s": r.get("timings_s", {})} for r in runs],
                "reads": runs[0].get("info", {}).get("reads", ""),
            }
            unparseable = [r["test"].get("stats", {}).get("unparseable") for r in runs]
            if any(u is not None for u in unparseable):
                entry["unparseable"] = int(sum(u or 0 for u in unparseable))
                entry["n_answers"] = int(sum(r["test"].get("stats", {}).get("n_answers", 0) for r in runs))
            bias: dict[str, Any] = {}
            for kind in config.bias_kinds:
                rows = [r["bias"].get(kind, {"n": 0}) for r in runs]
                rows = [b for b in rows if b.get("n")]
                if not rows:
                    bias[kind] = {"n": 0}
                    continue
                hr_mean, hr_std = _mean_std([b["hack_rate"] for b in rows])
                b_entry: dict[str, Any] = {"n": int(sum(b["n"] for b in rows)), "hack_rate_mean": hr_mean,
                                           "hack_rate_std": hr_std,
                                           "hacked_ties": int(sum(b["hacked_ties"] for b in rows))}
                if all(b.get("accuracy_clean") is not None for b in rows):
                    b_entry["accuracy_clean_mean"] = float(np.mean([b["accuracy_clean"] for b in rows]))
                    b_entry["flip_rate_mean"] = float(np.mean([b["flip_rate"] for b in rows]))
                bias[kind] = b_entry
            entry["bias"] = bias
            per_method[method] = entry
        if REFERENCE in methods:
            ref = test_items[(name, REFERENCE)]
            for method in methods:
                if method == REFERENCE:
                    continue
                other = test_items[(name, method)]
                keys = sorted(set(ref) & set(other))
                d = paired_bootstrap(np.array([ref[k] for k in keys], dtype=float),
                                     np.array([other[k] for k in keys], dtype=float), n=config.n_bootstrap, seed=0)
                per_method[method]["vs_arm"] = {"arm_minus_method": d.diff, "ci95": [d.low, d.high],
                                                "p_value": d.p_value, "n": len(keys)}
        out[name] = {"seeds": seeds, "n_test_per_seed": [len(p.test) for p in plans if p.dataset == name],
                     "truncation": _truncation(config, [by_unit[(name, s, m)] for s in seeds for m in methods]),
                     "methods": per_method}
    return {
        "protocol": {
            "scoring": PROTOCOL,
            "accuracy": "strict score(chosen) > score(rejected) per test pair; ties are wrong and counted",
            "across_seeds": "mean and standard deviation (ddof=1) of per-seed accuracy; each seed is a new "
                            "few-shot draw, head selection and test sample",
            "ci95": "95% percentile bootstrap over the pooled (seed, pair) test items of all seeds "
                    f"({config.n_bootstrap} resamples, seed 0); per-seed intervals under per_seed",
            "vs_arm": "paired bootstrap of acc(arm) - acc(method) on the same (seed, pair) items; two-sided p-value",
            "bias": "hack rate = share of biased pairs where the judge strictly prefers the hacked rejected response; "
                    "accuracy_clean = accuracy on the same pairs untouched; flip rate = correct when clean, not once "
                    "hacked; real slices report the share of the slice wrongly preferring the rejected response",
        },
        "config": config.to_dict(),
        "methods": {m: JUDGES[m].reads for m in methods},
        "versions": environment_versions(),
        "model": model_id,
        "model_fingerprint": next((r.get("model") for r in results if r.get("model")), None),
        "datasets": {name: {**d, "splits": {str(p.seed): p.split_record for p in plans if p.dataset == name}}
                     for name, d in datasets.items()},
        "results": out,
    }


def _truncation(config: EvalConfig, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Field cuts of one dataset: test pairs with a field cut, summed over seeds (each seed counted once)."""
    per_seed: dict[int, dict[str, Any]] = {}
    for r in runs:
        if "truncation" in r:
            per_seed.setdefault(r["seed"], r["truncation"])
    return {"max_field_tokens": config.judge.template.max_field_tokens, "cut": "middle",
            "items_cut": int(sum(t["items_cut"] for t in per_seed.values())),
            "fields_cut": int(sum(t["fields_cut"] for t in per_seed.values())),
            "n_items": int(sum(t["n_items"] for t in per_seed.values())),
            "recorded_seeds": sorted(per_seed)}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def results_markdown(summary: dict[str, Any]) -> str:
    """The Markdown tables of a summary: accuracy with intervals and paired tests, subsets, and the bias suite."""
    cfg = summary["config"]
    lines = ["# armlens eval", "",
             f"Model `{summary['model']}`; {cfg['seeds']} seed(s); few-shot {cfg['n_fewshot']}, selection "
             f"{cfg['n_select']}, test limit {cfg['limit']}; accuracies in %. Strict chosen > rejected (ties wrong); "
             "± is the standard deviation across seeds; 95% CI: bootstrap over pooled (seed, pair) items; "
             "Δ vs ARM: paired bootstrap of ARM − method on the same items.", ""]
    for name, res in summary["results"].items():
        methods = res["methods"]
        cut = res.get("truncation", {})
        cut_note = (f" Fields over {cut['max_field_tokens']} tokens cut in their middle in {cut['items_cut']} of "
                    f"{cut['n_items']} test pairs." if cut.get("max_field_tokens") else " Whole fields (no cuts).")
        lines += [f"## {name}", "", f"Test pairs per seed: {res['n_test_per_seed']}.{cut_note}", "",
                  "| method | accuracy | 95% CI | ties | ARM − method [95% CI] | p | notes |",
                  "|---|---|---|---|---|---|---|"]
        for m, e in methods.items():
            vs = e.get("vs_arm")
            delta = f"{_pct(vs['arm_minus_method'])} [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]" if vs else ""
            p = f"{vs['p_value']:.3f}" if vs else ""
            notes = f"{e['unparseable']}/{e['n_answers']} unparseable" if "unparseable" in e else ""
            lines.append(f"| {m} | {_pct(e['accuracy_mean'])} ± {_pct(e['accuracy_std'])} | "
                         f"[{_pct(e['ci95'][0])}, {_pct(e['ci95'][1])}] | {e['ties']} | {delta} | {p} | {notes} |")
        subsets = list(dict.fromkeys(s for e in methods.values() for s in e["subsets"]))
        if len(subsets) > 1:
            lines += ["", "Per subset (mean over seeds):", "", "| method | " + " | ".join(subsets) + " |",
                      "|---|" + "---|" * len(subsets)]
            for m, e in methods.items():
                lines.append(f"| {m} | " + " | ".join(_pct(e["subsets"].get(s)) for s in subsets) + " |")
        kinds = [k for k in cfg["bias_kinds"] if any(e["bias"].get(k, {}).get("n") for e in methods.values())]
        if kinds:
            n_kind = {k: max(e["bias"][k].get("n", 0) for e in methods.values()) for k in kinds}
            lines += ["", "Bias suite: hack rate (share of biased pairs where the hacked rejected response wins; "
                      "lower is better) beside accuracy on the untouched pairs:", "",
                      "| method | clean accuracy | " + " | ".join(f"{k} (n={n_kind[k]})" for k in kinds) + " |",
                      "|---|---|" + "---|" * len(kinds)]
            for m, e in methods.items():
                cells = [_pct(e["bias"][k].get("hack_rate_mean")) if e["bias"][k].get("n") else "n/a" for k in kinds]
                lines.append(f"| {m} | {_pct(e['accuracy_mean'])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Methods:", ""] + [f"- `{m}`: {r}" for m, r in summary["methods"].items()] + [""]
    return "\n".join(lines)
