"""Stage 3: turning the judge's last-token logits into a reward.

Three readings of the same logits, selectable everywhere a score is produced:

- ``prob`` (the reference, MTV): softmax over the *full vocabulary* at the "Yes" token id.
- ``normalized``: ``P(Yes) / (P(Yes) + P(No))``: immune to probability mass leaking to other tokens.
- ``logit_diff``: ``logit(Yes) - logit(No)``: unbounded, no saturation, the margin used for attributions.

:func:`score_texts` runs judge prompts (optionally with heads patched) in left-padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.patching import patch_hooks
from armlens.prompts import AnswerIds
from armlens.typing import HeadMask, Means

ScoreKind = Literal["prob", "normalized", "logit_diff"]
SCORE_KINDS: tuple[str, ...] = ("prob", "normalized", "logit_diff")


def score_from_logits(
    logits: Float[Tensor, "batch d_vocab"], yes_id: int, no_id: int, kind: ScoreKind = "prob"
) -> Float[Tensor, " batch"]:
    """The reward from last-token logits."""
    logits = logits.float()
    if kind == "prob":
        return logits.log_softmax(-1)[:, yes_id].exp()
    if kind == "normalized":
        return logits[:, [yes_id, no_id]].softmax(-1)[:, 0]
    if kind == "logit_diff":
        return logits[:, yes_id] - logits[:, no_id]
    raise ValueError(f"unknown score kind {kind!r}; choose one of {SCORE_KINDS}")


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
