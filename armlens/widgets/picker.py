"""The head picker's state: the patch set, the texts and the judge's readout, with no frontend (see
:mod:`armlens.widgets`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from torch import Tensor

from armlens import model as M
from armlens.analysis.heads import AttentionRow, branches_with_attention
from armlens.data.records import Prompt, prompt_text
from armlens.patching import mask_labels, parse_heads
from armlens.prompts import DEFAULT_CRITERION, Example, scalar_prompt
from armlens.rm import POOLED, ActivationRM, CriterionARM
from armlens.scoring import score_from_logits
from armlens.selection import mask_logits
from armlens.typing import HeadMask, HeadValues
from armlens.widgets.snapshot import SNAPSHOT_STYLE, Readout, grid_html, readout_html

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
        self.prompt, self.response = prompt_text(prompt), response
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
        prompt = None if prompt is None else prompt_text(prompt)
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

