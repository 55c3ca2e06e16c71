"""The head picker's :class:`Readout` (what the judge says, unpatched and patched) and the picker as static HTML:
the grid and the readout where no widget frontend runs."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from armlens.analysis.heads import AttentionRow
from armlens.patching import head_label
from armlens.typing import HeadMask, HeadValues

# ---------------------------------------------------------------------------------------------------- HTML pieces

SNAPSHOT_STYLE = ("<style>.armlens-picker table.dataframe{border-collapse:collapse;margin:2px 0 10px 0;font-size:12px}"
                  ".armlens-picker table.dataframe th,.armlens-picker table.dataframe td{padding:2px 8px;"
                  "text-align:right;border-bottom:1px solid #eee}</style>")
"""Table spacing for the snapshot where no notebook stylesheet applies (a bare HTML page)."""

_BLUES = ((247, 251, 255), (8, 48, 107))
_RDBU = ((178, 24, 43), (247, 247, 247), (33, 102, 172))


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def cell_colour(value: float, *, signed: bool, scale: float = 1.0) -> str:
    """Hex colour of a cell: RdBu centred at 0 over ``[-scale, scale]`` when ``signed`` (plots' ``SIGNED``), else
    Blues over [0, 1] (plots' ``SHARE``)."""
    if signed:
        t = max(-1.0, min(1.0, value / scale if scale > 0 else 0.0))
        return _mix(_RDBU[1], _RDBU[2], t) if t >= 0 else _mix(_RDBU[1], _RDBU[0], -t)
    return _mix(*_BLUES, max(0.0, min(1.0, value)))


def grid_html(values: HeadValues, mask: HeadMask, *, signed: bool, title: str) -> str:
    """A static layer x head grid (layer 0 at the top, as in ``plots.plot_head_map``): each cell coloured by its
    value, patched heads marked with a red cross; hover shows ``L{l}H{h}`` and the value."""
    n_layers, n_heads = values.shape
    scale = float(values.abs().max()) if signed else 1.0
    cell = "width:26px;height:16px;padding:0;text-align:center;font-size:12px;line-height:16px"
    head_row = "".join(f"<th style='{cell};font-weight:normal'>{h}</th>" for h in range(n_heads))
    rows = []
    for layer in range(n_layers):
        tds = []
        for h in range(n_heads):
            v = float(values[layer, h])
            on = bool(mask[layer, h])
            border = "2px solid #d62728" if on else "1px solid #fff"
            mark = "<b style='color:#d62728;text-shadow:0 0 2px #fff,0 0 2px #fff'>&#x2715;</b>" if on else ""
            tds.append(f"<td title='{head_label(layer, h)}: {v:.3f}' style='{cell};border:{border};"
                       f"background:{cell_colour(v, signed=signed, scale=scale)}'>{mark}</td>")
        rows.append(f"<tr><th style='{cell};font-weight:normal;text-align:right;padding-right:4px'>{layer}</th>"
                    + "".join(tds) + "</tr>")
    legend = (f"colour: {html.escape(title)} ({'red negative, blue positive, ' if signed else ''}"
              f"range {'&plusmn;' + format(scale, '.3g') if signed else '0 to 1'}); &#x2715; patched")
    return (f"<div style='font-size:13px'><b>Heads</b> (layer down, head across)<br>"
            f"<span style='font-size:11px;color:#555'>{legend}</span>"
            "<table style='border-collapse:collapse;margin-top:4px'>"
            f"<tr><th></th>{head_row}</tr>{''.join(rows)}</table></div>")


def _frame_html(frame: pd.DataFrame, **kw: Any) -> str:
    return frame.to_html(float_format=lambda v: f"{v:.4f}", border=0, **kw)


@dataclass
class Readout:
    """What the judge says about the current prompt, unpatched and with the patch set's heads patched."""

    heads: list[str]
    """The patch set, ``L{l}H{h}`` labels."""
    n_tokens: int
    """Judge prompt length in tokens."""
    kind: str
    """The ARM's score reading (``ARMConfig.score``)."""
    p_yes: tuple[float, float]
    """Full-vocabulary P(Yes): (unpatched, patched)."""
    p_no: tuple[float, float]
    """Full-vocabulary P(No): (unpatched, patched)."""
    margin: tuple[float, float]
    """logit(Yes) - logit(No): (unpatched, patched)."""
    score: tuple[float, float]
    """The ARM's reading (``kind``): (unpatched, patched); the patched one is what ``ActivationRM.score`` gives."""
    top: pd.DataFrame
    """Top next tokens: ``rank, unpatched, p unpatched, patched, p patched``."""
    attention: AttentionRow
    """Where the chosen head attends from the read position (``weights``; ``patched_weights`` under the patch)."""
    seconds: float = 0.0
    """Time the readout took."""

    def table(self) -> pd.DataFrame:
        """P(Yes), P(No), the ARM's score (when not P(Yes)) and the margin; columns unpatched, patched, change."""
        rows = {"P(Yes)": self.p_yes, "P(No)": self.p_no}
        if self.kind != "prob":
            rows[f"score ({self.kind})"] = self.score
        rows["logit(Yes) - logit(No)"] = self.margin
        return pd.DataFrame({name: {"unpatched": a, "patched": b, "change": b - a} for name, (a, b) in rows.items()}).T

    def __repr__(self) -> str:
        return (f"Readout(P(Yes) {self.p_yes[0]:.4f} -> {self.p_yes[1]:.4f}, margin {self.margin[0]:+.3f} -> "
                f"{self.margin[1]:+.3f}, {len(self.heads)} heads patched, {self.n_tokens} tokens, "
                f"{self.seconds * 1000:.0f} ms)")

    def _repr_html_(self) -> str:
        return readout_html(self)

    def attention_table(self, k: int = 8) -> pd.DataFrame:
        """The ``k`` key positions the chosen head weighs most (patched when a patch is set, else unpatched)."""
        row = self.attention
        weights = torch.tensor(row.patched_weights if row.patched_weights is not None else row.weights)
        top = weights.topk(min(k, len(weights))).indices.tolist()
        data: dict[str, Any] = {"position": top, "token": [row.tokens[i] for i in top],
                                "unpatched": [row.weights[i] for i in top]}
        if row.patched_weights is not None:
            data["patched"] = [row.patched_weights[i] for i in top]
        return pd.DataFrame(data)


def readout_html(r: Readout) -> str:
    """Scores, top next tokens and the chosen head's attention as HTML tables."""
    heads = ", ".join(r.heads[:12]) + (f", ... (+{len(r.heads) - 12})" if len(r.heads) > 12 else "")
    top = r.top.copy()
    for col in ("unpatched", "patched"):
        top[col] = [repr(t) for t in top[col]]
    att = r.attention_table(6)
    att["token"] = [repr(t) for t in att["token"]]
    return (
        "<div style='font-size:13px'>"
        f"<b>{len(r.heads)} heads patched</b>: {html.escape(heads) or 'none'}<br>"
        f"<span style='color:#555'>judge prompt {r.n_tokens} tokens; update {r.seconds * 1000:.0f} ms</span>"
        f"{_frame_html(r.table())}"
        "<b>Top next tokens</b> at the read position"
        f"{_frame_html(top, index=False)}"
        f"<b>Where {r.attention.label} attends</b> from the read position (top keys)"
        f"{_frame_html(att, index=False)}</div>"
    )


# ---------------------------------------------------------------------------------------------------- widget view
