"""A minimal head set: which of a fitted ARM's heads carry its accuracy (issue 38, item 2).

:func:`leave_one_out` scores the fitted set and every set with one head removed in one branch pass (each row a branch
over one prefix per prompt, :func:`armlens.scoring.score_rows`). :func:`prune` then removes heads in the order of
their leave-one-out accuracy (the least useful first; ties broken by the mean chosen-minus-rejected margin), as many at
a time as keep the accuracy within ``margin`` of the full set's (several removal counts per branch pass, then a finer
pass between the last count that held and the first that did not), and re-checks: a new leave-one-out pass on what is
left, until a round removes nothing. Accuracy is pairwise: texts come as (chosen, rejected) prompt pairs and a tie
counts as wrong.

The pairs a set is pruned on choose it: its accuracy on them is optimistic. Report a minimal set's accuracy on other
pairs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from armlens import model as M
from armlens.errors import BadInputError
from armlens.patching import HeadMask, Means, mask_labels
from armlens.prompts import AnswerIds
from armlens.scoring import score_rows


@dataclass
class RowScores:
    """Pairwise accuracy and mean margin of each head set (row) on (chosen, rejected) prompt pairs."""

    scores: Float[Tensor, "texts rows"]

    @property
    def margins(self) -> Float[Tensor, "pairs rows"]:
        return self.scores[0::2] - self.scores[1::2]

    @property
    def accuracy(self) -> Float[Tensor, " rows"]:
        return (self.margins > 0).double().mean(0)

    @property
    def mean_margin(self) -> Float[Tensor, " rows"]:
        return self.margins.double().mean(0)


def score_sets(model: Any, texts: Sequence[str], means: Means, masks: Bool[Tensor, "rows n_layers n_heads"],
               answer_ids: AnswerIds, *, reading: str = "prob", chunk: int = 64,
               pool: M.PrefixPool | None = None) -> RowScores:
    """Every head set of ``masks`` (each writing ``means``) on ``texts``, in one branch pass; a pair's two prompts
    share their common start, or, with a ``pool``, each text's prefix comes from it (a search that scores the same
    texts pass after pass runs each prefix once)."""
    if len(texts) % 2:
        raise BadInputError("texts come as (chosen, rejected) pairs: an even count is needed")
    rows = means[None].expand(masks.shape[0], *means.shape)
    logits = score_rows(model, texts, rows, masks, answer_ids=answer_ids, chunk=chunk,
                        groups=[i // 2 for i in range(len(texts))], pool=pool)
    return RowScores(logits.read(reading))


def without_each(mask: HeadMask) -> tuple[Bool[Tensor, "rows n_layers n_heads"], Tensor]:
    """``mask`` itself (row 0) and ``mask`` with each of its heads removed (row ``1 + i``: head ``heads[i]``)."""
    heads = mask.nonzero()
    masks = mask[None].repeat(heads.shape[0] + 1, 1, 1)
    for i, (layer, head) in enumerate(heads.tolist()):
        masks[1 + i, layer, head] = False
    return masks, heads


@dataclass
class LeaveOneOut:
    """The full set's score and each head's removal."""

    heads: Tensor
    """``[k, 2]`` (layer, head) of the set's heads, in row order."""
    full: tuple[float, float]
    """(accuracy, mean margin) of the full set."""
    without: Float[Tensor, "k 2"]
    """(accuracy, mean margin) with each head removed."""

    def order(self) -> list[int]:
        """Head indices, least useful first: highest accuracy without it, then highest margin without it."""
        keys = [(-float(a), -float(m), i) for i, (a, m) in enumerate(self.without.tolist())]
        return [i for _, _, i in sorted(keys)]


def leave_one_out(model: Any, texts: Sequence[str], means: Means, mask: HeadMask, answer_ids: AnswerIds, *,
                  reading: str = "prob", chunk: int = 64, pool: M.PrefixPool | None = None) -> LeaveOneOut:
    """Leave-one-out effects of every head of ``mask`` in one branch pass."""
    masks, heads = without_each(mask)
    rs = score_sets(model, texts, means, masks, answer_ids, reading=reading, chunk=chunk, pool=pool)
    both = torch.stack([rs.accuracy, rs.mean_margin], dim=1)
    return LeaveOneOut(heads, (float(both[0, 0]), float(both[0, 1])), both[1:])


@dataclass
class MinimalSet:
    """The result of :func:`prune`."""

    mask: HeadMask
    accuracy: float
    """Accuracy of ``mask`` on the pruning pairs."""
    full_mask: HeadMask
    full_accuracy: float
    margin: float
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """Per round: heads before, removed, accuracy after, branch passes."""

    def to_dict(self) -> dict[str, Any]:
        return {"heads": mask_labels(self.mask), "n_heads": int(self.mask.sum()), "accuracy": self.accuracy,
                "full_heads": mask_labels(self.full_mask), "n_full": int(self.full_mask.sum()),
                "full_accuracy": self.full_accuracy, "margin": self.margin, "rounds": self.rounds}


def _removed(mask: HeadMask, heads: Tensor, order: Sequence[int], m: int) -> HeadMask:
    out = mask.clone()
    for i in order[:m]:
        out[int(heads[i, 0]), int(heads[i, 1])] = False
    return out


def prune(model: Any, texts: Sequence[str], means: Means, mask: HeadMask, answer_ids: AnswerIds, *,
          margin: float = 0.02, grid: int = 16, max_rounds: int = 4, reading: str = "prob",
          chunk: int = 64, pool: M.PrefixPool | None = None) -> MinimalSet:
    """The smallest set this greedy search finds whose accuracy on ``texts`` stays at least the full set's minus
    ``margin`` (a share: 0.02 = 2 points). Every pass scores the same ``texts``: give a ``pool`` large enough for
    their prefixes and each is run once."""
    current = mask.clone()
    full_acc: float | None = None
    acc = 0.0
    rounds: list[dict[str, Any]] = []
    for _ in range(max_rounds):
        k = int(current.sum())
        if k == 0:
            break
        loo = leave_one_out(model, texts, means, current, answer_ids, reading=reading, chunk=chunk, pool=pool)
        if full_acc is None:
            full_acc = loo.full[0]
        acc, floor, order = loo.full[0], full_acc - margin, loo.order()
        best, passes = 0, 1
        lo, hi = 0, k  # removing lo heads (in order) holds; counts above hi were seen to fail
        while hi > lo:
            counts = sorted({lo + -(-(hi - lo) * j // grid) for j in range(1, grid + 1)})
            masks = torch.stack([_removed(current, loo.heads, order, m) for m in counts])
            rs = score_sets(model, texts, means, masks, answer_ids, reading=reading, chunk=chunk, pool=pool)
            passes += 1
            held = [a >= floor - 1e-12 for a in rs.accuracy.tolist()]
            if any(held):
                j = max(i for i, h in enumerate(held) if h)
                best = lo = counts[j]
                acc = float(rs.accuracy[j])
                hi = counts[j + 1] - 1 if j + 1 < len(counts) else lo
            else:
                hi = counts[0] - 1
        rounds.append({"heads_before": k, "removed": best, "accuracy": acc, "branch_passes": passes})
        if best == 0:
            break
        current = _removed(current, loo.heads, order, best)
    if full_acc is None:  # an empty mask: nothing to prune
        full_acc = acc = float(score_sets(model, texts, means, current[None], answer_ids, reading=reading,
                                          chunk=chunk, pool=pool).accuracy[0])
    return MinimalSet(current, acc, mask.clone(), full_acc, margin, rounds)


def groups_for(pairs: Sequence[Any]) -> list[Hashable]:
    """One group key per text of ``pairs`` laid out as (chosen, rejected) prompts."""
    return [p.id for p in pairs for _ in (0, 1)]
