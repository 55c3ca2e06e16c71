"""Figures of the head study (:mod:`armlens.analysis.head_study`, :mod:`armlens.analysis.bias_heads`): the minimal
sets on the layer x head grid with their cross-seed frequency, each head's direct logit attribution (what it does to
the score, and to chosen against rejected), and where the length preference lives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from armlens.patching import parse_heads
from armlens.plots.style import SHARE, SIGNED, head_axes, heatmap, mask_markers, style, symmetric
from armlens.stats import counted


def _mask(heads: Sequence[str] | None, shape: tuple[int, int]) -> torch.Tensor:
    return parse_heads(list(heads), *shape) if heads else torch.zeros(shape, dtype=torch.bool)


def plot_minimal_sets(records: Sequence[dict[str, Any]], shape: tuple[int, int], *, data: str = "") -> go.Figure:
    """Share of seeds whose minimal set holds each head (crosses: heads in every seed's full ARM set)."""
    minimal = torch.stack([_mask(r["minimal"]["heads"], shape) for r in records]).float().mean(0)
    full_all = torch.stack([_mask(r["full_heads"], shape) for r in records]).all(0)
    fig = go.Figure(heatmap(minimal, name="share of seeds", fmt=".2f", colorscale=SHARE, zmin=0, zmax=1,
                            colorbar={"title": "share"}))
    fig.add_trace(mask_markers(full_all, name="in every seed's full set"))
    head_axes(fig, *shape)
    fig.update_layout(legend={"orientation": "h", "y": -0.08, "x": 0})  # below the grid, clear of the colour bar
    sizes = [r["minimal"]["n_heads"] for r in records]
    fulls = [r["minimal"]["n_full"] for r in records]
    return style(fig, f"Minimal head sets{' on ' + data if data else ''}",
                 subtitle=f"{counted(len(records), 'fit')} (seeds x criteria); minimal sets of {min(sizes)}-{max(sizes)} "
                          f"heads pruned from {min(fulls)}-{max(fulls)} within {100 * records[0]['minimal']['margin']:g} "
                          "points on half of each seed's pairs; colour: share of fits whose minimal set holds the head",
                 width=560, height=760)


def plot_head_dla(records: Sequence[dict[str, Any]], shape: tuple[int, int], *, data: str = "") -> go.Figure:
    """Mean direct effect of each patched head on the Yes-No logit, and on chosen minus rejected."""
    effect = torch.tensor([r["attribution"]["effect"] for r in records]).mean(0)
    sep = torch.tensor([r["attribution"]["separation"] for r in records]).mean(0)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["pushes the score (Yes-No)", "separates chosen from rejected"],
                        horizontal_spacing=0.12)
    for col, (values, name) in enumerate(((effect, "direct effect"), (sep, "separation")), start=1):
        m = symmetric(values)
        fig.add_trace(heatmap(values, name=name, colorscale=SIGNED, zmid=0, zmin=-m, zmax=m,
                              colorbar={"x": 0.44 if col == 1 else 1.0, "title": "logit"}), row=1, col=col)
        head_axes(fig, *shape, row=1, col=col, show_y_title=col == 1)
    share = [r["attribution"] for r in records]
    direct = sum(a["direct_separation"] for a in share) / len(share)
    change = sum(a["change_separation"] for a in share) / len(share)
    return style(fig, f"What each patched head does to the answer{' on ' + data if data else ''}",
                 subtitle=f"direct logit attribution, (mu - z) W_O through the final norm onto Yes-No, mean over "
                          f"{counted(len(records), 'fit')} and their scored prompts; the direct path carries "
                          f"{direct:+.2f} of the patch's {change:+.2f} logit of chosen-minus-rejected separation",
                 width=1000, height=760)


def plot_bias_heads(records: Sequence[dict[str, Any]], shape: tuple[int, int], kind: str = "length", *,
                    data: str = "") -> go.Figure:
    """Change of the zero-shot judge's hack rate with each head mean-ablated alone (mean over seeds), and the
    hack rate and clean accuracy with the top-ranked k heads ablated together."""
    rows = [r["kinds"][kind] for r in records if kind in r["kinds"]]
    delta = torch.stack([torch.tensor(k["hack_rate"]) - k["zero_shot_hack_rate"] for k in rows]).mean(0)
    spacing = 0.18  # room between the grid and the curves for the colour bar and the curves' axis title
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=spacing,
                        subplot_titles=["hack-rate change, one head ablated", "top-k heads ablated together"])
    m = symmetric(delta)
    bar = {"x": 0.45 * (1 - spacing) + 0.01, "xanchor": "left", "thickness": 14, "title": "points"}
    fig.add_trace(heatmap(100 * delta, name="hack-rate change (points)", fmt=".1f", colorscale=SIGNED, zmid=0,
                          zmin=-100 * m, zmax=100 * m, colorbar=bar), row=1, col=1)
    arm = torch.stack([_mask(r["arm_heads"], shape) for r in records]).float().mean(0) > 0.5
    fig.add_trace(mask_markers(arm, name="ARM head (majority of seeds)"), row=1, col=1)
    head_axes(fig, *shape, row=1, col=1)
    for seed_rows, rec in zip(rows, records, strict=True):
        ks = [t["k"] for t in seed_rows["top_k"]]
        first = rec is records[0]
        zero = [100 * seed_rows["zero_shot_hack_rate"]]
        held = seed_rows.get("held_apart")
        fig.add_trace(go.Scatter(x=[0, *ks], y=zero + [100 * t["hack_rate"] for t in seed_rows["top_k"]],
                                 mode="lines+markers", name="hack rate (ranked and scored on the same pairs)"
                                 if held else "hack rate", legendgroup="hack", showlegend=first,
                                 line={"color": "#d62728", "dash": "dot" if held else "solid"}, opacity=0.5 if held
                                 else 1.0), row=1, col=2)
        if held and all(t["hack_rate"] is not None for t in held["top_k"]):
            fig.add_trace(go.Scatter(x=[0, *[t["k"] for t in held["top_k"]]],
                                     y=[100 * held["zero_shot_hack_rate"]] + [100 * t["hack_rate"] for t in held["top_k"]],
                                     mode="lines+markers", name="hack rate (ranked on the other half)",
                                     legendgroup="held", showlegend=first, line={"color": "#d62728"}), row=1, col=2)
        if seed_rows.get("random_k"):
            fig.add_trace(go.Scatter(x=[0, *[f["k"] for f in seed_rows["random_k"]]],
                                     y=zero + [100 * f["hack_rate"] for f in seed_rows["random_k"]],
                                     mode="lines+markers", name="hack rate, k random heads", legendgroup="random",
                                     showlegend=first, line={"color": "#7f7f7f"}), row=1, col=2)
        fig.add_trace(go.Scatter(x=[0, *ks], y=[100 * rec["clean"]["zero_shot_accuracy"]]
                                 + [100 * t["clean_accuracy"] for t in seed_rows["top_k"]], mode="lines+markers",
                                 name="clean accuracy", legendgroup="acc", showlegend=first,
                                 line={"color": "#1f77b4", "dash": "dot"}), row=1, col=2)
    fig.update_xaxes(title_text="heads ablated (ranked by single-head effect)", row=1, col=2)
    fig.update_yaxes(title_text="% of pairs", row=1, col=2)
    return style(fig, f"Where the zero-shot judge's {kind} preference lives{' on ' + data if data else ''}",
                 subtitle=f"{counted(len(rows), 'seed')}; hacked pairs: each scored pair with its rejected response "
                          f"given the {kind} transform; hack rate: share preferring the hacked rejected response; "
                          "heads replaced by their mean over the seed's few-shot judge prompts",
                 width=1100, height=620)
