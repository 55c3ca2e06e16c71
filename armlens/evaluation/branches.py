"""Every mask-based judge of an evaluation in one pass: one prefix per distinct judge prompt, one branch per patch.

Context
-------
The zero-shot judge, every seed's ARM (every criterion's, through :meth:`armlens.rm.ActivationRM.patch_for`), random
and top-k head sets all read the *same* zero-shot judge prompt and differ only in what they write into hook_z at its
last token (:attr:`armlens.evaluation.baselines.Judge.mask_based`). So do the activation baselines
(:meth:`~armlens.evaluation.baselines.Judge.in_branch_pass`): ``steering`` adds its vector to the last token's
residual stream (a row with a residual addition), and ``probe`` and ``savs`` read the unpatched last token's
activations (captured on the plain row's branch). Scoring each of them with its own full forward repeats the
prompt's prefix M x S times (M methods, S seeds). :func:`score_mask_judges` instead collects the distinct prompts
of all of them, the distinct patches (:class:`armlens.scoring.RowTable`), and which patches each prompt is
asked under, then runs :func:`armlens.scoring.score_rows`: each prompt's prefix once, every patch it needs as a
side-by-side branch of its last token. Prompts about the same pair (chosen, rejected and the bias suite's hacked
rejected responses) share the cache of their common leading part, the judge prompt up to the response, where it is
long enough to pay (:data:`armlens.scoring.MIN_SHARED_TOKENS`).

The result equals each judge's own ``score_responses`` (one full forward per prompt) within float tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from armlens.data.records import PreferencePair
from armlens.evaluation.baselines import Judge
from armlens.prompts import AnswerIds
from armlens.scoring import MIN_SHARED_TOKENS, RowTable, score_rows
from armlens.typing import Model

Items = Sequence[tuple[PreferencePair, str]]
"""``(pair, response)``: the response judged in its pair's context."""


def prompt_group(judge: Judge, pair: PreferencePair) -> str:
    """Key of the prompts that share a leading part: same criterion, same conversation (only the response differs)."""
    return json.dumps([judge._criterion(pair), pair.prompt], sort_keys=True)


def score_mask_judges(
    model: Model,
    requests: Sequence[tuple[Judge, Items]],
    *,
    min_shared_tokens: int = MIN_SHARED_TOKENS,
    chunk: int = 64,
    show_progress: bool = False,
) -> list[Float[Tensor, " n"]]:
    """Scores of each request's items under its judge, all requests in one branch pass (see the module docstring).

    Every judge must be fitted and mask-based, and all of them must ask with the same answer words (their prompts
    may differ: prompts are matched by text). Returns one tensor per request, aligned with its items.
    """
    if not requests:
        return []
    ids: AnswerIds | None = None
    for judge, _ in requests:
        if not judge.in_branch_pass(judge.config):
            raise ValueError(f"{judge.name} is not a mask-based judge (with these settings): score it with its own "
                             "score_responses()")
        if not judge.fitted:
            raise RuntimeError(f"the {judge.name} judge is not fitted: call fit() first")
        here = AnswerIds.of(model, judge.config.template)
        if ids is not None and here != ids:
            raise ValueError("mask-based judges scored together must use the same answer words")
        ids = here
    assert ids is not None
    table = RowTable.for_model(model)
    text_index: dict[str, int] = {}
    texts: list[str] = []
    groups: list[str] = []
    wanted: list[set[int]] = []
    cells: list[list[tuple[int, int]]] = []  # per request: (text, row) of each item
    capture: dict[str, None] = {}  # hooks read at the plain row, for the judges that read activations
    reads_of: list[list[str]] = []
    plain = table.add(None, None)
    for judge, items in requests:
        rows: dict[str, int] = {}
        prompts = judge._prompts(judge._queries(items))
        reads = judge.branch_reads()
        reads_of.append(reads)
        capture.update(dict.fromkeys(reads))
        out = []
        for (pair, _), text in zip(items, prompts, strict=True):
            if pair.id not in rows:
                patch = judge.patch_for(pair)
                if patch is None:
                    raise ValueError(f"{judge.name}.patch_for() returned None for a mask-based judge")
                rows[pair.id] = table.add(*patch, resid=judge.resid_for(pair))
                if reads and rows[pair.id] != plain:
                    raise ValueError(f"{judge.name} reads activations, so it must leave the prompt unpatched")
            if text not in text_index:
                text_index[text] = len(texts)
                texts.append(text)
                groups.append(prompt_group(judge, pair))
                wanted.append(set())
            t = text_index[text]
            wanted[t].add(rows[pair.id])
            out.append((t, rows[pair.id]))
        cells.append(out)
    means, masks = table.stacked()
    logits = score_rows(model, texts, means, masks, answer_ids=ids, rows_per_text=[sorted(w) for w in wanted],
                        groups=groups, min_shared_tokens=min_shared_tokens, chunk=chunk, resid=table.resid(),
                        capture=list(capture), capture_row=plain if capture else None, show_progress=show_progress,
                        desc=f"{len(texts)} prompts x {len(table)} patches")
    results = []
    for (judge, _), out, reads in zip(requests, cells, reads_of, strict=True):
        if not out:
            results.append(torch.empty(0))
            continue
        t = torch.tensor([c[0] for c in out], dtype=torch.long)
        r = torch.tensor([c[1] for c in out], dtype=torch.long)
        if reads:
            scores = judge.score_reads({name: logits.captured[name][t] for name in reads})
        else:
            scores = logits.read(judge.config.score)[t, r]
        results.append(scores.float().contiguous())
    return results
