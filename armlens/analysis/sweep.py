"""Reading the defaults sweep: every setting against the default it would replace, paired, pooled over seeds and
datasets.

The sweep (``scripts/sweep_defaults.sh``, ``docs/defaults.md``) is ``armlens ablate`` run per dataset with the
reference ARM set to the current defaults; every cell is that ARM with one setting changed, scored on the same test
pairs as the reference. So each setting is compared with the axis's *reference setting* (the current default) item
by item: per seed, the per-pair differences of ``correct``; pooled over seeds by :func:`armlens.stats.clustered_bootstrap`
(seeds, then pairs within a seed: a seed is a new few-shot draw and a new fit, so its variance is kept); pooled over
datasets with equal weight per dataset (each dataset resampled independently). Nothing here runs a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from armlens.analysis.grid import AXES, READING_OVERRIDES, SETTING_ORDER, AblationConfig
from armlens.analysis.results import load_cells
from armlens.rm import ARMConfig
from armlens.stats import clustered_bootstrap, interval_of

POOLED_DATA = "all"
"""Name of the rows that pool the datasets (equal weight per dataset)."""
SWEEP_COLUMNS = ["data", "axis", "setting", "x", "reference", "n_seeds", "n_pairs", "accuracy", "acc_low",
                 "acc_high", "diff", "diff_low", "diff_high", "p_value", "n_heads"]


def reference_setting(axis: str, arm: ARMConfig) -> str | None:
    """The setting of ``axis`` that equals ``arm`` (the default every other setting of the axis is compared with);
    ``None`` for axes that do not vary the ARM's config."""
    rf = arm.reinforce
    if axis == "reading":
        for name, over in READING_OVERRIDES.items():
            if all(getattr(arm, k) == v for k, v in over.items()):
                return name
        return None
    return {
        "demos": str(arm.demos_per_class),
        "trials": str(arm.n_trials),
        "steps": str(rf.steps),
        "prior": f"{rf.init_logit:g}",
        "objective": rf.objective,
        "criteria": arm.criteria,
        "selection": "reinforce",
        "estimator": arm.estimator if arm.estimator != "wpca" or arm.wpca_weighting == "uniform"
        else "wpca_confidence",
    }.get(axis)


def _per_seed(cells: pd.DataFrame) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """ARM-series cells with scores, as {(axis, setting): {seed: record}}."""
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for rec in cells.to_dict("records"):
        if rec["series"] != "ARM" or rec.get("reading", "prob") != "prob":
            continue
        out.setdefault((rec["axis"], rec["setting"]), {})[int(rec["seed"])] = rec
    return out


def _distributions(folder: Path, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Per (axis, setting) of one results folder: estimates and bootstrap distributions (accuracy and paired
    difference to the axis's reference), on the seeds both the setting and its reference finished."""
    run = json.loads((folder / "run.json").read_text())
    config = AblationConfig.from_dict(run["config"])
    data = config.data
    by_cell = _per_seed(load_cells(folder, with_scores=True))
    rows = []
    for (axis, setting), seeds in by_cell.items():
        ref_name = reference_setting(axis, config.arm)
        ref = by_cell.get((axis, ref_name)) if ref_name is not None else None
        common = sorted(seeds) if ref is None else sorted(set(seeds) & set(ref))
        if not common:
            continue
        acc = [np.asarray(seeds[s]["correct"], dtype=float) for s in common]
        row: dict[str, Any] = {
            "data": data, "axis": axis, "setting": setting, "x": seeds[common[0]].get("x"),
            "reference": setting == ref_name, "n_seeds": len(common), "n_pairs": int(sum(a.size for a in acc)),
            "n_heads": float(np.mean([seeds[s]["n_heads"] for s in common])),
            "acc_est": float(np.mean([a.mean() for a in acc])),
            "acc_dist": clustered_bootstrap(acc, n_boot, seed),
            "diff_est": math.nan, "diff_dist": None,
        }
        if ref is not None:
            for s in common:
                if seeds[s].get("test_sha256") != ref[s].get("test_sha256"):
                    raise ValueError(f"{folder}: {axis}={setting} and {ref_name} were scored on different test "
                                     f"pairs in seed {s}")
            diffs = [np.asarray(seeds[s]["correct"], float) - np.asarray(ref[s]["correct"], float) for s in common]
            row["diff_est"] = float(np.mean([d.mean() for d in diffs]))
            row["diff_dist"] = clustered_bootstrap(diffs, n_boot, seed)
        rows.append(row)
    return rows


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    acc = interval_of(row.pop("acc_dist"), row["acc_est"])
    dist = row.pop("diff_dist")
    diff = interval_of(dist, row["diff_est"]) if dist is not None else None
    out = {**row, "accuracy": row.pop("acc_est"), "acc_low": acc.low, "acc_high": acc.high,
           "diff": row.pop("diff_est"), "diff_low": math.nan if diff is None else diff.low,
           "diff_high": math.nan if diff is None else diff.high,
           "p_value": math.nan if diff is None or row["reference"] else diff.p_value}
    return {k: out[k] for k in SWEEP_COLUMNS}


def sweep_table(folders: Sequence[str | Path], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, axis, setting) of the ARM cells in ``folders`` (results of ``armlens ablate``), plus
    rows with ``data == "all"`` pooling the datasets that ran the setting (equal weight each).

    Columns: accuracy and its 95% interval; ``diff`` = accuracy minus the reference setting's on the same pairs and
    seeds, its 95% interval and two-sided p-value (``reference`` marks the current default, whose diff is 0);
    ``n_pairs`` = scored items (pairs x seeds); intervals from :func:`armlens.stats.clustered_bootstrap`.
    """
    per_data: list[dict[str, Any]] = []
    for f in folders:
        rows = _distributions(Path(f), n_boot, seed)
        if any(r["data"] in {p["data"] for p in per_data} for r in rows):  # two runs on one dataset: name the folder
            rows = [{**r, "data": f"{r['data']} ({Path(f).name})"} for r in rows]
        per_data += rows
    if not per_data:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    pooled = []
    keys = list(dict.fromkeys((r["axis"], r["setting"]) for r in per_data))
    for axis, setting in keys:
        group = [r for r in per_data if (r["axis"], r["setting"]) == (axis, setting)]
        if len({r["data"] for r in group}) < 2:
            continue
        with_diff = [r for r in group if r["diff_dist"] is not None]
        pooled.append({
            "data": POOLED_DATA, "axis": axis, "setting": setting, "x": group[0]["x"],
            "reference": group[0]["reference"], "n_seeds": min(r["n_seeds"] for r in group),
            "n_pairs": sum(r["n_pairs"] for r in group), "n_heads": float(np.mean([r["n_heads"] for r in group])),
            "acc_est": float(np.mean([r["acc_est"] for r in group])),
            "acc_dist": np.mean([r["acc_dist"] for r in group], axis=0),
            "diff_est": float(np.mean([r["diff_est"] for r in with_diff])) if len(with_diff) == len(group)
            else math.nan,
            "diff_dist": np.mean([r["diff_dist"] for r in with_diff], axis=0) if len(with_diff) == len(group)
            and with_diff else None,
        })
    df = pd.DataFrame([_finish(r) for r in per_data + pooled], columns=SWEEP_COLUMNS)
    axis_rank = {a: i for i, a in enumerate(AXES)}
    canon = {s: i for i, s in enumerate(SETTING_ORDER)}
    data_rank = {d: i for i, d in enumerate(dict.fromkeys(r["data"] for r in per_data))}
    df["_d"] = df["data"].map(data_rank).fillna(len(data_rank))
    df["_a"] = df["axis"].map(axis_rank)
    df["_k"] = [x if x is not None and not (isinstance(x, float) and math.isnan(x)) else canon.get(s, len(canon))
                for x, s in zip(df["x"], df["setting"], strict=True)]
    return df.sort_values(["_d", "_a", "_k"], kind="stable").drop(columns=["_d", "_a", "_k"]).reset_index(drop=True)


def sweep_markdown(table: pd.DataFrame, data: str = POOLED_DATA) -> str:
    """The table of one dataset's rows (default: the pooled ones) as Markdown: accuracy and the paired difference
    to the default, in points with 95% intervals, and n."""
    t = table[table["data"] == data]
    lines = ["| axis | setting | accuracy % (95% CI) | vs default, points (95% CI) | p | n |",
             "|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        acc = f"{100 * r['accuracy']:.1f} ({100 * r['acc_low']:.1f}-{100 * r['acc_high']:.1f})"
        if r["reference"]:
            diff, p = "default", ""
        elif math.isnan(r["diff"]):
            diff, p = "", ""
        else:
            diff = f"{100 * r['diff']:+.1f} ({100 * r['diff_low']:+.1f} to {100 * r['diff_high']:+.1f})"
            p = f"{r['p_value']:.2g}"
        lines.append(f"| {r['axis']} | {r['setting']} | {acc} | {diff} | {p} | {r['n_pairs']} pairs, "
                     f"{r['n_seeds']} seeds |")
    return "\n".join(lines)
