"""Head maps: any per-head value, REINFORCE's selection probabilities (per seed, over steps, with a slider), its
training curves, the stability and overlap of head sets, transfer between criteria, attribution beside selection,
and one head's attention from the read position.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from armlens.errors import BadInputError
from armlens.plots.style import (
    SERIES_COLOURS,
    SHARE,
    SIGNED,
    grid,
    head_axes,
    heatmap,
    mask_markers,
    style,
    symmetric,
)
from armlens.stats import counted
from armlens.typing import HeadMask, HeadValues


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
        m = symmetric(values)
        trace = heatmap(values, name=colorbar_title, colorscale=SIGNED, zmid=0, zmin=-m, zmax=m,
                         colorbar={"title": {"text": colorbar_title}})
    else:
        trace = heatmap(values, name=colorbar_title, colorscale=SHARE, zmin=0, zmax=1,
                         colorbar={"title": {"text": colorbar_title}})
    fig = go.Figure(trace)
    if mask is not None and bool(mask.any()):
        fig.add_trace(mask_markers(mask))
    head_axes(fig, n_layers, n_heads)
    fig.update_layout(legend={"orientation": "h", "y": -0.08, "x": 0})
    return style(fig, title, width=max(420, 60 * n_heads + 220), height=max(420, 22 * n_layers + 160),
                  subtitle=subtitle)


def plot_selection_probability(
    probs: Mapping[int, HeadValues], masks: Mapping[int, HeadMask] | None = None, *, subtitle: str | None = None
) -> go.Figure:
    """REINFORCE's final selection probability per head, one panel per seed; crosses mark the chosen head set."""
    if not probs:
        raise BadInputError("no selection probabilities to plot")
    seeds = sorted(probs)
    n_layers, n_heads = probs[seeds[0]].shape
    fig = make_subplots(rows=1, cols=len(seeds), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"seed {s}" + (f" ({int(masks[s].sum())} heads chosen)" if masks else "")
                                        for s in seeds])
    for i, s in enumerate(seeds, start=1):
        fig.add_trace(heatmap(probs[s], name="P(select)", coloraxis="coloraxis"), row=1, col=i)
        if masks is not None and bool(masks[s].any()):
            fig.add_trace(mask_markers(masks[s], "head in the final mask", show=i == 1), row=1, col=i)
        head_axes(fig, n_layers, n_heads, row=1, col=i, show_y_title=i == 1)
    fig.update_layout(coloraxis={"colorscale": SHARE, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "P(select)"}}},
                      legend={"orientation": "h", "y": -0.1, "x": 0})
    return style(fig, "Which heads REINFORCE selects: final selection probability per head", subtitle=subtitle,
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
        fig.add_trace(heatmap(trajectory[s], name="P(select)", coloraxis="coloraxis"), row=1, col=i)
        head_axes(fig, n_layers, n_heads, row=1, col=i, show_y_title=i == 1)
    fig.update_layout(coloraxis={"colorscale": SHARE, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "P(select)"}}})
    title = "Selection probability over REINFORCE steps" + (f" (seed {seed})" if seed is not None else "")
    return style(fig, title, subtitle=subtitle, width=max(600, len(steps) * (35 * n_heads + 40) + 160),
                  height=max(460, 22 * n_layers + 180))


def plot_trajectory_slider(
    trajectory: Float[Tensor, "steps n_layers n_heads"], *, seed: int | None = None, subtitle: str | None = None
) -> go.Figure:
    """One heatmap with a slider over every REINFORCE step (interactive HTML)."""
    n_steps, n_layers, n_heads = trajectory.shape
    fig = go.Figure(heatmap(trajectory[-1], name="P(select)", colorscale=SHARE, zmin=0, zmax=1,
                             colorbar={"title": {"text": "P(select)"}}))
    fig.frames = [go.Frame(data=[go.Heatmap(z=grid(trajectory[s]))], name=str(s + 1)) for s in range(n_steps)]
    fig.update_layout(sliders=[{
        "active": n_steps - 1, "currentvalue": {"prefix": "after step "}, "pad": {"t": 40},
        "steps": [{"label": str(s + 1), "method": "animate",
                   "args": [[str(s + 1)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                           "transition": {"duration": 0}}]} for s in range(n_steps)],
    }])
    head_axes(fig, n_layers, n_heads)
    title = "Selection probability per REINFORCE step" + (f" (seed {seed})" if seed is not None else "")
    return style(fig, title, subtitle=subtitle, width=max(520, 45 * n_heads + 260), height=max(520, 22 * n_layers + 240))


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
    if not any((val_losses or {}).get(s) for s in losses):  # say why the panel is empty, rather than leave it blank
        fig.add_annotation(text="no held-apart pairs: too few few-shot pairs per criterion<br>"
                                "(ARMConfig.val_pairs holds pairs apart only when three times as many remain)",
                           x=sum(fig.layout.xaxis2.domain) / 2, y=sum(fig.layout.yaxis2.domain) / 2, xref="paper",
                           yref="paper", xanchor="center", yanchor="middle", showarrow=False,
                           font={"size": 12, "color": "#666"})
    fig.update_xaxes(title_text="REINFORCE step")
    fig.update_yaxes(title_text="Loss (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Loss (nats)", row=1, col=2)
    fig.update_yaxes(title_text="Sum of P(select) (heads)", row=2, col=1)
    fig.update_yaxes(title_text="Entropy (nats)", rangemode="tozero", row=2, col=2)
    return style(fig, "REINFORCE training curves", subtitle=subtitle, width=1100, height=760)


def plot_stability(frequency: HeadValues, n_runs: int, *, subtitle: str | None = None) -> go.Figure:
    """Share of seeds / few-shot draws whose final head set contains each head."""
    return plot_head_map(frequency, title=f"Stability of the chosen heads across {counted(n_runs, 'seed')} and few-shot draws",
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
    return style(fig, "Overlap of REINFORCE head sets between criteria (mean Jaccard index)",
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
    return style(fig, "Does a criterion's ARM transfer? Accuracy gain over the zero-shot judge per test subset",
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
    m = symmetric(effects)
    fig.add_trace(heatmap(effects, name="effect (logits)", coloraxis="coloraxis"), row=1, col=1)
    fig.add_trace(heatmap(probs, name="P(select)", coloraxis="coloraxis2"), row=1, col=2)
    if mask is not None and bool(mask.any()):
        fig.add_trace(mask_markers(mask, mask_name), row=1, col=2)
        fig.add_trace(mask_markers(mask, mask_name, show=False), row=1, col=1)
    for c in (1, 2):
        head_axes(fig, n_layers, n_heads, row=1, col=c, show_y_title=c == 1)
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
    return style(fig, "Attribution map beside REINFORCE's choice", subtitle=sub,
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
    return style(fig, f"Where {head} attends from the read position", subtitle=subtitle, width=1100, height=460)
