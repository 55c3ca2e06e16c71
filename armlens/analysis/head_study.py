"""Which heads, and what they do, on the seeds of an ablation folder (issue 38, items 2 and 3).

Per seed and criterion of the folder's reference ARM (its saved fit, or a refit with the same seed), on the seed's
scored pairs (dev pairs for a ``--partition dev`` folder):

- **a minimal head set**: the fitted set pruned (:func:`armlens.analysis.minimal.prune`) on one half of the scored
  pairs (split by prompt, seeded) within ``margin`` of the full set's accuracy there, then reported on the *other*
  half beside the full set, ``n_random`` random sets of the minimal set's size and the zero-shot judge (per-pair
  correctness kept, so the intervals resample seeds and prompts);
- **single heads**: each of the model's heads alone, given the fit's mean, added to the zero-shot judge: accuracy on
  every scored pair (which single heads move the judge most);
- **direct logit attribution** of the full set (:mod:`armlens.analysis.attribution`) on every scored prompt: each
  head's mean direct effect on Yes-No, its mean chosen-minus-rejected separation, and the direct and indirect totals.

Written to ``OUT/heads/seed{s}/{criterion}.json.gz`` (resumable: a file on disk is not recomputed) with the settings
(:class:`StudyConfig`) and the pair ids.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch

from armlens import model as M
from armlens import rules as R
from armlens.analysis.attribution import direct_logit_attribution
from armlens.analysis.grid import AblationConfig, slug
from armlens.analysis.minimal import prune, score_sets
from armlens.data.records import PreferencePair
from armlens.errors import BadDataError
from armlens.io import read_json, result_exists, write_json
from armlens.patching import mask_labels, single_head_masks
from armlens.rm import POOLED
from armlens.selection import random_mask


@dataclass(frozen=True)
class StudyConfig:
    """Settings of a head study (recorded in every file it writes)."""

    margin: float = 0.02
    """Pruning keeps the accuracy on the pruning half at least the full set's minus this share (0.02 = 2 points)."""
    grid: int = 16
    """Removal counts tried per branch pass while pruning."""
    n_random: int = 5
    """Random sets of the minimal set's size reported beside it."""
    singles: bool = True
    """Score every single head alone on the zero-shot judge."""
    chunk: int = 64
    """Branches per forward over a prompt's prefix."""
    prefix_cache_mb: Annotated[float, R.NON_NEGATIVE] = 4000.0
    """Memory for the criterion's prompt prefixes, kept across the study's passes (pruning, report, single heads,
    attribution: each prefix runs once when they fit; ~46 KB per prompt token on the default model; an LRU, so
    what does not fit is run again)."""


def halves(pairs: Sequence[PreferencePair], seed: int) -> tuple[list[int], list[int]]:
    """Indices of two halves of ``pairs``, split by prompt (seeded): (pruning half, reporting half)."""
    keys = sorted({p.prompt_key() for p in pairs})
    random.Random(f"halves-{seed}").shuffle(keys)
    first = set(keys[0::2])
    a = [i for i, p in enumerate(pairs) if p.prompt_key() in first]
    b = [i for i, p in enumerate(pairs) if p.prompt_key() not in first]
    return a, b


def _texts(run: Any, idx: Sequence[int]) -> list[str]:
    return [t for i in idx for t in run.test_texts[2 * i: 2 * i + 2]]


def _correct(scores: torch.Tensor) -> list[list[int]]:
    """Per row, per pair: 1 where chosen scored above rejected."""
    return (scores[0::2] > scores[1::2]).int().T.tolist()


def study_criterion(model: Any, run: Any, fit: Any, idx: Sequence[int], cfg: StudyConfig) -> dict[str, Any]:
    """The study of one criterion's fit on the scored pairs ``idx`` of a :class:`~armlens.analysis.runs.SeedRun`."""
    t0 = time.perf_counter()
    pairs = [run.test[i] for i in idx]
    a, b = halves(pairs, run.seed)
    if not a or not b:
        raise BadDataError(f"criterion {fit.criterion[:40]!r}: {len(pairs)} scored pair(s) cannot be split in two halves")
    a_idx, b_idx = [idx[i] for i in a], [idx[i] for i in b]
    shape = tuple(fit.mask.shape)
    pool = M.PrefixPool(model, cfg.prefix_cache_mb)  # every pass below scores these prompts: each prefix runs once
    minimal = prune(model, _texts(run, a_idx), fit.means, fit.mask, run.ids, margin=cfg.margin, grid=cfg.grid,
                    chunk=cfg.chunk, pool=pool)
    k = int(minimal.mask.sum())
    randoms = [random_mask(*shape, k, seed=1000 * run.seed + j) for j in range(cfg.n_random)] if k else []
    rows = torch.stack([fit.mask, minimal.mask, *randoms, torch.zeros(shape, dtype=torch.bool)])
    report = score_sets(model, _texts(run, b_idx), fit.means, rows, run.ids, chunk=cfg.chunk, pool=pool)
    names = ["full", "minimal", *[f"random{j}" for j in range(len(randoms))], "zero-shot"]
    out: dict[str, Any] = {
        "criterion": fit.criterion, "seed": run.seed, "settings": dataclasses.asdict(cfg),
        "full_heads": mask_labels(fit.mask), "minimal": minimal.to_dict(),
        "report_half": {"pair_ids": [run.test[i].id for i in b_idx],
                        "prompts": [run.test[i].prompt_key() for i in b_idx],
                        "rows": names, "random_heads": [mask_labels(m) for m in randoms],
                        "correct": dict(zip(names, _correct(report.scores), strict=True)),
                        "accuracy": dict(zip(names, report.accuracy.tolist(), strict=True))},
        "prune_half": {"pair_ids": [run.test[i].id for i in a_idx]},
    }
    texts = _texts(run, idx)
    if cfg.singles:
        singles = single_head_masks(*shape)
        rs = score_sets(model, texts, fit.means, singles, run.ids, chunk=cfg.chunk, pool=pool)
        out["singles"] = {"zero_shot_accuracy": float(rs.accuracy[0]),
                          "accuracy": rs.accuracy[1:].view(shape).tolist(),
                          "mean_margin": rs.mean_margin[1:].view(shape).tolist(),
                          "zero_shot_mean_margin": float(rs.mean_margin[0])}
    attr = direct_logit_attribution(model, texts, fit.means, fit.mask, run.ids, pool=pool)
    chosen, rejected = attr.effects[0::2], attr.effects[1::2]
    out["attribution"] = {
        "effect": attr.effects.mean(0).tolist(), "separation": (chosen - rejected).mean(0).tolist(),
        "direct": attr.direct.mean().item(), "indirect": attr.indirect.mean().item(),
        "change": (attr.patched - attr.clean).mean().item(),
        "direct_separation": (attr.direct[0::2] - attr.direct[1::2]).mean().item(),
        "change_separation": ((attr.patched - attr.clean)[0::2] - (attr.patched - attr.clean)[1::2]).mean().item(),
        "n_prompts": len(texts), "unit": "Yes-No logit",
    }
    out["pair_ids"] = [run.test[i].id for i in idx]
    out["seconds"] = time.perf_counter() - t0
    return out


def study_file(out: Path, seed: int, criterion: str) -> Path:
    name = "pooled" if criterion == POOLED else slug(criterion[:40])
    return out / "heads" / f"seed{seed}" / f"{name}.json.gz"


def run_head_study(model: Any, pairs: Sequence[PreferencePair], config: AblationConfig, out: str | Path,
                   cfg: StudyConfig = StudyConfig(), *, seeds: Sequence[int] | None = None,
                   show_progress: bool = False) -> list[Path]:
    """Run (or resume) the head study over ``seeds`` (default: the folder's) of the ablation folder ``out``."""
    from armlens.analysis.runs import SeedRun

    out = Path(out)
    written = []
    for seed in seeds if seeds is not None else config.seeds:
        run = SeedRun(model, config, pairs, seed, out, show_progress=show_progress)
        rm = run.reference
        by_fit: dict[str, list[int]] = {}
        for i, p in enumerate(run.test):
            by_fit.setdefault(rm.fit_for(rm._criterion(p)).criterion, []).append(i)
        for criterion, idx in sorted(by_fit.items()):
            path = study_file(out, seed, criterion)
            if not result_exists(path):
                record = study_criterion(model, run, rm.fit_for(criterion), idx, cfg)
                record["data"] = config.data
                record["partition"] = config.partition
                write_json(path, record, indent=None)
            written.append(path)
    return written


def load_studies(folder: str | Path) -> list[dict[str, Any]]:
    """Every head-study record of an ablation folder."""
    return [read_json(p) for p in sorted(Path(folder).glob("heads/seed*/*.json.gz"))]
