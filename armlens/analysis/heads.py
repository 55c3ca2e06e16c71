"""Head analysis: which heads an ARM patches, how stable that choice is, and what each head does on its own.

Context
-------
An Activation RM is a head mask plus mean activations. Three questions make it interpretable:

- **Which heads?** REINFORCE leaves a selection probability per head (``SelectionResult.probs``, ``[n_layers,
  n_heads]``) and its history over steps (``prob_trajectory``, ``[steps, n_layers, n_heads]``).
- **How stable?** Re-fit with other seeds / few-shot draws and count how often each head is chosen
  (:func:`selection_frequency`); compare head sets between runs or criteria with the Jaccard index
  (:func:`jaccard_matrix`: the diagonal is the seed-to-seed agreement *within* a criterion, the off-diagonal the
  agreement *between* criteria, so "helpful and harmless use different heads" only means something when the
  off-diagonal is clearly below the diagonal).
- **What does one head do?** The single-head patching effect on the judge's Yes-No margin
  (:func:`armlens.selection.single_head_effects`) set beside REINFORCE's probabilities (:func:`rank_agreement`), and
  where a selected head looks from the read position (:func:`attention_from_last`, read from
  ``blocks.{l}.attn.hook_pattern``).

Everything returns tensors ``[n_layers, n_heads]`` or tidy DataFrames (one row per head, ``L{l}H{h}`` labels);
:mod:`armlens.plots` draws them. Only :func:`attention_from_last` (full forwards, through
:func:`armlens.model.run_with_hooks`) and :func:`branches_with_attention` (head masks as branches over a prefix
cache, :func:`armlens.model.run_cached_branches`) run the model.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from armlens import model as M
from armlens.errors import BadInputError, SetupError
from armlens.patching import head_label, patch_branch_hooks, patch_hooks
from armlens.stats import spearman
from armlens.typing import HeadMask, HeadValues, Masks, Means, Model

# ---------------------------------------------------------------------------------------------------- tidy frames


def head_frame(values: Mapping[str, Tensor]) -> pd.DataFrame:
    """One row per head: ``layer``, ``head``, ``label`` (``L{l}H{h}``) and one column per named ``[n_layers,
    n_heads]`` tensor (all must share the shape)."""
    if not values:
        raise BadInputError("head_frame needs at least one named [n_layers, n_heads] tensor")
    shapes = {tuple(v.shape) for v in values.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise BadInputError(f"head_frame: every tensor must be [n_layers, n_heads] of one shape, got {sorted(shapes)}")
    n_layers, n_heads = next(iter(shapes))
    rows: dict[str, list[Any]] = {"layer": [], "head": [], "label": []}
    for layer in range(n_layers):
        for head in range(n_heads):
            rows["layer"].append(layer)
            rows["head"].append(head)
            rows["label"].append(head_label(layer, head))
    frame = pd.DataFrame(rows)
    for name, v in values.items():
        frame[name] = v.detach().cpu().flatten().tolist()
    return frame


def top_heads(values: HeadValues, k: int = 10, mask: HeadMask | None = None) -> pd.DataFrame:
    """The ``k`` heads with the largest values (within ``mask`` when given), largest first."""
    frame = head_frame({"value": values})
    if mask is not None:
        frame = frame[mask.flatten().cpu().numpy()]
    return frame.sort_values("value", ascending=False, kind="stable").head(k).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------- stability


def selection_frequency(masks: Masks) -> HeadValues:
    """Share of runs (seeds / few-shot draws) whose final head set contains each head, in [0, 1]."""
    if masks.shape[0] == 0:
        raise BadInputError("selection_frequency needs at least one run")
    return masks.float().mean(0)


def jaccard(a: HeadMask, b: HeadMask) -> float:
    """``|A & B| / |A | B|`` of two head sets; two empty sets count as identical (1.0)."""
    union = int((a | b).sum())
    if union == 0:
        return 1.0
    return int((a & b).sum()) / union


def pairwise_jaccard(masks: Masks) -> Float[Tensor, "k k"]:
    """Jaccard index between every two runs' head sets (1 on the diagonal)."""
    n = masks.shape[0]
    out = torch.ones(n, n)
    for i, j in itertools.combinations(range(n), 2):
        out[i, j] = out[j, i] = jaccard(masks[i], masks[j])
    return out


def mean_pairwise_jaccard(masks: Masks) -> float:
    """Mean Jaccard index over every two runs' head sets (the off-diagonal of :func:`pairwise_jaccard`); NaN with
    fewer than two runs."""
    if masks.shape[0] < 2:
        return float("nan")
    return float(pairwise_jaccard(masks)[~torch.eye(masks.shape[0], dtype=torch.bool)].mean())


def jaccard_matrix(sets: Mapping[str, Sequence[HeadMask]], *, skip_same_run: bool = True) -> pd.DataFrame:
    """Mean Jaccard index between the head sets of named conditions (e.g. HHH criteria), over pairs of runs.

    ``sets[name]`` holds one head mask per run, runs aligned by position (run ``i`` of every condition used seed
    ``i``). Each cell is the mean of ``J(A_i, B_j)`` over run pairs with ``i != j`` (``skip_same_run``): runs with the
    same seed share REINFORCE's random draws, and their masks overlap for that reason alone, so the diagonal (the
    seed-to-seed stability of one condition) and the off-diagonal (agreement between conditions) are computed the
    same way and can be compared. With ``skip_same_run=False`` the off-diagonal uses every pair. NaN where no pair
    is left (a single run). Returns a square DataFrame indexed and columned by name.
    """
    names = list(sets)
    if not names or any(len(sets[n]) == 0 for n in names):
        raise BadInputError("jaccard_matrix needs at least one head mask per condition")
    out = pd.DataFrame(float("nan"), index=names, columns=names, dtype=float)
    for a in names:
        for b in names:
            vals = [jaccard(x, y) for i, x in enumerate(sets[a]) for j, y in enumerate(sets[b])
                    if i != j or (not skip_same_run and a != b)]
            out.loc[a, b] = sum(vals) / len(vals) if vals else float("nan")
    return out


def expected_random_jaccard(k_a: float | int, k_b: float | int, n: int) -> float:
    """Expected Jaccard index of two independent uniform random head sets of sizes ``k_a`` and ``k_b`` out of ``n``
    (approximated by ``E|A&B| / (k_a + k_b - E|A&B|)``, ``E|A&B| = k_a k_b / n``): the chance level to compare with."""
    if n <= 0:
        raise BadInputError("n must be positive")
    inter = k_a * k_b / n
    union = k_a + k_b - inter
    return 1.0 if union <= 0 else inter / union


# ---------------------------------------------------------------------------------------------------- attribution


def rank_agreement(a: HeadValues, b: HeadValues) -> float:
    """Spearman rank correlation between two per-head maps (e.g. single-head effect vs selection probability);
    NaN when either map is constant."""
    return spearman(a.detach().float().cpu().flatten().numpy(), b.detach().float().cpu().flatten().numpy())


def trajectory_steps(n_steps: int, n_snapshots: int = 6) -> list[int]:
    """``n_snapshots`` step indices spread evenly from the first to the last step (for small multiples)."""
    if n_steps <= 0:
        raise BadInputError("the trajectory has no steps")
    n = min(n_snapshots, n_steps)
    if n == 1:
        return [n_steps - 1]
    return sorted({round(i * (n_steps - 1) / (n - 1)) for i in range(n)})


def trajectory_frame(trajectory: Float[Tensor, "steps n_layers n_heads"], heads: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy ``step, label, prob`` rows for the given head labels (default: every head)."""
    steps, n_layers, n_heads = trajectory.shape
    labels = [head_label(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    flat = trajectory.detach().cpu().reshape(steps, -1)
    keep = range(len(labels)) if heads is None else [labels.index(h) for h in heads]
    rows = [{"step": s + 1, "label": labels[i], "prob": float(flat[s, i])} for i in keep for s in range(steps)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------- attention


@dataclass
class AttentionRow:
    """Where one head attends from the read position (the last token) of one prompt."""

    layer: int
    """Layer of the head."""
    head: int
    """Query head index."""
    tokens: list[str]
    """Decoded tokens of the prompt (key positions), in order."""
    weights: list[float]
    """Attention weights from the last token to each key position (sum to 1)."""
    patched_weights: list[float] | None = None
    """The same row with the ARM's heads patched (earlier layers' patches change the query), if computed."""
    note: str = ""
    """What the prompt was (free text)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (e.g. the head's selection probability)."""

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttentionRow:
        return cls(**dict(d))

    def frame(self) -> pd.DataFrame:
        """Tidy ``position, token, weight[, patched_weight]`` rows."""
        data: dict[str, Any] = {"position": list(range(len(self.tokens))), "token": self.tokens,
                                "weight": self.weights}
        if self.patched_weights is not None:
            data["patched_weight"] = self.patched_weights
        return pd.DataFrame(data)


def pattern_name(layer: int) -> str:
    """``blocks.{layer}.attn.hook_pattern``."""
    return M.pattern_name(layer)


def grab_last_query_hook(
    pattern: Float[Tensor, "batch head_index query_pos key_pos"], hook: Any, *, head: int, out: list[Tensor]
) -> None:
    """Keep the attention weights of ``head`` from the last query position (reduced the moment it is read)."""
    out.append(pattern[:, head, -1, :].detach().float().cpu().clone())


def attention_from_last(
    model: Model,
    text: str,
    layer: int,
    head: int,
    *,
    means: Means | None = None,
    mask: HeadMask | None = None,
    note: str = "",
) -> AttentionRow:
    """Attention of ``L{layer}H{head}`` from the last token of ``text`` over every position.

    With ``means``/``mask`` the row is also read with the ARM's heads patched (``patched_weights``): a patch in an
    earlier layer changes the last position's residual stream and so this head's query.
    """
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise BadInputError(f"head L{layer}H{head} is outside the model's {model.cfg.n_layers} x {model.cfg.n_heads}")
    tokens, attn = M.tokenize(model, [text])
    name = pattern_name(layer)

    def read(extra: list[M.Hook]) -> list[float]:
        got: list[Tensor] = []
        hook = (name, functools.partial(grab_last_query_hook, head=head, out=got))
        M.run_with_hooks(model, tokens, attn, [*extra, hook])
        if not got:
            raise SetupError(f"{name} did not fire; this model's bridge exposes no attention pattern hook")
        return [float(w) for w in got[0][0]]

    weights = read([])
    patched = None
    if means is not None and mask is not None and bool(mask.any()):
        patched = read(patch_hooks(model, means, mask))
    words = [model.tokenizer.decode([int(t)]) for t in tokens[0].tolist()]
    return AttentionRow(layer=layer, head=head, tokens=words, weights=weights, patched_weights=patched, note=note)


def grab_branch_queries_hook(
    pattern: Float[Tensor, "batch head_index branch key_pos"], hook: Any, *, head: int, out: list[Tensor]
) -> None:
    """Keep the attention weights of ``head`` from every branch (copy of the last token) of
    :func:`armlens.model.run_cached_branches`: ``[batch, branch, prefix + branch]``."""
    out.append(pattern[:, head].detach().float().cpu().clone())


def branches_with_attention(
    model: Model, cache: M.PrefixCache, means: Means, masks: Masks, layer: int, head: int
) -> tuple[Float[Tensor, "k d_vocab"], Float[Tensor, "k key_pos"]]:
    """Last-token logits of one prompt under each of ``masks`` and where ``L{layer}H{head}`` attends from the read
    position under each, in one forward: the masks are branches over the prompt's prefix cache (as
    :func:`armlens.selection.mask_logits`), and the head's attention row is read off the same forward.

    Branch i attends to the prefix and to itself only, so its row is the prefix weights followed by its own
    diagonal weight: the same row :func:`attention_from_last` reads with a full forward (``weights`` for an empty
    mask, ``patched_weights`` for a mask), at the cost of one token per mask.
    """
    if cache.batch != 1:
        raise BadInputError(f"branches_with_attention() reads one prompt's cache, got a batch of {cache.batch}")
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise BadInputError(f"head L{layer}H{head} is outside the model's {model.cfg.n_layers} x {model.cfg.n_heads}")
    k = masks.shape[0]
    got: list[Tensor] = []
    hooks = [*patch_branch_hooks(model, means, masks),
             (pattern_name(layer), functools.partial(grab_branch_queries_hook, head=head, out=got))]
    logits = M.run_cached_branches(model, cache, k, hooks)[0]
    if not got:
        raise SetupError(f"{pattern_name(layer)} did not fire; this model's bridge exposes no attention pattern hook")
    rows = got[0][0]  # [k, prefix + k]
    n_prefix = rows.shape[-1] - k
    own = rows[torch.arange(k), n_prefix + torch.arange(k)]
    return logits, torch.cat([rows[:, :n_prefix], own[:, None]], dim=-1)


def grab_last_query_all_heads_hook(
    pattern: Float[Tensor, "batch head_index query_pos key_pos"], hook: Any, *, layer: int, out: dict[int, Tensor]
) -> None:
    """Keep every head's attention weights from the last query position of a one-prompt batch."""
    out[layer] = pattern[0, :, -1, :].detach().float().cpu().clone()


def last_token_attention(model: Model, text: str) -> Float[Tensor, "n_layers n_heads pos"]:
    """Where every head attends from the read position (the last token) of ``text``: one full forward."""
    tokens, attn = M.tokenize(model, [text])
    got: dict[int, Tensor] = {}
    hooks = [(pattern_name(layer), functools.partial(grab_last_query_all_heads_hook, layer=layer, out=got))
             for layer in range(model.cfg.n_layers)]
    M.run_last_logits(model, tokens, attn, hooks)
    if len(got) != model.cfg.n_layers:
        raise SetupError("hook_pattern did not fire in every layer; this model's bridge exposes no attention pattern")
    return torch.stack([got[layer] for layer in range(model.cfg.n_layers)])


def segment_attention(model: Model, texts: Sequence[str], template: Any = None, *, n_end: int = 8
                      ) -> Float[Tensor, "texts n_layers n_heads segments"]:
    """Each head's attention from the read position of each zero-shot judge prompt, summed over the prompt's
    segments (:data:`armlens.prompts.SEGMENTS`: first token, criterion, prompt, response, the response's last
    ``n_end`` tokens, question, read position, the rest); each head's shares sum to 1."""
    from armlens.prompts import SEGMENTS, JudgeTemplate, scalar_spans, token_segments

    template = template if template is not None else JudgeTemplate()
    index = {name: i for i, name in enumerate(SEGMENTS)}
    out = []
    for text in texts:
        names = token_segments(M.token_spans(model, text), scalar_spans(text, template), n_end=n_end)
        rows = last_token_attention(model, text)
        if rows.shape[-1] != len(names):
            raise SetupError(f"the attention row has {rows.shape[-1]} positions, the text {len(names)} tokens")
        seg = torch.tensor([index[n] for n in names])
        out.append(torch.zeros(*rows.shape[:2], len(SEGMENTS)).index_add_(-1, seg, rows))
    return torch.stack(out)


def attention_entropy(weights: Sequence[float]) -> float:
    """Entropy (nats) of an attention row: 0 = all weight on one token, ``log(n)`` = uniform."""
    return -sum(w * math.log(w) for w in weights if w > 0)
