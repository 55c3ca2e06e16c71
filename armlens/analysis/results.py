"""Reading ablation results back: the tidy cell table, summaries across seeds with t-intervals, and each seed's head
artifacts (no model, no forward passes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from armlens.analysis.grid import AXES, HEAD_SERIES, SETTING_ORDER
from armlens.analysis.heads import AttentionRow, expected_random_jaccard, mean_pairwise_jaccard
from armlens.errors import NotFoundError
from armlens.io import read_json, result_exists, result_files
from armlens.patching import head_label, mask_labels
from armlens.selection import SelectionResult, policy_entropy, policy_probs
from armlens.stats import t_interval


def _round(x: Tensor, nd: int = 5) -> list[Any]:
    """Nested lists of ``x`` rounded to ``nd`` decimals, as short decimals (float64: 0.2689, not 0.2689000070)."""
    return torch.round(x.detach().double().cpu() * 10**nd).div(10**nd).tolist()


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
        "entropy": sel.entropy,
        "val_losses": sel.val_losses,
        "final_candidate_losses": sel.final_candidate_losses,
        "checkpoint_heads": {str(k): mask_labels(v) for k, v in sel.checkpoint_masks.items()},
        **extra,
    }


def selection_from_dict(d: dict[str, Any]) -> SelectionResult:
    """:func:`selection_to_dict` read back."""
    return SelectionResult(
        mask=torch.tensor(d["mask"], dtype=torch.bool), method=d.get("method", "reinforce"),
        probs=torch.tensor(d["probs"]) if d.get("probs") is not None else None,
        prob_trajectory=torch.tensor(d["prob_trajectory"]) if d.get("prob_trajectory") is not None else None,
        losses=list(d.get("losses", [])), expected_heads=list(d.get("expected_heads", [])),
        entropy=list(d.get("entropy", [])), val_losses=[tuple(v) for v in d.get("val_losses", [])],  # type: ignore[misc]
        final_candidate_losses=list(d.get("final_candidate_losses", [])),
    )


CELL_COLUMNS = ["axis", "series", "setting", "x", "reading", "seed", "accuracy", "ci_low", "ci_high", "ties",
                "n_pairs", "n_heads"]


def load_cells(out: str | Path, *, with_scores: bool = False) -> pd.DataFrame:
    """Every cell record under ``OUT/cells`` as one tidy DataFrame (one row per axis, series, setting, seed); each
    file gzip-compressed (``seed0.json.gz``) or plain (written before), in the same order either way."""
    files = result_files(out, "cells/*/*/seed*.json")
    rows = []
    for f in files:
        rec = read_json(f)
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
    """Read a results folder written by :func:`run_ablations` (no model, no forward passes); its per-item files
    gzip-compressed or plain (:func:`armlens.io.result_files`)."""
    out = Path(out)
    run_file = out / "run.json"
    if not run_file.is_file():
        raise NotFoundError(f"{out} holds no ablation results (no run.json); run `armlens ablate --out {out}`")
    seeds = {}
    ref_criteria: dict[int, str | None] = {}
    for d in sorted((out / "seeds").glob("seed*")):
        m = re.fullmatch(r"seed(\d+)", d.name)
        if not m:
            continue
        sels = {}
        for f in result_files(d, "selection-*.json"):
            rec = read_json(f)
            name = rec.get("name", f.stem.removeprefix("selection-"))
            sels[name] = selection_from_dict(rec)
            if name == "reference":
                ref_criteria[int(m.group(1))] = rec.get("criterion")
        ref = sels.get("reference")
        eff_files = result_files(d, "attribution-*.json")
        eff = None
        for f in eff_files:  # the reference selection's criterion first
            rec = read_json(f)
            if eff is None or (ref is not None and rec.get("criterion") == ref_criteria.get(int(m.group(1)))):
                eff = torch.tensor(rec["effects"])
        att = AttentionRow.from_dict(read_json(d / "attention.json")) if result_exists(d / "attention.json") else None
        seeds[int(m.group(1))] = SeedArtifacts(int(m.group(1)), sels, eff, att)
    return AblationResults(read_json(run_file), load_cells(out), seeds)


# ---------------------------------------------------------------------------------------------------- convergence

CURVE_RUN = re.compile(r"(criterion|steps\d+|lr[^-]+)-(.+)")
"""Selection names with training curves, per criterion: the reference fit (``criterion-*``), the steps axis's long run
(``steps{N}-*``) and each learning rate's run (``lr{X}-*``)."""
UNDECIDED = (0.1, 0.9)
"""A head whose final selection probability lies strictly inside this range is undecided."""


def convergence_table(results: AblationResults, data: str = "") -> pd.DataFrame:
    """Has REINFORCE converged? One row per training run (reference, steps axis's long run, each learning rate),
    criterion and seed, read off the saved curves (no model).

    ``entropy_prior`` is the policy's entropy before the first step (every head at the run's ``init_logit``);
    ``last_quarter_share`` the part of the entropy's whole fall that came in the last quarter of the steps (a policy
    that has settled: near 0; a steady fall: 0.25); ``undecided`` the heads with a final probability inside
    :data:`UNDECIDED`; ``val_first``/``val_last`` the held-apart validation loss of the policy's most likely mask at
    its first and last reading; ``mask`` the chosen head set (a tensor, for :func:`convergence_summary`'s Jaccard).
    """
    rcfg = results.run.get("config", {}).get("arm", {}).get("reinforce", {})
    init = float(rcfg.get("init_logit", -1.0))
    rows = []
    for seed, art in sorted(results.seeds.items()):
        for name, sel in sorted(art.selections.items()):
            m = CURVE_RUN.fullmatch(name)
            if not m or not sel.entropy or sel.probs is None:
                continue
            run = "reference" if m.group(1) == "criterion" else m.group(1)
            prior = policy_entropy(policy_probs(torch.full(sel.probs.shape, init)))
            ent = sel.entropy
            q = max(1, len(ent) // 4)
            fall = prior - ent[-1]
            probs = sel.probs.float()
            rows.append({
                "data": data, "run": run, "criterion": m.group(2), "seed": seed, "steps": len(ent),
                "entropy_prior": prior, "entropy_end": ent[-1],
                "last_quarter_share": (ent[-q - 1] - ent[-1]) / fall if len(ent) > q and fall > 0 else float("nan"),
                "undecided": int(((probs > UNDECIDED[0]) & (probs < UNDECIDED[1])).sum()),
                "likely_heads": int((probs > 0.5).sum()), "n_heads": int(sel.mask.sum()),
                "val_first": sel.val_losses[0][1] if sel.val_losses else float("nan"),
                "val_last": sel.val_losses[-1][1] if sel.val_losses else float("nan"),
                "mask": sel.mask})
    return pd.DataFrame(rows)


def convergence_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`convergence_table` averaged over seeds per (data, run, criterion), with the chosen head sets' mean
    Jaccard index between seeds beside that of random sets of the same size (agreement at chance: the choice is not
    reproducible)."""
    cols = ["data", "run", "criterion", "n_seeds", "steps", "entropy_prior", "entropy_end", "last_quarter_share",
            "undecided", "likely_heads", "n_heads", "val_first", "val_last", "jaccard", "jaccard_random"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (data, run, crit), g in table.groupby(["data", "run", "criterion"], sort=False):
        masks = torch.stack(list(g["mask"]))
        k = float(masks.float().sum((1, 2)).mean())
        row = {"data": data, "run": run, "criterion": crit, "n_seeds": int(g["seed"].nunique())}
        row |= {c: float(g[c].mean()) for c in cols[4:13]}
        row |= {"jaccard": mean_pairwise_jaccard(masks),
                "jaccard_random": expected_random_jaccard(k, k, masks[0].numel())}
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def convergence_markdown(summary: pd.DataFrame) -> str:
    """The convergence summary as a Markdown table (means over seeds)."""
    head = ("| data | run | criterion | seeds | steps | entropy: prior -> end (nats) | last quarter's share of the fall |"
            " undecided heads | P > 0.5 | chosen | validation loss: first -> last | Jaccard between seeds (random) |")
    lines = [head, "|" + "---|" * 12]

    def f(x: float, spec: str) -> str:
        return "n/a" if x is None or math.isnan(x) else format(x, spec)

    for r in summary.itertuples(index=False):
        crit = r.criterion if len(r.criterion) <= 40 else r.criterion[:37] + "..."
        val = "none held apart" if math.isnan(r.val_first) else f"{r.val_first:.3f} -> {r.val_last:.3f}"
        lines.append(f"| {r.data} | {r.run} | {crit} | {r.n_seeds} | {r.steps:.0f} | {r.entropy_prior:.0f} -> "
                     f"{r.entropy_end:.0f} | {f(r.last_quarter_share, '.2f')} | {r.undecided:.0f} | "
                     f"{r.likely_heads:.0f} | {r.n_heads:.0f} | {val} | {f(r.jaccard, '.2f')} "
                     f"({r.jaccard_random:.2f}) |")
    return "\n".join(lines)


def label_grid(n_layers: int, n_heads: int) -> list[list[str]]:
    """``L{l}H{h}`` labels laid out ``[n_layers][n_heads]`` (hover text for heatmaps)."""
    return [[head_label(layer, head) for head in range(n_heads)] for layer in range(n_layers)]
