"""The accuracy-sparsity frontier figure (:func:`armlens.analysis.frontier.frontier_table`): one panel per dataset
and the pooled one, accuracy (%) against patched heads on a log axis, one line per series with its 95% interval, the
full REINFORCE set as a star and the zero-shot judge as a dashed line."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from armlens.plots.style import ACC_TITLE, SERIES_COLOURS, style
from armlens.stats import counted

SERIES = {"topk_prob": "top-k by P(select)", "topk_attribution": "top-k by attribution", "random": "random k heads",
          "penalised": "REINFORCE + sparsity penalty", "soft": "soft weights (x: sum of w)",
          "soft_half": "soft weights (x: heads with w > 0.5)"}
"""Line series in legend order, with their legend names (the two soft series are the same fits, counted two ways:
one colour, the second dotted)."""
DASH = {"soft_half": "dot"}


def plot_frontier(table: pd.DataFrame, *, title: str = "How many heads keep the ARM's accuracy",
                  pairs: str = "development pairs") -> go.Figure:
    panels = [d for d in dict.fromkeys(table["data"]) if d != "all"] + (["all"] if "all" in set(table["data"]) else [])
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=["pooled" if d == "all" else d for d in panels])
    shown: set[str] = set()  # each series in the legend once, from the first panel that has it (HHH may lack some)
    for col, data in enumerate(panels, start=1):
        part = table[table["data"] == data]
        for i, (series, name) in enumerate(SERIES.items()):
            colour = SERIES_COLOURS[list(SERIES).index("soft") if series in DASH else i]
            rows = part[part["series"] == series].sort_values("n_heads")
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(
                x=rows["n_heads"], y=100 * rows["accuracy"], mode="lines+markers", name=name, legendgroup=series,
                showlegend=series not in shown, line={"color": colour, "dash": DASH.get(series, "solid")},
                error_y={"type": "data", "symmetric": False, "array": 100 * (rows["high"] - rows["accuracy"]),
                         "arrayminus": 100 * (rows["accuracy"] - rows["low"]), "thickness": 1},
                customdata=rows[["setting", "n_pairs"]].values,
                hovertemplate=f"{name}<br>%{{customdata[0]}}: %{{x:.1f}} heads, %{{y:.1f}}%"
                              "<br>n = %{customdata[1]} pairs<extra></extra>"), row=1, col=col)
            shown.add(series)
        full = part[part["series"] == "reinforce"]
        if not full.empty:
            r = full.iloc[0]
            fig.add_trace(go.Scatter(
                x=[r["n_heads"]], y=[100 * r["accuracy"]], mode="markers", name="ARM (REINFORCE's sampled set)",
                legendgroup="full", showlegend=col == 1, marker={"symbol": "star", "size": 14, "color": "#000"},
                error_y={"type": "data", "symmetric": False, "array": [100 * (r["high"] - r["accuracy"])],
                         "arrayminus": [100 * (r["accuracy"] - r["low"])]}), row=1, col=col)
        zero = part[part["series"] == "zero-shot"]
        if not zero.empty:
            z = 100 * float(zero.iloc[0]["accuracy"])
            fig.add_hline(y=z, line={"dash": "dash", "color": "#555"}, row=1, col=col)
            if col == 1:
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "#555"},
                                         name="zero-shot judge (no heads)"), row=1, col=col)
        fig.add_hline(y=50, line={"dash": "dot", "color": "#999", "width": 1}, row=1, col=col)
        fig.update_xaxes(type="log", title_text="patched heads (log)", row=1, col=col)
    fig.update_yaxes(title_text=ACC_TITLE, row=1, col=1)
    n_seeds = int(table["n_seeds"].min()) if len(table) else 0
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "x": 0})
    return style(fig, title, width=max(700, 330 * len(panels)), height=480,
                 subtitle=f"pairwise accuracy on {pairs}, mean over {counted(n_seeds, 'seed')}; bars: 95% "
                          "intervals crossed over seeds and prompts; a tie counts as wrong")
