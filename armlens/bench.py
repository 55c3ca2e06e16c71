"""``armlens bench``: the last-token fast path against the reference-style loop, measured in one run.

Context
-------
An ARM only changes hook_z at the last position, so every earlier position computes the same keys and values
whatever heads are patched. The reference implementation ignores this and runs one full forward per sampled head
mask, batch 1. armlens runs the prefix once (:class:`armlens.model.PrefixPool`) and evaluates K masks as K
block-diagonal branches of the last token (:func:`armlens.model.run_cached_branches`). This module times both on
the same prompts, on the same machine, in the same process, and reports their ratio; speed goals are checked here,
never in timed unit tests.

Rows:

- ``reinforce_step_k32``: losses of K=32 masks on one judge prompt; reference = 32 full forwards; fast = one
  branch forward over the prompt's cached prefix (warm, as in REINFORCE, where each training prompt's prefix is
  computed once per fit); ``reinforce_step_k32_cold`` adds the prefix forward to the fast side.
- ``single_head_sweep``: the 270 one-head masks (+ the empty mask) on one prompt.
- ``scoring``: pairs/s scoring judge prompts in left-padded batches versus one at a time.
- ``eval_M_methods_x_S_seeds``: ``armlens eval``'s scoring of M mask-based methods (an ARM, random heads of the
  same count, the zero-shot judge) for S seeds over the same N real pairs: naive = each judge's own scoring (one full
  forward per method, seed and prompt); fast = :func:`armlens.evaluation.branches.score_mask_judges` (one prefix per
  prompt, every method and seed a branch; a pair's two prompts share their common leading part);
  ``..._own_prefix`` is the fast side with that pair sharing turned off, which measures what it is worth. With S > 1
  the run also times one seed (``eval_3_methods_x_1_seeds``: the first seed's three judges, naive side their share
  of the naive loop), so the ratio's growth with methods x seeds is read in one run.
- ``icl_cached_demos``: the few-shot in-context judge on the same pairs, full prompts against its demonstrations
  run once as a shared prefix cache.
- ``implicit_shared_prompt``: the implicit-reward judge's likelihoods of each pair's chosen, rejected and a hacked
  rejected response (the bias suite's ``length`` padding), one full forward per response against the prompt run once as
  a key/value cache its three responses continue.
- ``default_fit``: wall time and peak resident memory of a default ``ActivationRM.fit`` (``ARMConfig()`` on 50 HHH
  pairs, whatever the defaults are at the time: see :func:`default_fit_description`), run in a child process so its
  peak is its own, with the per-phase profile.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from armlens import model as M
from armlens.errors import BadInputError, NotFoundError, SetupError
from armlens.prompts import AnswerIds, Example, JudgeTemplate, criterion_for, scalar_prompt
from armlens.scoring import score_texts
from armlens.selection import mask_losses, mask_losses_reference
from armlens.typing import Model

logger = logging.getLogger(__name__)


@dataclass
class BenchRow:
    name: str
    reference: float
    fast: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.unit.endswith("/s"):  # throughput: bigger is better
            return self.fast / self.reference if self.reference else float("nan")
        return self.reference / self.fast if self.fast else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "note": self.note, "reference": self.reference,
                "fast": self.fast, "ratio": self.ratio}


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best-of-``repeat`` wall time (s) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_pairs(n: int, root: str | None = None) -> list[Any]:
    """Real judge material: LLMBar Natural pairs (prompts of a few hundred tokens), else HHH."""
    from armlens.data import load_pairs

    last_error: Exception | None = None
    for name, subsets in (("llmbar", ["llmbar-natural"]), ("hhh", None)):
        try:
            return load_pairs(name, root=root, subsets=subsets, limit=n)
        except (FileNotFoundError, ValueError) as e:
            last_error = e
    raise NotFoundError(f"armlens bench needs real prompts (LLMBar or HHH): {last_error}")


def judge_texts(model: Model, pairs: list[Any], template: JudgeTemplate) -> list[str]:
    return [scalar_prompt(model, Example(p.prompt, r, None, criterion_for(p), tuple(p.images)), template)
            for p in pairs for r in (p.chosen, p.rejected)]


def _fake_mask_judges(model: Model, seeds: int, template: JudgeTemplate) -> list[Any]:
    """Fitted-looking ARM, random-heads and zero-shot judges per seed (seeded random means and masks: scoring time
    does not depend on what the patch holds)."""
    from armlens.evaluation.baselines import ARMJudge, JudgeConfig, RandomHeadsJudge, ZeroShotJudge
    from armlens.rm import ActivationRM
    from armlens.selection import random_mask

    cfg = model.cfg
    judges: list[Any] = []
    for s in range(seeds):
        g = torch.Generator().manual_seed(1000 + s)
        means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g) * 0.1
        arm_mask = torch.bernoulli(torch.full((cfg.n_layers, cfg.n_heads), 0.27), generator=g).bool()
        jcfg = JudgeConfig(template=template, seed=s)
        for cls, mask in ((ARMJudge, arm_mask), (RandomHeadsJudge, random_mask(cfg.n_layers, cfg.n_heads,
                                                                               int(arm_mask.sum()), seed=s))):
            judge = cls(model, jcfg)
            judge.rm = ActivationRM.from_patch(model, means, mask, judge.arm_config())
            judge.fitted = True
            judges.append(judge)
        judges.append(ZeroShotJudge(model, jcfg))
    return judges


def eval_rows(
    model: Model, *, root: str | None = None, n_pairs: int = 5, seeds: int = 5, icl_shots: int = 4,
    template: JudgeTemplate = JudgeTemplate(), log: Callable[[str], None] = logger.info,
) -> tuple[list[BenchRow], dict[str, Any]]:
    """The evaluation rows (see the module docstring): mask-based methods x seeds, and the ICL judge's demonstrations."""
    from armlens.data.bias import transform_rejected
    from armlens.evaluation.baselines import FewShotICLJudge, JudgeConfig
    from armlens.evaluation.branches import score_mask_judges
    from armlens.evaluation.judge import ICLSettings
    from armlens.evaluation.output_judges import response_logprobs

    pairs = bench_pairs(n_pairs + icl_shots, root)
    test, demos = pairs[:n_pairs], pairs[n_pairs:]
    items = [(p, r) for p in test for r in (p.chosen, p.rejected)]
    judges = _fake_mask_judges(model, seeds, template)
    ms = len(judges)
    lengths = [int(M.tokenize(model, [t])[1].sum()) for t in judge_texts(model, test, template)]
    log(f"eval scoring: {ms} method x seed units over {n_pairs} pairs ({sum(lengths)} prompt tokens)")
    timed = [_timed(lambda j=j: j.score_responses(items)) for j in judges]  # naive: each judge on its own
    naive = [scores for _, scores in timed]
    requests = [(j, items) for j in judges]
    rows = []
    if seeds > 1:  # one seed first, so that the growth of the ratio with methods x seeds is read in the same run
        t_one, one = _timed(lambda: score_mask_judges(model, requests[:3]))
        diff_one = max(float((a - b).abs().max()) for a, b in zip(naive[:3], one, strict=True))
        rows.append(BenchRow("eval_3_methods_x_1_seeds", sum(t for t, _ in timed[:3]), t_one, "s",
                             f"3 units x {2 * n_pairs} prompts; pair prefixes shared; max |score diff| {diff_one:.1e}"))
    t_naive = sum(t for t, _ in timed)
    t_fast, fast = _timed(lambda: score_mask_judges(model, requests))
    t_own, own = _timed(lambda: score_mask_judges(model, requests, min_shared_tokens=10**9))
    diff = max(float((a - b).abs().max()) for a, b in zip(naive, fast, strict=True))
    diff_own = max(float((a - b).abs().max()) for a, b in zip(naive, own, strict=True))
    rows += [BenchRow(f"eval_3_methods_x_{seeds}_seeds", t_naive, t_fast, "s",
                      f"{ms} units x {2 * n_pairs} prompts; pair prefixes shared; max |score diff| {diff:.1e}"),
             BenchRow(f"eval_3_methods_x_{seeds}_seeds_own_prefix", t_naive, t_own, "s",
                      f"each prompt its own prefix; max |score diff| {diff_own:.1e}")]
    log(f"few-shot ICL judge: {icl_shots} demonstrations, {n_pairs} pairs")
    cfg = JudgeConfig(template=template, icl=ICLSettings(shots=icl_shots))
    uncached = dataclasses.replace(cfg, icl=dataclasses.replace(cfg.icl, cache_demos=False))
    icl_full = FewShotICLJudge(model, uncached).fit(demos)
    icl_cached = FewShotICLJudge(model, cfg).fit(demos)
    t_icl_full, icl_a = _timed(lambda: icl_full.score_responses(items))
    t_icl_cached, icl_b = _timed(lambda: icl_cached.score_responses(items))
    rows.append(BenchRow("icl_cached_demos", t_icl_full, t_icl_cached, "s",
                         f"{icl_shots} demos, {2 * n_pairs} prompts; max |score diff| "
                         f"{float((icl_a - icl_b).abs().max()):.1e}"))
    log(f"implicit reward: {n_pairs} prompts x 3 responses")
    prompts = [p.prompt for p in test for _ in range(3)]
    responses = [r for p in test for r in (p.chosen, p.rejected, transform_rejected(p, "length", 0).rejected)]
    t_lp_full, lp_a = _timed(lambda: response_logprobs(model, prompts, responses, share_prompts=False))
    t_lp_shared, lp_b = _timed(lambda: response_logprobs(model, prompts, responses))
    rows.append(BenchRow("implicit_shared_prompt", t_lp_full, t_lp_shared, "s",
                         f"{len(responses)} responses; max |score diff| {float((lp_a - lp_b).abs().max()):.1e}"))
    return rows, {"eval_pairs": n_pairs, "eval_seeds": seeds, "eval_units": ms, "eval_prompt_tokens": lengths}


def run_bench(
    model: Model,
    *,
    root: str | None = None,
    k_masks: int = 32,
    n_score_pairs: int = 8,
    n_eval_pairs: int = 5,
    eval_seeds: int = 5,
    fit: bool = True,
    fit_runs: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Measure every row; returns a JSON-ready dict (rows with ratio last, prompt lengths, versions)."""
    torch.manual_seed(seed)
    cfg = model.cfg
    template = JudgeTemplate()
    pairs = bench_pairs(max(n_score_pairs, 2), root)
    texts = judge_texts(model, pairs, template)
    lengths = [int(M.tokenize(model, [t])[1].sum()) for t in texts]
    # the REINFORCE prompt: the one closest to 300 tokens
    text = texts[min(range(len(texts)), key=lambda i: abs(lengths[i] - 300))]
    n_tokens = lengths[texts.index(text)]
    ids = AnswerIds.of(model, template)
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g) * 0.1
    masks = torch.bernoulli(torch.full((k_masks, cfg.n_layers, cfg.n_heads), 0.27), generator=g).bool()
    rows: list[BenchRow] = []

    log(f"REINFORCE step: {k_masks} masks on a {n_tokens}-token judge prompt")
    M.run_last_logits(model, *M.tokenize(model, [text]))  # warm-up
    t_ref, ref_losses = _timed(lambda: mask_losses_reference(model, text, means, masks, ids.yes))
    pool = M.PrefixPool(model)
    t_prefix, cache = _timed(lambda: pool.get(text))
    gold = torch.tensor([ids.yes])
    t_fast, fast_losses = _timed(lambda: mask_losses(model, cache, means, masks, gold)[0], repeat=3)
    max_diff = float((ref_losses - fast_losses).abs().max())
    rows.append(BenchRow(f"reinforce_step_k{k_masks}", t_ref, t_fast, "s",
                         f"prefix cached; max |loss diff| {max_diff:.1e}"))
    rows.append(BenchRow(f"reinforce_step_k{k_masks}_cold", t_ref, t_fast + t_prefix, "s", "prefix computed in the step"))

    n_heads = cfg.n_layers * cfg.n_heads
    log(f"single-head sweep: {n_heads} heads")
    eye = torch.eye(n_heads, dtype=torch.bool).view(n_heads, cfg.n_layers, cfg.n_heads)
    sweep = torch.cat([torch.zeros(1, cfg.n_layers, cfg.n_heads, dtype=torch.bool), eye])
    t_ref_sweep, _ = _timed(lambda: mask_losses_reference(model, text, means, sweep, ids.yes))
    t_fast_sweep, _ = _timed(lambda: (pool.get(text), mask_losses(model, pool.get(text), means, sweep, gold)))
    rows.append(BenchRow(f"single_head_sweep_{n_heads}", t_ref_sweep, t_fast_sweep, "s", "prefix cached"))

    log(f"scoring throughput: {n_score_pairs} pairs")
    score_set = texts[: 2 * n_score_pairs]
    t_one, one = _timed(lambda: score_texts(model, score_set, answer_ids=ids, batch_size=1))
    t_batch, batched = _timed(lambda: score_texts(model, score_set, answer_ids=ids, batch_size=8))
    rows.append(BenchRow("scoring_pairs_per_s", n_score_pairs / t_one, n_score_pairs / t_batch, "pairs/s",
                         f"batch 8 vs 1; max |score diff| {float((one - batched).abs().max()):.1e}"))
    eval_info: dict[str, Any] = {}
    if n_eval_pairs > 0:
        more, eval_info = eval_rows(model, root=root, n_pairs=n_eval_pairs, seeds=eval_seeds, log=log)
        rows += more

    out: dict[str, Any] = {
        "model": M.model_id(model),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "prompt_tokens": n_tokens,
        "score_prompt_tokens": lengths[: 2 * n_score_pairs],
        **eval_info,
        "rows": [r.to_dict() for r in rows],
    }
    if fit:
        log(f"default fit, {fit_runs} run(s), each in a fresh interpreter ({default_fit_description()})")
        out["default_fit"] = run_default_fit_children(root, seed, fit_runs)
    from armlens.evaluation.protocol import environment_versions

    out["versions"] = environment_versions()
    return out


FIT_PAIRS = 50
"""HHH pairs the bench's default fit is given (100 labelled examples)."""


def default_fit_description() -> str:
    """What the bench's default fit runs, read off ``ARMConfig()`` (so the log never describes an older default)."""
    from armlens.rm import ARMConfig

    cfg = ARMConfig()
    r = cfg.reinforce
    return (f"{FIT_PAIRS} HHH pairs, reading {cfg.reading!r}, {cfg.criteria}, {cfg.n_trials} trials, "
            f"{r.steps} REINFORCE steps of {r.k_masks} masks, final choice {r.final!r}")


def fit_pairs(root: str | None = None) -> list[Any]:
    """:data:`FIT_PAIRS` HHH pairs: the default fit's labelled examples."""
    from armlens.data import load_pairs

    return load_pairs("hhh", root=root, limit=FIT_PAIRS)


def run_default_fit_children(root: str | None, seed: int, runs: int = 3) -> dict[str, Any]:
    """The default fit ``runs`` times, each in a fresh interpreter (:func:`run_default_fit_child`): the first run's
    record with ``fit_s`` and ``peak_rss_mb`` replaced by the medians, their min and max beside them, and every run's
    figures under ``runs``."""
    import statistics

    if runs < 1:
        raise BadInputError(f"fit_runs must be at least 1, got {runs}")
    done = [run_default_fit_child(root, seed) for _ in range(runs)]
    out = dict(done[0])
    for key in ("fit_s", "peak_rss_mb"):
        values = [r[key] for r in done]
        out[key] = statistics.median(values)
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    out["predicted_over_measured"] = out["predicted_peak_mb"] / out["peak_rss_mb"] if "predicted_peak_mb" in out else None
    out["runs"] = [{k: r[k] for k in ("fit_s", "peak_rss_mb", "heads")} for r in done]
    out["n_runs"] = runs
    return out


def run_default_fit_child(root: str | None, seed: int) -> dict[str, Any]:
    """:func:`armlens._bench_child.default_fit` in a child process (its peak memory is its own), plus the parent's
    peak so far."""
    proc = subprocess.run([sys.executable, "-m", "armlens._bench_child", root or "", str(seed)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"default fit failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_mb_self_after"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"armlens bench on {result['model']} ({result['threads']} threads, "
             f"{result['prompt_tokens']}-token REINFORCE prompt)", ""]
    lines.append(f"{'measurement':<28} {'reference':>12} {'fast path':>12} {'unit':>8} {'ratio':>8}  note")
    for r in result["rows"]:
        lines.append(f"{r['name']:<28} {r['reference']:>12.3f} {r['fast']:>12.3f} {r['unit']:>8} {r['ratio']:>7.1f}x  {r['note']}")
    fit = result.get("default_fit")
    if fit:
        t = fit["timings_s"]
        spread = (f" (median of {fit['n_runs']} fresh interpreters: {fit['fit_s_min']:.1f}-{fit['fit_s_max']:.1f} s, "
                  f"{fit['peak_rss_mb_min']:.0f}-{fit['peak_rss_mb_max']:.0f} MB)" if fit.get("n_runs", 1) > 1 else "")
        lines += ["", f"default fit: {fit['fit_s']:.1f} s (model load {fit['load_s']:.1f} s, not counted), "
                      f"peak RSS {fit['peak_rss_mb']:.0f} MB, {fit['heads']} heads{spread}",
                  f"  profile: extraction {t['extraction']:.1f} s, REINFORCE steps {t['steps']:.1f} s, "
                  f"final choice {t['final_choice']:.1f} s, prefixes computed {int(t.get('prefix_pool_misses', 0))}"]
        if "predicted_peak_mb" in fit:
            lines.append(f"  memory plan (armlens info --memory): predicted peak {fit['predicted_peak_mb']:.0f} MB, "
                         f"{fit['predicted_over_measured']:.2f} x the measured peak")
    return "\n".join(lines)
