"""Stage ablations: pairwise accuracy per setting of one axis, and every categorical axis side by side, with the
zero-shot judge and chance as references.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from armlens.errors import BadInputError
from armlens.plots.style import ACC_TITLE, SERIES_COLOURS, style
from armlens.stats import counted

AXIS_TITLES = {
    "selection": "Head selection",
    "estimator": "Activation estimator (Stage 1b)",
    "reading": "Extraction reading (Stage 1)",
    "demos": "Answered demonstrations per class (icl)",
    "trials": "Extraction prompts averaged (icl)",
    "steps": "REINFORCE steps",
    "prior": "REINFORCE prior (initial logit)",
    "lr": "REINFORCE learning rate",
    "objective": "REINFORCE objective",
    "criteria": "One ARM per criterion vs pooled",
    "scoring": "Score reading (Stage 3)",
    "shots": "Few-shot pairs per criterion",
    "heads": "Number of patched heads",
    "flip": "Flipped few-shot labels",
    "sparsity": "REINFORCE sparsity penalty (per head)",
    "controls": "What the selected heads are given",
}


X_TITLES = {
    "selection": "Selector",
    "estimator": "Estimator",
    "reading": "Extraction prompts",
    "demos": "Demonstrations per class",
    "trials": "Prompts averaged",
    "steps": "Steps",
    "prior": "Initial logit",
    "lr": "Learning rate",
    "objective": "Objective",
    "criteria": "ARMs",
    "scoring": "Reading of the last-token logits",
    "shots": "Few-shot pairs per criterion (n)",
    "heads": "Patched heads k (log scale)",
    "flip": "Flipped few-shot pairs (%)",
    "sparsity": "Penalty per selected head (nats)",
    "controls": "Values written",
}


SETTING_NAMES = {
    "reinforce": "REINFORCE",
    "likely": "most likely (p > 0.5)",
    "random": "random (same k)",
    "topk_prob": "top-k P(select)",
    "topk_attribution": "top-k attribution",
    "all": "all heads",
    "none": "none (zero-shot)",
    "mean": "mean",
    "wpca": "wPCA uniform",
    "wpca_confidence": "wPCA confidence",
    "class_diff": "class diff",
    "median": "median",
    "trimmed_mean": "trimmed mean",
    "icl-lines": "icl (one turn)",
    "icl-turns": "icl (chat turns)",
    "answered": "answered",
    "mean_ablation": "mean-ablation<br>(no label)",  # two lines: one is wider than a narrow panel's tick gap
    "answer": "answer CE",
    "pairwise": "pairwise",
    "per_criterion": "per criterion",
    "pooled": "pooled",
    "prob": "P(Yes)",
    "normalized": "P(Yes|Yes,No)",
    "logit_diff": "logit diff",
    "generative": "generative",
}


SERIES_NAMES = {
    "ARM": "ARM",
    "zero-shot": "zero-shot judge",
    "topk_prob": "top-k by REINFORCE P(select)",
    "topk_attribution": "top-k by single-head attribution",
    "random": "k random heads",
}


def pretty(setting: str) -> str:
    return SETTING_NAMES.get(setting, setting)


def references(fig: go.Figure, zero_shot: tuple[float, float, float] | None, **where: Any) -> None:
    """Zero-shot judge (dashed, grey band = its interval) and chance (dotted) as lines with legend entries."""
    if zero_shot is not None and not math.isnan(zero_shot[0]):
        z, zlo, zhi = (100 * v for v in zero_shot)
        if not (math.isnan(zlo) or math.isnan(zhi)):
            fig.add_hrect(y0=max(0.0, zlo), y1=min(100.0, zhi), fillcolor="grey", opacity=0.12, line_width=0,
                          **where)
        fig.add_hline(y=z, line={"dash": "dash", "color": "#555"}, **where)
        if not where or where.get("col") == 1:
            band = "" if math.isnan(zlo) else f"; band: {zlo:.0f}-{zhi:.0f}%"
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "#555"},
                                     name=f"zero-shot judge ({z:.1f}%{band})"), **where)
    fig.add_hline(y=50, line={"dash": "dot", "color": "#999", "width": 1}, **where)
    if not where or where.get("col") == 1:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"dash": "dot", "color": "#999"},
                                 name="chance (50%)"), **where)


def plot_ablation(
    summary: pd.DataFrame,
    cells: pd.DataFrame | None = None,
    *,
    axis: str,
    zero_shot: tuple[float, float, float] | None = None,
    data_name: str = "",
    interval: str = "95% t-interval over seeds",
) -> go.Figure:
    """Pairwise accuracy per setting of one axis: mean across seeds with its interval, per-seed dots, and the
    zero-shot judge (dashed line, shaded interval) and chance (dotted) as references.

    ``summary`` holds the rows of :func:`armlens.analysis.ablations.summarize` (``accuracy``, ``ci_low``,
    ``ci_high`` in [0, 1]); ``cells`` the per-seed rows (optional dots).
    """
    rows = summary[summary["axis"] == axis]
    if rows.empty:
        raise BadInputError(f"no results for ablation axis {axis!r}")
    numeric = rows["x"].notna().all()
    fig = go.Figure()
    series = list(dict.fromkeys(rows["series"]))
    n_seeds = int(rows["n_seeds"].max())
    for i, s in enumerate(series):
        r = rows[rows["series"] == s]
        if numeric:
            r = r.sort_values("x")
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        x = r["x"].tolist() if numeric else [pretty(v) for v in r["setting"]]
        acc = (100 * r["accuracy"]).tolist()
        lo = (100 * r["ci_low"]).clip(lower=0).tolist()
        hi = (100 * r["ci_high"]).clip(upper=100).tolist()
        plus = [None if math.isnan(h) else h - a for a, h in zip(acc, hi, strict=True)]
        minus = [None if math.isnan(low) else a - low for a, low in zip(acc, lo, strict=True)]
        hover = [f"{pretty(st)}: {a:.1f}% (n={n}, ties {t:.1f}, {h:.1f} heads)"
                 for st, a, n, t, h in zip(r["setting"], acc, r["n_seeds"], r["ties"], r["n_heads"], strict=True)]
        ties = [f"{t:.0f}/{p:.0f} pairs tied" if t >= 0.25 * p else "" for t, p in zip(r["ties"], r["n_pairs"],
                                                                                        strict=True)]
        fig.add_trace(go.Scatter(
            x=x, y=acc, name=SERIES_NAMES.get(s, s), mode=("lines+" if numeric else "") + "markers+text",
            text=ties, textposition="top center", textfont={"size": 11, "color": colour},
            marker={"size": 11, "color": colour, "symbol": "diamond"}, line={"color": colour},
            error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1.5,
                     "width": 6, "color": colour},
            hovertext=hover, hoverinfo="text", offsetgroup=str(i),
        ))
        if cells is not None and not cells.empty:
            c = cells[(cells["axis"] == axis) & (cells["series"] == s)]
            cx = c["x"].tolist() if numeric else [pretty(v) for v in c["setting"]]
            fig.add_trace(go.Scatter(
                x=cx, y=(100 * c["accuracy"]).tolist(), mode="markers", showlegend=i == 0,
                name="single seed", legendgroup="seeds",
                marker={"size": 6, "color": colour, "opacity": 0.45, "symbol": "circle"},
                hovertext=[f"seed {sd}: {100 * a:.1f}%" for sd, a in zip(c["seed"], c["accuracy"], strict=True)],
                hoverinfo="text",
            ))
    references(fig, zero_shot)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100])
    fig.update_xaxes(title_text=X_TITLES.get(axis, axis))
    if numeric:
        ticks = sorted(set(rows["x"].tolist()))
        fig.update_xaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
        lo_x, hi_x = min(ticks), max(ticks)
        if axis == "heads" and lo_x > 0:
            fig.update_xaxes(type="log", range=[math.log10(lo_x / 1.6), math.log10(hi_x * 1.6)])
        else:
            pad = 0.08 * (hi_x - lo_x or 1)
            fig.update_xaxes(range=[lo_x - pad, hi_x + pad])
    fig.update_layout(legend={"orientation": "h", "y": -0.22, "x": 0}, hovermode="closest", scattermode="group",
                      scattergap=0.6)
    on = f" on {data_name}" if data_name else ""
    sub = f"mean over {counted(n_seeds, 'seed')} ({interval}); a tie counts as wrong"
    return style(fig, f"{AXIS_TITLES.get(axis, axis)}: pairwise accuracy{on}", subtitle=sub, width=900, height=520)


def plot_ablation_overview(
    summary: pd.DataFrame, *, axes: Sequence[str] = ("selection", "reading", "estimator", "scoring"),
    zero_shot: tuple[float, float, float] | None = None, data_name: str = "",
    interval: str = "95% t-interval over seeds",
) -> go.Figure:
    """The categorical axes side by side (one panel each): the one-glance summary of what each stage adds."""
    present = [a for a in axes if (summary["axis"] == a).any()]
    if not present:
        raise BadInputError("no categorical ablation axes in the summary")
    widths = [max(2, (summary["axis"] == a).sum()) for a in present]
    fig = make_subplots(rows=1, cols=len(present), shared_yaxes=True, horizontal_spacing=0.03,
                        column_widths=[w / sum(widths) for w in widths],
                        subplot_titles=[AXIS_TITLES.get(a, a) for a in present])
    for j, a in enumerate(present, start=1):
        rows = summary[summary["axis"] == a]
        for i, s in enumerate(dict.fromkeys(rows["series"])):
            r = rows[rows["series"] == s]
            acc = 100 * r["accuracy"]
            plus = (100 * r["ci_high"]).clip(upper=100) - acc
            minus = acc - (100 * r["ci_low"]).clip(lower=0)
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            fig.add_trace(go.Scatter(
                x=[pretty(v) for v in r["setting"]], y=acc.tolist(), mode="markers", name=SERIES_NAMES.get(s, s),
                showlegend=s != "ARM" or j == 1, legendgroup=s, marker={"size": 10, "color": colour,
                                                                        "symbol": "diamond"},
                error_y={"type": "data", "symmetric": False, "array": plus.fillna(0).tolist(),
                         "arrayminus": minus.fillna(0).tolist(), "color": colour, "width": 4},
                hovertext=[f"{pretty(v)}: {x:.1f}%" for v, x in zip(r["setting"], acc, strict=True)],
                hoverinfo="text",
            ), row=1, col=j)
        references(fig, zero_shot, row=1, col=j)
        fig.update_xaxes(tickangle=-40, row=1, col=j)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100], row=1, col=1)
    fig.update_yaxes(range=[0, 100])
    fig.update_layout(scattermode="group", scattergap=0.6)
    n_seeds = int(summary["n_seeds"].max())
    on = f" on {data_name}" if data_name else ""
    fig.update_layout(legend={"orientation": "h", "y": -0.46, "x": 0})
    fig.add_annotation(text="Setting of the varied stage (each panel holds the other stages at the reference)",
                       x=0.5, y=-0.36, xref="paper", yref="paper", showarrow=False, font={"size": 14})
    return style(fig, f"What each ARM stage contributes{on}",
                  subtitle=f"pairwise accuracy, mean over {counted(n_seeds, 'seed')} ({interval}); a tie counts as wrong",
                  width=1300, height=560)


SWEEP_TITLES = {"selection": "Heads (same means)", "reading": "Stage 1 reading", "demos": "Demos per class",
                "trials": "Trials", "steps": "REINFORCE steps", "prior": "Prior logit", "lr": "Learning rate",
                "objective": "Objective",
                "criteria": "Per criterion or pooled", "estimator": "Estimator (Stage 1b)", "shots": "Pairs/criterion"}
"""Short panel titles of :func:`plot_sweep` (its panels are narrow)."""
SWEEP_LEFT_OUT = {("selection", "all")}
"""Settings the sweep figure leaves out (still in its table): every head patched makes every score tie (0%), which
only stretches the axis."""


def plot_sweep(table: pd.DataFrame, *, title: str = "Each setting against the reference ARM", per_row: int = 5) -> go.Figure:
    """The defaults sweep, one panel per axis (``per_row`` panels a row): each setting's accuracy minus the current
    default's on the same pairs and seeds (points; 95% interval from the seed-then-pair bootstrap), one marker per
    dataset and the pooled estimate (equal weight per dataset). ``table`` is :func:`armlens.analysis.sweep.sweep_table`'s."""
    rows = table[table["diff"].notna()] if "diff" in table else table.iloc[:0]
    if not rows.empty:
        rows = rows[[(a, s) not in SWEEP_LEFT_OUT for a, s in zip(rows["axis"], rows["setting"], strict=True)]]
    axes = list(dict.fromkeys(rows["axis"])) if not rows.empty else []
    if not axes:
        raise BadInputError("the sweep table holds no setting compared with a default")
    n_cols = min(per_row, len(axes))
    n_rows = -(-len(axes) // n_cols)
    fig = make_subplots(rows=n_rows, cols=n_cols, shared_yaxes="rows", horizontal_spacing=0.03,
                        vertical_spacing=0.5 / n_rows, subplot_titles=[SWEEP_TITLES.get(a, a) for a in axes])
    datasets = list(dict.fromkeys(rows["data"]))
    for j, a in enumerate(axes):
        row, col = j // n_cols + 1, j % n_cols + 1
        on_axis = rows[rows["axis"] == a]
        order = list(dict.fromkeys(on_axis["setting"]))
        default = on_axis[on_axis["reference"]]["setting"].tolist()
        names = {s: pretty(s) + (" (reference)" if s in default else "") for s in order}
        for i, d in enumerate(datasets):
            r = on_axis[on_axis["data"] == d].set_index("setting").reindex(order).dropna(subset=["diff"])
            pooled = d == "all"
            colour = "#111" if pooled else SERIES_COLOURS[i % len(SERIES_COLOURS)]
            diff = 100 * r["diff"]
            fig.add_trace(go.Scatter(
                x=[names[s] for s in r.index], y=diff.tolist(), mode="markers",
                name="pooled (equal weight per dataset)" if pooled else d, legendgroup=d, showlegend=j == 0,
                marker={"size": 12 if pooled else 8, "color": colour, "symbol": "diamond" if pooled else "circle"},
                error_y={"type": "data", "symmetric": False, "array": (100 * r["diff_high"] - diff).tolist(),
                         "arrayminus": (diff - 100 * r["diff_low"]).tolist(), "color": colour, "width": 3},
                hovertext=[f"{d} · {names[s]}: {v:+.1f} points ({100 * lo:+.1f} to {100 * hi:+.1f}), accuracy "
                           f"{100 * acc:.1f}%, n = {n} pairs over {counted(k, 'seed')}"
                           for s, v, lo, hi, acc, n, k in zip(r.index, diff, r["diff_low"], r["diff_high"],
                                                              r["accuracy"], r["n_pairs"], r["n_seeds"], strict=True)],
                hoverinfo="text", offsetgroup=d,
            ), row=row, col=col)
        fig.add_hline(y=0, line={"color": "#555", "width": 1}, row=row, col=col)
        fig.update_xaxes(tickangle=-40, row=row, col=col)
    for r in range(1, n_rows + 1):
        fig.update_yaxes(title_text="points vs reference", row=r, col=1)
    fig.update_layout(scattermode="group", scattergap=0.5,
                      legend={"orientation": "h", "y": -0.25 if n_rows > 1 else -0.42, "x": 0})
    n_seeds = int(rows["n_seeds"].min())
    left = " (every head patched: all ties, in the table only)" if (table["setting"] == "all").any() else ""
    return style(fig, title, subtitle=f"accuracy minus the reference ARM's (the defaults the sweep ran around), "
                                        f"same test pairs and seeds (at least {counted(n_seeds, 'seed')}); 95% intervals: seeds and prompts crossed; "
                                        f"a tie counts as wrong{left}", width=1300, height=200 + 380 * n_rows)
