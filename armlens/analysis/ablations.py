"""Stage ablations: what head selection, the activation estimator, the extraction mode and the score reading each
contribute to an ARM's pairwise accuracy, with an interval across seeds.

Context
-------
An ARM is a pipeline: Stage 1 reads hook_z at the last token of labelled examples (``per_example`` or ``icl``
prompts), Stage 1b turns the stack into one vector per head (mean, weighted-PCA denoising, ...), Stage 2 picks heads
(REINFORCE, or an alternative), Stage 3 reads a score off the patched judge's logits. Each *axis* of the grid varies
one stage and holds the others at the reference (``per_example`` extraction, plain mean, REINFORCE heads, full-
vocabulary P(Yes)):

- ``selection``: REINFORCE vs random heads of the same count vs top-k by REINFORCE probability / by single-head
  attribution (same count) vs all heads vs none (the zero-shot judge).
- ``estimator``: mean vs weighted-PCA (uniform / confidence weights) vs per-class mean difference vs median vs
  trimmed mean, patched into the reference head set.
- ``mode``: ``per_example`` vs ``icl`` extraction, patched into the reference head set.
- ``scoring``: prob vs normalised vs logit difference vs generative (greedy answer parsed Yes/No), for the ARM and
  for the unpatched zero-shot judge.
- ``shots``: means from the first n few-shot pairs only, reference head set.
- ``heads``: top-k heads by REINFORCE probability, by attribution, and k random heads, for k in a list.
- ``flip``: a share of the few-shot pairs with chosen and rejected swapped; the whole ARM is re-fitted (means and
  REINFORCE) on the corrupted labels.
- ``criteria``: one ARM per data subset (e.g. HHH helpful / harmless / honest), for the criterion-overlap analysis.

Where the heads are held fixed (estimator, mode, shots) the cell isolates what the *values* change: REINFORCE is run
once per seed, on the reference means. Only ``flip`` and ``criteria`` change what REINFORCE learns from and re-run it.

Sharing work (the grid costs a few REINFORCE runs per seed, not one per cell)
----------------------------------------------------------------------------
Per seed: the few-shot examples' last-token hook_z is captured once and every estimator, shot count and label flip is
derived from that stack; REINFORCE runs once (plus once per flip share and criterion) and the top-k / random / head-
count cells reuse its probabilities; the single-head attribution sweep runs once. Every cell then differs from the
zero-shot judge only in what is written into hook_z at the last position, so each test prompt's prefix is run once
(:func:`armlens.model.prefix_cache`) and *all* cells are one batched one-token forward over it, each row with its own
means and mask (:func:`score_rows`). The three logit readings come from the same logits; the generative reading
takes the greedy first token from them too and decodes further (full forwards) only where that token is no answer.

Files (resumable: anything already on disk is read back, never recomputed)
--------------------------------------------------------------------------
``OUT/run.json`` (config, versions, model fingerprint, data hash), ``OUT/cells/{axis}/{setting}/seed{s}.json`` (one
tidy record per cell, scores included), ``OUT/seeds/seed{s}/`` (split, captured activations, REINFORCE results with
probabilities and trajectory, attribution map, an attention row of the top selected head), ``OUT/summary.csv``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.activations import collect, extraction_prompts, make_estimator
from armlens.analysis.heads import AttentionRow, attention_from_last
from armlens.data.records import PreferencePair, pairs_hash
from armlens.evaluation.protocol import (
    bootstrap_ci,
    environment_versions,
    pairwise_correct,
    write_json_atomic,
)
from armlens.patching import HeadMask, Means, head_label, mask_labels, patch_hooks
from armlens.prompts import AnswerIds, Example, JudgeTemplate, examples_from_pairs, scalar_prompt
from armlens.scoring import score_rows
from armlens.selection import (
    ReinforceConfig,
    SelectionResult,
    random_mask,
    reinforce,
    single_head_effects,
    top_k_mask,
)

logger = logging.getLogger(__name__)

AXES: tuple[str, ...] = ("selection", "estimator", "mode", "scoring", "shots", "heads", "flip", "criteria")
"""Every ablation axis, in report order."""
SELECTIONS: tuple[str, ...] = ("reinforce", "random", "topk_prob", "topk_attribution", "all", "none")
ESTIMATORS: tuple[str, ...] = ("mean", "wpca", "wpca_confidence", "class_diff", "median", "trimmed_mean")
READINGS: tuple[str, ...] = ("prob", "normalized", "logit_diff", "generative")
HEAD_SERIES: tuple[str, ...] = ("topk_prob", "topk_attribution", "random")
SETTING_ORDER: tuple[str, ...] = (*SELECTIONS, *ESTIMATORS, "per_example", "icl", *READINGS)
"""Display order of the categorical settings."""
REFERENCE = {"mode": "per_example", "estimator": "mean", "selection": "reinforce", "reading": "prob"}
"""The stage settings every axis holds fixed while it varies its own."""

_NOT_IN_FINGERPRINT = {"seeds", "grid", "batch_size", "row_chunk", "prefix_cache_mb", "estimators", "shots",
                       "heads", "flips", "criteria"}
"""Config fields that only add cells or change speed: a resumed run may differ in them."""


@dataclass
class AblationConfig:
    """Sizes and settings of an ablation run. Saved in ``run.json``; a resumed run must match it."""

    data: str = "hhh"
    """Dataset name (``armlens.data.load_pairs``), recorded."""
    subsets: list[str] | None = None
    """Subsets loaded (``None``: all), recorded."""
    model: str | None = None
    """Model name as loaded (``None``: the embedded default), recorded."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: each draws its own split (few-shot and test pairs), REINFORCE run and random heads."""
    grid: list[str] = field(default_factory=lambda: list(AXES))
    """Axes to run (see :data:`AXES`)."""
    n_fewshot: int = 12
    """Few-shot pairs per seed (each gives a Yes and a No example); REINFORCE trains on the same examples."""
    limit: int | None = 40
    """Test pairs per seed (``None``: every pair outside the few-shot pool)."""
    max_field_tokens: int | None = 96
    """Judge template: cut the prompt and each response to this many tokens."""
    steps: int = 40
    """REINFORCE steps."""
    k_masks: int = 32
    """REINFORCE masks per step."""
    lr: float = 0.1
    """REINFORCE Adam learning rate."""
    n_final_eval: int = 50
    """REINFORCE: training examples the final candidate masks are judged on."""
    icl_shots: int = 4
    """``icl`` extraction: demonstrations per prompt."""
    icl_trials: int = 8
    """``icl`` extraction: prompts averaged."""
    attribution_examples: int = 8
    """Few-shot examples the single-head attribution sweep averages over (Yes/No alternating)."""
    gen_max_new_tokens: int = 4
    """Generative reading: tokens decoded at most."""
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))
    """Estimator axis settings."""
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    """Shot-count axis: few-shot pairs used for the means (``n_fewshot`` is always added)."""
    heads: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    """Head-count axis: k for the top-k and random series (capped at the model's head count)."""
    flips: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    """Label-flip axis: share of few-shot pairs whose chosen and rejected are swapped."""
    criteria: list[str] | None = None
    """Criteria axis: subsets that get their own ARM (``None``: every subset of the data, when there are several)."""
    criteria_fewshot: int = 8
    """Few-shot pairs per criterion ARM (drawn outside the seed's test prompts)."""
    batch_size: int = 4
    """Prompts per forward pass (activation capture)."""
    row_chunk: int = 64
    """Cells evaluated per forward over a test prompt's prefix cache (as side-by-side branches of the last token)."""
    prefix_cache_mb: float = 1500.0
    """Memory for the few-shot prompts' prefix caches, shared by capture, REINFORCE and the attribution sweep."""
    bootstrap: int = 1000
    """Bootstrap resamples for each cell's interval over test pairs."""

    def __post_init__(self) -> None:
        self.flips = [float(f) for f in self.flips]
        self.lr = float(self.lr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide every cell's value (a resumed run must agree on them)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_FINGERPRINT}

    @property
    def template(self) -> JudgeTemplate:
        return JudgeTemplate(max_field_tokens=self.max_field_tokens)

    def reinforce_config(self, seed: int) -> ReinforceConfig:
        return ReinforceConfig(steps=self.steps, k_masks=self.k_masks, lr=self.lr, n_final_eval=self.n_final_eval,
                               seed=seed)


# ---------------------------------------------------------------------------------------------------- small pieces


def flip_pairs(pairs: Sequence[PreferencePair], share: float, seed: int) -> tuple[list[PreferencePair], list[str]]:
    """Swap chosen and rejected in ``round(share * len(pairs))`` pairs drawn at random (seeded).

    Returns the new list (same order) and the ids of the flipped pairs. Each flipped pair turns its Yes example into a
    No example and back, so the class balance is kept and exactly that share of the labels is wrong.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the flipped share must be in [0, 1], got {share}")
    n = int(math.floor(share * len(pairs) + 0.5))
    chosen = set(random.Random(f"flip-{seed}-{share}").sample(range(len(pairs)), n))
    out = [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen,
                               metadata={**p.metadata, "flipped": True}) if i in chosen else p
           for i, p in enumerate(pairs)]
    return out, [pairs[i].id for i in sorted(chosen)]


def flip_rows(n_pairs: int, flipped_idx: Sequence[int]) -> Bool[Tensor, " rows"]:
    """Which rows of an interleaved (chosen, rejected) example stack belong to flipped pairs."""
    rows = torch.zeros(2 * n_pairs, dtype=torch.bool)
    for i in flipped_idx:
        rows[2 * i] = rows[2 * i + 1] = True
    return rows


def slug(text: str) -> str:
    """A file-name-safe version of a setting name."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "_"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard deviation and the Student-t ``level`` interval of the mean across seeds (NaN for one seed)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return (math.nan,) * 4
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy.stats import t

    sd = float(v.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, v.size - 1)) * sd / math.sqrt(v.size)
    return mean, sd, mean - half, mean + half


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _round(x: Tensor, nd: int = 5) -> list[Any]:
    return torch.round(x.detach().float().cpu() * 10**nd).div(10**nd).tolist()


def selection_to_dict(sel: SelectionResult, **extra: Any) -> dict[str, Any]:
    """JSON record of a selection result (mask as labels and a 0/1 grid; probabilities and trajectory rounded)."""
    return {
        "method": sel.method,
        "heads": mask_labels(sel.mask),
        "n_heads": sel.n_heads,
        "mask": sel.mask.int().tolist(),
        "probs": _round(sel.probs) if sel.probs is not None else None,
        "prob_trajectory": _round(sel.prob_trajectory, 4) if sel.prob_trajectory is not None else None,
        "losses": sel.losses,
        "expected_heads": sel.expected_heads,
        "final_candidate_losses": sel.final_candidate_losses,
        **extra,
    }


def selection_from_dict(d: dict[str, Any]) -> SelectionResult:
    return SelectionResult(
        mask=torch.tensor(d["mask"], dtype=torch.bool), method=d.get("method", "reinforce"),
        probs=torch.tensor(d["probs"]) if d.get("probs") is not None else None,
        prob_trajectory=torch.tensor(d["prob_trajectory"]) if d.get("prob_trajectory") is not None else None,
        losses=list(d.get("losses", [])), expected_heads=list(d.get("expected_heads", [])),
        final_candidate_losses=list(d.get("final_candidate_losses", [])),
    )


# ---------------------------------------------------------------------------------------------------- batched rows
# score_rows, RowLogits (armlens.scoring) and row_patch_hooks / patch_rows_hook (armlens.patching) live in the core.


def capture_stack(
    model: Any,
    examples: Sequence[Example],
    template: JudgeTemplate,
    *,
    answer_ids: AnswerIds,
    pool: M.PrefixPool | None = None,
    show_progress: bool = False,
    desc: str = "capturing",
) -> dict[str, Tensor]:
    """Stage 1 once, kept whole: ``z`` (last-token hook_z of each example's zero-shot prompt, example order),
    ``labels`` and ``confidence`` (the unpatched judge's two-way P(gold answer)). Every estimator, shot count and
    label flip of the ablations is derived from this stack without another forward pass.

    Prompts run one by one through ``pool`` (a :class:`armlens.model.PrefixPool`), whose prefix caches REINFORCE and
    the attribution sweep then reuse: these are the same zero-shot prompts.
    """
    if any(e.label is None for e in examples):
        raise ValueError("the examples to capture must be labelled")
    pool = pool if pool is not None else M.PrefixPool(model)
    labels = torch.tensor([bool(e.label) for e in examples])
    zs, p_yes = [], []
    for e in tqdm(examples, desc=desc, disable=not show_progress, leave=False):
        z, logits = M.capture_cached_hook_z_and_logits(model, pool.get(scalar_prompt(model, e, template)))
        zs.append(z.cpu())
        p_yes.append(logits[:, [answer_ids.yes, answer_ids.no]].softmax(-1)[:, 0].cpu())
    py = torch.cat(p_yes)
    return {"z": torch.cat(zs), "labels": labels, "confidence": torch.where(labels, py, 1 - py)}


# ---------------------------------------------------------------------------------------------------- generative


def parse_yes_no(text: str) -> str | None:
    """The first standalone yes/no word (the baselines' parser when available)."""
    try:
        from armlens.evaluation.baselines import parse_answer
    except ImportError:  # pragma: no cover - the baselines module ships with armlens
        m = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
        return None if m is None else m.group(1).lower()
    return parse_answer(text)


def _stop_ids(model: Any) -> set[int]:
    tok = model.tokenizer
    ids = {tok.eos_token_id, tok.pad_token_id}
    for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tok.convert_tokens_to_ids(special)
        if isinstance(tid, int) and tid != tok.unk_token_id:
            ids.add(tid)
    return {i for i in ids if i is not None}


def greedy_answer(
    model: Any, text: str, first_token: int, means: Means | None, mask: HeadMask | None, max_new_tokens: int = 4
) -> str:
    """Greedy continuation of ``text`` starting from ``first_token`` (already read from the patched logits).

    Later tokens come from full forwards with the same heads patched at the original read position (``pos =
    -(1 + tokens generated)``); decoding stops at an end-of-turn token, once a yes/no word appears, or after
    ``max_new_tokens``.
    """
    stop = _stop_ids(model)
    generated = [int(first_token)]
    tokens, attn = M.tokenize(model, [text])
    while len(generated) < max_new_tokens and generated[-1] not in stop:
        if parse_yes_no(model.tokenizer.decode(generated, skip_special_tokens=True)) is not None:
            break
        extra = torch.tensor([generated], dtype=tokens.dtype, device=tokens.device)
        full = torch.cat([tokens, extra], dim=1)
        full_attn = torch.cat([attn, torch.ones_like(extra)], dim=1)
        hooks = (patch_hooks(model, means, mask, pos=-(1 + len(generated)))
                 if means is not None and mask is not None and bool(mask.any()) else [])
        generated.append(int(M.run_last_logits(model, full, full_attn, hooks)[0].argmax()))
    return model.tokenizer.decode([t for t in generated if t not in stop], skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    """One point of the grid: an axis, a series on it, a setting, and where the setting sits on a numeric x axis."""

    axis: str
    """Which stage is varied."""
    series: str
    """Line / group within the axis (``ARM``, ``zero-shot``, ``topk_prob``, ...)."""
    setting: str
    """The varied stage's setting."""
    x: float | None = None
    """Numeric position (shots, heads, flipped %); ``None`` on categorical axes."""
    reading: str = "prob"
    """Score reading."""

    @property
    def key(self) -> str:
        return slug(self.setting if self.series == "ARM" else f"{self.series}-{self.setting}")

    def path(self, out: Path, seed: int) -> Path:
        return out / "cells" / self.axis / self.key / f"seed{seed}.json"


def plan_cells(config: AblationConfig, n_layers: int, n_heads: int, subsets: Sequence[str] = ()) -> list[Cell]:
    """The cells of ``config.grid`` for a model of this shape (and these data subsets, for the criteria axis)."""
    unknown = [a for a in config.grid if a not in AXES]
    if unknown:
        raise ValueError(f"unknown ablation axis/axes {unknown}; choose from {', '.join(AXES)}")
    cells: list[Cell] = []
    grid = set(config.grid)
    if "selection" in grid:
        cells += [Cell("selection", "ARM", s) for s in SELECTIONS]
    if "estimator" in grid:
        bad = [e for e in config.estimators if e not in ESTIMATORS]
        if bad:
            raise ValueError(f"unknown estimator(s) {bad}; choose from {', '.join(ESTIMATORS)}")
        cells += [Cell("estimator", "ARM", e) for e in config.estimators]
    if "mode" in grid:
        cells += [Cell("mode", "ARM", m) for m in ("per_example", "icl")]
    if "scoring" in grid:
        cells += [Cell("scoring", series, r, reading=r) for series in ("ARM", "zero-shot") for r in READINGS]
    if "shots" in grid:
        counts = sorted({n for n in config.shots if 1 <= n <= config.n_fewshot} | {config.n_fewshot})
        cells += [Cell("shots", "ARM", str(n), x=float(n)) for n in counts]
    if "heads" in grid:
        ks = sorted({k for k in config.heads if 1 <= k <= n_layers * n_heads})
        cells += [Cell("heads", s, str(k), x=float(k)) for s in HEAD_SERIES for k in ks]
    if "flip" in grid:
        cells += [Cell("flip", "ARM", f"{f:g}", x=100.0 * f) for f in sorted(set(config.flips))]
    if "criteria" in grid:
        crits = list(config.criteria) if config.criteria is not None else (list(subsets) if len(subsets) > 1 else [])
        cells += [Cell("criteria", "ARM", c) for c in crits]
    return cells


class SeedRun:
    """Everything one seed computes, each piece made on first use and kept on disk (read back on a rerun)."""

    def __init__(self, model: Any, config: AblationConfig, pairs: Sequence[PreferencePair], seed: int, out: Path,
                 show_progress: bool = True):
        self.model, self.config, self.pairs, self.seed = model, config, list(pairs), seed
        self.dir = out / "seeds" / f"seed{seed}"
        self.show_progress = show_progress
        self.template = config.template
        self.ids = AnswerIds.of(model, self.template)
        self._means: dict[str, Means] = {}
        self._selections: dict[str, SelectionResult] = {}
        self.pool = M.PrefixPool(model, config.prefix_cache_mb)  # few-shot prompts: capture, REINFORCE, attribution
        self._split()

    # -------------------------------------------------------------------------------------------- data

    def _split(self) -> None:
        from armlens.data import split_pairs

        cfg = self.config
        n_test = cfg.limit if cfg.limit is not None and cfg.limit + cfg.n_fewshot <= len(self.pairs) else None
        try:
            split = split_pairs(self.pairs, seed=self.seed, n_fewshot=cfg.n_fewshot, n_select=0, n_test=n_test)
        except ValueError:  # prompt groups may not allow an exact test size: take all, then cut (test side only)
            split = split_pairs(self.pairs, seed=self.seed, n_fewshot=cfg.n_fewshot, n_select=0)
        self.fewshot = split.fewshot
        self.test = split.test[: cfg.limit] if cfg.limit is not None else split.test
        record = {**split.to_dict(), "test_used": [p.id for p in self.test], "test_used_sha256": pairs_hash(self.test)}
        path = self.dir / "split.json"
        if not path.is_file():
            write_json_atomic(path, record)
        self.examples = examples_from_pairs(self.fewshot)
        self.test_texts = [scalar_prompt(self.model, e, self.template)
                           for p in self.test for e in examples_from_pairs([p])]

    # -------------------------------------------------------------------------------------------- Stage 1

    def _capture(self, name: str, examples: Sequence[Example]) -> dict[str, Tensor]:
        """Last-token hook_z of the examples' zero-shot prompts (stacked in example order), their labels and the
        unpatched judge's confidence in each gold answer (two-way Yes/No softmax)."""
        path = self.dir / f"{name}.safetensors"
        if path.is_file():
            return _load_tensors(path)
        tensors = capture_stack(self.model, examples, self.template, answer_ids=self.ids, pool=self.pool,
                                show_progress=self.show_progress, desc=f"capturing {name}")
        _save_tensors(path, tensors)
        return tensors

    @functools.cached_property
    def stack(self) -> dict[str, Tensor]:
        return self._capture("fewshot_z", self.examples)

    def estimate(self, name: str, rows: Tensor | None = None, flipped: Tensor | None = None,
                 stack: dict[str, Tensor] | None = None) -> Means:
        """An estimator over (a subset of) the captured stack; ``flipped`` rows have their labels swapped."""
        s = self.stack if stack is None else stack
        z, labels, conf = s["z"], s["labels"].bool(), s["confidence"].float()
        if flipped is not None:
            labels = torch.where(flipped, ~labels, labels)
            conf = torch.where(flipped, 1 - conf, conf)
        if rows is not None:
            z, labels, conf = z[rows], labels[rows], conf[rows]
        est = (make_estimator("wpca", weighting="confidence") if name == "wpca_confidence"
               else make_estimator(name))
        est.update(z, labels, conf)
        return est.result()

    def means(self, key: str) -> Means:
        if key in self._means:
            return self._means[key]
        kind, _, arg = key.partition(":")
        if kind == "est":
            value = self.estimate(arg)
        elif kind == "shots":
            value = self.estimate("mean", rows=torch.arange(2 * int(arg)))
        elif kind == "flip":
            _, idx = self.flipped(float(arg))
            value = self.estimate("mean", flipped=flip_rows(len(self.fewshot), idx))
        elif kind == "icl":
            value = self.icl_means()
        elif kind == "crit":
            value = self.estimate("mean", stack=self.criterion_stack(arg))
        else:
            raise ValueError(f"unknown means key {key!r}")
        self._means[key] = value
        return value

    def icl_means(self) -> Means:
        path = self.dir / "icl_means.safetensors"
        if path.is_file():
            return _load_tensors(path)["means"]
        cfg = self.config
        texts, gold = extraction_prompts(self.model, self.examples, "icl", shots=cfg.icl_shots,
                                         n_trials=cfg.icl_trials, template=self.template, seed=self.seed)
        est = make_estimator("mean")
        acc = collect(self.model, texts, gold, [est], answer_ids=self.ids, batch_size=self.config.batch_size,
                      show_progress=self.show_progress, desc="capturing icl")
        means = est.result()
        _save_tensors(path, {"means": means, "gold_accuracy": torch.tensor([acc])})
        return means

    # -------------------------------------------------------------------------------------------- Stage 2

    def flipped(self, share: float) -> tuple[list[PreferencePair], list[int]]:
        pairs, ids = flip_pairs(self.fewshot, share, self.seed)
        pos = {p.id: i for i, p in enumerate(self.fewshot)}
        return pairs, [pos[i] for i in ids]

    def _reinforce(self, name: str, means: Means, examples: Sequence[Example], **extra: Any) -> SelectionResult:
        if name in self._selections:
            return self._selections[name]
        path = self.dir / f"selection-{slug(name)}.json"
        if path.is_file():
            sel = selection_from_dict(json.loads(path.read_text()))
        else:
            t0 = time.perf_counter()
            sel = reinforce(self.model, means, examples, self.config.reinforce_config(self.seed),
                            template=self.template, show_progress=self.show_progress, pool=self.pool)
            write_json_atomic(path, selection_to_dict(sel, name=name, seed=self.seed, seconds=time.perf_counter() - t0,
                                                      n_train_examples=len(examples), **extra))
        self._selections[name] = sel
        return sel

    @property
    def reference(self) -> SelectionResult:
        """REINFORCE on the reference means (per_example, plain mean) and the few-shot examples."""
        return self._reinforce("reference", self.means("est:mean"), self.examples,
                               few_shot_ids=[p.id for p in self.fewshot])

    def flip_selection(self, share: float) -> SelectionResult:
        if share == 0:
            return self.reference
        pairs, idx = self.flipped(share)
        return self._reinforce(f"flip-{share:g}", self.means(f"flip:{share:g}"), examples_from_pairs(pairs),
                               flipped_ids=[self.fewshot[i].id for i in idx])

    def criterion_fewshot(self, subset: str) -> list[PreferencePair]:
        from armlens.data import split_pairs

        test_keys = {p.prompt_key() for p in self.test}
        pool = [p for p in self.pairs if p.subset == subset and p.prompt_key() not in test_keys]
        n = min(self.config.criteria_fewshot, len(pool))
        if n < 2:
            raise ValueError(f"criterion {subset!r}: only {len(pool)} pair(s) outside the test split")
        for k in range(n, 1, -1):  # prompt groups may not allow exactly n: take the largest size they allow
            try:
                return split_pairs(pool, seed=self.seed, n_fewshot=k, n_select=0).fewshot
            except ValueError:
                continue
        raise ValueError(f"criterion {subset!r}: cannot draw few-shot pairs")

    def criterion_stack(self, subset: str) -> dict[str, Tensor]:
        return self._capture(f"criterion-{slug(subset)}_z", examples_from_pairs(self.criterion_fewshot(subset)))

    def criterion_selection(self, subset: str) -> SelectionResult:
        fewshot = self.criterion_fewshot(subset)
        return self._reinforce(f"criterion-{subset}", self.means(f"crit:{subset}"), examples_from_pairs(fewshot),
                               criterion=subset, few_shot_ids=[p.id for p in fewshot])

    @functools.cached_property
    def effects(self) -> Float[Tensor, "n_layers n_heads"]:
        """Single-head patching effect on the Yes-No margin (towards gold), reference means, first few-shot examples."""
        path = self.dir / "attribution.json"
        if path.is_file():
            return torch.tensor(json.loads(path.read_text())["effects"])
        examples = self.examples[: self.config.attribution_examples]
        t0 = time.perf_counter()
        effects = single_head_effects(self.model, self.means("est:mean"), examples, template=self.template,
                                      show_progress=self.show_progress, pool=self.pool)
        write_json_atomic(path, {"effects": _round(effects), "n_examples": len(examples), "unit": "logit",
                                 "means": "per_example mean", "seconds": time.perf_counter() - t0})
        return effects

    def attention(self) -> AttentionRow:
        """Attention row of the reference ARM's top selected head, from the last token of the first test prompt."""
        path = self.dir / "attention.json"
        if path.is_file():
            return AttentionRow.from_dict(json.loads(path.read_text()))
        sel = self.reference
        assert sel.probs is not None
        probs = sel.probs.clone()
        if bool(sel.mask.any()):
            probs[~sel.mask] = -1.0
        layer, head = divmod(int(probs.flatten().argmax()), probs.shape[1])
        row = attention_from_last(self.model, self.test_texts[0], layer, head, means=self.means("est:mean"),
                                  mask=sel.mask, note=f"first test prompt ({self.test[0].id}, chosen response)")
        row.extra = {"prob": float(sel.probs[layer, head]), "selected": bool(sel.mask[layer, head]),
                     "pair_id": self.test[0].id}
        write_json_atomic(path, row.to_dict())
        return row

    # -------------------------------------------------------------------------------------------- cells

    def resolve(self, cell: Cell) -> tuple[str, HeadMask]:
        """The means key and head mask a cell patches (``"none"`` and an empty mask for the plain judge)."""
        shape = (self.model.cfg.n_layers, self.model.cfg.n_heads)
        none = torch.zeros(shape, dtype=torch.bool)
        ref = self.reference
        k = ref.n_heads
        if cell.axis == "selection":
            mask = {
                "reinforce": lambda: ref.mask,
                "random": lambda: random_mask(*shape, k, seed=self.seed),
                "topk_prob": lambda: top_k_mask(ref.probs, k),
                "topk_attribution": lambda: top_k_mask(self.effects, k),
                "all": lambda: torch.ones(shape, dtype=torch.bool),
                "none": lambda: none,
            }[cell.setting]()
            return ("est:mean", mask) if bool(mask.any()) else ("none", none)
        if cell.axis == "estimator":
            return f"est:{cell.setting}", ref.mask
        if cell.axis == "mode":
            return ("icl" if cell.setting == "icl" else "est:mean"), ref.mask
        if cell.axis == "scoring":
            return ("est:mean", ref.mask) if cell.series == "ARM" else ("none", none)
        if cell.axis == "shots":
            n = int(cell.setting)
            return ("est:mean" if n == self.config.n_fewshot else f"shots:{n}"), ref.mask
        if cell.axis == "heads":
            kk = int(cell.setting)
            if cell.series == "topk_prob":
                return "est:mean", top_k_mask(ref.probs, kk)
            if cell.series == "topk_attribution":
                return "est:mean", top_k_mask(self.effects, kk)
            return "est:mean", random_mask(*shape, kk, seed=self.seed)
        if cell.axis == "flip":
            share = float(cell.setting)
            return ("est:mean" if share == 0 else f"flip:{share:g}"), self.flip_selection(share).mask
        if cell.axis == "criteria":
            return f"crit:{cell.setting}", self.criterion_selection(cell.setting).mask
        raise ValueError(f"unknown axis {cell.axis!r}")

    def run_cells(self, cells: Sequence[Cell], out: Path) -> list[dict[str, Any]]:
        """Compute the cells not yet on disk (one batched scoring pass) and write one JSON per cell."""
        missing = [c for c in cells if not c.path(out, self.seed).is_file()]
        if not missing:
            return []
        resolved: dict[Cell, tuple[str, HeadMask]] = {}
        for c in missing:
            try:
                resolved[c] = self.resolve(c)
            except ValueError as e:
                logger.warning("seed %d: skipping %s/%s: %s", self.seed, c.axis, c.setting, e)
        rows: dict[tuple[str, bytes], int] = {}
        row_means, row_masks = [], []
        zeros = torch.zeros(self.model.cfg.n_layers, self.model.cfg.n_heads, self.model.cfg.d_head)
        for key, mask in resolved.values():
            ident = (key if bool(mask.any()) else "none", mask.numpy().tobytes() if bool(mask.any()) else b"")
            if ident not in rows:
                rows[ident] = len(rows)
                row_means.append(self.means(key) if ident[0] != "none" else zeros)
                row_masks.append(mask.clone() if ident[0] != "none" else torch.zeros_like(mask))
        if not rows:
            return []
        t0 = time.perf_counter()
        logits = score_rows(self.model, self.test_texts, torch.stack(row_means), torch.stack(row_masks),
                            answer_ids=self.ids, chunk=self.config.row_chunk, show_progress=self.show_progress)
        seconds = time.perf_counter() - t0
        logger.info("seed %d: %d cells as %d distinct rows over %d test prompts in %.0f s", self.seed,
                    len(resolved), len(rows), len(self.test_texts), seconds)
        records = []
        gen_cache: dict[int, tuple[Tensor, dict[str, int]]] = {}
        for c, (key, mask) in resolved.items():
            ident = (key if bool(mask.any()) else "none", mask.numpy().tobytes() if bool(mask.any()) else b"")
            r = rows[ident]
            extra: dict[str, Any] = {}
            if c.reading == "generative":
                if r not in gen_cache:
                    gen_cache[r] = self._generative(logits.argmax[:, r], row_means[r], row_masks[r])
                scores, counts = gen_cache[r]
                extra["answers"] = counts
            else:
                scores = logits.read(c.reading)[:, r]
            rec = self._record(c, scores, mask if ident[0] != "none" else row_masks[r], key, extra)
            write_json_atomic(c.path(out, self.seed), rec)
            records.append(rec)
        return records

    def _generative(self, first: Tensor, means: Means, mask: HeadMask) -> tuple[Tensor, dict[str, int]]:
        counts = {"yes": 0, "no": 0, "unparseable": 0, "decoded_further": 0}
        scores = torch.empty(len(self.test_texts))
        for i, text in enumerate(self.test_texts):
            word = self.model.tokenizer.decode([int(first[i])], skip_special_tokens=True)
            answer = parse_yes_no(word)
            if answer is None:
                counts["decoded_further"] += 1
                answer = parse_yes_no(greedy_answer(self.model, text, int(first[i]), means, mask,
                                                    self.config.gen_max_new_tokens))
            counts[answer or "unparseable"] += 1
            scores[i] = 1.0 if answer == "yes" else 0.0 if answer == "no" else 0.5
        return scores, counts

    def _record(self, cell: Cell, scores: Tensor, mask: HeadMask, means_key: str, extra: dict[str, Any]) -> dict:
        chosen, rejected = scores[0::2].double().numpy(), scores[1::2].double().numpy()
        correct, ties = pairwise_correct(chosen, rejected)
        ci = bootstrap_ci(correct.astype(float), n=self.config.bootstrap, seed=self.seed)
        per_subset: dict[str, float] = {}
        subsets = [p.subset for p in self.test]
        for s in sorted(set(subsets)):
            idx = [i for i, x in enumerate(subsets) if x == s]
            per_subset[s] = float(correct[idx].mean())
        return {
            "axis": cell.axis, "series": cell.series, "setting": cell.setting, "x": cell.x, "reading": cell.reading,
            "seed": self.seed, "accuracy": float(correct.mean()), "ci_low": ci.low, "ci_high": ci.high,
            "ties": int(ties), "n_pairs": len(self.test), "n_heads": int(mask.sum()), "heads": mask_labels(mask),
            "means": means_key, "per_subset": per_subset,
            "correct": correct.astype(int).tolist(), "chosen_scores": chosen.tolist(),
            "rejected_scores": rejected.tolist(), "test_sha256": pairs_hash(self.test),
            "few_shot_sha256": pairs_hash(self.fewshot), **extra,
        }

    def head_artifacts(self) -> None:
        """Everything the head figures read: REINFORCE result, attribution map, one attention row."""
        _ = self.reference, self.effects
        self.attention()


# ---------------------------------------------------------------------------------------------------- entry points


def _check_run_file(out: Path, config: AblationConfig, model: Any, pairs: Sequence[PreferencePair]) -> None:
    run = {
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "model": M.model_fingerprint(model),
        "data": {"name": config.data, "subsets": config.subsets, "n_pairs": len(pairs),
                 "sha256": pairs_hash(list(pairs))},
        "template": config.template.to_dict(),
        "reference": REFERENCE,
        "versions": environment_versions(),
    }
    path = out / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        problems = []
        if old.get("fingerprint") != json.loads(json.dumps(run["fingerprint"])):
            diff = sorted(k for k in run["fingerprint"] if old.get("fingerprint", {}).get(k) != run["fingerprint"][k])
            problems.append(f"config fields {diff}")
        if old.get("model") != run["model"]:
            problems.append("the model")
        if old.get("data", {}).get("sha256") != run["data"]["sha256"]:
            problems.append("the data")
        if problems:
            raise ValueError(f"{out} holds results of a different run ({', '.join(problems)} differ); "
                             "use another --out folder or delete it")
        run["started"] = old.get("started")
        run["seeds_done"] = sorted(set(old.get("seeds_done", [])))
    write_json_atomic(path, run)


def run_ablations(
    model: Any,
    pairs: Sequence[PreferencePair],
    config: AblationConfig,
    out: str | Path,
    *,
    show_progress: bool = True,
    on_seed: Callable[[int, float], None] | None = None,
) -> pd.DataFrame:
    """Run (or resume) the ablation grid; returns the tidy cell table (also written to ``OUT/summary.csv``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not pairs:
        raise ValueError("run_ablations got no pairs")
    if config.n_fewshot < 2:
        raise ValueError("the ablations need at least 2 few-shot pairs")
    _check_run_file(out, config, model, pairs)
    subsets = sorted({p.subset for p in pairs})
    cells = plan_cells(config, model.cfg.n_layers, model.cfg.n_heads, subsets)
    timings = {}
    for seed in config.seeds:
        t0 = time.perf_counter()
        run = SeedRun(model, config, pairs, seed, out, show_progress=show_progress)
        run.head_artifacts()
        done = run.run_cells(cells, out)
        timings[seed] = time.perf_counter() - t0
        logger.info("seed %d: %d new cells in %.0f s", seed, len(done), timings[seed])
        if on_seed is not None:
            on_seed(seed, timings[seed])
    run_file = out / "run.json"
    meta = json.loads(run_file.read_text())
    meta["seeds_done"] = sorted(set(meta.get("seeds_done") or []) | set(config.seeds))
    meta.setdefault("seconds", {}).update({str(s): t for s, t in timings.items()})
    write_json_atomic(run_file, meta)
    cells_df = load_cells(out)
    summary = summarize(cells_df)
    tmp = out / ".summary.csv.tmp"
    summary.to_csv(tmp, index=False)
    os.replace(tmp, out / "summary.csv")
    return cells_df


# ---------------------------------------------------------------------------------------------------- reading results


CELL_COLUMNS = ["axis", "series", "setting", "x", "reading", "seed", "accuracy", "ci_low", "ci_high", "ties",
                "n_pairs", "n_heads"]


def load_cells(out: str | Path, *, with_scores: bool = False) -> pd.DataFrame:
    """Every cell record under ``OUT/cells`` as one tidy DataFrame (one row per axis, series, setting, seed)."""
    files = sorted(Path(out).glob("cells/*/*/seed*.json"))
    rows = []
    for f in files:
        rec = json.loads(f.read_text())
        if not with_scores:
            rec = {k: v for k, v in rec.items() if k not in ("correct", "chosen_scores", "rejected_scores")}
        rows.append(rec)
    if not rows:
        return pd.DataFrame(columns=CELL_COLUMNS)
    return pd.DataFrame(rows)


def summarize(cells: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean accuracy per (axis, series, setting) across seeds, with std and a Student-t ``level`` interval."""
    cols = ["axis", "series", "setting", "x", "reading", "n_seeds", "accuracy", "std", "ci_low", "ci_high",
            "ties", "n_heads", "n_pairs"]
    if cells.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    order = {a: i for i, a in enumerate(AXES)}
    for (axis, series, setting), g in cells.groupby(["axis", "series", "setting"], sort=False):
        mean, sd, lo, hi = t_interval(g["accuracy"].tolist(), level)
        x = g["x"].iloc[0]
        rows.append({"axis": axis, "series": series, "setting": setting,
                     "x": None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x),
                     "reading": g["reading"].iloc[0], "n_seeds": int(g["seed"].nunique()), "accuracy": mean,
                     "std": sd, "ci_low": lo, "ci_high": hi, "ties": float(g["ties"].mean()),
                     "n_heads": float(g["n_heads"].mean()), "n_pairs": float(g["n_pairs"].mean())})
    df = pd.DataFrame(rows, columns=cols)
    canon = {s: i for i, s in enumerate(SETTING_ORDER)}
    series_canon = {s: i for i, s in enumerate(("ARM", "zero-shot", *HEAD_SERIES))}
    df["_a"] = df["axis"].map(order).fillna(len(order))
    df["_s"] = df["series"].map(series_canon).fillna(len(series_canon))
    df["_k"] = [x if x is not None and not (isinstance(x, float) and math.isnan(x)) else canon.get(st, len(canon))
                for x, st in zip(df["x"], df["setting"], strict=True)]
    return (df.sort_values(["_a", "_s", "_k", "setting"], kind="stable").drop(columns=["_a", "_s", "_k"])
            .reset_index(drop=True))


def zero_shot_reference(cells: pd.DataFrame) -> tuple[float, float, float] | None:
    """Mean zero-shot accuracy across seeds and its t-interval (from the ``none`` / zero-shot prob cells)."""
    if cells.empty:
        return None
    pick = cells[((cells["axis"] == "selection") & (cells["setting"] == "none"))
                 | ((cells["axis"] == "scoring") & (cells["series"] == "zero-shot") & (cells["setting"] == "prob"))]
    if pick.empty:
        return None
    per_seed = pick.groupby("seed")["accuracy"].first().tolist()
    mean, _, lo, hi = t_interval(per_seed)
    return mean, lo, hi


def criteria_transfer(cells: pd.DataFrame) -> pd.DataFrame | None:
    """Accuracy gain (percentage points) over the zero-shot judge of each criterion's ARM on each test subset, mean
    over seeds: rows = the criterion the ARM was fitted on, columns = the subset of the test pairs."""
    if cells.empty or "per_subset" not in cells:
        return None
    crit = cells[cells["axis"] == "criteria"]
    zero = cells[(cells["axis"] == "selection") & (cells["setting"] == "none")]
    if crit.empty or zero.empty:
        return None
    base = {int(r.seed): r.per_subset for r in zero.itertuples()}
    rows: dict[str, dict[str, list[float]]] = {}
    for r in crit.itertuples():
        if int(r.seed) not in base:
            continue
        for subset, acc in r.per_subset.items():
            if subset in base[int(r.seed)]:
                rows.setdefault(r.setting, {}).setdefault(subset, []).append(100 * (acc - base[int(r.seed)][subset]))
    if not rows:
        return None
    subsets = sorted({s for v in rows.values() for s in v})
    return pd.DataFrame({s: {c: float(np.mean(v[s])) if s in v else math.nan for c, v in rows.items()}
                         for s in subsets}).loc[sorted(rows)]


@dataclass
class SeedArtifacts:
    """What ``armlens ablate`` saved for one seed's head analysis."""

    seed: int
    selections: dict[str, SelectionResult]
    """REINFORCE results by name: ``reference``, ``flip-0.25``, ``criterion-hhh-helpful``, ..."""
    effects: Float[Tensor, "n_layers n_heads"] | None
    attention: AttentionRow | None


@dataclass
class AblationResults:
    """A results folder read back: the run record, the cell table and each seed's head artifacts."""

    run: dict[str, Any]
    cells: pd.DataFrame
    seeds: dict[int, SeedArtifacts]

    def selections(self, name: str = "reference") -> dict[int, SelectionResult]:
        return {s: a.selections[name] for s, a in self.seeds.items() if name in a.selections}

    def criteria(self) -> dict[str, dict[int, SelectionResult]]:
        names = sorted({n for a in self.seeds.values() for n in a.selections if n.startswith("criterion-")})
        return {n.removeprefix("criterion-"): self.selections(n) for n in names}


def load_results(out: str | Path) -> AblationResults:
    """Read a results folder written by :func:`run_ablations` (no model, no forward passes)."""
    out = Path(out)
    run_file = out / "run.json"
    if not run_file.is_file():
        raise FileNotFoundError(f"{out} holds no ablation results (no run.json); run `armlens ablate --out {out}`")
    seeds = {}
    for d in sorted((out / "seeds").glob("seed*")):
        m = re.fullmatch(r"seed(\d+)", d.name)
        if not m:
            continue
        sels = {}
        for f in sorted(d.glob("selection-*.json")):
            rec = json.loads(f.read_text())
            sels[rec.get("name", f.stem.removeprefix("selection-"))] = selection_from_dict(rec)
        eff = torch.tensor(json.loads((d / "attribution.json").read_text())["effects"]) \
            if (d / "attribution.json").is_file() else None
        att = AttentionRow.from_dict(json.loads((d / "attention.json").read_text())) \
            if (d / "attention.json").is_file() else None
        seeds[int(m.group(1))] = SeedArtifacts(int(m.group(1)), sels, eff, att)
    return AblationResults(json.loads(run_file.read_text()), load_cells(out), seeds)


def label_grid(n_layers: int, n_heads: int) -> list[list[str]]:
    """``L{l}H{h}`` labels laid out ``[n_layers][n_heads]`` (hover text for heatmaps)."""
    return [[head_label(layer, head) for head in range(n_heads)] for layer in range(n_layers)]
