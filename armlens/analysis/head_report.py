"""Tables of a head study (:mod:`armlens.analysis.head_study`) across seeds: how many heads keep the ARM's accuracy,
how stable the minimal sets are, which heads move the answer.

Intervals are the crossed ones of :func:`armlens.stats.crossed_interval` (seeds and the distinct prompts of the
reporting halves resampled jointly); differences are paired per pair and seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from armlens.analysis.heads import expected_random_jaccard, mean_pairwise_jaccard
from armlens.patching import parse_heads
from armlens.stats import crossed_interval

ROWS = ("full", "minimal", "random", "zero-shot")
"""Head sets reported on the reporting half (``random``: the mean of the random sets of the minimal set's size)."""
COMPARISONS = (("minimal", "full"), ("minimal", "random"), ("minimal", "zero-shot"), ("full", "zero-shot"))


def _per_seed(records: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(int(r["seed"]), []).append(r)
    return dict(sorted(out.items()))


def _row_correct(rec: dict[str, Any], row: str) -> np.ndarray:
    half = rec["report_half"]["correct"]
    if row == "random":
        names = [k for k in half if k.startswith("random")]
        if not names:  # a minimal set of no heads: its random sets are the zero-shot judge
            return np.asarray(half["zero-shot"], dtype=float)
        return np.mean([half[k] for k in names], axis=0)
    return np.asarray(half[row], dtype=float)


def accuracy_table(records: Sequence[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Accuracy on the reporting halves of each head set, and the paired differences, with crossed intervals."""
    seeds = _per_seed(records)
    clusters = [np.concatenate([r["report_half"]["prompts"] for r in recs]) for recs in seeds.values()]
    rows = []
    for name in ROWS:
        groups = [np.concatenate([_row_correct(r, name) for r in recs]) for recs in seeds.values()]
        ci = crossed_interval(groups, clusters, n_boot, seed)
        rows.append({"set": name, "accuracy": ci.diff, "low": ci.low, "high": ci.high, "p_value": float("nan"),
                     "n_pairs": int(sum(len(g) for g in groups)), "n_seeds": len(groups)})
    for a, b in COMPARISONS:
        groups = [np.concatenate([_row_correct(r, a) - _row_correct(r, b) for r in recs]) for recs in seeds.values()]
        ci = crossed_interval(groups, clusters, n_boot, seed)
        rows.append({"set": f"{a} - {b}", "accuracy": ci.diff, "low": ci.low, "high": ci.high, "p_value": ci.p_value,
                     "n_pairs": int(sum(len(g) for g in groups)), "n_seeds": len(groups)})
    return pd.DataFrame(rows)


def _masks(heads: Sequence[str], shape: tuple[int, int]) -> torch.Tensor:
    return parse_heads(list(heads), *shape) if heads else torch.zeros(shape, dtype=torch.bool)


def _layer_jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    la, lb = set(a.any(1).nonzero().flatten().tolist()), set(b.any(1).nonzero().flatten().tolist())
    return 1.0 if not la | lb else len(la & lb) / len(la | lb)


def stability_table(records: Sequence[dict[str, Any]], shape: tuple[int, int], *, n_random: int = 200,
                    seed: int = 0) -> pd.DataFrame:
    """Per criterion: minimal and full set sizes over seeds, and how much two seeds' sets agree (mean Jaccard over
    seed pairs, heads and layers) against random sets of the same sizes (the chance level)."""
    n = shape[0] * shape[1]
    rng = random.Random(seed)
    by_criterion: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_criterion.setdefault(r["criterion"], []).append(r)
    rows = []
    for criterion, recs in sorted(by_criterion.items()):
        recs = sorted(recs, key=lambda r: r["seed"])
        row: dict[str, Any] = {"criterion": criterion, "n_seeds": len(recs)}
        for kind, key in (("minimal", lambda r: r["minimal"]["heads"]), ("full", lambda r: r["full_heads"])):
            masks = [_masks(key(r), shape) for r in recs]
            sizes = [int(m.sum()) for m in masks]
            row[f"{kind}_heads_mean"] = float(np.mean(sizes))
            row[f"{kind}_heads_min"], row[f"{kind}_heads_max"] = min(sizes), max(sizes)
            duos = list(itertools.combinations(range(len(masks)), 2))
            if not duos:
                continue
            row[f"{kind}_jaccard"] = mean_pairwise_jaccard(torch.stack(masks))
            row[f"{kind}_jaccard_random"] = float(np.mean([expected_random_jaccard(sizes[i], sizes[j], n)
                                                           for i, j in duos]))
            row[f"{kind}_layer_jaccard"] = float(np.mean([_layer_jaccard(masks[i], masks[j]) for i, j in duos]))
            chance = []
            for i, j in duos:
                for _ in range(n_random):
                    a, b = (torch.zeros(n, dtype=torch.bool) for _ in range(2))
                    a[rng.sample(range(n), sizes[i])] = True
                    b[rng.sample(range(n), sizes[j])] = True
                    chance.append(_layer_jaccard(a.view(shape), b.view(shape)))
            row[f"{kind}_layer_jaccard_random"] = float(np.mean(chance))
        rows.append(row)
    return pd.DataFrame(rows)


def top_heads_table(records: Sequence[dict[str, Any]], *, k: int = 10) -> pd.DataFrame:
    """The heads that move the answer most, averaged over seeds: by direct separation of chosen from rejected
    (``attribution``), and by accuracy gained alone on the zero-shot judge (``single``). A head not in a seed's fitted
    set has no attribution there (0)."""
    sep = np.mean([np.asarray(r["attribution"]["separation"]) for r in records], axis=0)
    eff = np.mean([np.asarray(r["attribution"]["effect"]) for r in records], axis=0)
    rows = []
    order = np.argsort(-np.abs(sep), axis=None)[:k]
    for flat in order:
        layer, head = np.unravel_index(flat, sep.shape)
        rows.append({"rank_by": "separation", "head": f"L{layer}H{head}", "separation": float(sep[layer, head]),
                     "effect": float(eff[layer, head])})
    with_singles = [r for r in records if "singles" in r]
    if with_singles:
        gain = np.mean([np.asarray(r["singles"]["accuracy"]) - r["singles"]["zero_shot_accuracy"]
                        for r in with_singles], axis=0)
        for flat in np.argsort(-gain, axis=None)[:k]:
            layer, head = np.unravel_index(flat, gain.shape)
            rows.append({"rank_by": "single", "head": f"L{layer}H{head}", "accuracy_gain": float(gain[layer, head])})
    return pd.DataFrame(rows)


def direct_share(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean over seeds and criteria of the patch's change of the Yes-No logit, its direct part, and the same for the
    chosen-minus-rejected separation."""
    keys = ("change", "direct", "indirect", "change_separation", "direct_separation")
    return {k: float(np.mean([r["attribution"][k] for r in records])) for k in keys}


# ------------------------------------------------------------------------------------------- where the bias lives


def bias_held_apart_table(records: Sequence[dict[str, Any]], kind: str, *, n_boot: int = 2000, seed: int = 0
                          ) -> pd.DataFrame:
    """The zero-shot judge's hack rate, and the rate with the top-``k`` bias heads (ranked on the *other* half of
    the pairs) mean-ablated, per ``k``, pooled over seeds: crossed intervals (seeds and prompts), and the paired
    reduction; where the study has it, the floor of ``k`` random heads ablated and the top set's reduction beyond it
    (``reduction beyond random``: random minus top hack rate, per pair). Records without a cross-fitted part
    (studies written before it) are left out."""
    recs = [r for r in records if "held_apart" in r["kinds"].get(kind, {})]
    if not recs:
        return pd.DataFrame()
    held = [r["kinds"][kind]["held_apart"] for r in recs]
    clusters = [np.asarray(r["kinds"][kind]["prompts"]) for r in recs]
    zero = [np.asarray(h["zero_shot_hacked"], dtype=float) for h in held]
    n_pairs = int(sum(len(z) for z in zero))

    def row(name: str, k: int, groups: Sequence[np.ndarray], **extra: Any) -> dict[str, Any]:
        ci = crossed_interval(groups, clusters, n_boot, seed)
        return {"set": name, "k": k, "value": ci.diff, "low": ci.low, "high": ci.high,
                "p_value": ci.p_value if name.startswith("reduction") else float("nan"),
                "n_pairs": n_pairs, "n_seeds": len(recs), **extra}

    rows = [row("zero-shot hack rate", 0, zero)]  # no head ablated
    for j, top in enumerate(held[0]["top_k"]):
        k = int(top["k"])
        hacked = [np.asarray(h["top_k"][j]["hacked"], dtype=float) for h in held]
        if any(len(x) != len(z) for x, z in zip(hacked, zero, strict=True)):
            continue  # a half without hacked pairs ranked nothing
        clean = [h["top_k"][j]["clean_accuracy"] for h in held]
        overlap = [len(set(h["top_k"][j]["heads"].get("a", [])) & set(h["top_k"][j]["heads"].get("b", [])))
                   for h in held]
        rows.append(row("hack rate, top-k ablated", k, hacked,
                        clean_accuracy=float(np.mean([c for c in clean if c is not None])),
                        halves_agree=float(np.mean(overlap)) / k if k else float("nan")))
        rows.append(row("reduction", k, [z - x for z, x in zip(zero, hacked, strict=True)]))
        floors = [next((f for f in r["kinds"][kind].get("random_k", []) if int(f["k"]) == k), None) for r in recs]
        if all(f is not None for f in floors):  # the floor: k random heads ablated (mean over draws per pair)
            rand = [np.asarray(f["hacked"], dtype=float) for f in floors]  # type: ignore[index]
            rows.append(row("hack rate, random k ablated", k, rand,
                            clean_accuracy=float(np.mean([f["clean_accuracy"] for f in floors]))))  # type: ignore[index]
            rows.append(row("reduction beyond random", k, [a - x for a, x in zip(rand, hacked, strict=True)]))
    return pd.DataFrame(rows)


def bias_overlap_table(records: Sequence[dict[str, Any]], k: int = 20) -> pd.DataFrame:
    """Per kind, summed over seeds: how many of the top-``k`` in-sample bias heads the seed's ARM patches, against
    the chance count ``k * |ARM| / n`` (and the share of them in the ARM against the ARM's share of all heads); and
    whether the seeds (other few-shot draws, other means, other pairs' halves) rank the same heads: the mean Jaccard
    index of every two seeds' top-``k`` lists (``seed_jaccard``, NaN with one seed) beside two random sets'."""
    rows = []
    kinds = sorted({kind for r in records for kind in r["kinds"]})
    for kind in kinds:
        in_arm = chance = 0.0
        n_seeds = 0
        tops: list[set[str]] = []
        for r in records:
            rec = r["kinds"].get(kind)
            if rec is None:
                continue
            top = next((t for t in rec["top_k"] if int(t["k"]) == k), None)
            if top is None:
                continue
            arm = set(r["arm_heads"])
            in_arm += len(set(top["heads"]) & arm)
            chance += k * len(arm) / r["n_heads_model"]
            n_seeds += 1
            tops.append(set(top["heads"]))
        if n_seeds:
            # the records keep no model shape and Jaccard needs none: the listed heads as a one-layer mask
            universe = sorted(set().union(*tops))
            seed_j = mean_pairwise_jaccard(torch.tensor([[[h in t for h in universe]] for t in tops]))
            rows.append({"kind": kind, "k": k, "n_seeds": n_seeds, "in_arm": int(in_arm), "chance": chance,
                         "ratio": in_arm / chance if chance else float("nan"), "seed_jaccard": seed_j,
                         "seed_jaccard_random": expected_random_jaccard(k, k, int(records[0]["n_heads_model"]))})
    return pd.DataFrame(rows)


def bias_attention_table(records: Sequence[dict[str, Any]], k: int = 20) -> pd.DataFrame:
    """Where heads attend from the read position, by prompt segment (mean share, averaged over seeds): the top-``k``
    in-sample bias heads of each kind, the ARM's heads and all heads, on the clean prompts, the clean rejected
    responses' prompts and the hacked ones."""
    recs = [r for r in records if "attention" in r]
    if not recs:
        return pd.DataFrame()
    segments = recs[0]["attention"]["segments"]
    rows = []
    kinds = sorted({kind for r in recs for kind in r["kinds"]})

    def mean_over(r: dict[str, Any], prompts: str, heads: Sequence[str] | None) -> np.ndarray | None:
        """Mean share by segment over ``heads`` (None: every head) on the record's ``prompts``."""
        share = r["attention"]["share"].get(prompts)
        if share is None or (heads is not None and not heads):
            return None
        a = np.asarray(share)  # [layers, heads, segments]
        mask = np.ones(a.shape[:2], dtype=bool) if heads is None else _masks(heads, a.shape[:2]).numpy()
        return a[mask].mean(0)

    for kind in kinds:
        for heads_name in (f"{kind} bias heads (top {k})", "ARM heads", "all heads"):
            for prompts in ("clean_rejected", kind):
                vals = []
                for r in recs:
                    if heads_name == "ARM heads":
                        heads = r["arm_heads"]
                    elif heads_name == "all heads":
                        heads = None
                    else:
                        top = next((t for t in r["kinds"][kind]["top_k"] if int(t["k"]) == k), None)
                        heads = top["heads"] if top else []
                    v = mean_over(r, prompts, heads)
                    if v is not None:
                        vals.append(v)
                if vals:
                    rows.append({"kind": kind, "heads": heads_name,
                                 "prompts": "hacked" if prompts == kind else "clean rejected",
                                 **dict(zip(segments, np.mean(vals, axis=0).tolist(), strict=True)),
                                 "n_seeds": len(vals)})
    return pd.DataFrame(rows)
