"""Reading the defaults sweep: every setting against the default it would replace, paired, pooled over seeds and
datasets.

The sweep (``scripts/sweep_defaults.sh``, ``docs/defaults.md``) is ``armlens ablate`` run per dataset with the
reference ARM set to the defaults of the time (each round's folder records its reference ARM); every cell is that ARM
with one setting changed, scored on the same test pairs as the reference. So each setting is compared with the
axis's *reference setting* (the default it would replace) item by item: per seed, the per-pair differences of
``correct``; pooled over seeds by :func:`armlens.stats.crossed_distribution` (seeds and test prompts crossed: a seed
is a new few-shot draw and a new fit, so its variance is kept, and the seeds score nearly the same pairs, so a pair
scored by five seeds is not five independent pairs; pairs built from one prompt are resampled together, as their
seed's ``split.json`` records them; a folder written before the prompts were recorded cannot be crossed, and its
rows say so in ``n_prompts``); pooled over datasets with equal weight per dataset (each dataset
resampled independently). Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from armlens.analysis.grid import AXES, READING_OVERRIDES, SETTING_ORDER, AblationConfig
from armlens.analysis.results import load_cells
from armlens.errors import BadDataError
from armlens.io import read_json, result_exists
from armlens.rm import ARMConfig
from armlens.stats import counted, crossed_distribution, interval_of

POOLED_DATA = "all"
"""Name of the rows that pool the datasets (equal weight per dataset)."""
SWEEP_COLUMNS = ["data", "axis", "setting", "x", "reference", "n_seeds", "n_pairs", "n_prompts", "accuracy", "acc_low",
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
        "lr": f"{rf.lr:g}",
        "sparsity": f"{rf.sparsity:g}",
        "objective": rf.objective,
        "criteria": arm.criteria,
        "selection": "reinforce",
        "controls": "means",
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


def _folder_cells(folder: Path) -> tuple[AblationConfig, dict[tuple[str, str], dict[int, dict[str, Any]]]]:
    """One results folder's ablation config and its ARM cells as {(axis, setting): {seed: record}}, each record
    with ``prompts``: its test pairs' prompt keys from the seed's ``split.json`` (``None`` where the split predates
    them or holds other test pairs)."""
    run = read_json(folder / "run.json")
    by_cell = _per_seed(load_cells(folder, with_scores=True))
    splits: dict[int, dict[str, Any]] = {}
    for seeds in by_cell.values():
        for s, rec in seeds.items():
            if s not in splits:
                path = folder / "seeds" / f"seed{s}" / "split.json"  # or split.json.gz: either form is read
                splits[s] = read_json(path) if result_exists(path) else {}
            split, n = splits[s], len(rec["correct"])
            aligned = split.get("test_used_sha256") == rec.get("test_sha256") and len(split.get("test_used", [])) == n
            rec["prompts"] = split.get("test_used_prompts") if aligned else None
    return AblationConfig.from_dict(run["config"]), by_cell


def _paired(folder: Path, a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], what: str
            ) -> tuple[list[np.ndarray], list[list[str] | None]]:
    """Per-seed per-pair differences of ``correct`` (a minus b) on the seeds both finished, and each seed's prompt
    keys (the bootstrap's clusters); refuses cells scored on different test pairs."""
    diffs, prompts = [], []
    for s in sorted(set(a) & set(b)):
        if a[s].get("test_sha256") != b[s].get("test_sha256"):
            raise BadDataError(f"{folder}: {what} were scored on different test pairs in seed {s}")
        diffs.append(np.asarray(a[s]["correct"], float) - np.asarray(b[s]["correct"], float))
        prompts.append(a[s].get("prompts") or b[s].get("prompts"))
    return diffs, prompts


def _labels(prompts: list[list[str] | None], values: list[np.ndarray]) -> list[list[str]]:
    """The crossed bootstrap's cluster labels per seed: the test pairs' prompt keys (shared across seeds), or, for a
    seed whose prompts are unknown (a folder that predates recorded prompts; its ``n_prompts`` is NaN), labels of
    its own: its pairs then cross with no other seed's, the nested design, too narrow where seeds share pairs."""
    return [p if p is not None else [f"seed{s}/{i}" for i in range(v.size)]
            for s, (p, v) in enumerate(zip(prompts, values, strict=True))]


def _estimate(diffs: list[np.ndarray], prompts: list[list[str] | None], n_boot: int, seed: int
              ) -> tuple[float, np.ndarray]:
    """The mean over seeds of per-seed mean differences, and its crossed (seeds x prompts) distribution."""
    return float(np.mean([d.mean() for d in diffs])), crossed_distribution(diffs, _labels(prompts, diffs), n_boot,
                                                                            seed)


def _n_cell(row: dict[str, Any]) -> str:
    """A table row's n: pairs, the prompts they come from where fewer (and known), seeds."""
    prompts = "" if math.isnan(row["n_prompts"]) or row["n_prompts"] == row["n_pairs"] else \
        f" ({int(row['n_prompts'])} prompts)"
    return f"{row['n_pairs']} pairs{prompts}, {counted(int(row['n_seeds']), 'seed')}"


def _n_prompts(prompts: list[list[str] | None]) -> float:
    """Distinct prompts summed over seeds (the bootstrap's clusters); NaN when a seed's prompts are unknown."""
    return math.nan if any(p is None for p in prompts) else float(sum(len(set(p)) for p in prompts))


def _distributions(folder: Path, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Per (axis, setting) of one results folder: estimates and bootstrap distributions (accuracy and paired
    difference to the axis's reference), on the seeds both the setting and its reference finished."""
    config, by_cell = _folder_cells(folder)
    data = config.data
    rows = []
    for (axis, setting), seeds in by_cell.items():
        ref_name = reference_setting(axis, config.arm)
        ref = by_cell.get((axis, ref_name)) if ref_name is not None else None
        common = sorted(seeds) if ref is None else sorted(set(seeds) & set(ref))
        if not common:
            continue
        acc = [np.asarray(seeds[s]["correct"], dtype=float) for s in common]
        prompts = [seeds[s].get("prompts") for s in common]
        row: dict[str, Any] = {
            "data": data, "axis": axis, "setting": setting, "x": seeds[common[0]].get("x"),
            "reference": setting == ref_name, "n_seeds": len(common), "n_pairs": int(sum(a.size for a in acc)),
            "n_prompts": _n_prompts(prompts),
            "n_heads": float(np.mean([seeds[s]["n_heads"] for s in common])),
            "acc_est": float(np.mean([a.mean() for a in acc])),
            "acc_dist": crossed_distribution(acc, _labels(prompts, acc), n_boot, seed),
            "diff_est": math.nan, "diff_dist": None,
        }
        if ref is not None:
            row["diff_est"], row["diff_dist"] = _estimate(
                *_paired(folder, seeds, ref, f"{axis}={setting} and {ref_name}"), n_boot, seed)
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
    ``n_pairs`` = scored items (pairs x seeds); ``n_prompts`` = distinct prompts summed over seeds (NaN: a folder that
    predates recorded prompts, resampled by pair within each seed); intervals from
    :func:`armlens.stats.crossed_distribution` (seeds and prompts crossed).
    """
    per_data: list[dict[str, Any]] = []
    for i, f in enumerate(folders):  # each dataset its own bootstrap stream, so the pooled resampling is independent
        rows = _distributions(Path(f), n_boot, seed + i)
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
            "n_pairs": sum(r["n_pairs"] for r in group), "n_prompts": sum(r["n_prompts"] for r in group),
            "n_heads": float(np.mean([r["n_heads"] for r in group])),
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
    lines = ["| axis | setting | accuracy % (95% CI) | vs reference, points (95% CI) | p | n |",
             "|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        acc = f"{100 * r['accuracy']:.1f} ({100 * r['acc_low']:.1f}-{100 * r['acc_high']:.1f})"
        if r["reference"]:
            diff, p = "reference", ""
        elif math.isnan(r["diff"]):
            diff, p = "", ""
        else:
            diff = f"{100 * r['diff']:+.1f} ({100 * r['diff_low']:+.1f} to {100 * r['diff_high']:+.1f})"
            p = f"{r['p_value']:.2g}"
        lines.append(f"| {r['axis']} | {r['setting']} | {acc} | {diff} | {p} | {_n_cell(r)} |")
    return "\n".join(lines)


COST_AXES: dict[str, str] = {"steps": "reinforce.steps", "trials": "n_trials", "demos": "demos_per_class"}
"""Axes whose settings cost time, ordered by their number, and the config field each decides."""
CHOICE_AXES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "reading": ("reading / icl_layout", ("icl-lines", "icl-turns", "answered")),
    "objective": ("reinforce.objective", None),
    "criteria": ("criteria", None),
    "prior": ("reinforce.init_logit", None),
    "lr": ("reinforce.lr", None),
    "estimator": ("estimator", None),
    "selection": ("reinforce.final (reinforce = sampled)", ("reinforce", "likely")),
}
"""Axes without a cost: the config field each decides and the settings that may become the default (``None``:
all). ``mean_ablation`` is a baseline, not an ARM, and random, top-k, all and none are context for the selection
axis, so none of them can be chosen; ``likely`` is ``reinforce.final="likely"``."""
DECISION_COLUMNS = ["axis", "field", "default", "choice", "changed", "compared", "diff", "diff_low", "diff_high",
                    "n_data", "n_seeds", "provisional", "rule", "note"]


def sweep_decisions(folders: Sequence[str | Path], *, n_boot: int = 2000, seed: int = 0, min_seeds: int = 3
                    ) -> pd.DataFrame:
    """The decision rule of ``docs/defaults.md`` applied to the sweep, one row per decided axis.

    - Axes without a cost (:data:`CHOICE_AXES`): a setting replaces the default only if its difference to the
      default, pooled over the datasets that ran the axis (equal weight), has a 95% interval above zero and no
      single dataset's interval lies below zero (a setting that wins on one dataset and loses on another is
      reported in ``note``, not chosen); of several such settings the largest pooled gain is taken.
    - Axes with a cost (:data:`COST_AXES`): the best setting is the one with the highest pooled accuracy; the choice
      is the cheapest setting whose pooled difference to the best has a 95% interval that reaches zero.

    Differences are paired (same test pairs and seeds) and resampled by :func:`armlens.stats.crossed_distribution`
    per dataset (seeds and prompts crossed), each dataset with its own stream. ``compared`` names the difference in the
    ``diff`` columns: the choice minus the default when it changed, else the best other setting minus the default
    (cost axes: the choice minus the best). Axes that no folder ran, or that ran only their default, are left out.
    A row whose comparison rests on fewer than ``min_seeds`` seeds on some dataset is ``provisional``: the rule
    needs 3 seeds before a default is changed on its word.
    """
    cells = [(Path(f), *_folder_cells(Path(f))) for f in folders]

    def pooled(axis: str, a: str, b: str) -> tuple[dict[str, Any], list[str], list[str]] | None:
        """Pooled a minus b (``compared``, estimate, interval, datasets, seeds), the datasets where a is
        significantly worse than b and those where it is significantly better."""
        est, dists, worse, better, n_seeds = [], [], [], [], []
        for i, (folder, config, by_cell) in enumerate(cells):
            if (axis, a) not in by_cell or (axis, b) not in by_cell:
                continue
            diffs, prompts = _paired(folder, by_cell[(axis, a)], by_cell[(axis, b)], f"{axis}={a} and {b}")
            if not diffs:
                continue
            e, dist = _estimate(diffs, prompts, n_boot, seed + i)
            iv = interval_of(dist, e)
            named = f"{config.data} ({100 * iv.diff:+.1f}, {100 * iv.low:+.1f} to {100 * iv.high:+.1f})"
            if iv.high < 0:
                worse.append(named)
            elif iv.low > 0:
                better.append(named)
            est.append(e)
            dists.append(dist)
            n_seeds.append(len(diffs))
        if not est:
            return None
        iv = interval_of(np.mean(dists, axis=0), float(np.mean(est)))
        return {"compared": f"{a} - {b}", "diff": iv.diff, "diff_low": iv.low, "diff_high": iv.high,
                "n_data": len(est), "n_seeds": min(n_seeds)}, worse, better

    def settings_of(axis: str) -> list[str]:
        return list(dict.fromkeys(s for _, _, by_cell in cells for (ax, s) in by_cell if ax == axis))

    def default_of(axis: str) -> str | None:
        return next((reference_setting(axis, c.arm) for _, c, _ in cells), None)

    rows = []
    for axis, (fld, allowed) in CHOICE_AXES.items():
        default = default_of(axis)
        others = {s: r for s in settings_of(axis) if s != default
                  and (r := pooled(axis, s, default)) is not None} if default else {}
        compared = {s: r for s, r in others.items() if allowed is None or s in allowed}
        if not compared:
            continue
        winners = {s: st for s, (st, worse, _) in compared.items() if st["diff_low"] > 0 and not worse}
        notes = []  # every setting that beats the default somewhere and is not chosen, so no loss of it is hidden
        for s, (st, worse, better) in others.items():
            if s in winners:
                continue
            pooled_iv = f"{100 * st['diff']:+.1f} ({100 * st['diff_low']:+.1f} to {100 * st['diff_high']:+.1f})"
            if st["diff_low"] > 0:
                why = f"below it on {'; '.join(worse)}" if s in compared else "not an ARM setting, never chosen"
                notes.append(f"{s} is above the default pooled, {pooled_iv}, but {why}")
            elif better:
                notes.append(f"{s} is above the default on {'; '.join(better)}")
        pick = max(winners or {s: st for s, (st, _, _) in compared.items()},
                   key=lambda s: compared[s][0]["diff"])
        rows.append({"axis": axis, "field": fld, "default": default, "choice": pick if winners else default,
                     "changed": bool(winners), **compared[pick][0],
                     "rule": "pooled interval above 0, no dataset below", "note": "; ".join(notes)})
    for axis, fld in COST_AXES.items():
        default = default_of(axis)
        options = sorted(settings_of(axis), key=float)
        if default is None or len(options) < 2:
            continue
        accuracy = {s: float(np.mean([np.mean([np.mean(r["correct"]) for r in by_cell[(axis, s)].values()])
                                      for _, _, by_cell in cells if (axis, s) in by_cell])) for s in options}
        best = max(options, key=lambda s: accuracy[s])
        choice, stats, below, than = best, None, [], best
        for s in options:  # cheapest first; the best itself ends the search
            if s == best:
                break
            r = pooled(axis, s, best)
            if r is not None and r[0]["diff_high"] >= 0:
                choice, stats, below = s, r[0], r[1]
                break
        if stats is None:  # the best is the cheapest acceptable: show it against the default
            r = pooled(axis, best, default) if best != default else None
            stats = r[0] if r else {"compared": "", "diff": math.nan, "diff_low": math.nan, "diff_high": math.nan,
                                    "n_data": math.nan, "n_seeds": math.nan}
            if r:  # the best pooled may still lose to the default on one dataset
                below, than = r[1], default
        rows.append({"axis": axis, "field": fld, "default": default, "choice": choice, "changed": choice != default,
                     **stats, "rule": "cheapest not significantly worse than the best",
                     "note": f"best {best}: {100 * accuracy[best]:.1f}% pooled accuracy"
                     + (f"; {choice} is below {than} on {'; '.join(below)}" if below else "")})
    for r in rows:
        r["provisional"] = bool(math.isnan(r["n_seeds"]) or r["n_seeds"] < min_seeds)
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def decisions_markdown(decisions: pd.DataFrame) -> str:
    """:func:`sweep_decisions` as Markdown: what each axis decides, the choice, and the evidence in points."""
    lines = ["| axis | decides | reference (the default then) | choice | evidence, points (95% CI) | datasets, seeds "
             "| rule | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in decisions.to_dict("records"):
        ev = "" if math.isnan(r["diff"]) else (f"{r['compared']}: {100 * r['diff']:+.1f} "
                                               f"({100 * r['diff_low']:+.1f} to {100 * r['diff_high']:+.1f})")
        n = "" if math.isnan(r["n_data"]) else f"{int(r['n_data'])}, {int(r['n_seeds'])}"
        choice = f"**{r['choice']}**" if r["changed"] else r["choice"]
        if r["provisional"]:
            choice += " (provisional: too few seeds)"
        lines.append(f"| {r['axis']} | `{r['field']}` | {r['default']} | {choice} | {ev} | {n} | {r['rule']} | "
                     f"{r['note']} |")
    return "\n".join(lines)


ROUNDS_COLUMNS = ["data", "before", "after", "acc_before", "acc_after", "diff", "diff_low", "diff_high", "p_value",
                  "n_seeds", "n_pairs", "n_prompts"]


def _reference_cells(by_cell: dict[tuple[str, str], dict[int, dict[str, Any]]], arm: ARMConfig
                     ) -> dict[int, dict[str, Any]] | None:
    """A folder's reference ARM, per seed: any cell whose setting is its axis's reference (they are one fit)."""
    for (axis, setting), seeds in by_cell.items():
        if axis != "heads" and reference_setting(axis, arm) == setting:
            return seeds
    return None


def compare_rounds(before: Sequence[str | Path], after: Sequence[str | Path], *, n_boot: int = 2000, seed: int = 0,
                   before_cell: tuple[str, str] | None = None, after_cell: tuple[str, str] | None = None
                   ) -> pd.DataFrame:
    """The reference ARM of one sweep round (``after``: its folders) against another's (``before``), dataset by
    dataset on the same test pairs and seeds (the rounds draw the same splits), and pooled with equal weight per
    dataset: did the defaults a round chose, taken together, beat the ones it started from?

    ``before_cell`` / ``after_cell`` (``(axis, setting)``, e.g. ``("lr", "1")``) compare that cell of a round instead of
    its reference ARM: two settings measured in different rounds, on the same pairs.

    Differences are ``after - before`` per pair, bootstrapped seeds-then-prompts per dataset (each its own stream), as
    in :func:`sweep_table`; cells scored on different test pairs are refused. Datasets in only one round are left
    out."""
    def refs(folders: Sequence[str | Path], cell: tuple[str, str] | None
             ) -> dict[str, tuple[Path, dict[int, dict[str, Any]]]]:
        out = {}
        for f in folders:
            config, by_cell = _folder_cells(Path(f))
            cells = _reference_cells(by_cell, config.arm) if cell is None else by_cell.get(cell)
            if cells is None:
                what = "the reference ARM" if cell is None else f"{cell[0]}={cell[1]}"
                raise BadDataError(f"{f}: no cell of {what} to compare (cells: "
                                   f"{', '.join(sorted(f'{a}={s}' for a, s in by_cell))})")
            out[config.data] = (Path(f), cells)
        return out

    old, new = refs(before, before_cell), refs(after, after_cell)
    rows, dists, accs = [], [], []
    for i, data in enumerate(d for d in new if d in old):
        folder, cells_new = new[data]
        _, cells_old = old[data]
        diffs, prompts = _paired(folder, cells_new, cells_old, f"the two rounds' reference ARMs on {data}")
        if not diffs:
            continue
        est, dist = _estimate(diffs, prompts, n_boot, seed + i)
        common = sorted(set(cells_new) & set(cells_old))
        acc = tuple(float(np.mean([np.mean(c[s]["correct"]) for s in common])) for c in (cells_old, cells_new))
        iv = interval_of(dist, est)
        rows.append({"data": data, "acc_before": acc[0], "acc_after": acc[1], "diff": iv.diff, "diff_low": iv.low,
                     "diff_high": iv.high, "p_value": iv.p_value, "n_seeds": len(diffs),
                     "n_pairs": int(sum(d.size for d in diffs)), "n_prompts": _n_prompts(prompts)})
        dists.append(dist)
        accs.append(acc)
    if not rows:
        raise BadDataError("the two rounds share no dataset with scored reference cells")
    if len(rows) > 1:
        iv = interval_of(np.mean(dists, axis=0), float(np.mean([r["diff"] for r in rows])))
        rows.append({"data": POOLED_DATA, "acc_before": float(np.mean([a[0] for a in accs])),
                     "acc_after": float(np.mean([a[1] for a in accs])), "diff": iv.diff, "diff_low": iv.low,
                     "diff_high": iv.high, "p_value": iv.p_value, "n_seeds": min(r["n_seeds"] for r in rows),
                     "n_pairs": sum(r["n_pairs"] for r in rows), "n_prompts": sum(r["n_prompts"] for r in rows)})
    label = {"before": Path(before[0]).parent.name + (f" {before_cell[0]}={before_cell[1]}" if before_cell else ""),
             "after": Path(after[0]).parent.name + (f" {after_cell[0]}={after_cell[1]}" if after_cell else "")}
    return pd.DataFrame([{**r, **label} for r in rows], columns=ROUNDS_COLUMNS)


def rounds_markdown(table: pd.DataFrame) -> str:
    """:func:`compare_rounds`' table as Markdown: each round's reference ARM, their paired difference in points
    with its 95% interval and p-value, and n (pairs, prompts where fewer, seeds)."""
    if table.empty:
        raise BadDataError("rounds_markdown got an empty table")
    before, after = table["before"].iloc[0], table["after"].iloc[0]
    name = {r: r if "=" in r else f"{r} reference" for r in (before, after)}
    lines = [f"| data | {name[before]} % | {name[after]} % | {after} - {before}, points (95% CI) | p | n |",
             "|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['data']} | {100 * r['acc_before']:.1f} | {100 * r['acc_after']:.1f} | "
                     f"{100 * r['diff']:+.1f} ({100 * r['diff_low']:+.1f} to {100 * r['diff_high']:+.1f}) | "
                     f"{r['p_value']:.2g} | {_n_cell(r)} |")
    return "\n".join(lines)
