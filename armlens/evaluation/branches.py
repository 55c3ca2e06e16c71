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

The prompts are scored in *parts* (a few hundred prompts, never splitting a pair's prompts). With a ``checkpoint``
folder, each part's scores are saved there as it finishes, keyed by a hash of everything they depend on (the part's
prompts, every patch, which judge asks which prompt under which patch and how it reads it, and the fitted state of
the judges that read activations); a pass stopped halfway resumes from its saved parts. A part whose key differs (a
judge refitted differently, other items) is scored again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from armlens.data.records import PreferencePair
from armlens.errors import BadInputError, NotFittedError
from armlens.evaluation.baselines import Judge
from armlens.io import atomic_write, read_json, to_json
from armlens.prompts import AnswerIds
from armlens.scoring import MIN_SHARED_TOKENS, RowTable, score_rows
from armlens.typing import Model

logger = logging.getLogger(__name__)

PART_PROMPTS = 256
"""Prompts per part of the branch pass (:func:`score_mask_judges`): what a stopped pass can lose, at most."""

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
    checkpoint: str | Path | None = None,
    part_prompts: int | None = None,
    show_progress: bool = False,
    stats: dict[str, int] | None = None,
) -> list[Float[Tensor, " n"]]:
    """Scores of each request's items under its judge, all requests in one branch pass (see the module docstring).

    Every judge must be fitted and mask-based, and all of them must ask with the same answer words (their prompts
    may differ: prompts are matched by text). Returns one tensor per request, aligned with its items.
    ``part_prompts``: prompts per part (default :data:`PART_PROMPTS`). ``checkpoint``: a folder for the finished
    parts' scores (resumed from; the caller removes it when done).
    ``stats``: filled with ``parts``, ``parts_reused`` and ``prompts``.
    """
    if not requests:
        return []
    ids: AnswerIds | None = None
    for judge, _ in requests:
        if not judge.in_branch_pass(judge.config):
            raise BadInputError(f"{judge.name} is not a mask-based judge (with these settings): score it with its own "
                                "score_responses()")
        if not judge.fitted:
            raise NotFittedError(f"the {judge.name} judge is not fitted: call fit() first")
        here = AnswerIds.of(model, judge.config.template)
        if ids is not None and here != ids:
            raise BadInputError("mask-based judges scored together must use the same answer words")
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
                rows[pair.id] = table.add(*patch, resid=judge.resid_for(pair), weights=judge.weights_for(pair))
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
    soft = table.weights()  # None unless a judge writes soft weights (armlens.soft)
    resid = table.resid()
    digest = _pass_digest(table, requests, cells, capture) if checkpoint is not None else None
    folder = Path(checkpoint) if digest is not None and checkpoint is not None else None
    results = [torch.full((len(out),), float("nan")) for out in cells]
    by_text: dict[int, list[tuple[int, int]]] = {}  # text -> (request, item position)
    for r, out in enumerate(cells):
        for pos, (t, _) in enumerate(out):
            by_text.setdefault(t, []).append((r, pos))
    parts = _parts(groups, PART_PROMPTS if part_prompts is None else part_prompts)
    reused = 0
    for k, part in enumerate(parts):
        positions_of: dict[int, list[int]] = {}  # request -> its item positions in this part
        for t in part:
            for r, pos in by_text.get(t, []):
                positions_of.setdefault(r, []).append(pos)
        key = None
        if folder is not None:
            h = hashlib.blake2b(str(digest).encode(), digest_size=16)
            for t in part:
                h.update(texts[t].encode() + b"\0")
            key = h.hexdigest()
            saved = _read_part(folder / f"part-{k:04d}.json", key)
            if saved is not None:
                for r, values in saved.items():
                    results[r][positions_of[r]] = torch.tensor(values, dtype=torch.float32)
                reused += 1
                continue
        logits = score_rows(model, [texts[t] for t in part], means, masks, answer_ids=ids,
                            rows_per_text=[sorted(wanted[t]) for t in part], groups=[groups[t] for t in part],
                            min_shared_tokens=min_shared_tokens, chunk=chunk, resid=resid,
                            capture=list(capture), capture_row=plain if capture else None,
                            show_progress=show_progress, weights=soft,
                            desc=f"part {k + 1}/{len(parts)}: {len(part)} prompts x {len(table)} patches")
        local = {t: i for i, t in enumerate(part)}
        scores_of: dict[int, list[float]] = {}
        for r, positions in positions_of.items():
            (judge, _), out, reads = requests[r], cells[r], reads_of[r]
            t_idx = torch.tensor([local[out[pos][0]] for pos in positions], dtype=torch.long)
            rows = torch.tensor([out[pos][1] for pos in positions], dtype=torch.long)
            if reads:
                scores = judge.score_reads({name: logits.captured[name][t_idx] for name in reads})
            else:
                scores = logits.read(judge.config.score)[t_idx, rows]
            results[r][positions] = scores.float()
            scores_of[r] = scores.float().tolist()
        if folder is not None:
            atomic_write(folder / f"part-{k:04d}.json", to_json({"key": key, "scores": scores_of}, None))
    if stats is not None:
        stats.update(parts=len(parts), parts_reused=reused, prompts=len(texts))
    if reused:
        logger.info("branch pass: %d of %d parts (%d prompts in all) reused from %s", reused, len(parts), len(texts),
                    folder)
    return [r.contiguous() for r in results]


def _parts(groups: Sequence[str], part_prompts: int) -> list[list[int]]:
    """Text indices in parts of about ``part_prompts``, each group's texts together, groups in first-appearance
    order (so a part shares every prefix the whole pass would)."""
    members: dict[str, list[int]] = {}
    for t, g in enumerate(groups):
        members.setdefault(g, []).append(t)
    parts: list[list[int]] = [[]]
    for idx in members.values():
        if parts[-1] and len(parts[-1]) + len(idx) > max(1, part_prompts):
            parts.append([])
        parts[-1].extend(idx)
    return [p for p in parts if p]


def _pass_digest(table: RowTable, requests: Sequence[tuple[Judge, Items]], cells: list[list[tuple[int, int]]],
                 capture: dict[str, None]) -> str | None:
    """A hash of what every part's scores depend on besides its prompts: the patches, each request's (prompt, patch)
    cells and reading, and the fitted state of the judges that read activations; ``None`` (no checkpoint) where a
    reading judge names no state (:meth:`Judge.state_digest`)."""
    h = hashlib.blake2b(json.dumps(table.keys()).encode(), digest_size=16)
    h.update(json.dumps(list(capture)).encode())
    for (judge, _), out in zip(requests, cells, strict=True):
        state = judge.state_digest() if judge.branch_reads() else ""
        if state is None:
            logger.warning("%s reads activations but names no fit_state: the branch pass is not checkpointed",
                           judge.name)
            return None
        h.update(json.dumps([judge.name, judge.config.score, judge.branch_reads(), state, out]).encode())
    return h.hexdigest()


def _read_part(path: Path, key: str) -> dict[int, list[float]] | None:
    """A saved part's scores per request, if ``path`` holds this key; ``None`` otherwise (missing, stale, broken)."""
    if not path.is_file():
        return None
    try:
        saved = read_json(path)
        if saved.get("key") != key:
            return None
        return {int(r): [float("nan") if v is None else float(v) for v in values]
                for r, values in saved["scores"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        logger.warning("branch pass: %s not used (%s); scoring its part again", path, e)
        return None
