"""Running the ablation grid: per seed, fit each distinct ARM once through :class:`armlens.rm.ActivationRM`, then
score every cell over one prefix per test prompt.

Sharing work
------------
Per seed: cells that need the same ARM (same config, same few-shot pairs) share one fit, saved as an ``.arm`` file and
read back on a rerun; fits that differ only in Stage 2 share Stage 1 (``ActivationRM.fit``'s ``extraction_cache``);
the ``steps`` axis is one REINFORCE run to the longest step count. Every cell then differs from the zero-shot judge
only in what is written into hook_z at the last position, so each test prompt's prefix is run once and all cells
are branches over it (:func:`armlens.scoring.score_rows`), per criterion (each pair is scored with the rows of its
criterion's fit, as :meth:`ActivationRM.score_pairs` routes it). The generative reading decodes through
:func:`armlens.generation.generate_answers`, the one generation path.

Files (resumable: anything already on disk is read back, never recomputed)
--------------------------------------------------------------------------
``OUT/run.json`` (config, versions, model fingerprint, data hash, seconds and environments per seed),
``OUT/cells/{axis}/{setting}/seed{s}.json.gz`` (one tidy record per cell, scores included), ``OUT/seeds/seed{s}/``
(``split.json.gz`` with the test pairs' prompts, ``arms/{key}.arm`` fitted ARMs,
``selection-*.json.gz`` REINFORCE histories per criterion of the reference ARM, attribution maps, an attention row),
``OUT/summary.csv``.

The per-item and per-step files (``*.json.gz``) are gzip-compressed with deterministic bytes
(:func:`armlens.io.gzip_bytes`); a folder written before holds them plain (``seed0.json``, ``selection-*.json``) and
is read and resumed the same (:func:`armlens.io.resolve_compressed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from armlens import model as M
from armlens.analysis.grid import AblationConfig, Cell, fit_key, plan_cells, slug
from armlens.analysis.heads import AttentionRow, attention_from_last
from armlens.analysis.results import load_cells, selection_to_dict, summarize
from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError, BadOutputError
from armlens.evaluation.protocol import (
    accuracy_ci,
    environment_versions,
    pairwise_correct,
    write_json_atomic,
)
from armlens.io import atomic_write_with, read_json, result_exists, write_json
from armlens.patching import HeadMask, Means, mask_labels
from armlens.prompts import AnswerIds, criterion_for, examples_from_pairs, scalar_prompt
from armlens.rm import POOLED, ActivationRM, CriterionARM
from armlens.scoring import score_rows
from armlens.selection import likely_mask, random_mask, single_head_effects, top_k_mask
from armlens.soft import effective_heads
from armlens.typing import Model

logger = logging.getLogger(__name__)

GZ_JSON = ".json.gz"
"""Suffix of the per-item and per-step files written here (cells, splits, REINFORCE histories): gzip-compressed
JSON, a third to a tenth of the bytes that every clone of a committed sweep carries."""


def cell_file(out: Path, cell: Cell, seed: int) -> Path:
    """Where one cell's record for ``seed`` is written (a folder written before holds ``seed{s}.json``, which
    :func:`armlens.io.resolve_compressed` finds from this name)."""
    return out / "cells" / cell.axis / cell.key / f"seed{seed}{GZ_JSON}"


def flip_pairs(pairs: Sequence[PreferencePair], share: float, seed: int) -> tuple[list[PreferencePair], list[str]]:
    """Swap chosen and rejected in ``round(share * len(pairs))`` pairs drawn at random (seeded).

    Returns the new list (same order) and the ids of the flipped pairs. Each flipped pair turns its Yes example into a
    No example and back, so the class balance is kept and exactly that share of the labels is wrong.
    """
    if not 0.0 <= share <= 1.0:
        raise BadInputError(f"the flipped share must be in [0, 1], got {share}")
    n = int(math.floor(share * len(pairs) + 0.5))
    chosen = set(random.Random(f"flip-{seed}-{share}").sample(range(len(pairs)), n))
    out = [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen,
                               metadata={**p.metadata, "flipped": True}) if i in chosen else p
           for i, p in enumerate(pairs)]
    return out, [pairs[i].id for i in sorted(chosen)]


def control_values(means: Means, mask: HeadMask, values: str, seed: int) -> Means:
    """The ``controls`` axis' values for the heads of ``mask``: ``zeros``, or ``shuffled``: each selected head gets
    another selected head's mean (a derangement seeded by ``seed``). A fit with one selected head has no other
    selected head to swap with: it gets another head's mean, drawn from all heads with the same seed. The heads
    outside ``mask`` keep theirs (they are not written)."""
    if values == "zeros":
        return torch.zeros_like(means)
    if values != "shuffled":
        raise BadInputError(f"unknown control values {values!r}")
    where = mask.nonzero()
    k = where.shape[0]
    gen = torch.Generator().manual_seed(seed)
    out = means.clone()
    if k == 1:
        n_heads = means.shape[1]
        flat = int(where[0, 0]) * n_heads + int(where[0, 1])
        other = int(torch.randint(means.shape[0] * n_heads - 1, (1,), generator=gen))
        other += other >= flat  # any head but itself
        out[where[0, 0], where[0, 1]] = means[other // n_heads, other % n_heads]
        return out
    perm = torch.randperm(k, generator=gen)
    while bool((perm == torch.arange(k)).any()):  # a derangement: no head keeps its own mean
        perm = torch.randperm(k, generator=gen)
    out[where[:, 0], where[:, 1]] = means[where[perm, 0], where[perm, 1]]
    return out


def first_per_criterion(pairs: Sequence[PreferencePair], n: int) -> list[PreferencePair]:
    """The first ``n`` pairs of each criterion, in draw order."""
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        c = criterion_for(p)
        if seen.get(c, 0) < n:
            seen[c] = seen.get(c, 0) + 1
            out.append(p)
    return out


class SeedRun:
    """Everything one seed computes, each piece made on first use and kept on disk (read back on a rerun)."""

    def __init__(self, model: Model, config: AblationConfig, pairs: Sequence[PreferencePair], seed: int, out: Path,
                 show_progress: bool = True, foreign_pairs: Sequence[PreferencePair] | None = None):
        self.model, self.config, self.pairs, self.seed = model, config, list(pairs), seed
        self.foreign_pairs = list(foreign_pairs or [])
        self._foreign: tuple[Means, dict[str, Any]] | None = None
        self.base = dataclasses.replace(config.arm, seed=seed)
        self.dir = out / "seeds" / f"seed{seed}"
        self.show_progress = show_progress
        self.ids = AnswerIds.of(model, self.base.template)
        self._fits: dict[str, ActivationRM] = {}
        self._extraction: dict[str, Any] = {}
        self._effects: dict[str, Tensor] = {}
        self._controls: dict[tuple[str, int, bytes], tuple[Means, Means]] = {}  # keeps each source tensor alive
        self._split()

    # -------------------------------------------------------------------------------------------- data

    def _split(self) -> None:
        from armlens.data import split_pairs

        cfg = self.config
        n_test = cfg.limit if cfg.limit is not None and cfg.limit + cfg.n_fewshot <= len(self.pairs) else None
        try:
            split = split_pairs(self.pairs, seed=self.seed, n_fewshot=cfg.n_fewshot, n_select=0, n_test=n_test,
                                stratify=True)
        except ValueError:  # prompt groups may not allow an exact test size: take all, then cut (test side only)
            split = split_pairs(self.pairs, seed=self.seed, n_fewshot=cfg.n_fewshot, n_select=0, stratify=True)
        self.fewshot = split.fewshot
        self.test = split.test[: cfg.limit] if cfg.limit is not None else split.test
        path = self.dir / f"split{GZ_JSON}"
        prompts = [p.prompt_key() for p in self.test]  # the bootstrap's clusters (armlens.analysis.sweep)
        if not result_exists(path):
            write_json_atomic(path, {**split.to_dict(), "test_used": [p.id for p in self.test],
                                     "test_used_sha256": pairs_hash(self.test), "test_used_prompts": prompts})
        else:  # a split written before the prompts were recorded gains them (same test pairs, checked)
            saved = read_json(path)
            if "test_used_prompts" not in saved and saved.get("test_used_sha256") == pairs_hash(self.test):
                write_json_atomic(path, {**saved, "test_used_prompts": prompts})
        self.test_texts = [scalar_prompt(self.model, e, self.base.template)
                           for p in self.test for e in examples_from_pairs([p], self.base.criterion)]

    def fewshot_for(self, spec: str) -> list[PreferencePair]:
        """The few-shot pairs a cell's ARM is fitted on."""
        kind, _, arg = spec.partition(":")
        if kind == "all":
            return self.fewshot
        if kind == "shots":
            return first_per_criterion(self.fewshot, int(arg))
        if kind == "flip":
            return flip_pairs(self.fewshot, float(arg), self.seed)[0]
        raise BadInputError(f"unknown few-shot spec {spec!r}")

    # -------------------------------------------------------------------------------------------- fits

    def fit(self, cell: Cell) -> ActivationRM:
        """The ARM a cell needs: fitted through ``ActivationRM`` once per (config, few-shot pairs), kept on disk."""
        key = fit_key(cell, self.base)
        if key in self._fits:
            return self._fits[key]
        path = self.dir / "arms" / f"{key}.arm"
        if path.is_file():
            rm = ActivationRM.load(path, self.model)
        else:
            t0 = time.perf_counter()
            rm = ActivationRM(self.model, cell.arm_config(self.base)).fit(
                self.fewshot_for(cell.pairs), show_progress=self.show_progress, extraction_cache=self._extraction)
            rm.fit_info["seconds"] = time.perf_counter() - t0
            rm.save(path)
        self._fits[key] = rm
        return rm

    @property
    def reference(self) -> ActivationRM:
        """The reference ARM (``config.arm`` with this seed) on the whole few-shot draw."""
        return self.fit(Cell("selection", "ARM", "reinforce"))

    def effects(self, fit: CriterionARM) -> Float[Tensor, "n_layers n_heads"]:
        """Single-head patching effect on the Yes-No margin (towards gold) with a criterion's means, on its first
        few-shot examples."""
        name = slug("pooled" if fit.criterion == POOLED else fit.criterion[:40])
        if name in self._effects:
            return self._effects[name]
        path = self.dir / f"attribution-{name}.json"
        if path.is_file():
            effects = torch.tensor(read_json(path)["effects"])
        else:
            examples = [e for e in examples_from_pairs(self.fewshot, self.base.criterion)
                        if fit.criterion in (POOLED, e.criterion)][: self.config.attribution_examples]
            t0 = time.perf_counter()
            effects = single_head_effects(self.model, fit.means, examples, template=self.base.template,
                                          show_progress=self.show_progress)
            write_json_atomic(path, {"criterion": fit.criterion, "effects": effects.tolist(),
                                     "n_examples": len(examples), "unit": "logit",
                                     "seconds": time.perf_counter() - t0})
        self._effects[name] = effects
        return effects

    def rows_for(self, cell: Cell, pair: PreferencePair) -> tuple[Means, HeadMask]:
        """What the cell writes into hook_z when it scores ``pair``: its head rule's means and mask, then the cell's
        ``values`` (``controls`` axis: zeros, or the selected heads' means shuffled among them)."""
        means, mask = self._head_rows(cell, pair)
        if cell.values == "fit" or not bool(mask.any()):
            return means, mask
        if cell.values == "foreign":
            return self.foreign()[0], mask
        key = (cell.values, id(means), mask.numpy().tobytes())
        if key not in self._controls:  # one tensor per fit and mask, so the runner's branches dedupe by identity
            self._controls[key] = (means, control_values(means, mask, cell.values, self.seed))
        return self._controls[key][1], mask

    def weights_for(self, cell: Cell, pair: PreferencePair) -> Tensor | None:
        """The soft weights the cell writes with (``soft`` axis; its fit's own heads only), else ``None``."""
        if cell.heads != "fit" or cell.step is not None:
            return None
        rm = self.fit(cell)
        weights = rm.fit_for(rm._criterion(pair)).weights
        if weights is not None and cell.reading == "generative":
            raise BadInputError("the generative reading decodes with hard patches only, not soft head weights")
        return weights

    def foreign(self) -> tuple[Means, dict[str, Any]]:
        """The ``foreign`` control's means: Stage 1 with the reference's settings on ``n_fewshot`` pairs of another
        dataset (drawn with this seed, every criterion pooled into one extraction), and what they were read on."""
        if self._foreign is None:
            from armlens.activations import extract_means
            from armlens.data import split_pairs

            if not self.foreign_pairs:
                raise BadInputError("the foreign control needs another dataset's pairs (run_ablations' foreign_pairs)")
            draw = split_pairs(self.foreign_pairs, seed=self.seed, n_fewshot=self.config.n_fewshot, n_select=0,
                               stratify=True).fewshot
            t0 = time.perf_counter()
            extraction = extract_means(self.model, examples_from_pairs(draw, self.base.criterion), self.base,
                                       show_progress=self.show_progress)
            info = {"data": self.foreign_pairs[0].source, "few_shot_ids": [p.id for p in draw],
                    "few_shot_sha256": pairs_hash(draw), "n_extraction_prompts": extraction.n_prompts,
                    "seconds": time.perf_counter() - t0}
            self._foreign = (extraction.means, info)
        return self._foreign

    def _head_rows(self, cell: Cell, pair: PreferencePair) -> tuple[Means, HeadMask]:
        cfg = self.model.cfg
        shape = (cfg.n_layers, cfg.n_heads)
        none = torch.zeros(shape, dtype=torch.bool)
        if cell.heads == "none":
            return torch.zeros(cfg.n_layers, cfg.n_heads, cfg.d_head), none
        rm = self.fit(cell)
        fit = rm.fit_for(rm._criterion(pair))
        mask = fit.mask
        if cell.step is not None and fit.selection is not None:
            mask = fit.selection.checkpoint_masks.get(cell.step, mask)
        k = cell.k if cell.k is not None else int(mask.sum())
        if cell.heads == "fit":
            return fit.means, mask
        if cell.heads == "all":
            return fit.means, torch.ones(shape, dtype=torch.bool)
        if cell.heads == "random":
            return fit.means, random_mask(*shape, k, seed=self.seed)
        if cell.heads == "likely":  # the reference run's policy, its most likely mask (ReinforceConfig.final)
            if fit.selection is None or fit.selection.probs is None:
                raise BadInputError("the most likely mask needs a REINFORCE fit")
            return fit.means, likely_mask(fit.selection.probs)
        if cell.heads == "topk_prob":
            if fit.selection is None or fit.selection.probs is None:
                raise BadInputError("top-k by probability needs a REINFORCE fit")
            return fit.means, top_k_mask(fit.selection.probs, k)
        if cell.heads == "topk_attribution":
            return fit.means, top_k_mask(self.effects(fit), k)
        raise BadInputError(f"unknown head rule {cell.heads!r}")

    # -------------------------------------------------------------------------------------------- artifacts

    def head_artifacts(self) -> None:
        """Everything the head figures read: the reference ARM's REINFORCE history per criterion, attribution maps,
        one attention row."""
        rm = self.reference
        for fit in self._write_selections(rm, "criterion-", "reference"):
            self.effects(fit)
        path = self.dir / "attention.json"
        if not path.is_file():
            row = self._attention(rm)
            write_json_atomic(path, row.to_dict())

    def curve_artifacts(self, cells: Sequence[Cell]) -> None:
        """The training curves of the fits whose convergence is in question, per criterion, once fitted: the steps
        axis's one long REINFORCE run (``selection-steps{N}*.json``) and each learning rate's run
        (``selection-lr{X}*.json``): losses, expected heads, entropy, validation, final probabilities; no trajectory,
        so they stay small. They show whether the policy has converged by a given step count
        (:func:`armlens.analysis.results.convergence_table`)."""
        runs = [(c, f"lr{c.setting}") for c in cells if c.axis == "lr"]
        steps = [c for c in cells if c.axis == "steps" and c.step is not None]
        if steps:
            cell = max(steps, key=lambda c: c.step or 0)
            runs.insert(0, (cell, f"steps{cell.step}"))
        for cell, label in runs:
            if (self.dir / "arms" / f"{fit_key(cell, self.base)}.arm").is_file():
                self._write_selections(self.fit(cell), f"{label}-", label, trajectory=False)

    def _write_selections(self, rm: ActivationRM, prefix: str, first: str, *, trajectory: bool = True
                          ) -> list[CriterionARM]:
        """Write each criterion's REINFORCE history as ``selection-{prefix}{criterion}.json`` (the first criterion's
        also as ``selection-{first}.json``), unless already there; returns the fits that have one."""
        fits = []
        for i, fit in enumerate(sorted(rm.fits.values(), key=lambda f: f.criterion)):
            if fit.selection is None:
                continue
            sel = fit.selection if trajectory else dataclasses.replace(fit.selection, prob_trajectory=None)
            subsets = sorted({p.subset for p in self.fewshot if rm.route_key(criterion_for(p)) == fit.criterion})
            name = "pooled" if fit.criterion == POOLED else "+".join(subsets) or f"criterion{i}"
            for label in ([f"{prefix}{name}"] + ([first] if i == 0 else [])):
                path = self.dir / f"selection-{slug(label)}{GZ_JSON}"
                if not result_exists(path):  # one line: a trajectory is tens of thousands of numbers
                    record = selection_to_dict(sel, name=label, seed=self.seed, criterion=fit.criterion,
                                               subsets=subsets)
                    write_json(path, record, indent=None)
            fits.append(fit)
        return fits

    def _attention(self, rm: ActivationRM) -> AttentionRow:
        """Attention row of the top selected head (first test pair's criterion), from the first test prompt's last
        token."""
        fit = rm.fit_for(rm._criterion(self.test[0]))
        sel = fit.selection
        probs = sel.probs.clone() if sel is not None and sel.probs is not None else fit.mask.float()
        if bool(fit.mask.any()):
            probs[~fit.mask] = -1.0
        layer, head = divmod(int(probs.flatten().argmax()), probs.shape[1])
        row = attention_from_last(self.model, self.test_texts[0], layer, head, means=fit.means, mask=fit.mask,
                                  note=f"first test prompt ({self.test[0].id}, chosen response)")
        row.extra = {"prob": float(probs[layer, head]), "selected": bool(fit.mask[layer, head]),
                     "pair_id": self.test[0].id}
        return row

    # -------------------------------------------------------------------------------------------- cells

    def missing_cells(self, cells: Sequence[Cell], out: Path) -> list[Cell]:
        """The cells whose result for this seed is not on disk."""
        return [c for c in cells if not result_exists(cell_file(out, c, self.seed))]

    def complete(self, cells: Sequence[Cell], out: Path) -> bool:
        """Whether a rerun has nothing to add for this seed: every cell and the head artifacts are on disk. Then no
        ARM is fitted (fits are a local cache a fresh clone lacks, and refitting one only to find nothing to do costs
        minutes to hours)."""
        head_files = [self.dir / f"selection-reference{GZ_JSON}", self.dir / "attention.json"]
        return all(result_exists(f) for f in head_files) and not self.missing_cells(cells, out)

    def run_cells(self, cells: Sequence[Cell], out: Path) -> list[dict[str, Any]]:
        """Compute the cells not yet on disk (one branch pass over each test prompt) and write one JSON per cell."""
        missing = self.missing_cells(cells, out)
        if not missing:
            return []
        rows: dict[Cell, list[tuple[Means, HeadMask]]] = {}
        soft: dict[Cell, list[Tensor | None]] = {}  # soft weights per pair (soft axis), else None
        for c in missing:
            try:
                rows[c] = [self.rows_for(c, p) for p in self.test]
                soft[c] = [self.weights_for(c, p) for p in self.test]
            except ValueError as e:
                logger.warning("seed %d: skipping %s/%s: %s", self.seed, c.axis, c.setting, e)
        if not rows:
            return []
        order = list(rows)
        n = len(self.test)
        scores = {c: torch.empty(2 * n) for c in order}
        t0 = time.perf_counter()
        digests: dict[int, str] = {}  # means tensor -> content digest (fits read back from disk are new objects)

        def digest(t: Tensor) -> str:
            if id(t) not in digests:
                digests[id(t)] = hashlib.blake2b(t.contiguous().numpy().tobytes(), digest_size=16).hexdigest()
            return digests[id(t)]

        for i in range(n):  # both responses of pair i, all distinct patches as branches over each prompt's prefix
            distinct: dict[tuple[str, bytes], int] = {}  # cells patching the same values into the same heads share
            row_of = {}                                    # one branch, so they score identically
            for c in order:
                means, mask = rows[c][i]
                w = soft[c][i]
                ident = (digest(means) if bool(mask.any()) else "", mask.numpy().tobytes(),
                         b"" if w is None or not bool(mask.any()) else w[mask].numpy().tobytes())
                row_of[c] = distinct.setdefault(ident, len(distinct))
            firsts = {r: c for c, r in reversed(list(row_of.items()))}
            means = torch.stack([rows[firsts[r]][i][0] for r in range(len(distinct))])
            masks = torch.stack([rows[firsts[r]][i][1] for r in range(len(distinct))])
            row_w = [soft[firsts[r]][i] for r in range(len(distinct))]  # a hard row: 1 at its heads (lerp: exact)
            weights = None if all(w is None for w in row_w) else torch.stack(
                [m.float() if w is None else torch.where(m, w.float(), 0.0) for w, m in zip(row_w, masks, strict=True)])
            logits = score_rows(self.model, self.test_texts[2 * i : 2 * i + 2], means, masks, answer_ids=self.ids,
                                chunk=self.config.row_chunk, groups=[i, i],  # the pair's prompts share their start
                                weights=weights)
            for c in order:
                if c.reading != "generative":
                    scores[c][2 * i : 2 * i + 2] = logits.read(c.reading)[:, row_of[c]]  # type: ignore[arg-type]
        extra: dict[Cell, dict[str, Any]] = {}
        for c in order:
            ws = [w for w in soft[c] if w is not None]
            if ws:  # the soft axis: its effective head counts, averaged over the pairs as n_heads is
                counts = [effective_heads(w) for w in ws]
                extra[c] = {k: sum(e[k] for e in counts) / len(counts) for k in counts[0]}
            if c.reading == "generative":
                scores[c], extra[c] = self._generative(rows[c])  # never soft: generative cells are hard patches
        logger.info("seed %d: %d cells over %d test prompts in %.0f s", self.seed, len(order), 2 * n,
                    time.perf_counter() - t0)
        records = []
        for c in order:
            rec = self._record(c, scores[c], rows[c], extra.get(c, {}))
            write_json_atomic(cell_file(out, c, self.seed), rec)
            records.append(rec)
        return records

    def _generative(self, rows: list[tuple[Means, HeadMask]]) -> tuple[Tensor, dict[str, Any]]:
        from armlens.generation import generate_answers, votes_to_scores

        answers: list[list[str]] = []
        for i in range(len(self.test)):
            answers += generate_answers(self.model, self.test_texts[2 * i : 2 * i + 2], temperature=0.0,
                                        max_new_tokens=self.config.gen_max_new_tokens, seed=self.seed, batch_size=1,
                                        patch=rows[i])
        scores, counts = votes_to_scores(answers)
        return scores, {"answers": counts}

    def _record(self, cell: Cell, scores: Tensor, rows: list[tuple[Means, HeadMask]],
                extra: dict[str, Any]) -> dict[str, Any]:
        chosen, rejected = scores[0::2].double().numpy(), scores[1::2].double().numpy()
        correct, ties = pairwise_correct(chosen, rejected)
        ci = accuracy_ci(correct, self.test, self.config.bootstrap, self.seed)
        per_subset: dict[str, float] = {}
        subsets = [p.subset for p in self.test]
        for s in sorted(set(subsets)):
            idx = [i for i, x in enumerate(subsets) if x == s]
            per_subset[s] = float(correct[idx].mean())
        masks = torch.stack([m for _, m in rows])
        heads = sorted({h for m in masks.unique(dim=0) for h in mask_labels(m)})
        fit = None if cell.heads == "none" else self.fit(cell)
        if cell.values == "foreign":
            extra = {**extra, "foreign": self.foreign()[1]}
        return {
            "axis": cell.axis, "series": cell.series, "setting": cell.setting, "x": cell.x, "reading": cell.reading,
            "seed": self.seed, "accuracy": float(correct.mean()), "ci_low": ci.low, "ci_high": ci.high,
            "ties": int(ties), "n_pairs": len(self.test), "n_heads": float(masks.sum((1, 2)).float().mean()),
            "heads": heads, "per_subset": per_subset, "arm": None if fit is None else fit.config.to_dict(),
            "fit_key": None if fit is None else fit_key(cell, self.base), "pairs": cell.pairs,
            "correct": correct.astype(int).tolist(), "chosen_scores": chosen.tolist(),
            "rejected_scores": rejected.tolist(), "test_sha256": pairs_hash(self.test),
            "few_shot_sha256": pairs_hash(self.fewshot_for(cell.pairs)), **extra,
        }


# ---------------------------------------------------------------------------------------------------- entry points


def saved_fingerprint(run: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint of a saved ``run.json``, its config read back through :class:`AblationConfig` so that fields
    added since take their defaults (a run saved before a new option existed is the same run)."""
    if "config" in run:  # a run saved before partitions existed used every pair
        return json.loads(json.dumps(AblationConfig.from_dict({"partition": "all", **run["config"]}).fingerprint()))
    return run.get("fingerprint") or {}


def _check_run_file(out: Path, config: AblationConfig, model: Model, pairs: Sequence[PreferencePair]) -> None:
    run = {
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "model": M.model_fingerprint(model),
        "data": {"name": config.data, "subsets": config.subsets, "n_pairs": len(pairs),
                 "sha256": pairs_hash(list(pairs))},
        "versions": environment_versions(),
    }
    path = out / "run.json"
    if path.is_file():
        old = read_json(path)
        problems = []
        fp = json.loads(json.dumps(run["fingerprint"]))
        old_fp = saved_fingerprint(old)
        if old_fp != fp:
            diff = sorted(k for k in fp if old_fp.get(k) != fp[k])
            problems.append(f"config fields {diff}")
        if old.get("model") != run["model"]:
            problems.append("the model")
        if old.get("data", {}).get("sha256") != run["data"]["sha256"]:
            problems.append("the data")
        if problems:
            raise BadOutputError(f"{out} holds results of a different run ({', '.join(problems)} differ); "
                                 "use another --out folder or delete it")
        run["seeds_done"] = sorted(set(old.get("seeds_done", [])))
        run["seconds"] = old.get("seconds", {})
        run["environments"] = old.get("environments", {})
    write_json_atomic(path, run)


def run_environment(model: Model) -> dict[str, str]:
    """Where a seed's compute ran (device, and the versions that can move its last digits), for ``run.json``'s
    per-seed ``environments``: a resumed run may finish a seed on another machine, and ``versions`` holds only the
    last run's."""
    device = str(model.cfg.device)
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name()})"
    v = environment_versions()
    return {"device": device, **{k: str(v[k]) for k in ("torch", "transformers", "python") if k in v}}


def run_ablations(
    model: Model,
    pairs: Sequence[PreferencePair],
    config: AblationConfig,
    out: str | Path,
    *,
    show_progress: bool = True,
    on_seed: Callable[[int, float], None] | None = None,
    foreign_pairs: Sequence[PreferencePair] | None = None,
) -> pd.DataFrame:
    """Run (or resume) the ablation grid; returns the tidy cell table (also written to ``OUT/summary.csv``).

    ``foreign_pairs``: the other dataset's pairs the ``controls`` axis's ``foreign`` cell reads its means on
    (:func:`armlens.analysis.grid.foreign_dataset`); without them that cell is skipped with a warning."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not pairs:
        raise BadInputError("run_ablations got no pairs")
    if config.n_fewshot < 2:
        raise BadInputError("the ablations need at least 2 few-shot pairs")
    cells = plan_cells(config, model.cfg.n_layers, model.cfg.n_heads)
    _check_run_file(out, config, model, pairs)
    timings = {}
    for seed in config.seeds:
        t0 = time.perf_counter()
        run = SeedRun(model, config, pairs, seed, out, show_progress=show_progress, foreign_pairs=foreign_pairs)
        if seed in (read_json(out / "run.json").get("seeds_done") or []) and run.complete(cells, out):
            logger.info("seed %d: every cell is on file", seed)
            if on_seed is not None:
                on_seed(seed, 0.0)
            continue
        run.head_artifacts()
        done = run.run_cells(cells, out)
        run.curve_artifacts(cells)
        timings[seed] = time.perf_counter() - t0
        logger.info("seed %d: %d new cells in %.0f s", seed, len(done), timings[seed])
        meta = read_json(out / "run.json")
        meta["seeds_done"] = sorted(set(meta.get("seeds_done") or []) | {seed})
        spent = meta.setdefault("seconds", {})  # compute time per seed, summed over resumed runs
        spent[str(seed)] = spent.get(str(seed), 0.0) + timings[seed]
        envs = meta.setdefault("environments", {}).setdefault(str(seed), [])
        if (env := run_environment(model)) not in envs:
            envs.append(env)
        write_json_atomic(out / "run.json", meta)
        if on_seed is not None:
            on_seed(seed, timings[seed])
    cells_df = load_cells(out)
    summary = summarize(cells_df)
    atomic_write_with(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    return cells_df

