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
- ``default_fit``: wall time and peak resident memory of a default ``ActivationRM.fit`` (100 extraction prompts,
  200 REINFORCE steps, best of 10 final masks on 50 examples), run in a child process so its peak is its own, with
  the per-phase profile.
"""

from __future__ import annotations

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
    raise FileNotFoundError(f"armlens bench needs real prompts (LLMBar or HHH): {last_error}")


def judge_texts(model: Model, pairs: list[Any], template: JudgeTemplate) -> list[str]:
    return [scalar_prompt(model, Example(p.prompt, r, None, criterion_for(p)), template)
            for p in pairs for r in (p.chosen, p.rejected)]


def run_bench(
    model: Model,
    *,
    root: str | None = None,
    k_masks: int = 32,
    n_score_pairs: int = 8,
    fit: bool = True,
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

    out: dict[str, Any] = {
        "model": M.model_id(model),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "prompt_tokens": n_tokens,
        "score_prompt_tokens": lengths[: 2 * n_score_pairs],
        "rows": [r.to_dict() for r in rows],
    }
    if fit:
        log("default fit in a child process (100 extraction prompts, 200 steps, best of 10 masks on 50 examples)")
        out["default_fit"] = run_default_fit_child(root, seed)
    from armlens.evaluation.protocol import environment_versions

    out["versions"] = environment_versions()
    return out


def fit_pairs(root: str | None = None) -> list[Any]:
    """50 HHH pairs = 100 labelled examples: the default fit's 100 extraction prompts and REINFORCE pool."""
    from armlens.data import load_pairs

    return load_pairs("hhh", root=root, limit=50)


def run_default_fit_child(root: str | None, seed: int) -> dict[str, Any]:
    """:func:`armlens._bench_child.default_fit` in a child process (its peak memory is its own), plus the parent's
    peak so far."""
    proc = subprocess.run([sys.executable, "-m", "armlens._bench_child", root or "", str(seed)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"default fit failed:\n{proc.stderr[-2000:]}")
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
        lines += ["", f"default fit: {fit['fit_s']:.1f} s (model load {fit['load_s']:.1f} s, not counted), "
                      f"peak RSS {fit['peak_rss_mb']:.0f} MB, {fit['heads']} heads",
                  f"  profile: extraction {t['extraction']:.1f} s, REINFORCE steps {t['steps']:.1f} s, "
                  f"final choice {t['final_choice']:.1f} s, prefixes computed {int(t.get('prefix_pool_misses', 0))}"]
    return "\n".join(lines)
