"""Interactive patching in Jupyter: click heads on a layer x head grid and see the judge change.

.. code-block:: python

    from armlens.widgets import head_picker

    view = head_picker(rm, "How do I boil an egg?", "Boil it for 8 minutes.")   # rm: a fitted ActivationRM
    view                                  # in Jupyter: the grid, presets, text areas and the judge's readout

Two layers, so that the logic is testable without a browser:

- :class:`HeadPicker` is the state: an :class:`~armlens.rm.ActivationRM` (its means are what a patched head is
  overwritten with), the patch set (a ``[n_layers, n_heads]`` mask), the prompt, response and criterion, and the
  head whose attention is shown. :meth:`HeadPicker.readout` returns P(Yes), the Yes-No margin, the ARM's score and
  the top next tokens, patched against unpatched, and where the chosen head attends from the read position.
- :class:`HeadPickerView` is the ipywidgets view: a plotly ``FigureWidget`` grid whose cells toggle heads on click,
  preset buttons, editable text areas, and the readout. Where no widget frontend runs (GitHub, nbconvert HTML
  without the widget manager, a terminal), it shows a static HTML snapshot of the same grid and readout
  (:meth:`HeadPicker.snapshot_html`); so does :func:`head_picker` when ipywidgets is not installed.

Speed: only the last position changes when heads are patched, so each judge prompt's prefix is run once and cached
(:func:`armlens.model.prefix_cache`), and every update is one forward of two copies of the last token over that
cache (unpatched and patched as branches, :func:`armlens.analysis.heads.branches_with_attention`), which also reads
the attention row. A click costs a fraction of a second on the default model; editing a text runs the new prefix
once. ``pip install -e ".[notebooks]"`` installs ipywidgets and anywidget (plotly's ``FigureWidget`` runs on it).
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from torch import Tensor

from armlens import model as M
from armlens.analysis.heads import AttentionRow, branches_with_attention
from armlens.data.records import Prompt
from armlens.patching import head_label, mask_labels, parse_heads
from armlens.prompts import DEFAULT_CRITERION, Example, _prompt_text, scalar_prompt
from armlens.rm import POOLED, ActivationRM, CriterionARM
from armlens.scoring import score_from_logits
from armlens.selection import mask_logits
from armlens.typing import HeadMask, HeadValues

Preset = Literal["arm", "topk", "none", "all"]
PRESETS: dict[str, str] = {"arm": "ARM heads", "topk": "top-k attribution", "none": "none", "all": "all"}
"""Preset name -> button label."""
ARM_HEADS = "ARM heads"
REINFORCE_PROB = "REINFORCE P(select)"
EFFECT = "single-head effect on this prompt"
"""Built-in maps: the fit's mask, its selection probabilities (when it has them), and the change of the judge's
logit(Yes) - logit(No) when each head alone is patched into this prompt (computed on demand, cached per prompt)."""
MAX_CACHED_PROMPTS = 4


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


@dataclass
class _PromptEntry:
    cache: M.PrefixCache
    words: list[str]
    effects: dict[str, HeadValues] = field(default_factory=dict)


class HeadPicker:
    """The state behind the head-picker widget (no frontend needed).

    Args:
        rm: a fitted :class:`ActivationRM`; a patched head is overwritten with the means of the fit that scores the
            criterion (:meth:`ActivationRM.fit_for`; with several fits and a criterion none of them holds, the fit
            named by ``fit``). :meth:`ActivationRM.from_patch` turns bare means into one.
        prompt, response, criterion: the judged text (``criterion=None``: the ARM's criterion, as
            :meth:`ActivationRM.score`). A conversation prompt (a list of messages) is kept as the text the judge
            prompt shows it as, so it can be edited as text and renders the same.
        maps: extra ``[n_layers, n_heads]`` maps to colour the grid by (e.g. ``single_head_effects`` over few-shot
            examples), by name.
        top_k: next tokens in the readout. attribution_k: heads of the ``topk`` preset.
        fit: the routing key of the fit to use when the criterion names none.
    """

    def __init__(
        self,
        rm: ActivationRM,
        prompt: Prompt,
        response: str,
        criterion: str | None = None,
        *,
        maps: Mapping[str, HeadValues] | None = None,
        top_k: int = 8,
        attribution_k: int = 8,
        fit: str | None = None,
    ):
        self.rm, self.model = rm, rm.model
        self._default_fit = rm.fit_for(fit)
        cfg = self.model.cfg
        self.shape = (cfg.n_layers, cfg.n_heads)
        self.prompt, self.response = _prompt_text(prompt), response
        if criterion is None:
            criterion = rm.config.criterion or (
                self._default_fit.criterion if self._default_fit.criterion != POOLED else DEFAULT_CRITERION)
        self.criterion = criterion
        self.maps: dict[str, HeadValues] = {}
        for name, values in (maps or {}).items():
            if tuple(values.shape) != self.shape:
                raise ValueError(f"map {name!r} has shape {tuple(values.shape)}, the model needs {self.shape}")
            self.maps[name] = values.detach().float().cpu()
        self.top_k, self.attribution_k = top_k, attribution_k
        self.mask: HeadMask = self.fit.mask.detach().cpu().clone()
        heads = self.mask.nonzero().tolist()
        self.attention_head: tuple[int, int] = tuple(heads[0]) if heads else (cfg.n_layers - 1, 0)  # type: ignore
        self._prompts: OrderedDict[str, _PromptEntry] = OrderedDict()

    # ------------------------------------------------------------------------------------------------ state

    @property
    def fit(self) -> CriterionARM:
        """The fit whose means are patched in: the one that scores the current criterion."""
        try:
            return self.rm.fit_for(self.criterion)
        except ValueError:
            return self._default_fit

    @property
    def text(self) -> str:
        """The judge prompt, rendered as :meth:`ActivationRM.score` renders it."""
        ex = Example(self.prompt, self.response, None, self.criterion)
        return scalar_prompt(self.model, ex, self.rm.config.template)

    @property
    def heads(self) -> list[str]:
        return mask_labels(self.mask)

    def toggle(self, layer: int, head: int) -> bool:
        """Add the head to the patch set or take it out; returns whether it is now patched. A head added becomes the
        one whose attention is shown."""
        if not (0 <= layer < self.shape[0] and 0 <= head < self.shape[1]):
            raise ValueError(f"head L{layer}H{head} is outside the model's {self.shape[0]} x {self.shape[1]}")
        self.mask[layer, head] = not bool(self.mask[layer, head])
        on = bool(self.mask[layer, head])
        if on:
            self.attention_head = (layer, head)
        return on

    def click(self, layer: int, head: int) -> Readout:
        """What a click on cell (layer, head) does, without a view: toggle it and read the judge."""
        self.toggle(layer, head)
        return self.readout()

    def set_heads(self, heads: str | list[str] | list[tuple[int, int]] | HeadMask) -> None:
        """Replace the patch set: a mask, ``"L3H1,L10H4"`` or a list of labels or ``(layer, head)`` pairs."""
        if isinstance(heads, Tensor):
            if tuple(heads.shape) != self.shape or heads.dtype != torch.bool:
                raise ValueError(f"a head mask must be bool {self.shape}, got {heads.dtype} {tuple(heads.shape)}")
            self.mask = heads.detach().cpu().clone()
        else:
            self.mask = parse_heads(heads, *self.shape)

    def preset(self, name: Preset | str, k: int | None = None) -> None:
        """``arm``: the fit's heads; ``topk``: the ``k`` heads (default ``attribution_k``) whose single-head effect on
        this prompt's margin is largest in size; ``none``; ``all``."""
        if name == "arm":
            self.mask = self.fit.mask.detach().cpu().clone()
        elif name == "topk":
            k = self.attribution_k if k is None else k
            if k < 1:
                raise ValueError(f"k must be at least 1, got {k}")
            top = self.single_head_effect().abs().flatten().topk(min(k, self.mask.numel())).indices
            self.mask = torch.zeros(self.shape, dtype=torch.bool)
            self.mask.view(-1)[top] = True
        elif name == "none":
            self.mask = torch.zeros(self.shape, dtype=torch.bool)
        elif name == "all":
            self.mask = torch.ones(self.shape, dtype=torch.bool)
        else:
            raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
        heads = self.mask.nonzero().tolist()
        if heads and not bool(self.mask[self.attention_head]):
            self.attention_head = tuple(heads[0])  # type: ignore[assignment]

    def set_text(self, prompt: Prompt | None = None, response: str | None = None, criterion: str | None = None) -> None:
        """Change any of the judged texts (the new prompt's prefix runs on the next readout)."""
        prompt = None if prompt is None else _prompt_text(prompt)
        for name, value in (("prompt", prompt), ("response", response), ("criterion", criterion)):
            if value is not None:
                if not value.strip():
                    raise ValueError(f"the {name} is empty")
                setattr(self, name, value)

    def set_attention_head(self, head: str | tuple[int, int]) -> None:
        layer_head = parse_heads([head] if isinstance(head, (str, tuple)) else head, *self.shape).nonzero().tolist()
        if len(layer_head) != 1:
            raise ValueError(f"name one head, got {head!r}")
        self.attention_head = tuple(layer_head[0])  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------------ compute

    def _entry(self) -> _PromptEntry:
        text = self.text
        if text in self._prompts:
            self._prompts.move_to_end(text)
            return self._prompts[text]
        tokens, attn = M.tokenize(self.model, [text])
        entry = _PromptEntry(M.prefix_cache(self.model, tokens, attn),
                             [self.model.tokenizer.decode([int(t)]) for t in tokens[0].tolist()])
        self._prompts[text] = entry
        while len(self._prompts) > MAX_CACHED_PROMPTS:
            self._prompts.popitem(last=False)
        return entry

    def single_head_effect(self) -> HeadValues:
        """Change of logit(Yes) - logit(No) on this prompt when each head alone is patched (one branch per head over
        the cached prefix, :func:`armlens.selection.mask_logits`); cached per prompt and fit."""
        entry, fit = self._entry(), self.fit
        if fit.criterion not in entry.effects:
            n_layers, n_heads = self.shape
            n = n_layers * n_heads
            one_hot = torch.cat([torch.zeros(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)])
            logits = mask_logits(self.model, entry.cache, fit.means, one_hot.view(n + 1, n_layers, n_heads))[0]
            ids = self.rm.answer_ids
            margin = score_from_logits(logits, ids.yes, ids.no, "logit_diff").cpu()
            entry.effects[fit.criterion] = (margin[1:] - margin[0]).view(n_layers, n_heads)
        return entry.effects[fit.criterion]

    @property
    def map_names(self) -> list[str]:
        """Maps the grid can show: the fit's REINFORCE probabilities (when it has them), its heads, this prompt's
        single-head effect, then the maps given."""
        sel = self.fit.selection
        names = [REINFORCE_PROB] if sel is not None and sel.probs is not None else []
        return [*names, ARM_HEADS, EFFECT, *self.maps]

    def head_map(self, name: str) -> tuple[HeadValues, bool]:
        """The ``[n_layers, n_heads]`` values of a map and whether they are signed (else in [0, 1])."""
        if name == REINFORCE_PROB and name not in self.maps:
            sel = self.fit.selection
            if sel is None or sel.probs is None:
                raise ValueError("this fit has no REINFORCE selection probabilities")
            return sel.probs.detach().float().cpu(), False
        if name == ARM_HEADS and name not in self.maps:
            return self.fit.mask.float().cpu(), False
        if name == EFFECT and name not in self.maps:
            return self.single_head_effect(), True
        if name not in self.maps:
            raise ValueError(f"no map {name!r}; choose one of {self.map_names}")
        values = self.maps[name]
        return values, bool((values < 0).any() or (values > 1).any())

    def readout(self) -> Readout:
        """The judge on the current text, unpatched and patched, in one branched forward over the cached prefix."""
        t0 = time.perf_counter()
        entry, fit, ids = self._entry(), self.fit, self.rm.answer_ids
        masks = torch.stack([torch.zeros_like(self.mask), self.mask])
        layer, head = self.attention_head
        logits, attn = branches_with_attention(self.model, entry.cache, fit.means, masks, layer, head)
        logits = logits.float().cpu()
        probs = logits.softmax(-1)

        def pair(t: Tensor) -> tuple[float, float]:
            return float(t[0]), float(t[1])

        top = probs.topk(self.top_k, dim=-1)
        decode = self.model.tokenizer.decode
        table = pd.DataFrame({
            "rank": list(range(1, self.top_k + 1)),
            "unpatched": [decode([int(i)]) for i in top.indices[0]], "p unpatched": top.values[0].tolist(),
            "patched": [decode([int(i)]) for i in top.indices[1]], "p patched": top.values[1].tolist(),
        })
        patched = bool(self.mask.any())
        row = AttentionRow(layer=layer, head=head, tokens=entry.words, weights=attn[0].tolist(),
                           patched_weights=attn[1].tolist() if patched else None)
        kind = self.rm.config.score
        return Readout(
            heads=self.heads, n_tokens=len(entry.words), kind=kind,
            p_yes=pair(probs[:, ids.yes]), p_no=pair(probs[:, ids.no]),
            margin=pair(score_from_logits(logits, ids.yes, ids.no, "logit_diff")),
            score=pair(score_from_logits(logits, ids.yes, ids.no, kind)),
            top=table, attention=row, seconds=time.perf_counter() - t0,
        )

    def arm(self) -> ActivationRM:
        """An :class:`ActivationRM` that patches exactly the current set with the fit's means (``rm.score(prompt,
        response, criterion)`` equals the readout's patched score)."""
        return ActivationRM.from_patch(self.model, self.fit.means, self.mask.clone(), self.rm.config)

    # ------------------------------------------------------------------------------------------------ static view

    def snapshot_html(self, readout: Readout | None = None, map_name: str | None = None) -> str:
        """The grid (coloured by ``map_name``, patched heads crossed) beside the readout, as plain HTML: what the
        widget shows, for places without a widget frontend."""
        readout = readout or self.readout()
        map_name = map_name or self.map_names[0]
        values, signed = self.head_map(map_name)
        return (f"{SNAPSHOT_STYLE}<div class='armlens-picker' style='display:flex;gap:24px;align-items:flex-start;"
                "flex-wrap:wrap;font-family:Arial,sans-serif'>"
                f"<div>{grid_html(values, self.mask, signed=signed, title=map_name)}</div>"
                f"<div style='max-width:640px'>{readout_html(readout)}</div></div>")

    def _repr_html_(self) -> str:
        return self.snapshot_html()

    def __repr__(self) -> str:
        return (f"HeadPicker({len(self.heads)} heads patched: {', '.join(self.heads[:8])}"
                f"{', ...' if len(self.heads) > 8 else ''}; criterion {self.criterion[:40]!r})")


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


class HeadPickerView:
    """The ipywidgets view of a :class:`HeadPicker`: a clickable ``FigureWidget`` grid, presets, text areas and
    the readout. Displaying it in a frontend without the widget manager shows :meth:`HeadPicker.snapshot_html`."""

    def __init__(self, picker: HeadPicker, map_name: str | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.picker = picker
        self.map_name = map_name or picker.map_names[0]
        self.latencies: list[float] = []
        """Seconds from each click to the updated view (readout and figures), as :meth:`click` measured them."""
        self.last: Readout | None = None
        self._quiet = self._quiet_text = False

        self.grid = go.FigureWidget(self._grid_figure())
        # Only the heatmap takes clicks: the crosses skip hover, so a click on one lands on its cell (one event, one
        # toggle, never one per trace under the pointer).
        self.grid.data[0].on_click(self._on_click)
        self.attention = go.FigureWidget(layout={
            "template": "plotly_white", "height": 230, "width": 560, "barmode": "overlay",
            "margin": {"l": 50, "r": 10, "t": 36, "b": 40}, "font": {"size": 11},
            "xaxis": {"title": {"text": "key position"}}, "yaxis": {"title": {"text": "attention"}},
            "legend": {"orientation": "h", "y": 1.12, "x": 0}})
        self.attention.add_bar(name="unpatched", marker_color="#7f7f7f", opacity=0.6)
        self.attention.add_bar(name="patched", marker_color="#d62728", opacity=0.6)

        area = {"layout": W.Layout(width="32%", height="70px"), "continuous_update": False}
        self.prompt = W.Textarea(value=picker.prompt, description="prompt", **area)
        self.response = W.Textarea(value=picker.response, description="response", **area)
        self.criterion = W.Textarea(value=picker.criterion, description="criterion", **area)
        for box in (self.prompt, self.response, self.criterion):
            box.observe(self._on_text, names="value")
        self.maps = W.Dropdown(options=picker.map_names, value=self.map_name, description="colour by",
                               layout=W.Layout(width="320px"))
        self.maps.observe(self._on_map, names="value")
        self.k = W.BoundedIntText(value=picker.attribution_k, min=1, max=picker.mask.numel(), description="k",
                                  layout=W.Layout(width="110px"))
        self.buttons = {name: W.Button(description=label, layout=W.Layout(width="auto"))
                        for name, label in PRESETS.items()}
        for name, button in self.buttons.items():
            button.on_click(lambda _b, name=name: self.apply_preset(name))
        labels = [head_label(layer, h) for layer in range(picker.shape[0]) for h in range(picker.shape[1])]
        self.head = W.Dropdown(options=labels, value=head_label(*picker.attention_head), description="attention of",
                               layout=W.Layout(width="200px"))
        self.head.observe(self._on_head, names="value")
        self.readout_box = W.HTML()
        self.status = W.HTML()
        self.widget = W.VBox([
            W.HBox([self.prompt, self.response, self.criterion]),
            W.HBox([W.HTML("<b>presets</b>&nbsp;"), *self.buttons.values(), self.k, self.maps, self.head]),
            self.status,
            W.HBox([self.grid, W.VBox([self.readout_box, self.attention])]),
        ])
        self.refresh()

    # -------------------------------------------------------------------------------- drawing

    def _grid_figure(self) -> Any:
        import plotly.graph_objects as go

        from armlens.plots import plot_head_map

        values, signed = self.picker.head_map(self.map_name)
        fig = plot_head_map(values, title="Click a head to patch it", colorbar_title=self.map_name[:24],
                            signed=signed, subtitle=f"colour: {self.map_name}; x: patched")
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="patched", showlegend=False, hoverinfo="skip",
                                 marker={"symbol": "x-thin", "size": 10, "line": {"width": 2.5, "color": "#d62728"}}))
        fig.update_layout(width=480, height=640, clickmode="event")
        return fig

    def _draw(self, r: Readout) -> None:
        idx = self.picker.mask.nonzero().tolist()
        with self.grid.batch_update():
            marks = self.grid.data[1]
            marks.x = [h for _, h in idx]
            marks.y = [layer for layer, _ in idx]
            marks.text = [head_label(layer, h) for layer, h in idx]
        row = r.attention
        hover = [repr(t) for t in row.tokens]
        with self.attention.batch_update():
            pos = list(range(len(row.weights)))
            self.attention.data[0].update(x=pos, y=row.weights, hovertext=hover)
            self.attention.data[1].update(x=pos if row.patched_weights else [], y=row.patched_weights or [],
                                          hovertext=hover, visible=row.patched_weights is not None)
            self.attention.layout.title = {"text": f"{row.label}: attention from the read position", "x": 0.01}
        self.readout_box.value = f"{SNAPSHOT_STYLE}<div class='armlens-picker'>{readout_html(r)}</div>"
        self.status.value = (f"<span style='color:#555'>P(Yes) {r.p_yes[0]:.4f} &rarr; <b>{r.p_yes[1]:.4f}</b>; "
                             f"margin {r.margin[0]:+.3f} &rarr; <b>{r.margin[1]:+.3f}</b></span>")

    def refresh(self) -> Readout:
        """Read the judge for the current state and redraw."""
        self.last = self.picker.readout()
        self._draw(self.last)
        if not self._quiet and self.head.value != head_label(*self.picker.attention_head):
            self._quiet = True
            try:
                self.head.value = head_label(*self.picker.attention_head)
            finally:
                self._quiet = False
        return self.last

    # -------------------------------------------------------------------------------- events

    def click(self, layer: int, head: int) -> Readout:
        """What clicking cell (layer, head) does: toggle it and redraw; the time it took is kept in ``latencies``."""
        t0 = time.perf_counter()
        self.picker.toggle(layer, head)
        r = self.refresh()
        self.latencies.append(time.perf_counter() - t0)
        return r

    def set_text(self, prompt: Prompt | None = None, response: str | None = None, criterion: str | None = None) -> Readout:
        """Change the judged texts as typing into the text areas does, with one redraw."""
        self.picker.set_text(prompt, response, criterion)
        self._quiet_text = True
        try:
            self.prompt.value, self.response.value = self.picker.prompt, self.picker.response
            self.criterion.value = self.picker.criterion
        finally:
            self._quiet_text = False
        if self.map_name == EFFECT:
            self._redraw_map()
        return self.refresh()

    def _on_click(self, trace: Any, points: Any, selector: Any = None) -> None:
        if not points.point_inds:
            return
        self.click(round(points.ys[0]), round(points.xs[0]))

    def apply_preset(self, name: str) -> Readout:
        self.picker.preset(name, k=self.k.value if name == "topk" else None)
        if name == "topk" and self.map_name != EFFECT:
            self.maps.value = EFFECT  # show the map the preset ranked by (redraws the grid)
        return self.refresh()

    def _on_text(self, change: dict[str, Any]) -> None:
        if self._quiet_text:
            return
        try:
            self.picker.set_text(self.prompt.value, self.response.value, self.criterion.value)
        except ValueError as e:
            self.status.value = f"<span style='color:#d62728'>{html.escape(str(e))}</span>"
            return
        if self.map_name == EFFECT:
            self._redraw_map()
        self.refresh()

    def _on_map(self, change: dict[str, Any]) -> None:
        self.map_name = change["new"]
        self._redraw_map()

    def _redraw_map(self) -> None:
        new = self._grid_figure()
        heat = new.data[0].to_plotly_json()
        heat.pop("type", None)
        with self.grid.batch_update():
            self.grid.data[0].update(heat)
            self.grid.layout.title = new.layout.title

    def _on_head(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.picker.set_attention_head(change["new"])
        self._quiet = True
        try:
            self.refresh()
        finally:
            self._quiet = False

    # -------------------------------------------------------------------------------- display

    def snapshot_html(self) -> str:
        return self.picker.snapshot_html(self.last, self.map_name)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        data["text/html"] = self.snapshot_html()  # shown by frontends without the widget manager
        return data


def widgets_available() -> bool:
    """Whether ipywidgets and anywidget (plotly's ``FigureWidget``) are importable."""
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def head_picker(
    rm: ActivationRM, prompt: Prompt, response: str, criterion: str | None = None, *, map_name: str | None = None,
    **kw: Any,
) -> HeadPickerView | HeadPicker:
    """The head picker for ``rm``: the widget where ipywidgets is installed (``pip install -e ".[notebooks]"``),
    else the :class:`HeadPicker` itself, which displays as a static snapshot. ``kw`` go to :class:`HeadPicker`."""
    picker = HeadPicker(rm, prompt, response, criterion, **kw)
    return HeadPickerView(picker, map_name) if widgets_available() else picker
