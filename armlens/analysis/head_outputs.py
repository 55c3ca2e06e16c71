"""What ``armlens figures`` writes about heads from ablation folders: the accuracy-sparsity frontier (when a folder ran
the ``heads`` or ``sparsity`` axis), the reference fits' head counts, the head study and the bias-head study (when
``armlens heads`` ran on it). Tables go to ``OUT/heads.md`` and CSVs; figures are returned for the caller to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from armlens.analysis.frontier import (
    frontier_markdown,
    frontier_stability,
    frontier_table,
    stability_markdown,
)
from armlens.analysis.head_report import (
    accuracy_table,
    bias_attention_table,
    bias_held_apart_table,
    bias_overlap_table,
    direct_share,
    stability_table,
    top_heads_table,
)
from armlens.analysis.head_study import load_studies
from armlens.io import atomic_write, atomic_write_with, read_json, result_files
from armlens.stats import counted, t_interval


def head_counts(folder: Path) -> pd.DataFrame:
    """The reference ARM's patched heads per seed and criterion (from its saved REINFORCE records)."""
    data = read_json(folder / "run.json")["config"]["data"]
    rows = []
    for path in result_files(folder, "seeds/seed*/selection-criterion-*.json"):
        rec = read_json(path)
        rows.append({"data": data, "seed": int(rec["seed"]), "criterion": rec.get("criterion", ""),
                     "n_heads": int(np.asarray(rec["mask"], dtype=bool).sum())})
    return pd.DataFrame(rows, columns=["data", "seed", "criterion", "n_heads"])


def counts_markdown(counts: pd.DataFrame, n_total: int) -> str:
    lines = ["| data | fits | heads per fit: mean (95% t over fits) | min-max | share of the model's heads |",
             "|---|---|---|---|---|"]
    groups = [(d, g) for d, g in counts.groupby("data", sort=False)] + [("all", counts)]
    for data, g in groups:
        mean, _, low, high = t_interval([float(v) for v in g["n_heads"]])
        lines.append(f"| {data} | {len(g)} | {mean:.1f} ({low:.1f} to {high:.1f}) | {g['n_heads'].min()}-"
                     f"{g['n_heads'].max()} | {100 * mean / n_total:.0f}% of {n_total} |")
    return "\n".join(lines)


def frame_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A DataFrame as a markdown table (floats to ``digits`` places)."""
    def cell(v: Any) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _accuracy_md(table: pd.DataFrame) -> str:
    lines = ["| set | accuracy % / difference (points), 95% CI | p | n |", "|---|---|---|---|"]
    for r in table.to_dict("records"):
        diff = " - " in r["set"]
        value = (f"{100 * r['accuracy']:+.1f} ({100 * r['low']:+.1f} to {100 * r['high']:+.1f})" if diff
                 else f"{100 * r['accuracy']:.1f} ({100 * r['low']:.1f} to {100 * r['high']:.1f})")
        p = f"{r['p_value']:.3f}" if diff else ""
        lines.append(f"| {r['set']} | {value} | {p} | {r['n_pairs']} pairs, {counted(r['n_seeds'], 'seed')} |")
    return "\n".join(lines)


def head_outputs(folders: Sequence[Path], out: Path) -> dict[str, Any]:
    """Write ``heads.md`` (+ CSVs) for the ablation ``folders`` and return the figures (none when no folder has
    anything on heads)."""
    from armlens.plots.frontier import plot_frontier
    from armlens.plots.head_study import plot_bias_heads, plot_head_dla, plot_minimal_sets

    figs: dict[str, Any] = {}
    sections: list[str] = []
    runs = {f: read_json(f / "run.json") for f in folders}
    with_heads = [f for f, r in runs.items() if {"heads", "sparsity", "soft"} & set(r["config"].get("grid") or [])]
    sides = sorted({r["config"].get("partition", "all") for r in runs.values()})
    pairs = {"dev": "development pairs"}.get(sides[0], "every pair (no partition)") if len(sides) == 1 else "pairs"
    if with_heads:
        table = frontier_table(with_heads)
        atomic_write_with(out / "frontier.csv", lambda tmp: table.to_csv(tmp, index=False))
        figs["frontier"] = plot_frontier(table, pairs=pairs)
        sections.append("## The accuracy-sparsity frontier\n\n" + frontier_markdown(table))
        stable = frontier_stability(with_heads)
        atomic_write_with(out / "frontier_stability.csv", lambda tmp: stable.to_csv(tmp, index=False))
        sections.append("### Do the frontier's head sets agree across seeds?\n\n" + stability_markdown(stable))
    counts = pd.concat([head_counts(f) for f in folders], ignore_index=True)
    shapes = {}
    for f in folders:
        model = runs[f].get("model", {})
        shapes[f] = (int(model.get("n_layers", 30)), int(model.get("n_heads", 9)))
    if not counts.empty:
        n_total = int(np.prod(next(iter(shapes.values()))))
        sections.append("## Heads a default fit patches\n\n" + counts_markdown(counts, n_total))
    for f in folders:
        data = runs[f]["config"]["data"]
        studies = load_studies(f)
        if studies:
            shape = shapes[f]
            acc = accuracy_table(studies)
            stab = stability_table(studies, shape)
            top = top_heads_table(studies)
            share = direct_share(studies)
            atomic_write_with(out / f"{data}_minimal.csv", lambda tmp, t=acc: t.to_csv(tmp, index=False))
            atomic_write_with(out / f"{data}_stability.csv", lambda tmp, t=stab: t.to_csv(tmp, index=False))
            figs[f"{data}_minimal_sets"] = plot_minimal_sets(studies, shape, data=data)
            figs[f"{data}_head_dla"] = plot_head_dla(studies, shape, data=data)
            stab_md = frame_markdown(stab)
            sections.append(
                f"## {data}: a minimal head set\n\nPruned on half of each seed's scored pairs within "
                f"{100 * studies[0]['minimal']['margin']:g} points of the full set; reported on the other half.\n\n"
                + _accuracy_md(acc) + "\n\n### Stability across seeds\n\n" + stab_md
                + "\n\n### The heads that move the answer (direct logit attribution; single heads alone)\n\n"
                + frame_markdown(top, 3)
                + f"\n\nDirect path: {share['direct']:+.3f} of the patch's {share['change']:+.3f} change of the "
                  f"Yes-No logit; {share['direct_separation']:+.3f} of its {share['change_separation']:+.3f} "
                  "chosen-minus-rejected separation (means over fits and prompts).")
        bias = [read_json(p) for p in result_files(f, "bias-heads/seed*.json")]
        if bias:
            lines = [f"## {data}: where the zero-shot judge's bias lives\n",
                     "| kind | seed | zero-shot hack rate % | bias heads (halve it) | of them in the ARM | chance |",
                     "|---|---|---|---|---|---|"]
            for rec in bias:
                for kind, k in rec["kinds"].items():
                    ov = k.get("overlap")
                    size = len(k["bias_heads"]) if k["bias_heads"] else "none within the sizes tried"
                    in_arm, chance = (ov["in_arm"], f"{ov['chance']:.1f}") if ov else ("", "")
                    lines.append(f"| {kind} | {rec['seed']} | {100 * k['zero_shot_hack_rate']:.1f} | {size} | "
                                 f"{in_arm} | {chance} |")
            sections.append("\n".join(lines) + "\n\nRanked and scored on the same pairs (in-sample); the "
                            "cross-fitted rates below rank on one half of the pairs and score the other.")
            for kind in bias[0]["kinds"]:
                held = bias_held_apart_table(bias, kind)
                if not held.empty:
                    atomic_write_with(out / f"{data}_bias_{kind}_held_apart.csv",
                                      lambda tmp, t=held: t.to_csv(tmp, index=False))
                    sections.append(f"### {data}, {kind}: bias heads ranked on one half, ablated on the other\n\n"
                                    + frame_markdown(held, 3))
            overlap = bias_overlap_table(bias)
            if not overlap.empty:
                sections.append(f"### {data}: the top-20 bias heads in the ARM (summed over seeds), and across seeds\n\n"
                                + frame_markdown(overlap, 2))
            attention = bias_attention_table(bias)
            if not attention.empty:
                atomic_write_with(out / f"{data}_bias_attention.csv",
                                  lambda tmp, t=attention: t.to_csv(tmp, index=False))
                sections.append(f"### {data}: where the heads attend from the read position (share by segment)\n\n"
                                + frame_markdown(attention, 3))
            for kind in bias[0]["kinds"]:
                figs[f"{data}_bias_heads_{kind}"] = plot_bias_heads(bias, shapes[f], kind, data=data)
    if sections:
        atomic_write(out / "heads.md", "# Which heads, and why\n\n"
                     + f"Ablation folders: {', '.join(str(f) for f in folders)}; {pairs}.\n\n"
                     + "\n\n".join(sections) + "\n")
    return figs
