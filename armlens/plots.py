"""Figures: every plot takes tensors or tidy DataFrames (from :mod:`armlens.analysis`) and returns a plotly Figure.

Conventions (``docs/style.md``): head maps have "Layer" on the vertical axis (layer 0 at the top, as in
TransformerLens' ``imshow``) and "Head" on the horizontal one, hover labels ``L{l}H{h}``; signed effects use RdBu
centred at 0 with a symmetric range; shares and probabilities use a sequential scale fixed to [0, 1]; every
accuracy point carries its interval across seeds; every figure has a title and labelled axes with units.

Nothing here computes: :func:`write_figures` only writes HTML (always, ``include_plotlyjs="cdn"``) and PNG (through
kaleido, which needs a Chrome-family browser: :func:`find_browser`, :class:`BrowserNotFoundError`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from armlens.patching import head_label
from armlens.typing import HeadMask, HeadValues

SIGNED = "RdBu"
"""Diverging scale for signed effects (red negative, blue positive), always centred at 0."""
SHARE = "Blues"
"""Sequential scale for probabilities and shares in [0, 1]."""
SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
FONT = {"family": "Arial, Helvetica, sans-serif", "size": 13}

AXIS_TITLES = {
    "selection": "Head selection",
    "estimator": "Activation estimator (Stage 1b)",
    "reading": "Extraction reading (Stage 1)",
    "demos": "Answered demonstrations per class (icl)",
    "trials": "Extraction prompts averaged (icl)",
    "steps": "REINFORCE steps",
    "prior": "REINFORCE prior (initial logit)",
    "objective": "REINFORCE objective",
    "criteria": "One ARM per criterion vs pooled",
    "scoring": "Score reading (Stage 3)",
    "shots": "Few-shot pairs per criterion",
    "heads": "Number of patched heads",
    "flip": "Flipped few-shot labels",
}
X_TITLES = {
    "selection": "Selector",
    "estimator": "Estimator",
    "reading": "Extraction prompts",
    "demos": "Demonstrations per class",
    "trials": "Prompts averaged",
    "steps": "Steps",
    "prior": "Initial logit",
    "objective": "Objective",
    "criteria": "ARMs",
    "scoring": "Reading of the last-token logits",
    "shots": "Few-shot pairs per criterion (n)",
    "heads": "Patched heads k (log scale)",
    "flip": "Flipped few-shot pairs (%)",
}
SETTING_NAMES = {
    "reinforce": "REINFORCE",
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
    "mean_ablation": "mean-ablation (no label)",
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
ACC_TITLE = "Pairwise accuracy (%)"


# ---------------------------------------------------------------------------------------------------- helpers


def _labels(n_layers: int, n_heads: int) -> list[list[str]]:
    return [[head_label(layer, head) for head in range(n_heads)] for layer in range(n_layers)]


def _grid(t: Tensor) -> list[list[float]]:
    return t.detach().float().cpu().tolist()


def _wrap(text: str, width: int) -> list[str]:
    """Break a subtitle into lines of at most ``width`` characters, at "; " first, then at spaces."""
    lines: list[str] = []
    for part in text.split("; "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "; " + part
            continue
        words, line = part.split(" "), ""
        for w in words:
            if line and len(line) + 1 + len(w) > width:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        lines.append(line)
    return lines


def _style(fig: go.Figure, title: str, *, width: int = 900, height: int = 600, subtitle: str | None = None) -> go.Figure:
    lines = _wrap(subtitle, max(40, int(width / 6.3))) if subtitle else []
    text = title + "".join(f"<br><span style='font-size:12px'>{line}</span>" for line in lines)
    top = 70 + 16 * len(lines)
    fig.update_layout(title={"text": text, "x": 0.01, "xanchor": "left", "y": 1, "yref": "container",
                             "yanchor": "top", "pad": {"t": 22}}, font=FONT,
                      template="plotly_white", width=width, height=height + 16 * len(lines),
                      margin={"l": 70, "r": 30, "t": top + 20, "b": 60})
    return fig


def _head_axes(fig: go.Figure, n_layers: int, n_heads: int, row: int | None = None, col: int | None = None,
               show_y_title: bool = True) -> None:
    kw = {"row": row, "col": col} if row is not None else {}
    fig.update_xaxes(title_text="Head", dtick=1 if n_heads <= 16 else None, tick0=0, showgrid=False, **kw)
    fig.update_yaxes(title_text="Layer" if show_y_title else None, range=[n_layers - 0.5, -0.5], showgrid=False,
                     dtick=1 if n_layers <= 12 else 5, tick0=0, zeroline=False, **kw)
    fig.update_xaxes(range=[-0.5, n_heads - 0.5], zeroline=False, **kw)


def _heatmap(values: HeadValues, *, name: str, fmt: str = ".3f", coloraxis: str | None = None,
             **kw: Any) -> go.Heatmap:
    n_layers, n_heads = values.shape
    return go.Heatmap(
        z=_grid(values), x=list(range(n_heads)), y=list(range(n_layers)), customdata=_labels(n_layers, n_heads),
        hovertemplate=f"%{{customdata}}<br>{name}: %{{z:{fmt}}}<extra></extra>", coloraxis=coloraxis, **kw,
    )


def _mask_markers(mask: HeadMask, name: str = "selected head", show: bool = True) -> go.Scatter:
    idx = mask.nonzero().tolist()
    return go.Scatter(
        x=[h for _, h in idx], y=[layer for layer, _ in idx], mode="markers", name=name, showlegend=show,
        text=[head_label(layer, h) for layer, h in idx], hovertemplate="%{text} (selected)<extra></extra>",
        marker={"symbol": "x-thin", "size": 8, "line": {"width": 2, "color": "#d62728"}, "color": "#d62728"},
    )


def _symmetric(values: Tensor) -> float:
    m = float(values.abs().max()) if values.numel() else 0.0
    return m if m > 0 else 1.0


# ---------------------------------------------------------------------------------------------------- head maps


def plot_head_map(
    values: HeadValues,
    *,
    title: str,
    colorbar_title: str,
    signed: bool = False,
    mask: HeadMask | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """One ``[n_layers, n_heads]`` map; ``signed``: RdBu centred at 0 (symmetric range), else [0, 1] sequential."""
    n_layers, n_heads = values.shape
    if signed:
        m = _symmetric(values)
        trace = _heatmap(values, name=colorbar_title, colorscale=SIGNED, zmid=0, zmin=-m, zmax=m,
                         colorbar={"title": {"text": colorbar_title}})
    else:
        trace = _heatmap(values, name=colorbar_title, colorscale=SHARE, zmin=0, zmax=1,
                         colorbar={"title": {"text": colorbar_title}})
    fig = go.Figure(trace)
    if mask is not None and bool(mask.any()):
        fig.add_trace(_mask_markers(mask))
    _head_axes(fig, n_layers, n_heads)
    fig.update_layout(legend={"orientation": "h", "y": -0.08, "x": 0})
    return _style(fig, title, width=max(420, 60 * n_heads + 220), height=max(420, 22 * n_layers + 160),
                  subtitle=subtitle)


def plot_selection_probability(
    probs: Mapping[int, HeadValues], masks: Mapping[int, HeadMask] | None = None, *, subtitle: str | None = None
) -> go.Figure:
    """REINFORCE's final selection probability per head, one panel per seed; crosses mark the chosen head set."""
    if not probs:
        raise ValueError("no selection probabilities to plot")
    seeds = sorted(probs)
    n_layers, n_heads = probs[seeds[0]].shape
    fig = make_subplots(rows=1, cols=len(seeds), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"seed {s}" + (f" ({int(masks[s].sum())} heads chosen)" if masks else "")
                                        for s in seeds])
    for i, s in enumerate(seeds, start=1):
        fig.add_trace(_heatmap(probs[s], name="P(select)", coloraxis="coloraxis"), row=1, col=i)
        if masks is not None and bool(masks[s].any()):
            fig.add_trace(_mask_markers(masks[s], "head in the final mask", show=i == 1), row=1, col=i)
        _head_axes(fig, n_layers, n_heads, row=1, col=i, show_y_title=i == 1)
    fig.update_layout(coloraxis={"colorscale": SHARE, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "P(select)"}}},
                      legend={"orientation": "h", "y": -0.1, "x": 0})
    return _style(fig, "Which heads REINFORCE selects: final selection probability per head", subtitle=subtitle,
                  width=max(520, len(seeds) * (45 * n_heads + 60) + 160), height=max(460, 22 * n_layers + 200))


def plot_trajectory(
    trajectory: Float[Tensor, "steps n_layers n_heads"], steps: Sequence[int], *, seed: int | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """Small multiples: the selection probabilities after the given (0-based) REINFORCE steps."""
    _, n_layers, n_heads = trajectory.shape
    fig = make_subplots(rows=1, cols=len(steps), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"after step {s + 1}" for s in steps])
    for i, s in enumerate(steps, start=1):
        fig.add_trace(_heatmap(trajectory[s], name="P(select)", coloraxis="coloraxis"), row=1, col=i)
        _head_axes(fig, n_layers, n_heads, row=1, col=i, show_y_title=i == 1)
    fig.update_layout(coloraxis={"colorscale": SHARE, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "P(select)"}}})
    title = "Selection probability over REINFORCE steps" + (f" (seed {seed})" if seed is not None else "")
    return _style(fig, title, subtitle=subtitle, width=max(600, len(steps) * (35 * n_heads + 40) + 160),
                  height=max(460, 22 * n_layers + 180))


def plot_trajectory_slider(
    trajectory: Float[Tensor, "steps n_layers n_heads"], *, seed: int | None = None, subtitle: str | None = None
) -> go.Figure:
    """One heatmap with a slider over every REINFORCE step (interactive HTML)."""
    n_steps, n_layers, n_heads = trajectory.shape
    fig = go.Figure(_heatmap(trajectory[-1], name="P(select)", colorscale=SHARE, zmin=0, zmax=1,
                             colorbar={"title": {"text": "P(select)"}}))
    fig.frames = [go.Frame(data=[go.Heatmap(z=_grid(trajectory[s]))], name=str(s + 1)) for s in range(n_steps)]
    fig.update_layout(sliders=[{
        "active": n_steps - 1, "currentvalue": {"prefix": "after step "}, "pad": {"t": 40},
        "steps": [{"label": str(s + 1), "method": "animate",
                   "args": [[str(s + 1)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                           "transition": {"duration": 0}}]} for s in range(n_steps)],
    }])
    _head_axes(fig, n_layers, n_heads)
    title = "Selection probability per REINFORCE step" + (f" (seed {seed})" if seed is not None else "")
    return _style(fig, title, subtitle=subtitle, width=max(520, 45 * n_heads + 260), height=max(520, 22 * n_layers + 240))


def plot_training_curves(
    losses: Mapping[int, Sequence[float]], expected_heads: Mapping[int, Sequence[float]], *,
    entropy: Mapping[int, Sequence[float]] | None = None,
    val_losses: Mapping[int, Sequence[Sequence[float]]] | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """REINFORCE per step, one line per seed: the training loss of the sampled masks and, where recorded, the
    validation loss of the policy's most likely mask on held-apart pairs; the expected head count and the policy
    entropy (both flatten as the policy converges)."""
    panels = ["Training loss: mean of the K masks (faint: per step, bold: running mean)",
              "Validation loss: most likely mask (p > 0.5) on held-apart pairs",
              "Expected number of selected heads", "Policy entropy (nats, summed over heads)"]
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.12, vertical_spacing=0.16, subplot_titles=panels)
    for i, s in enumerate(sorted(losses)):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        steps = list(range(1, len(losses[s]) + 1))
        window = max(1, len(steps) // 8)
        smooth = pd.Series(list(losses[s])).rolling(window, min_periods=1).mean().tolist()
        fig.add_trace(go.Scatter(x=steps, y=list(losses[s]), mode="lines", name=f"seed {s} (per step)",
                                 legendgroup=str(s), showlegend=False, opacity=0.25, line={"color": colour, "width": 1},
                                 hovertemplate="step %{x}: %{y:.3f}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name=f"seed {s}", legendgroup=str(s),
                                 line={"color": colour, "width": 2.5},
                                 hovertemplate=f"step %{{x}}: %{{y:.3f}} (mean of last {window})<extra></extra>"),
                      row=1, col=1)
        if val_losses and val_losses.get(s):
            vx, vy = zip(*[(int(v[0]), float(v[1])) for v in val_losses[s]], strict=True)
            fig.add_trace(go.Scatter(x=list(vx), y=list(vy), mode="lines+markers", name=f"seed {s}",
                                     legendgroup=str(s), showlegend=False, line={"color": colour, "width": 2.5}),
                          row=1, col=2)
        fig.add_trace(go.Scatter(x=list(range(1, len(expected_heads[s]) + 1)), y=list(expected_heads[s]),
                                 mode="lines", name=f"seed {s}", legendgroup=str(s), showlegend=False,
                                 line={"color": colour, "width": 2.5}), row=2, col=1)
        if entropy and entropy.get(s):
            fig.add_trace(go.Scatter(x=list(range(1, len(entropy[s]) + 1)), y=list(entropy[s]), mode="lines",
                                     name=f"seed {s}", legendgroup=str(s), showlegend=False,
                                     line={"color": colour, "width": 2.5}), row=2, col=2)
    fig.update_xaxes(title_text="REINFORCE step")
    fig.update_yaxes(title_text="Loss (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Loss (nats)", row=1, col=2)
    fig.update_yaxes(title_text="Sum of P(select) (heads)", row=2, col=1)
    fig.update_yaxes(title_text="Entropy (nats)", rangemode="tozero", row=2, col=2)
    return _style(fig, "REINFORCE training curves", subtitle=subtitle, width=1100, height=760)


def plot_stability(frequency: HeadValues, n_runs: int, *, subtitle: str | None = None) -> go.Figure:
    """Share of seeds / few-shot draws whose final head set contains each head."""
    return plot_head_map(frequency, title=f"Stability of the chosen heads across {n_runs} seeds and few-shot draws",
                         colorbar_title="share of seeds", subtitle=subtitle)


def plot_jaccard(matrix: pd.DataFrame, *, chance: float | None = None, subtitle: str | None = None) -> go.Figure:
    """Mean Jaccard overlap of head sets between criteria (diagonal: between seeds of one criterion)."""
    names = [str(c) for c in matrix.columns]
    z = matrix.to_numpy(dtype=float).tolist()
    text = [["n/a" if math.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, text=text, texttemplate="%{text}", colorscale=SHARE, zmin=0, zmax=1,
        colorbar={"title": {"text": "Jaccard"}}, hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>",
    ))
    fig.update_xaxes(title_text="Criterion (head set B)", tickangle=0)
    fig.update_yaxes(title_text="Criterion (head set A)", autorange="reversed")
    sub = subtitle or ""
    if chance is not None:
        sub = (sub + "; " if sub else "") + f"chance level for random sets of these sizes: {chance:.2f}"
    return _style(fig, "Overlap of REINFORCE head sets between criteria (mean Jaccard index)",
                  subtitle=sub or None, width=620, height=540)


def plot_transfer(gain: pd.DataFrame, *, subtitle: str | None = None) -> go.Figure:
    """Accuracy gain over the zero-shot judge (percentage points, RdBu centred at 0) of each criterion's ARM
    (rows) on each subset of the test pairs (columns)."""
    z = gain.to_numpy(dtype=float)
    finite = [abs(v) for v in z.flatten().tolist() if not math.isnan(v)]
    m = max(finite) if finite and max(finite) > 0 else 1.0
    text = [["n/a" if math.isnan(v) else f"{v:+.0f}" for v in row] for row in z.tolist()]
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=[str(c) for c in gain.columns], y=[str(i) for i in gain.index], text=text,
        texttemplate="%{text}", colorscale=SIGNED, zmid=0, zmin=-m, zmax=m,
        colorbar={"title": {"text": "gain (pp)"}},
        hovertemplate="ARM fitted on %{y}<br>test subset %{x}: %{z:+.1f} pp<extra></extra>",
    ))
    fig.update_xaxes(title_text="Subset of the test pairs")
    fig.update_yaxes(title_text="Criterion the ARM was fitted on", autorange="reversed")
    return _style(fig, "Does a criterion's ARM transfer? Accuracy gain over the zero-shot judge per test subset",
                  subtitle=subtitle, width=760, height=480)


def plot_attribution(
    effects: HeadValues, probs: HeadValues, mask: HeadMask | None = None, *, rho: float | None = None,
    subtitle: str | None = None, mask_name: str = "head in REINFORCE's final mask",
) -> go.Figure:
    """Two panels: single-head patching effect on the Yes-No margin (RdBu, centred at 0) beside REINFORCE's
    selection probability (crosses: the chosen heads)."""
    n_layers, n_heads = effects.shape
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.16, subplot_titles=[
        "Single-head patching effect", "REINFORCE selection probability"])
    m = _symmetric(effects)
    fig.add_trace(_heatmap(effects, name="effect (logits)", coloraxis="coloraxis"), row=1, col=1)
    fig.add_trace(_heatmap(probs, name="P(select)", coloraxis="coloraxis2"), row=1, col=2)
    if mask is not None and bool(mask.any()):
        fig.add_trace(_mask_markers(mask, mask_name), row=1, col=2)
        fig.add_trace(_mask_markers(mask, mask_name, show=False), row=1, col=1)
    for c in (1, 2):
        _head_axes(fig, n_layers, n_heads, row=1, col=c, show_y_title=c == 1)
    fig.update_layout(
        coloraxis={"colorscale": SIGNED, "cmid": 0, "cmin": -m, "cmax": m,
                   "colorbar": {"title": {"text": "Δ margin<br>(logits)"}, "x": 0.43, "len": 0.9}},
        coloraxis2={"colorscale": SHARE, "cmin": 0, "cmax": 1,
                    "colorbar": {"title": {"text": "P(select)"}, "x": 1.0, "len": 0.9}},
        legend={"orientation": "h", "y": -0.1, "x": 0},
    )
    sub = subtitle or ("Δ margin: change of logit(Yes) - logit(No) towards the gold answer when only that head is "
                       "patched with its few-shot mean")
    if rho is not None and not math.isnan(rho):
        sub += f"; Spearman rank correlation of the two maps: {rho:+.2f}"
    return _style(fig, "Attribution map beside REINFORCE's choice", subtitle=sub,
                  width=max(760, 2 * (45 * n_heads + 60) + 300), height=max(480, 22 * n_layers + 200))


def plot_attention(
    tokens: Sequence[str], weights: Sequence[float], *, head: str, patched_weights: Sequence[float] | None = None,
    top: int = 8, subtitle: str | None = None,
) -> go.Figure:
    """Attention from the last token (the read position) to every token of one judge prompt, for one head."""
    pos = list(range(len(tokens)))
    raw = [t.replace("\n", "\\n") for t in tokens]
    shown = [html.escape(t) for t in raw]
    fig = go.Figure(go.Bar(x=pos, y=list(weights), name="unpatched model", marker={"color": "#1f77b4"},
                           customdata=shown, hovertemplate="pos %{x}: %{customdata}<br>weight %{y:.3f}<extra></extra>"))
    if patched_weights is not None:
        fig.add_trace(go.Scatter(x=pos, y=list(patched_weights), mode="lines", name="ARM heads patched",
                                 line={"color": "#d62728", "width": 1.2}, customdata=shown,
                                 hovertemplate="pos %{x}: %{customdata}<br>weight %{y:.3f}<extra></extra>"))
    order = sorted(pos, key=lambda i: -weights[i])[:top]
    for rank, i in enumerate(order):
        fig.add_annotation(x=i, y=weights[i], text=html.escape((raw[i].strip() or "␣")[:16]), showarrow=True,
                           arrowhead=0, ax=0, ay=-18 - 14 * (rank % 3), font={"size": 11})
    fig.update_xaxes(title_text="Key position (token index in the judge prompt)")
    fig.update_yaxes(title_text="Attention weight from the last token", rangemode="tozero")
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
                      bargap=0)
    return _style(fig, f"Where {head} attends from the read position", subtitle=subtitle, width=1100, height=460)


# ---------------------------------------------------------------------------------------------------- ablations


def _pretty(setting: str) -> str:
    return SETTING_NAMES.get(setting, setting)


def _references(fig: go.Figure, zero_shot: tuple[float, float, float] | None, **where: Any) -> None:
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
        raise ValueError(f"no results for ablation axis {axis!r}")
    numeric = rows["x"].notna().all()
    fig = go.Figure()
    series = list(dict.fromkeys(rows["series"]))
    n_seeds = int(rows["n_seeds"].max())
    for i, s in enumerate(series):
        r = rows[rows["series"] == s]
        if numeric:
            r = r.sort_values("x")
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        x = r["x"].tolist() if numeric else [_pretty(v) for v in r["setting"]]
        acc = (100 * r["accuracy"]).tolist()
        lo = (100 * r["ci_low"]).clip(lower=0).tolist()
        hi = (100 * r["ci_high"]).clip(upper=100).tolist()
        plus = [None if math.isnan(h) else h - a for a, h in zip(acc, hi, strict=True)]
        minus = [None if math.isnan(low) else a - low for a, low in zip(acc, lo, strict=True)]
        hover = [f"{_pretty(st)}: {a:.1f}% (n={n}, ties {t:.1f}, {h:.1f} heads)"
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
            cx = c["x"].tolist() if numeric else [_pretty(v) for v in c["setting"]]
            fig.add_trace(go.Scatter(
                x=cx, y=(100 * c["accuracy"]).tolist(), mode="markers", showlegend=i == 0,
                name="single seed", legendgroup="seeds",
                marker={"size": 6, "color": colour, "opacity": 0.45, "symbol": "circle"},
                hovertext=[f"seed {sd}: {100 * a:.1f}%" for sd, a in zip(c["seed"], c["accuracy"], strict=True)],
                hoverinfo="text",
            ))
    _references(fig, zero_shot)
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
    sub = f"mean over {n_seeds} seed{'s' if n_seeds != 1 else ''} ({interval}); a tie counts as wrong"
    return _style(fig, f"{AXIS_TITLES.get(axis, axis)}: pairwise accuracy{on}", subtitle=sub, width=900, height=520)


def plot_ablation_overview(
    summary: pd.DataFrame, *, axes: Sequence[str] = ("selection", "reading", "estimator", "scoring"),
    zero_shot: tuple[float, float, float] | None = None, data_name: str = "",
    interval: str = "95% t-interval over seeds",
) -> go.Figure:
    """The categorical axes side by side (one panel each): the one-glance summary of what each stage adds."""
    present = [a for a in axes if (summary["axis"] == a).any()]
    if not present:
        raise ValueError("no categorical ablation axes in the summary")
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
                x=[_pretty(v) for v in r["setting"]], y=acc.tolist(), mode="markers", name=SERIES_NAMES.get(s, s),
                showlegend=s != "ARM" or j == 1, legendgroup=s, marker={"size": 10, "color": colour,
                                                                        "symbol": "diamond"},
                error_y={"type": "data", "symmetric": False, "array": plus.fillna(0).tolist(),
                         "arrayminus": minus.fillna(0).tolist(), "color": colour, "width": 4},
                hovertext=[f"{_pretty(v)}: {x:.1f}%" for v, x in zip(r["setting"], acc, strict=True)],
                hoverinfo="text",
            ), row=1, col=j)
        _references(fig, zero_shot, row=1, col=j)
        fig.update_xaxes(tickangle=-40, row=1, col=j)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100], row=1, col=1)
    fig.update_yaxes(range=[0, 100])
    fig.update_layout(scattermode="group", scattergap=0.6)
    n_seeds = int(summary["n_seeds"].max())
    on = f" on {data_name}" if data_name else ""
    fig.update_layout(legend={"orientation": "h", "y": -0.46, "x": 0})
    fig.add_annotation(text="Setting of the varied stage (each panel holds the other stages at the reference)",
                       x=0.5, y=-0.36, xref="paper", yref="paper", showarrow=False, font={"size": 14})
    return _style(fig, f"What each ARM stage contributes{on}",
                  subtitle=f"pairwise accuracy, mean over {n_seeds} seeds ({interval}); a tie counts as wrong",
                  width=1300, height=560)


# ---------------------------------------------------------------------------------------------------- writing


class BrowserNotFoundError(RuntimeError):
    """PNG export needs a Chrome-family browser (kaleido renders through it) and none was found."""


# ---------------------------------------------------------------------------------------------------- evaluation


def plot_method_accuracy(summary: Mapping[str, Any], dataset: str, *, title: str | None = None) -> go.Figure:
    """Accuracy of every method on one dataset of an ``armlens eval`` summary: mean over seeds with the pooled
    95% bootstrap interval, the ARM highlighted, chance (50%) dotted; hover shows the paired test against the ARM."""
    res = summary["results"][dataset]
    methods = list(res["methods"])
    if not methods:
        raise ValueError(f"no methods in the summary for {dataset!r}")
    fig = go.Figure()
    for m in methods:
        e = res["methods"][m]
        acc, (lo, hi) = 100 * e["accuracy_mean"], e["ci95"]
        vs = e.get("vs_arm")
        hover = f"{m}: {acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
        if vs:
            hover += f"<br>ARM − {m}: {100 * vs['arm_minus_method']:+.1f} pp, p = {vs['p_value']:.3f}"
        fig.add_trace(go.Scatter(
            x=[m], y=[acc], mode="markers", name=m, showlegend=False, hovertext=[hover], hoverinfo="text",
            marker={"size": 13, "symbol": "diamond", "color": SERIES_COLOURS[0] if m == "arm" else "#555555"},
            error_y={"type": "data", "symmetric": False, "array": [100 * hi - acc], "arrayminus": [acc - 100 * lo],
                     "thickness": 2, "width": 8},
        ))
    fig.add_hline(y=50, line={"dash": "dot", "color": "#999999"}, annotation_text="chance (50%)",
                  annotation_position="bottom right")
    cfg = summary.get("config", {})
    seeds = res.get("seeds", [])
    sub = (f"{summary.get('model', '')}; {len(seeds)} seed(s); "
           f"{'/'.join(str(n) for n in res['n_test_per_seed'])} test pairs per seed; "
           f"{cfg.get('n_fewshot', '?')} few-shot pairs; points: mean over seeds, bars: 95% bootstrap interval over "
           "pooled (seed, pair) items; a tie counts as wrong")
    _style(fig, title or f"Pairwise accuracy on {dataset}", width=max(680, 160 + 110 * len(methods)), height=480, subtitle=sub)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100])
    fig.update_xaxes(title_text="Judge")
    return fig


BROWSER_HELP = (
    "PNG export needs a Chrome-family browser (kaleido renders figures through it) and none was found. "
    "Install one (Debian/Ubuntu: `apt-get install -y chromium`; or run scripts/setup.sh, which does it), or point "
    "BROWSER_PATH at a Chrome/Chromium executable, or pass --formats html to write only the interactive HTML."
)


def find_browser() -> str | None:
    """Path of a Chrome-family browser kaleido can use (``BROWSER_PATH``, PATH, usual install places), or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # choreographer missing or its search failed: fall back to PATH
        import shutil

        for exe in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
            if path := shutil.which(exe):
                return path
    return None


def quiet_export_logs() -> None:
    """kaleido / choreographer log every browser start at INFO; keep the CLI's output to the written paths."""
    import logging

    for name in ("choreographer", "kaleido", "logistro"):
        logging.getLogger(name).setLevel(logging.WARNING)


def write_figures(
    figures: Mapping[str, go.Figure],
    out: str | Path,
    *,
    formats: Sequence[str] = ("png", "html"),
    html_figures: Mapping[str, go.Figure] | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write each figure as ``OUT/{name}.html`` (plotly.js from the CDN) and ``OUT/{name}.png`` (kaleido, one
    browser session for all), each file atomically. ``html_figures`` overrides the HTML version of a figure (e.g. a
    slider instead of small multiples). HTML is written first; a missing browser for PNG is then a
    :class:`BrowserNotFoundError` whose message names the HTML files already written."""
    from armlens.io import atomic_write, atomic_write_files

    unknown = [f for f in formats if f not in ("png", "html")]
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}; choose png and/or html")
    out = Path(out)
    written = []
    if "html" in formats:
        for name, fig in figures.items():
            html = (html_figures or {}).get(name, fig).to_html(include_plotlyjs="cdn", full_html=True)
            written.append(atomic_write(out / f"{name}.html", html))
    if "png" in formats and figures:
        if find_browser() is None:
            done = f"{len(written)} HTML figure(s) were written to {out}. " if written else ""
            raise BrowserNotFoundError(done + BROWSER_HELP)
        import plotly.io as pio

        quiet_export_logs()
        names = list(figures)
        paths = [out / f"{n}.png" for n in names]
        figs = [figures[n] for n in names]
        written += atomic_write_files(paths, lambda tmps: pio.write_images(
            figs, tmps, format="png", scale=scale,
            width=[f.layout.width for f in figs], height=[f.layout.height for f in figs]))
    return written
