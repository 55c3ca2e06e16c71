"""``armlens eval`` results: every method's accuracy on one dataset, with intervals and the paired test against the
ARM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from armlens.plots.style import ACC_TITLE, SERIES_COLOURS, style


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
           f"{cfg.get('n_fewshot', '?')} few-shot pairs; points: mean over seeds, bars: 95% bootstrap interval (seeds, then "
           "prompts); a tie counts as wrong")
    style(fig, title or f"Pairwise accuracy on {dataset}", width=max(680, 160 + 110 * len(methods)), height=480, subtitle=sub)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100])
    fig.update_xaxes(title_text="Judge")
    return fig


def plot_hack_rates(summary: Mapping[str, Any], dataset: str, *, title: str | None = None) -> go.Figure:
    """The bias suite of one dataset of an ``armlens eval`` summary: per bias kind, every method's hack rate (share of
    biased pairs where the hacked rejected response wins; lower is better) with its 95% interval, methods side by side
    and the ARM highlighted; hover shows the paired ARM − method difference on the same biased pairs."""
    res = summary["results"][dataset]
    methods = list(res["methods"])
    kinds = [k for k in summary.get("config", {}).get("bias_kinds", [])
             if any(res["methods"][m]["bias"].get(k, {}).get("n") for m in methods)]
    if not methods or not kinds:
        raise ValueError(f"no bias-suite results in the summary for {dataset!r}")
    fig = go.Figure()
    grey = ["#555555", "#888888", "#aaaaaa", "#333333"]
    for i, m in enumerate(methods):
        xs, ys, lo, hi, hover = [], [], [], [], []
        for k in kinds:
            e = res["methods"][m]["bias"].get(k, {})
            if not e.get("n"):
                continue
            rate = 100 * e["hack_rate_mean"]
            ci = [100 * v for v in e.get("ci95", [e["hack_rate_mean"]] * 2)]
            text = f"{m}, {k}: {rate:.1f}% [{ci[0]:.1f}, {ci[1]:.1f}] of {e['n']} biased pairs"
            if vs := e.get("vs_arm"):
                text += (f"<br>ARM − {m}: {100 * vs['arm_minus_method']:+.1f} pp "
                         f"[{100 * vs['ci95'][0]:+.1f}, {100 * vs['ci95'][1]:+.1f}], p = {vs['p_value']:.3f}")
            xs.append(f"{k} (n={e['n']})")
            ys.append(rate)
            lo.append(rate - ci[0])
            hi.append(ci[1] - rate)
            hover.append(text)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name=m, hovertext=hover, hoverinfo="text",
            marker={"size": 12 if m == "arm" else 9, "symbol": "diamond" if m == "arm" else "circle",
                    "color": SERIES_COLOURS[0] if m == "arm" else grey[i % len(grey)]},
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo, "thickness": 1.5, "width": 4},
        ))
    seeds = res.get("seeds", [])
    sub = (f"{summary.get('model', '')}; {len(seeds)} seed(s); hack rate: share of biased pairs where the judge "
           "strictly prefers the hacked rejected response (lower is better); bars: 95% bootstrap interval (seeds, "
           "then prompts)")
    style(fig, title or f"Reward hacking on {dataset}: the bias suite", width=max(720, 200 + 150 * len(kinds)),
          height=480, subtitle=sub)
    fig.update_layout(scattermode="group", scattergap=0.5)
    fig.update_yaxes(title_text="Hack rate (%)", range=[-3, 103])  # markers at 0 and 100 stay whole
    fig.update_xaxes(title_text="Bias kind")
    return fig
