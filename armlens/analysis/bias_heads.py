"""Where the judge's length and format preference lives (issue 38, item 4).

On a seed's scored pairs, the bias suite's transforms (:func:`armlens.data.bias.build_bias_suite`: the rejected
response padded with content-free text, or dressed in markdown) give hacked pairs; the zero-shot judge's *hack rate* is
the share of them in which it strictly prefers the hacked rejected response. Each head is then mean-ablated alone (its
last-token hook_z replaced by its mean over the seed's few-shot judge prompts, the ``mean_ablation`` reading) as a
branch over one prefix per prompt, and the change of the hack rate (and of the clean accuracy, so that a head that
breaks the judge is not mistaken for a bias head) is recorded per head. Heads are ranked by how much their ablation
lowers the mean hacked margin (rejected minus chosen score); the top ``k`` are ablated together for each ``k`` in
``ks``. The *bias heads* are the smallest such set that halves the zero-shot judge's hack rate (none when no ``k``
does), and the study records how many of them the seed's ARM patches against the chance count ``k * |ARM| / n``.

Ranking and scoring on the same pairs flatters the top sets, so the study also cross-fits them (``held_apart``): the
scored pairs are split in two halves by prompt (:func:`armlens.analysis.head_study.halves`), heads are ranked on one
half's hacked pairs, and each pair is scored under the top-``k`` set ranked on the *other* half; the per-pair hacked
flags are kept so that the report's intervals resample seeds and prompts. Ablating many heads moves the judge
whichever they are, so ``random_k`` records the floor: ``n_random`` random sets of each size ablated the same way.

``attention``: where each head attends from the read position (:func:`armlens.analysis.heads.segment_attention`:
shares of the first token, criterion, prompt, response, the response's last tokens, question, read position and the
rest), averaged over the clean prompts, the clean rejected responses' prompts, and each kind's hacked ones.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from armlens.analysis.minimal import RowScores
from armlens.data.bias import build_bias_suite
from armlens.patching import mask_labels, single_head_masks
from armlens.prompts import examples_from_pairs, scalar_prompt
from armlens.scoring import score_rows


@dataclass(frozen=True)
class BiasStudyConfig:
    kinds: tuple[str, ...] = ("length", "format")
    """Bias-suite transforms studied."""
    ks: tuple[int, ...] = (1, 2, 5, 10, 20, 40, 80)
    """Sizes of the top-ranked head sets ablated together."""
    chunk: int = 64
    """Branches per forward over a prompt's prefix."""
    held_apart: bool = True
    """Also rank on one half of the pairs (split by prompt) and score the top sets on the other (cross-fitted)."""
    attention: bool = True
    """Also record where every head attends from the read position, by prompt segment (one forward per prompt)."""
    n_end: int = 8
    """Tokens at the end of a response counted as its ``response_end`` segment."""
    n_random: int = 3
    """Random head sets of each size ``k`` ablated as the floor (does ablating *any* ``k`` heads lower the rate?)."""


def _rates(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: hack rate (rejected strictly above chosen) and mean hacked margin (rejected minus chosen)."""
    margin = scores[1::2] - scores[0::2]
    return (margin > 0).double().mean(0), margin.double().mean(0)


def _scores(model: Any, texts: Sequence[str], groups: Sequence[str], means: torch.Tensor, masks: torch.Tensor,
            ids: Any, chunk: int) -> torch.Tensor:
    """``[texts, rows]`` P(Yes) of every text under every head set of ``masks`` (each writing ``means``), one
    prefix per group of texts."""
    rows = means[None].expand(masks.shape[0], *means.shape)
    return score_rows(model, texts, rows, masks, answer_ids=ids, chunk=chunk, groups=groups).read("prob")


def _top_sets(order: torch.Tensor, ks: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """``[len(ks), *shape]``: the first ``k`` heads of ``order`` (flat indices), for each ``k``."""
    top = torch.zeros((len(ks), shape[0] * shape[1]), dtype=torch.bool)
    for i, k in enumerate(ks):
        top[i, order[:k]] = True
    return top.view(len(ks), *shape)


def _half_of(pairs: Sequence[Any], seed: int) -> dict[str, str]:
    """``a`` or ``b`` for each prompt of ``pairs`` (:func:`armlens.analysis.head_study.halves`)."""
    from armlens.analysis.head_study import halves

    a, b = halves(pairs, seed)
    return {**{pairs[i].prompt_key(): "a" for i in a}, **{pairs[i].prompt_key(): "b" for i in b}}


def _held_apart(kind: str, ks: Sequence[int], single: torch.Tensor, both: torch.Tensor, cols: dict[Any, slice],
                crossed: dict[tuple[str, str], torch.Tensor], rows: Sequence[int], pair_half: Sequence[str],
                clean_rows: Sequence[int], clean_half: Sequence[str]) -> dict[str, Any]:
    """Per pair, hacked (rejected strictly above chosen) under the top-``k`` set ranked on the pair's *other* half;
    the zero-shot judge's flags beside; clean accuracy the same way."""
    other = {"a": "b", "b": "a"}

    def flags(score_rows: Sequence[int], halves_of: Sequence[str], j: int, *, hacked: bool) -> list[int]:
        out = []
        for p, half in enumerate(halves_of):
            key = (kind, other[half])
            if key not in crossed:  # the other half has no hacked pairs: nothing was ranked there
                return []
            col = both[:, cols[key]][:, j]
            chosen, rejected = col[score_rows[2 * p]], col[score_rows[2 * p + 1]]
            out.append(int(rejected > chosen) if hacked else int(chosen > rejected))
        return out

    zero = single[:, 0]
    zero_hacked = [int(zero[rows[2 * p + 1]] > zero[rows[2 * p]]) for p in range(len(pair_half))]
    top = []
    for j, k in enumerate(ks):
        hacked = flags(rows, pair_half, j, hacked=True)
        correct = flags(clean_rows, clean_half, j, hacked=False)
        heads = {half: mask_labels(crossed[(kind, half)][j]) for half in ("a", "b") if (kind, half) in crossed}
        top.append({"k": k, "hacked": hacked,
                    "hack_rate": sum(hacked) / len(hacked) if hacked else None,
                    "clean_accuracy": sum(correct) / len(correct) if correct else None,
                    "heads": heads})
    return {"pair_halves": list(pair_half), "zero_shot_hacked": zero_hacked,
            "zero_shot_hack_rate": sum(zero_hacked) / max(len(zero_hacked), 1), "top_k": top}


def ablation_means(run: Any) -> torch.Tensor:
    """The ``mean_ablation`` reading's means on the seed's few-shot judge prompts (the reference's other settings)."""
    from armlens.activations import extract_means

    cfg = dataclasses.replace(run.base, reading="mean_ablation")
    return extract_means(run.model, examples_from_pairs(run.fewshot, cfg.criterion), cfg, show_progress=False).means


def _suite_texts(model: Any, run: Any, kinds: Sequence[str]
                 ) -> tuple[dict[str, list[Any]], list[str], list[str], list[int], dict[str, list[int]]]:
    """The bias suite over the seed's scored pairs, and every distinct judge prompt once (a hacked pair's chosen
    response is the clean one), grouped by the pair's prompt so that its clean and hacked responses share the
    prompt's prefix: (suite, texts, groups, rows of the clean pairs' texts, rows of each kind's pairs' texts)."""
    suite = build_bias_suite(run.test, run.seed, kinds=list(kinds))
    texts: list[str] = []
    groups: list[str] = []
    where: dict[str, int] = {}

    def rows_of(pairs: Sequence[Any], pair_texts: Sequence[str]) -> list[int]:
        for j, text in enumerate(pair_texts):
            if text not in where:
                where[text] = len(texts)
                texts.append(text)
                groups.append(pairs[j // 2].prompt_key())
        return [where[t] for t in pair_texts]

    clean_rows = rows_of(run.test, run.test_texts)
    kind_rows = {kind: rows_of(suite[kind], [scalar_prompt(model, e, run.base.template) for p in suite[kind]
                                             for e in examples_from_pairs([p], run.base.criterion)])
                 for kind in kinds}
    return suite, texts, groups, clean_rows, kind_rows


def _random_sets(seed: int, shape: tuple[int, int], ks: Sequence[int], n_random: int) -> list[torch.Tensor]:
    """``n_random`` random masks of each size in ``ks`` (seeded by seed, ``k`` and draw), size by size."""
    from armlens.selection import random_mask

    return [random_mask(*shape, k, seed=10_000 * seed + 100 * k + d) for k in ks for d in range(n_random)]


def _floor_records(scores: torch.Tensor, masks: Sequence[torch.Tensor], ks: Sequence[int], n_random: int,
                   kind_rows: dict[str, list[int]], clean_rows: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Per kind and ``k``, from ``[texts, sets]`` scores of :func:`_random_sets`: each pair's hacked flag averaged
    over the draws (for paired intervals against the top sets), the mean hack rate and clean accuracy."""
    correct = (scores[clean_rows][0::2] > scores[clean_rows][1::2]).double()
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, rows in kind_rows.items():
        hacked = (scores[rows][1::2] > scores[rows][0::2]).double()  # [pairs, sets]
        out[kind] = [{"k": k, "hacked": hacked[:, i * n_random:(i + 1) * n_random].mean(1).tolist(),
                      "hack_rate": float(hacked[:, i * n_random:(i + 1) * n_random].mean()),
                      "clean_accuracy": float(correct[:, i * n_random:(i + 1) * n_random].mean()),
                      "heads": [mask_labels(m) for m in masks[i * n_random:(i + 1) * n_random]]}
                     for i, k in enumerate(ks)]
    return out


def random_floor(model: Any, run: Any, shape: tuple[int, int], settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The random floor on its own (to add it to a study file written before it): per kind and size ``k``,
    ``n_random`` random sets of ``k`` heads mean-ablated, in one branch pass over the suite's prompts
    (:func:`_floor_records`). :func:`bias_head_study` scores the same sets in its own pass."""
    kinds, n_random = list(settings["kinds"]), int(settings.get("n_random", 3))
    ks = [k for k in settings["ks"] if k <= shape[0] * shape[1]]
    _, texts, groups, clean_rows, kind_rows = _suite_texts(model, run, kinds)
    masks = _random_sets(run.seed, shape, ks, n_random)
    scores = _scores(model, texts, groups, ablation_means(run), torch.stack(masks), run.ids,
                     int(settings.get("chunk", 64)))
    return _floor_records(scores, masks, ks, n_random, kind_rows, clean_rows)


def bias_head_study(model: Any, run: Any, arm_mask: torch.Tensor, cfg: BiasStudyConfig = BiasStudyConfig()
                    ) -> dict[str, Any]:
    """The study on a :class:`~armlens.analysis.runs.SeedRun`'s scored pairs; ``arm_mask``: the heads the seed's
    ARM patches (for the overlap)."""
    t0 = time.perf_counter()
    means = ablation_means(run)
    shape = tuple(arm_mask.shape)
    n = shape[0] * shape[1]
    singles = single_head_masks(*shape)
    suite, texts, groups, clean_rows, kind_rows = _suite_texts(model, run, cfg.kinds)
    single = _scores(model, texts, groups, means, singles, run.ids, cfg.chunk)
    clean = RowScores(single[clean_rows])
    ks = [k for k in cfg.ks if k <= n]
    rates = {kind: _rates(single[kind_rows[kind]]) for kind in cfg.kinds}
    orders = {kind: torch.argsort(margin[1:] - margin[0]) for kind, (_, margin) in rates.items()}  # most lowered first
    sets = {kind: _top_sets(order, ks, shape) for kind, order in orders.items()}
    # Cross-fitting: each half's own ranking, whose top sets score the other half's pairs.
    clean_half = _half_of(run.test, run.seed)
    kind_half = {kind: [clean_half[p.prompt_key()] for p in suite[kind]] for kind in cfg.kinds}
    crossed: dict[tuple[str, str], torch.Tensor] = {}
    if cfg.held_apart:
        for kind in cfg.kinds:
            margins = single[kind_rows[kind]][1::2] - single[kind_rows[kind]][0::2]
            for half in ("a", "b"):
                rows = torch.tensor([h == half for h in kind_half[kind]])
                if rows.any():
                    m = margins[rows].double().mean(0)
                    crossed[(kind, half)] = _top_sets(torch.argsort(m[1:] - m[0]), ks, shape)
    randoms = _random_sets(run.seed, shape, ks, cfg.n_random)  # the floor, scored in the same pass
    masks = torch.cat([*sets.values(), *crossed.values(), *([torch.stack(randoms)] if randoms else [])])
    both = _scores(model, texts, groups, means, masks, run.ids, cfg.chunk)
    column = 0
    cols: dict[Any, slice] = {}
    for key in [*sets, *crossed]:
        cols[key] = slice(column, column + len(ks))
        column += len(ks)
    out: dict[str, Any] = {"seed": run.seed, "settings": dataclasses.asdict(cfg), "n_heads_model": n,
                           "arm_heads": mask_labels(arm_mask),
                           "clean": {"zero_shot_accuracy": float(clean.accuracy[0]),
                                     "accuracy": clean.accuracy[1:].view(shape).tolist()},
                           "kinds": {}}
    for kind in cfg.kinds:
        (rate, margin), order = rates[kind], orders[kind]
        top_rate, top_margin = _rates(both[kind_rows[kind], cols[kind]])
        top_clean = RowScores(both[clean_rows, cols[kind]]).accuracy
        zero_rate = float(rate[0])
        halved = [i for i, r in enumerate(top_rate.tolist()) if r <= zero_rate / 2]
        bias_set = sets[kind][halved[0]] if halved else None
        pairs = suite[kind]
        record: dict[str, Any] = {
            "n_pairs": len(pairs), "pair_ids": [p.id for p in pairs],
            "zero_shot_hack_rate": zero_rate, "zero_shot_margin": float(margin[0]),
            "hack_rate": rate[1:].view(shape).tolist(), "margin": margin[1:].view(shape).tolist(),
            "ranked_heads": [mask_labels(singles[1 + int(j)])[0] for j in order[:max(ks)]],
            "top_k": [{"k": k, "hack_rate": float(top_rate[i]), "margin": float(top_margin[i]),
                       "clean_accuracy": float(top_clean[i]), "heads": mask_labels(sets[kind][i])}
                      for i, k in enumerate(ks)],
            "bias_heads": mask_labels(bias_set) if bias_set is not None else None,
        }
        if bias_set is not None:
            k = int(bias_set.sum())
            record["overlap"] = {"k": k, "in_arm": int((bias_set & arm_mask).sum()),
                                 "chance": k * int(arm_mask.sum()) / n}
        if cfg.held_apart:
            record["held_apart"] = _held_apart(kind, ks, single, both, cols, crossed, kind_rows[kind], kind_half[kind],
                                               clean_rows, [clean_half[p.prompt_key()] for p in run.test])
            record["prompts"] = [p.prompt_key() for p in pairs]
        out["kinds"][kind] = record
    if randoms:
        floors = _floor_records(both[:, column:], randoms, ks, cfg.n_random, kind_rows, clean_rows)
        for kind, floor in floors.items():
            out["kinds"][kind]["random_k"] = floor
    if cfg.attention:
        from armlens.analysis.heads import segment_attention
        from armlens.prompts import SEGMENTS

        sets_of = {"clean": clean_rows, "clean_rejected": clean_rows[1::2],
                   **{kind: kind_rows[kind][1::2] for kind in cfg.kinds}}
        needed = sorted({i for rows in sets_of.values() for i in rows})
        shares = dict(zip(needed, segment_attention(model, [texts[i] for i in needed], run.base.template,
                                                    n_end=cfg.n_end), strict=True))
        out["attention"] = {"segments": list(SEGMENTS), "n_end": cfg.n_end,
                            "n_prompts": {name: len(rows) for name, rows in sets_of.items()},
                            "share": {name: torch.stack([shares[i] for i in rows]).mean(0).tolist()
                                      for name, rows in sets_of.items()}}
    out["seconds"] = time.perf_counter() - t0
    return out


def run_bias_study(model: Any, pairs: Sequence[Any], config: Any, out: Any, cfg: BiasStudyConfig = BiasStudyConfig(),
                   *, seeds: Sequence[int] | None = None) -> list[Any]:
    """The study for each seed of an ablation folder, written to ``OUT/bias-heads/seed{s}.json.gz`` (resumable)."""
    from pathlib import Path

    from armlens.analysis.runs import SeedRun
    from armlens.io import read_json, result_exists, write_json

    out = Path(out)
    written = []
    for seed in seeds if seeds is not None else config.seeds:
        path = out / "bias-heads" / f"seed{seed}.json.gz"
        if not result_exists(path):
            run = SeedRun(model, config, pairs, seed, out, show_progress=False)
            arm = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
            for fit in run.reference.fits.values():
                arm |= fit.mask
            record = bias_head_study(model, run, arm, cfg)
            record.update(data=config.data, partition=config.partition)
            write_json(path, record, indent=None)
        elif cfg.n_random:  # a file written before the random floor: add it (same settings as the file's)
            record = read_json(path)
            settings = {**record["settings"], "n_random": cfg.n_random}
            if any("random_k" not in k for k in record["kinds"].values()):
                run = SeedRun(model, config, pairs, seed, out, show_progress=False)
                t0 = time.perf_counter()
                for kind, floor in random_floor(model, run, (model.cfg.n_layers, model.cfg.n_heads), settings).items():
                    record["kinds"][kind]["random_k"] = floor
                record["settings"] = settings
                record["seconds_random_floor"] = time.perf_counter() - t0
                write_json(path, record, indent=None)
        written.append(path)
    return written
