"""Stage 3: turning the judge's last-token logits into a reward.

Three readings of the same logits, selectable everywhere a score is produced:

- ``prob`` (the reference, MTV): softmax over the *full vocabulary* at the "Yes" token id.
- ``normalized``: ``P(Yes) / (P(Yes) + P(No))``: immune to probability mass leaking to other tokens.
- ``logit_diff``: ``logit(Yes) - logit(No)``: unbounded, no saturation, the margin used for attributions.

:func:`score_texts` runs judge prompts (optionally with heads patched) in left-padded batches: one full forward per
prompt and patch, the reference. :func:`score_rows` is the physical limit for patches that only touch the last token
(an ARM, the zero-shot judge, random or top-k head sets, every ablation cell): each prompt's prefix is run once
(prompts that share a leading part, such as a pair's chosen and rejected prompts or in-context demonstrations, share
its cache) and every patch that prompt is asked under is a side-by-side branch of its last token
(:func:`armlens.model.run_cached_branches`). :func:`score_patched` is its one-patch-per-prompt form.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.errors import BadInputError
from armlens.patching import patch_hooks, row_patch_hooks
from armlens.prompts import AnswerIds
from armlens.typing import HeadMask, HeadValues, Means, Model, RowMeans

ScoreKind = Literal["prob", "normalized", "logit_diff"]
RowResid = dict[int, Float[Tensor, "rows d_model"]]
"""Residual additions of the rows of :func:`score_rows`: per layer, one vector per row (zero: none)."""
SCORE_KINDS: tuple[str, ...] = ("prob", "normalized", "logit_diff")


def score_from_parts(yes: Tensor, no: Tensor, logsumexp: Tensor, kind: ScoreKind = "prob") -> Tensor:
    """The reward from the three numbers every reading needs: the Yes and No logits and the log-normaliser over the
    full vocabulary (any matching shapes)."""
    if kind == "prob":
        return (yes - logsumexp).exp()
    if kind == "normalized":
        return torch.sigmoid(yes - no)
    if kind == "logit_diff":
        return yes - no
    raise BadInputError(f"unknown score kind {kind!r}; choose one of {SCORE_KINDS}")


def score_from_logits(
    logits: Float[Tensor, "batch d_vocab"], yes_id: int, no_id: int, kind: ScoreKind = "prob"
) -> Float[Tensor, " batch"]:
    """The reward from last-token logits."""
    logits = logits.float()
    return score_from_parts(logits[:, yes_id], logits[:, no_id], logits.logsumexp(-1), kind)


def answer_loss(logits: Float[Tensor, "batch d_vocab"], gold_ids: Tensor) -> Float[Tensor, " batch"]:
    """Cross-entropy of the last-token logits against the gold answer token (REINFORCE's loss)."""
    return torch.nn.functional.cross_entropy(logits.float(), gold_ids.to(logits.device), reduction="none")


def score_texts(
    model: Model,
    texts: Sequence[str],
    *,
    means: Means | None = None,
    mask: HeadMask | None = None,
    answer_ids: AnswerIds | None = None,
    kind: ScoreKind = "prob",
    batch_size: int = 8,
    show_progress: bool = False,
    desc: str = "scoring",
    weights: HeadValues | None = None,
) -> Float[Tensor, " batch"]:
    """Judge scores for chat-templated prompts, with ``mask``'s heads patched to ``means`` (none: the plain judge);
    ``weights``: soft weights, ``z + w (means - z)`` at those heads (:mod:`armlens.patching`)."""
    if not texts:
        raise BadInputError("no texts to score")
    ids = answer_ids or AnswerIds.of(model)
    hooks = (patch_hooks(model, means, mask, weights=weights)
             if mask is not None and means is not None and bool(mask.any()) else [])
    out = torch.empty(len(texts))
    for idx in tqdm(M.length_batches(texts, batch_size), desc=desc, disable=not show_progress, leave=False):
        logits = M.run_last_logits(model, *M.tokenize(model, [texts[i] for i in idx]), hooks)
        out[idx] = score_from_logits(logits, ids.yes, ids.no, kind).cpu()
    return out


# ---------------------------------------------------------------------------------------------------- branches

MIN_SHARED_TOKENS = 48
"""Prompts share a common leading part's cache only when it is at least this long: a shared prefix costs one more
forward call (~0.075 s of fixed overhead on the default model on 2 CPU cores, against ~0.0018 s per token saved;
``armlens bench`` measures both paths)."""


@dataclass
class RowLogits:
    """What the score readings need from each (prompt, row)'s last-token logits (never the full vocabulary).

    Entries of (prompt, row) combinations that were not asked for are NaN (argmax -1)."""

    yes: Float[Tensor, "texts rows"]
    """Logit of the Yes token."""
    no: Float[Tensor, "texts rows"]
    """Logit of the No token."""
    logsumexp: Float[Tensor, "texts rows"]
    """Log-normaliser over the full vocabulary."""
    argmax: Int[Tensor, "texts rows"]
    """Greedy next token."""
    captured: dict[str, Tensor] = field(default_factory=dict)
    """``score_rows(capture=...)``: each hook's activation at each text's last token under ``capture_row``
    (``[texts, ...]``; NaN for texts not asked under that row)."""

    def read(self, kind: ScoreKind | str) -> Float[Tensor, "texts rows"]:
        """``prob`` (full-vocabulary P(Yes)), ``normalized`` (P(Yes)/(P(Yes)+P(No))) or ``logit_diff``."""
        return score_from_parts(self.yes, self.no, self.logsumexp, kind)  # type: ignore[arg-type]


def _resid_add_hook(x: Float[Tensor, "batch branch d_model"], hook: object, *, add: Tensor) -> Tensor:
    """Add ``add[j]`` to branch ``j``'s residual stream (zero rows: nothing)."""
    return x + add.to(x.device, x.dtype)[None]


def _capture_hook(x: Tensor, hook: object, *, store: dict[str, Tensor], name: str, branch: int) -> None:
    """Keep branch ``branch``'s activation as ``store[name]`` (the prompt's last token under that row)."""
    store[name] = x[0, branch].detach().float().cpu().clone()


def _branch_rows(
    model: Model, cache: M.PrefixCache, means: RowMeans, masks: Bool[Tensor, "rows n_layers n_heads"],
    rows: Sequence[int], answer_ids: AnswerIds, chunk: int, resid: RowResid | None = None,
    capture: Sequence[str] = (), capture_row: int | None = None,
    weights: Float[Tensor, "rows n_layers n_heads"] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Yes, No, log-normaliser and argmax of one prompt's last token under each of ``rows`` (branches, chunked),
    and the ``capture`` hooks' activations under ``capture_row`` when it is among them."""
    parts: list[tuple[Tensor, ...]] = []
    store: dict[str, Tensor] = {}
    for start in range(0, len(rows), chunk):
        here = list(rows[start : start + chunk])
        idx = torch.tensor(here)
        hooks = row_patch_hooks(model, means[idx], masks[idx], None if weights is None else weights[idx])
        for layer, add in (resid or {}).items():
            if bool(add[idx].any()):
                hooks.append((M.resid_post_name(layer), functools.partial(_resid_add_hook, add=add[idx])))
        if capture and capture_row in here:
            j = here.index(capture_row)
            hooks += [(name, functools.partial(_capture_hook, store=store, name=name, branch=j))
                      for name in capture]
        logits = M.run_cached_branches(model, cache, len(idx), hooks)[0]
        logits = logits.float().cpu()
        parts.append((logits[:, answer_ids.yes], logits[:, answer_ids.no], logits.logsumexp(-1), logits.argmax(-1)))
    yes, no, lse, top = (torch.cat(p) for p in zip(*parts, strict=True))
    return yes, no, lse, top, store


def score_rows(
    model: Model,
    texts: Sequence[str],
    means: RowMeans,
    masks: Bool[Tensor, "rows n_layers n_heads"],
    *,
    answer_ids: AnswerIds,
    rows_per_text: Sequence[Sequence[int]] | None = None,
    groups: Sequence[Hashable] | None = None,
    subgroups: Sequence[Hashable] | None = None,
    min_shared_tokens: int = MIN_SHARED_TOKENS,
    chunk: int = 64,
    resid: RowResid | None = None,
    capture: Sequence[str] = (),
    capture_row: int | None = None,
    show_progress: bool = False,
    desc: str = "scoring rows",
    weights: Float[Tensor, "rows n_layers n_heads"] | None = None,
    pool: M.PrefixPool | None = None,
) -> RowLogits:
    """Texts under row patches: one prefix per text, every row it is asked under as a side-by-side branch over it.

    Row ``r`` overwrites the last-token hook_z of the heads in ``masks[r]`` with ``means[r]`` (an empty mask is the
    plain judge) and, with ``resid`` (``{layer: [rows, d_model]}``, :meth:`RowTable.resid`), adds ``resid[l][r]`` to
    the last token's ``blocks.{l}.hook_resid_post`` (a steering vector). ``capture`` names hooks whose last-token
    activation under ``capture_row`` is kept per text (:attr:`RowLogits.captured`: the features of a probe). Text
    ``i`` is scored under ``rows_per_text[i]`` (default: every row). ``weights`` (``[rows, n_layers, n_heads]``,
    :meth:`RowTable.weights`): soft weights, row ``r`` writes ``z + weights[r] (means[r] - z)`` at its heads (a row
    of ones: the plain overwrite, bit for bit). Texts with the same ``groups`` key (e.g. a pair's chosen and rejected prompts, or in-context prompts with the same demonstrations)
    run their common leading tokens once when those are at least ``min_shared_tokens`` long, and each text then only
    its own remaining tokens. Within a group, texts with the same ``subgroups`` key (e.g. an in-context judge's
    chosen and rejected queries after shared demonstrations) run their longer common part once more, on top of the
    group's. ``pool``: take each text's prefix from this :class:`~armlens.model.PrefixPool` instead (no sharing
    within a group, but a text scored again in a later call, as a head search does pass after pass, runs only its
    branches). Equals :func:`score_texts` per row within float tolerance (checked by the tests).
    """
    n, n_rows = len(texts), masks.shape[0]
    wanted = [list(range(n_rows))] * n if rows_per_text is None else [list(r) for r in rows_per_text]
    if len(wanted) != n or any(keys is not None and len(keys) != n for keys in (groups, subgroups)):
        raise BadInputError("rows_per_text, groups and subgroups need one entry per text")
    if any(not 0 <= r < n_rows for rows in wanted for r in rows):
        raise BadInputError(f"a row index is outside the {n_rows} rows")
    if capture and capture_row is None:
        raise BadInputError("capture needs capture_row: the row whose activations are kept")
    nan = torch.full((n, n_rows), float("nan"))
    out = {"yes": nan.clone(), "no": nan.clone(), "logsumexp": nan.clone()}
    captured: dict[str, list[Tensor | None]] = {name: [None] * n for name in capture}
    argmax = torch.full((n, n_rows), -1, dtype=torch.long)
    members: dict[Hashable, list[int]] = {}
    for i in range(n):
        if wanted[i]:
            members.setdefault(groups[i] if groups is not None else ("text", i), []).append(i)
    bar = tqdm(total=sum(len(m) for m in members.values()), desc=desc, disable=not show_progress, leave=False)
    for i, cache in _text_caches(model, texts, members, subgroups, min_shared_tokens, pool):
        yes, no, lse, top, store = _branch_rows(model, cache, means, masks, wanted[i], answer_ids, chunk,
                                                resid, capture, capture_row, weights)
        for name, value in store.items():
            captured[name][i] = value
        cols = torch.tensor(wanted[i])
        out["yes"][i, cols], out["no"][i, cols], out["logsumexp"][i, cols] = yes, no, lse
        argmax[i, cols] = top
        bar.update(1)
    bar.close()
    return RowLogits(out["yes"], out["no"], out["logsumexp"], argmax, _stack_captured(captured))


def _text_caches(model: Model, texts: Sequence[str], members: dict[Hashable, list[int]],
                 subgroups: Sequence[Hashable] | None, min_shared_tokens: int, pool: M.PrefixPool | None,
                 ) -> Iterator[tuple[int, M.PrefixCache]]:
    """``(i, prefix cache of texts[i])`` for every text of every group, a group's common start run once (see
    :func:`score_rows`); with a ``pool``, each text's own cache from it instead (kept for the next call)."""
    for idx in members.values():
        if pool is not None:
            yield from ((i, pool[texts[i]]) for i in idx)
            continue
        tokens = [M.tokenize(model, [texts[i]])[0] for i in idx]
        shared = _common_prefix_cache(model, tokens, None, min_shared_tokens)
        for sub in _subgroups_of(idx, subgroups):  # one subgroup's prefix alive at a time
            start = _common_prefix_cache(model, [tokens[j] for j in sub], shared, min_shared_tokens)
            for j in sub:
                tok = tokens[j]
                yield idx[j], (M.extend_prefix(model, start, tok) if start is not None
                               else M.prefix_cache(model, tok, torch.ones_like(tok)))


def _subgroups_of(idx: list[int], subgroups: Sequence[Hashable] | None) -> list[list[int]]:
    """Positions in ``idx`` grouped by their ``subgroups`` key, in first-appearance order (each alone without keys)."""
    if subgroups is None:
        return [[j] for j in range(len(idx))]
    by_sub: dict[Hashable, list[int]] = {}
    for j, i in enumerate(idx):
        by_sub.setdefault(subgroups[i], []).append(j)
    return list(by_sub.values())


def _common_prefix_cache(model: Model, toks: list[Tensor], shared: Any, min_shared_tokens: int) -> Any:
    """The cache several texts extend: their common leading tokens (all but each text's last), built on ``shared``
    (a cache of fewer of them, or ``None``) where that part is at least ``min_shared_tokens`` longer than it; else
    ``shared`` itself. Used for a group (on nothing) and for a subgroup (on its group's cache)."""
    if len(toks) < 2:
        return shared
    n_shared = shared.get_seq_length() if shared is not None else 0
    common = min(M.common_prefix_length([t[0].tolist() for t in toks]), min(t.shape[1] for t in toks) - 1)
    if common - n_shared < max(1, min_shared_tokens):
        return shared
    return (M.extend_prefix(model, shared, toks[0][:, :common + 1]).past if shared is not None
            else M.shared_prefix(model, toks[0][:, :common]))


def _stack_captured(captured: dict[str, list[Tensor | None]]) -> dict[str, Tensor]:
    """Per hook, the texts' activations stacked (NaN where a text was not asked under the capture row)."""
    out = {}
    for name, values in captured.items():
        shape = next((v.shape for v in values if v is not None), None)
        if shape is None:
            continue
        out[name] = torch.stack([v if v is not None else torch.full(shape, float("nan")) for v in values])
    return out


class RowTable:
    """Distinct patches as the rows of :func:`score_rows`: ``(means, mask)`` written into last-token hook_z and,
    optionally, a vector added to one layer's last-token residual stream (``resid=(layer, vector)``).

    Two patches are the same row when they select the same heads with the same values there (the values of
    unselected heads never reach the model), the same soft weights there (``weights``: ``z + w (means - z)``, a soft
    ARM's patch; none: the plain overwrite) and add the same vector; every empty patch is the one plain-judge row.
    """

    def __init__(self, n_layers: int, n_heads: int, d_head: int, d_model: int | None = None) -> None:
        self.shape = (n_layers, n_heads, d_head)
        self.d_model = d_model
        self.means: list[Tensor] = []
        self.masks: list[Tensor] = []
        self.adds: list[tuple[int, Tensor] | None] = []
        self.soft: list[Tensor | None] = []
        self._index: dict[str, int] = {}

    @classmethod
    def for_model(cls, model: Model) -> RowTable:
        cfg = model.cfg
        return cls(cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model)

    def add(self, means: Means | None, mask: HeadMask | None, resid: tuple[int, Tensor] | None = None, *,
            weights: HeadValues | None = None) -> int:
        """The row of this patch (``None`` or an empty mask and no ``resid``: the plain judge), added when new;
        ``weights``: the patch's soft weights per head (:mod:`armlens.soft`)."""
        h = hashlib.blake2b(digest_size=16)
        soft = None
        if mask is None or means is None or not bool(mask.any()):
            means, mask = torch.zeros(self.shape), torch.zeros(self.shape[:2], dtype=torch.bool)
            h.update(b"plain")
        else:
            if tuple(means.shape) != self.shape or tuple(mask.shape) != self.shape[:2]:
                raise BadInputError(f"a patch needs means {self.shape} and mask {self.shape[:2]}, got "
                                    f"{tuple(means.shape)} and {tuple(mask.shape)}")
            means, mask = means.detach().float().cpu(), mask.cpu()
            h.update(mask.numpy().tobytes())
            h.update(means[mask].numpy().tobytes())
            if weights is not None:  # hashed only when given: the rows of hard patches keep their keys
                if tuple(weights.shape) != self.shape[:2]:
                    raise BadInputError(f"soft weights need shape {self.shape[:2]}, got {tuple(weights.shape)}")
                soft = torch.where(mask, weights.detach().float().cpu(), 0.0)
                h.update(b"soft")
                h.update(soft[mask].numpy().tobytes())
        if resid is not None:
            layer, vector = int(resid[0]), resid[1].detach().float().cpu()
            if not 0 <= layer < self.shape[0] or vector.shape != (self.d_model,):
                raise BadInputError(f"a residual addition needs a layer below {self.shape[0]} and a vector of "
                                    f"d_model={self.d_model}, got layer {layer} and shape {tuple(vector.shape)}")
            resid = (layer, vector)
            h.update(f"resid{layer}".encode())
            h.update(vector.numpy().tobytes())
        key = h.hexdigest()
        if key not in self._index:
            self._index[key] = len(self.means)
            self.means.append(means)
            self.masks.append(mask)
            self.adds.append(resid)
            self.soft.append(soft)
        return self._index[key]

    def __len__(self) -> int:
        return len(self.means)

    def keys(self) -> list[str]:
        """Each row's content hash (its heads, their values there, its residual addition), in row order."""
        return list(self._index)

    def stacked(self) -> tuple[RowMeans, Bool[Tensor, "rows n_layers n_heads"]]:
        """Means ``[rows, n_layers, n_heads, d_head]`` and masks ``[rows, n_layers, n_heads]``."""
        return torch.stack(self.means), torch.stack(self.masks)

    def weights(self) -> Float[Tensor, "rows n_layers n_heads"] | None:
        """Soft weights per row (``[rows, n_layers, n_heads]``; a hard row: 1 at its heads, which ``lerp`` turns into
        the plain overwrite exactly); ``None`` if no row has any (the hard-patch path, untouched)."""
        if not any(w is not None for w in self.soft):
            return None
        return torch.stack([w if w is not None else m.float() for w, m in zip(self.soft, self.masks, strict=True)])

    def resid(self) -> RowResid | None:
        """The residual additions as ``{layer: [rows, d_model]}`` (zero rows add nothing); ``None`` if no row has
        one."""
        if not any(a is not None for a in self.adds):
            return None
        out: RowResid = {}
        for r, a in enumerate(self.adds):
            if a is not None:
                layer, vector = a
                out.setdefault(layer, torch.zeros(len(self.adds), vector.shape[0]))[r] = vector
        return out


def score_patched(
    model: Model,
    texts: Sequence[str],
    patches: Sequence[tuple[Means | None, HeadMask | None] | tuple[Means | None, HeadMask | None, HeadValues | None]],
    *,
    answer_ids: AnswerIds | None = None,
    kind: ScoreKind = "prob",
    groups: Sequence[Hashable] | None = None,
    subgroups: Sequence[Hashable] | None = None,
    show_progress: bool = False,
    desc: str = "scoring",
) -> Float[Tensor, " batch"]:
    """Judge scores of ``texts[i]`` under ``patches[i]`` (``(None, None)``: unpatched; ``(means, mask, weights)``: a
    soft patch) on the branch path of :func:`score_rows`; equals :func:`score_texts` of each text under its patch
    within float tolerance."""
    if not texts or len(texts) != len(patches):
        raise BadInputError("score_patched() needs one patch per text and at least one text")
    table = RowTable.for_model(model)
    rows = [table.add(p[0], p[1], weights=p[2] if len(p) > 2 else None) for p in patches]  # type: ignore[misc]
    means, masks = table.stacked()
    logits = score_rows(model, texts, means, masks, answer_ids=answer_ids or AnswerIds.of(model),
                        rows_per_text=[[r] for r in rows], groups=groups, subgroups=subgroups,
                        show_progress=show_progress, desc=desc, weights=table.weights())
    return logits.read(kind)[torch.arange(len(texts)), torch.tensor(rows)]
