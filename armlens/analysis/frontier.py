"""The accuracy-sparsity frontier (issue 38, item 1): accuracy against the number of patched heads, from an ablation
folder's cells.

Series: the REINFORCE policy's top-k by P(select) and top-k by single-head attribution (``heads`` axis), random sets of
each size (``heads`` axis, the floor), REINFORCE with a penalty per selected head (``sparsity`` axis: its head count is
the policy's own, averaged over seeds and criteria), soft head weights (``soft`` axis, :mod:`armlens.soft`: one fit per
L1 strength, drawn twice, against the L1 budget spent, ``sum(w)``, as ``soft``, and against the heads with ``w > 0.5``,
as ``soft_half``), the full sampled set (``selection`` / reinforce) and the zero-shot judge (no heads). Each point's interval is crossed over seeds and the distinct scored prompts
(:func:`armlens.stats.crossed_distribution`); the pooled rows average the datasets' distributions draw by draw.
Each point also carries its paired difference from the full sampled set (``reinforce``) of the same seeds, scored on
the same pairs (``vs_arm``, crossed the same way): the question the frontier asks is how few heads keep the ARM's
accuracy, and unpaired intervals that overlap cannot answer it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from armlens.analysis.results import load_cells
from armlens.io import read_json, result_exists
from armlens.stats import counted, crossed_distribution, interval_of

POOLED = "all"
FRONTIER_COLUMNS = ["data", "series", "setting", "n_heads", "accuracy", "low", "high", "vs_arm", "vs_arm_low",
                    "vs_arm_high", "n_pairs", "n_seeds"]
REFERENCE = ("reinforce", "reinforce")
"""The (series, setting) every point is compared with, paired: the full sampled set."""


SOFT_COUNTS = {"soft": "weight_sum", "soft_half": "heads_over_half"}
"""The soft axis's two series and the cell field each counts heads by (:func:`armlens.soft.effective_heads`)."""


def _series(rec: dict[str, Any]) -> list[tuple[str, float]]:
    """The frontier series a cell belongs to, each with the cell's head count on it (none: not on the frontier)."""
    if rec.get("reading", "prob") != "prob":
        return []
    n = float(rec["n_heads"])
    if rec["axis"] == "heads":
        return [(str(rec["series"]), n)]
    if rec["axis"] == "sparsity":
        return [("penalised", n)]
    if rec["axis"] == "soft":
        return [(name, float(rec.get(key, n))) for name, key in SOFT_COUNTS.items()]
    if rec["axis"] == "selection" and rec["setting"] in ("reinforce", "none"):
        return [("reinforce" if rec["setting"] == "reinforce" else "zero-shot", n)]
    return []


def _points(folder: Path, n_boot: int, seed: int) -> list[dict[str, Any]]:
    cells = load_cells(folder, with_scores=True)
    data = read_json(folder / "run.json")["config"]["data"]
    prompts: dict[int, list[str] | None] = {}
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for rec in cells.to_dict("records"):
        for series, n_heads in _series(rec):
            groups.setdefault((series, str(rec["setting"])), {})[int(rec["seed"])] = {**rec, "n_heads": n_heads}
    rows = []
    ref = groups.get(REFERENCE, {})
    for (series, setting), by_seed in groups.items():
        seeds = sorted(by_seed)
        acc = [np.asarray(by_seed[s]["correct"], dtype=float) for s in seeds]
        labels = []
        for s, a in zip(seeds, acc, strict=True):
            if s not in prompts:
                path = folder / "seeds" / f"seed{s}" / "split.json"
                split = read_json(path) if result_exists(path) else {}
                prompts[s] = split.get("test_used_prompts")
            p = prompts[s]
            labels.append(p if p is not None and len(p) == a.size else [f"seed{s}/{i}" for i in range(a.size)])
        base = [np.asarray(ref[s]["correct"], dtype=float) if s in ref else None for s in seeds]
        paired = all(b is not None and b.size == a.size and ref[s].get("test_sha256") == by_seed[s].get("test_sha256")
                     for s, a, b in zip(seeds, acc, base, strict=True))
        diff = [a - b for a, b in zip(acc, base, strict=True)] if paired else None
        rows.append({"data": data, "series": series, "setting": setting,
                     "n_heads": float(np.mean([by_seed[s]["n_heads"] for s in seeds])),
                     "estimate": float(np.mean([a.mean() for a in acc])),
                     "dist": crossed_distribution(acc, labels, n_boot, seed),
                     "diff": float(np.mean([d.mean() for d in diff])) if diff else None,
                     "diff_dist": crossed_distribution(diff, labels, n_boot, seed) if diff else None,
                     "n_pairs": int(sum(a.size for a in acc)), "n_seeds": len(seeds)})
    return rows


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    ci = interval_of(row.pop("dist"), row["estimate"])
    diff, dist = row.pop("diff"), row.pop("diff_dist")
    d = interval_of(dist, diff) if dist is not None else None
    return {**row, "accuracy": row.pop("estimate"), "low": ci.low, "high": ci.high,
            "vs_arm": diff, "vs_arm_low": d.low if d else None, "vs_arm_high": d.high if d else None}


def frontier_table(folders: Sequence[str | Path], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, series, setting) and pooled rows over the datasets that have the point (equal weight),
    sorted by series and head count."""
    per: list[dict[str, Any]] = []
    for i, f in enumerate(folders):
        per += _points(Path(f), n_boot, seed + i)
    if not per:
        return pd.DataFrame(columns=FRONTIER_COLUMNS)
    pooled = []
    datasets = {r["data"] for r in per}
    for key in dict.fromkeys((r["series"], r["setting"]) for r in per):
        group = [r for r in per if (r["series"], r["setting"]) == key]
        if len(datasets) < 2 or {r["data"] for r in group} != datasets:
            continue
        pooled.append({"data": POOLED, "series": key[0], "setting": key[1],
                       "n_heads": float(np.mean([r["n_heads"] for r in group])),
                       "estimate": float(np.mean([r["estimate"] for r in group])),
                       "dist": np.mean([r["dist"] for r in group], axis=0),
                       **({"diff": float(np.mean([r["diff"] for r in group])),
                           "diff_dist": np.mean([r["diff_dist"] for r in group], axis=0)}
                          if all(r["diff_dist"] is not None for r in group) else {"diff": None, "diff_dist": None}),
                       "n_pairs": sum(r["n_pairs"] for r in group), "n_seeds": min(r["n_seeds"] for r in group)})
    df = pd.DataFrame([_finish(r) for r in per + pooled])[FRONTIER_COLUMNS]
    return df.sort_values(["data", "series", "n_heads"], kind="stable").reset_index(drop=True)


STABILITY_COLUMNS = ["data", "series", "setting", "n_heads", "jaccard", "jaccard_random", "n_seeds"]
STABLE_SERIES = ("reinforce", "penalised", "topk_prob", "topk_attribution")
"""The frontier's binary head sets whose agreement across seeds says something (random sets agree by chance by
construction; soft weights touch most heads a little, so their cells' head lists are not the sets that matter)."""


def frontier_stability(folders: Sequence[str | Path]) -> pd.DataFrame:
    """Per dataset and frontier set: the mean Jaccard index of the head sets of every two seeds, beside that of two
    uniform random sets of those sizes (:func:`armlens.analysis.heads.expected_random_jaccard`). A point that keeps the
    ARM's accuracy with heads that change from seed to seed as random sets would is a head count, not a head set.
    Where a dataset has several criteria, a cell's head set is the union of its criteria's."""
    import torch

    from armlens.analysis.heads import expected_random_jaccard, mean_pairwise_jaccard
    from armlens.patching import parse_heads

    rows = []
    for folder in map(Path, folders):
        run = read_json(folder / "run.json")
        model = run.get("model", {})
        shape = (int(model.get("n_layers", 30)), int(model.get("n_heads", 9)))
        groups: dict[tuple[str, str], list[torch.Tensor]] = {}
        for rec in load_cells(folder).to_dict("records"):
            for series, _ in _series(rec):
                if series in STABLE_SERIES:
                    mask = parse_heads(list(map(str, rec["heads"])), *shape)  # none: the empty mask
                    groups.setdefault((series, str(rec["setting"])), []).append(mask)
        for (series, setting), masks in groups.items():
            if len(masks) < 2:
                continue
            sizes = [int(m.sum()) for m in masks]
            rows.append({"data": run["config"]["data"], "series": series, "setting": setting,
                         "n_heads": float(np.mean(sizes)), "jaccard": mean_pairwise_jaccard(torch.stack(masks)),
                         "jaccard_random": float(np.mean([expected_random_jaccard(a, b, shape[0] * shape[1])
                                                          for i, a in enumerate(sizes) for b in sizes[i + 1:]])),
                         "n_seeds": len(masks)})
    df = pd.DataFrame(rows, columns=STABILITY_COLUMNS)
    return df.sort_values(["data", "series", "n_heads"], kind="stable").reset_index(drop=True)


def stability_markdown(table: pd.DataFrame) -> str:
    """:func:`frontier_stability` as a markdown table."""
    lines = ["| data | series | setting | heads | Jaccard across seeds | random sets of those sizes | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['data']} | {r['series']} | {r['setting']} | {r['n_heads']:.1f} | {r['jaccard']:.2f} | "
                     f"{r['jaccard_random']:.2f} | {r['n_seeds']} |")
    return "\n".join(lines)


def frontier_markdown(table: pd.DataFrame) -> str:
    """The frontier as a markdown table (accuracy in %, 95% crossed intervals)."""
    lines = ["| data | series | setting | heads | accuracy % (95% CI) | minus the full ARM, paired | n |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        vs = r.get("vs_arm")
        paired = ("" if vs is None or pd.isna(vs) else
                  f"{100 * vs:+.1f} ({100 * r['vs_arm_low']:+.1f} to {100 * r['vs_arm_high']:+.1f})")
        lines.append(f"| {r['data']} | {r['series']} | {r['setting']} | {r['n_heads']:.1f} | "
                     f"{100 * r['accuracy']:.1f} ({100 * r['low']:.1f} to {100 * r['high']:.1f}) | {paired} | "
                     f"{r['n_pairs']} pairs, {counted(int(r['n_seeds']), 'seed')} |")
    return "\n".join(lines)
