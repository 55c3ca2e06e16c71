"""The house style every figure shares (``docs/style.md``): colour scales, fonts, titles with wrapped subtitles,
head-map axes (layer 0 at the top, ``L{l}H{h}`` hover labels) and the heatmap and selected-head traces.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from torch import Tensor

from armlens.patching import head_label
from armlens.typing import HeadMask, HeadValues

SIGNED = "RdBu"
"""Diverging scale for signed effects (red negative, blue positive), always centred at 0."""


SHARE = "Blues"
"""Sequential scale for probabilities and shares in [0, 1]."""


SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


FONT = {"family": "Arial, Helvetica, sans-serif", "size": 13}


ACC_TITLE = "Pairwise accuracy (%)"


def labels(n_layers: int, n_heads: int) -> list[list[str]]:
    return [[head_label(layer, head) for head in range(n_heads)] for layer in range(n_layers)]


def grid(t: Tensor) -> list[list[float]]:
    return t.detach().float().cpu().tolist()


def wrap(text: str, width: int) -> list[str]:
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


def style(fig: go.Figure, title: str, *, width: int = 900, height: int = 600, subtitle: str | None = None) -> go.Figure:
    lines = wrap(subtitle, max(40, int(width / 6.3))) if subtitle else []
    text = title + "".join(f"<br><span style='font-size:12px'>{line}</span>" for line in lines)
    top = 70 + 16 * len(lines)
    fig.update_layout(title={"text": text, "x": 0.01, "xanchor": "left", "y": 1, "yref": "container",
                             "yanchor": "top", "pad": {"t": 22}}, font=FONT,
                      template="plotly_white", width=width, height=height + 16 * len(lines),
                      margin={"l": 70, "r": 30, "t": top + 20, "b": 60})
    return fig


def head_axes(fig: go.Figure, n_layers: int, n_heads: int, row: int | None = None, col: int | None = None,
               show_y_title: bool = True) -> None:
    kw = {"row": row, "col": col} if row is not None else {}
    fig.update_xaxes(title_text="Head", dtick=1 if n_heads <= 16 else None, tick0=0, showgrid=False, **kw)
    fig.update_yaxes(title_text="Layer" if show_y_title else None, range=[n_layers - 0.5, -0.5], showgrid=False,
                     dtick=1 if n_layers <= 12 else 5, tick0=0, zeroline=False, **kw)
    fig.update_xaxes(range=[-0.5, n_heads - 0.5], zeroline=False, **kw)


def heatmap(values: HeadValues, *, name: str, fmt: str = ".3f", coloraxis: str | None = None,
             **kw: Any) -> go.Heatmap:
    n_layers, n_heads = values.shape
    return go.Heatmap(
        z=grid(values), x=list(range(n_heads)), y=list(range(n_layers)), customdata=labels(n_layers, n_heads),
        hovertemplate=f"%{{customdata}}<br>{name}: %{{z:{fmt}}}<extra></extra>", coloraxis=coloraxis, **kw,
    )


def mask_markers(mask: HeadMask, name: str = "selected head", show: bool = True) -> go.Scatter:
    idx = mask.nonzero().tolist()
    return go.Scatter(
        x=[h for _, h in idx], y=[layer for layer, _ in idx], mode="markers", name=name, showlegend=show,
        text=[head_label(layer, h) for layer, h in idx], hovertemplate="%{text} (selected)<extra></extra>",
        marker={"symbol": "x-thin", "size": 8, "line": {"width": 2, "color": "#d62728"}, "color": "#d62728"},
    )


def symmetric(values: Tensor) -> float:
    m = float(values.abs().max()) if values.numel() else 0.0
    return m if m > 0 else 1.0
