"""Stage 3: turning the judge's last-token logits into a reward.

Three readings of the same logits, selectable everywhere a score is produced:

- ``prob`` (the reference, MTV): softmax over the *full vocabulary* at the "Yes" token id.
- ``normalized``: ``P(Yes) / (P(Yes) + P(No))``: immune to probability mass leaking to other tokens.
- ``logit_diff``: ``logit(Yes) - logit(No)``: unbounded, no saturation, the margin used for attributions.

:func:`score_texts` runs judge prompts (optionally with heads patched) in left-padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.patching import patch_hooks, row_patch_hooks
from armlens.prompts import AnswerIds
from armlens.typing import HeadMask, Means

ScoreKind = Literal["prob", "normalized", "logit_diff"]
SCORE_KINDS: tuple[str, ...] = ("prob", "normalized", "logit_diff")


def score_from_parts(
    yes: Float[Tensor, "*rows"], no: Float[Tensor, "*rows"], logsumexp: Float[Tensor, "*rows"], kind: ScoreKind = "prob"
) -> Float[Tensor, "*rows"]:
    """The reward from the three numbers every reading needs: the Yes and No logits and the log-normaliser over the
    full vocabulary (so scores of many rows can be kept without their vocabularies)."""
    if kind == "prob":
        return (yes - logsumexp).exp()
    if kind == "normalized":
        return torch.sigmoid(yes - no)
    if kind == "logit_diff":
        return yes - no
    raise ValueError(f"unknown score kind {kind!r}; choose one of {SCORE_KINDS}")


def score_from_logits(
    logits: Float[Tensor, "batch d_vocab"], yes_id: int, no_id: int, kind: ScoreKind = "prob"
) -> Float[Tensor, " batch"]:
    """The reward from last-token logits."""
    logits = logits.float()
    return score_from_parts(logits[:, yes_id], logits[:, no_id], logits.logsumexp(-1), kind)


@dataclass
class RowLogits:
    """What the score readings need from each (text, row)'s last-token logits (never the full vocabulary)."""

    yes: Float[Tensor, "texts rows"]
    """Logit of the Yes token."""
    no: Float[Tensor, "texts rows"]
    """Logit of the No token."""
    logsumexp: Float[Tensor, "texts rows"]
    """Log-normaliser over the full vocabulary."""
    argmax: Int[Tensor, "texts rows"]
    """Greedy next token."""

    def read(self, kind: ScoreKind) -> Float[Tensor, "texts rows"]:
        """Scores of every (text, row) under one reading (:func:`score_from_parts`)."""
        return score_from_parts(self.yes, self.no, self.logsumexp, kind)


def score_rows(
    model: Any,
    texts: Sequence[str],
    means: Float[Tensor, "rows n_layers n_heads d_head"],
    masks: Bool[Tensor, "rows n_layers n_heads"],
    *,
    answer_ids: AnswerIds,
    chunk: int = 64,
    show_progress: bool = False,
) -> RowLogits:
    """Every text under every row's patch: one prefix per text, all rows as side-by-side branches over it.

    Row ``r`` overwrites the last-token hook_z of the heads in ``masks[r]`` with ``means[r]`` (an empty mask is the
    plain judge). Equals :func:`score_texts` per row (checked by the tests).
    """
    n, rows = len(texts), masks.shape[0]
    out = {k: torch.empty(n, rows) for k in ("yes", "no", "logsumexp")}
    argmax = torch.empty(n, rows, dtype=torch.long)
    for i in tqdm(range(n), desc="scoring rows", disable=not show_progress, leave=False):
        cache = M.prefix_cache(model, *M.tokenize(model, [texts[i]]))
        for start in range(0, rows, chunk):
            sl = slice(start, min(rows, start + chunk))
            hooks = row_patch_hooks(model, means[sl], masks[sl])
            logits = M.run_cached_branches(model, cache, sl.stop - sl.start, hooks)[0].cpu()
            out["yes"][i, sl] = logits[:, answer_ids.yes]
            out["no"][i, sl] = logits[:, answer_ids.no]
            out["logsumexp"][i, sl] = logits.logsumexp(-1)
            argmax[i, sl] = logits.argmax(-1)
    return RowLogits(out["yes"], out["no"], out["logsumexp"], argmax)


def answer_loss(logits: Float[Tensor, "batch d_vocab"], gold_ids: Tensor) -> Float[Tensor, " batch"]:
    """Cross-entropy of the last-token logits against the gold answer token (REINFORCE's loss)."""
    return torch.nn.functional.cross_entropy(logits.float(), gold_ids.to(logits.device), reduction="none")


def score_texts(
    model: Any,
    texts: Sequence[str],
    *,
    means: Means | None = None,
    mask: HeadMask | None = None,
    answer_ids: AnswerIds | None = None,
    kind: ScoreKind = "prob",
    batch_size: int = 8,
    show_progress: bool = False,
    desc: str = "scoring",
) -> Float[Tensor, " batch"]:
    """Judge scores for chat-templated prompts, with ``mask``'s heads patched to ``means`` (none: the plain judge)."""
    if not texts:
        raise ValueError("no texts to score")
    ids = answer_ids or AnswerIds.of(model)
    hooks = patch_hooks(model, means, mask) if mask is not None and means is not None and bool(mask.any()) else []
    out = torch.empty(len(texts))
    for idx in tqdm(M.length_batches(texts, batch_size), desc=desc, disable=not show_progress, leave=False):
        logits = M.run_last_logits(model, *M.tokenize(model, [texts[i] for i in idx]), hooks)
        out[idx] = score_from_logits(logits, ids.yes, ids.no, kind).cpu()
    return out
