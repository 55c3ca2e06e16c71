"""``armlens eval`` results: every method's accuracy on one dataset, with intervals and the paired test against the
ARM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from armlens.errors import BadInputError
from armlens.plots.style import ACC_TITLE, SERIES_COLOURS, style
from armlens.stats import counted


def plot_method_accuracy(summary: Mapping[str, Any], dataset: str, *, title: str | None = None) -> go.Figure:
    """Accuracy of every method on one dataset of an ``armlens eval`` summary: mean over seeds with the pooled
    95% bootstrap interval, the ARM highlighted, chance (50%) dotted; hover shows the paired test against the ARM."""
    res = summary["results"][dataset]
    methods = list(res["methods"])
    if not methods:
        raise BadInputError(f"no methods in the summary for {dataset!r}")
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
    sub = (f"{summary.get('model', '')}; {counted(len(seeds), 'seed')}; "
           f"{'/'.join(str(n) for n in res['n_test_per_seed'])} test pairs per seed; "
           f"{cfg.get('n_fewshot', '?')} few-shot pairs; points: mean over seeds, bars: 95% interval (seeds and "
           "prompts crossed); a tie counts as wrong")
    style(fig, title or f"Pairwise accuracy on {dataset}", width=max(680, 160 + 110 * len(methods)), height=480, subtitle=sub)
    fig.update_yaxes(title_text=ACC_TITLE, range=[0, 100])
    fig.update_xaxes(title_text="Judge")
    return fig


def plot_hack_rates(summary: Mapping[str, Any], dataset: str, *, title: str | None = None,
                    reference: str = "arm", versus: str = "zero-shot") -> go.Figure:
    """The bias suite of one dataset of an ``armlens eval`` summary as a forest plot: one panel per bias kind, one row
    per method (named on the shared y axis, so no colour has to be decoded), its hack rate (share of biased pairs
    where the hacked rejected response wins; lower is better) with the 95% interval. The ARM and ``versus`` (the plain
    judge) are coloured, every other baseline grey (``reference`` is the method the summary's paired
    differences are taken against). Each panel's title gives the distinct biased pairs and the seeds
    they were scored under; hover shows the paired ARM − method difference on the same biased pairs."""
    res = summary["results"][dataset]
    methods = list(res["methods"])
    kinds = [k for k in summary.get("config", {}).get("bias_kinds", [])
             if any(res["methods"][m]["bias"].get(k, {}).get("n") for m in methods)]
    if not methods or not kinds:
        raise BadInputError(f"no bias-suite results in the summary for {dataset!r}")
    seeds = res.get("seeds", [])

    def panel_title(kind: str) -> str:
        b = max((res["methods"][m]["bias"].get(kind, {}) for m in methods), key=lambda e: e.get("n", 0))
        pairs = b.get("n_pairs")
        # n counts pairs scored over all seeds; seeds' test splits overlap (or, as on HH-RLHF, differ), so the
        # distinct pairs are neither n nor n / seeds
        size = f"n={b['n']}" + (f" ({pairs} distinct)" if pairs is not None else "") + f", {counted(len(seeds), 'seed')}"
        return f"<b>{kind}</b><br><span style='font-size:11px'>{size}</span>"

    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, horizontal_spacing=0.025,
                        subplot_titles=[panel_title(k) for k in kinds])
    colour = {reference: SERIES_COLOURS[0], versus: SERIES_COLOURS[1]}
    for col, k in enumerate(kinds, start=1):
        for m in methods:
            e = res["methods"][m]["bias"].get(k, {})
            if not e.get("n"):
                continue
            rate = 100 * e["hack_rate_mean"]
            ci = [100 * v for v in e.get("ci95", [e["hack_rate_mean"]] * 2)]
            text = f"{m}, {k}: {rate:.1f}% [{ci[0]:.1f}, {ci[1]:.1f}] of {e['n']} biased pairs over seeds"
            if e.get("n_pairs") is not None:
                text += f" ({e['n_pairs']} distinct)"
            if vs := e.get("vs_arm"):
                text += (f"<br>ARM − {m}: {100 * vs['arm_minus_method']:+.1f} pp "
                         f"[{100 * vs['ci95'][0]:+.1f}, {100 * vs['ci95'][1]:+.1f}], p = {vs['p_value']:.3f}")
            fig.add_trace(go.Scatter(
                x=[rate], y=[m], mode="markers", name=m, legendgroup=m, showlegend=False, hovertext=[text],
                hoverinfo="text",
                marker={"size": 11 if m in colour else 8, "symbol": "diamond" if m == reference else "circle",
                        "color": colour.get(m, "#666666")},
                error_x={"type": "data", "symmetric": False, "array": [ci[1] - rate], "arrayminus": [rate - ci[0]],
                         "thickness": 2 if m in colour else 1.2, "width": 3, "color": colour.get(m, "#666666")},
            ), row=1, col=col)
        fig.update_xaxes(range=[-4, 104], dtick=25, row=1, col=col)  # markers at 0 and 100 stay whole
    sub = (f"{summary.get('model', '')}; {counted(len(seeds), 'seed')}; hack rate: share of biased pairs where the judge "
           "strictly prefers the hacked rejected response (lower is better); bars: 95% interval, seeds and "
           f"prompts crossed; {reference} (diamond) and {versus} coloured")
    style(fig, title or f"Reward hacking on {dataset}: the bias suite", width=max(760, 170 + 190 * len(kinds)),
          height=140 + 30 * len(methods), subtitle=sub)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=methods, row=1, col=1)
    fig.update_xaxes(title_text="Hack rate (%)", row=1, col=(len(kinds) + 1) // 2)
    return fig
