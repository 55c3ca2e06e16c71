"""Stage 1 and 1b: the mean activations an ARM patches in, and the estimators that produce them.

Context
-------
``mu[l, h] = mean over extraction prompts x of hook_z[l](x)[last token, h]``: a tensor ``[n_layers, n_heads, d_head]``.
Extraction prompts come in two readings (``docs/method.md`` in the repository):

- ``icl`` (MTV default): each prompt holds ``shots`` answered, class-balanced demonstrations and one unanswered
  query; ``n_trials`` such prompts are averaged.
- ``per_example``: one zero-shot judge prompt per labelled example.

Activations are reduced the moment they are read: each forward pass yields only ``[batch, n_layers, n_heads,
d_head]`` at the last token, which is folded into the estimator's running statistics (never a full cache).

Estimators (a pluggable stage, selectable by name)
--------------------------------------------------
- ``mean``: the plain running mean (the reference).
- ``wpca``: weighted-PCA denoising. Per head, weight each example (uniformly, or by the unpatched model's confidence
  in that example's gold answer), take the top-``rank`` eigenvectors of the weighted *uncentred* second-moment matrix
  ``S = sum_i w_i z_i z_i^T / sum_i w_i`` and project the weighted mean onto them. Streaming: only ``S`` and the
  weighted sum are kept (``[n_layers, n_heads, d_head, d_head]``). A centred PCA followed by averaging would give
  back the mean exactly, which is why the second moment is uncentred.
- ``class_diff``: the mean plus the per-class mean difference ``mu_yes - mu_no`` (a steering-style variant).
- ``median`` / ``trimmed_mean``: robust per-coordinate location estimates (keep the per-example stack: small, since
  only the last token is stored).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.prompts import AnswerIds, Example, JudgeTemplate, icl_prompt, scalar_prompt
from armlens.typing import Means, Z

logger = logging.getLogger(__name__)

ExtractionMode = Literal["icl", "per_example"]
EstimatorName = Literal["mean", "wpca", "class_diff", "median", "trimmed_mean"]


# ---------------------------------------------------------------------------------------------------- extraction


def extraction_prompts(
    model: Any,
    examples: Sequence[Example],
    mode: ExtractionMode = "icl",
    *,
    shots: int = 4,
    n_trials: int = 100,
    template: JudgeTemplate = JudgeTemplate(),
    seed: int = 0,
) -> tuple[list[str], list[bool]]:
    """Texts to extract activations from, and the gold label of the question each ends with.

    ``icl``: ``n_trials`` prompts, each with ``shots`` class-balanced demonstrations (half Yes, half No; the odd one
    drawn at random) and an unanswered query drawn from the remaining examples. ``per_example``: one zero-shot
    prompt per example (``n_trials`` and ``shots`` unused).
    """
    if not examples:
        raise ValueError("no labelled examples to extract activations from")
    if any(e.label is None for e in examples):
        raise ValueError("extraction examples must be labelled")
    if mode == "per_example":
        return [scalar_prompt(model, e, template) for e in examples], [bool(e.label) for e in examples]
    if mode != "icl":
        raise ValueError(f"unknown extraction mode {mode!r}; choose 'icl' or 'per_example'")
    pos = [i for i, e in enumerate(examples) if e.label]
    neg = [i for i, e in enumerate(examples) if not e.label]
    if shots < 0:
        raise ValueError("shots must be >= 0")
    n_pos, n_neg = shots // 2, shots // 2
    if len(pos) < n_pos + 1 or len(neg) < n_neg + 1:
        raise ValueError(f"icl extraction with {shots} shots needs more Yes and No examples than {len(pos)}/{len(neg)}")
    rng = random.Random(seed)
    texts, gold = [], []
    for _ in range(n_trials):
        odd = shots % 2
        extra_pos = odd and rng.random() < 0.5
        demo_idx = rng.sample(pos, n_pos + int(extra_pos)) + rng.sample(neg, n_neg + int(odd and not extra_pos))
        rng.shuffle(demo_idx)
        rest = [i for i in range(len(examples)) if i not in set(demo_idx)]
        q = rng.choice(rest)
        texts.append(icl_prompt(model, [examples[i] for i in demo_idx], examples[q], template))
        gold.append(bool(examples[q].label))
    return texts, gold


# ---------------------------------------------------------------------------------------------------- estimators


class Estimator:
    """Folds batches of last-token activations into an estimate ``[n_layers, n_heads, d_head]``."""

    name: str = "base"

    def update(self, z: Z, labels: Bool[Tensor, " batch"], confidence: Float[Tensor, " batch"]) -> None:
        raise NotImplementedError

    def result(self) -> Means:
        raise NotImplementedError


class MeanEstimator(Estimator):
    """Running mean (the reference, MTV)."""

    name = "mean"

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.n = 0

    def update(self, z: Z, labels: Bool[Tensor, " batch"], confidence: Float[Tensor, " batch"]) -> None:
        s = z.double().sum(0)
        self.total = s if self.total is None else self.total + s
        self.n += z.shape[0]

    def result(self) -> Means:
        if self.total is None or self.n == 0:
            raise ValueError("no activations were collected")
        return (self.total / self.n).float()


class WeightedPCAEstimator(Estimator):
    """Weighted-PCA denoising: the weighted mean projected on the top-``rank`` uncentred principal directions."""

    name = "wpca"

    def __init__(self, rank: int = 1, weighting: Literal["uniform", "confidence"] = "uniform") -> None:
        if rank < 1:
            raise ValueError("wpca rank must be >= 1")
        if weighting not in ("uniform", "confidence"):
            raise ValueError(f"unknown wpca weighting {weighting!r}")
        self.rank, self.weighting = rank, weighting
        self.second: Tensor | None = None
        self.first: Tensor | None = None
        self.weight = 0.0

    def update(self, z: Z, labels: Bool[Tensor, " batch"], confidence: Float[Tensor, " batch"]) -> None:
        w = confidence.double() if self.weighting == "confidence" else torch.ones(z.shape[0], dtype=torch.float64)
        zd = z.double()
        second = torch.einsum("b,blhd,blhe->lhde", w, zd, zd)
        first = torch.einsum("b,blhd->lhd", w, zd)
        self.second = second if self.second is None else self.second + second
        self.first = first if self.first is None else self.first + first
        self.weight += float(w.sum())

    def result(self) -> Means:
        if self.second is None or self.first is None or self.weight <= 0:
            raise ValueError("no activations were collected")
        d_head = self.second.shape[-1]
        if self.rank >= d_head:
            return (self.first / self.weight).float()
        _, vecs = torch.linalg.eigh(self.second / self.weight)  # ascending eigenvalues
        top = vecs[..., -self.rank :]  # [l, h, d, r]
        mean = self.first / self.weight
        coef = torch.einsum("lhdr,lhd->lhr", top, mean)
        return torch.einsum("lhdr,lhr->lhd", top, coef).float()


class StackEstimator(Estimator):
    """Keeps the per-example stack (last token only) for estimators that need all examples at once."""

    def __init__(self, name: EstimatorName, trim: float = 0.1) -> None:
        self.name, self.trim = name, trim
        self.zs: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, z: Z, labels: Bool[Tensor, " batch"], confidence: Float[Tensor, " batch"]) -> None:
        self.zs.append(z.float().cpu())
        self.labels.append(labels.cpu())

    def stack(self) -> tuple[Tensor, Tensor]:
        if not self.zs:
            raise ValueError("no activations were collected")
        return torch.cat(self.zs), torch.cat(self.labels)

    def result(self) -> Means:
        z, labels = self.stack()
        if self.name == "median":
            return z.median(0).values
        if self.name == "trimmed_mean":
            n = z.shape[0]
            k = int(n * self.trim)
            s = z.sort(0).values
            return s[k : n - k].mean(0) if n - 2 * k > 0 else s.mean(0)
        if self.name == "class_diff":
            if labels.all() or (~labels).all():
                raise ValueError("class_diff needs examples of both classes")
            return z.mean(0) + z[labels].mean(0) - z[~labels].mean(0)
        raise ValueError(f"unknown stacked estimator {self.name!r}")


def make_estimator(name: str, *, rank: int = 1, weighting: str = "uniform", trim: float = 0.1) -> Estimator:
    """An estimator by name: ``mean``, ``wpca``, ``class_diff``, ``median`` or ``trimmed_mean``."""
    if name == "mean":
        return MeanEstimator()
    if name == "wpca":
        return WeightedPCAEstimator(rank=rank, weighting=weighting)  # type: ignore[arg-type]
    if name in ("class_diff", "median", "trimmed_mean"):
        return StackEstimator(name, trim=trim)
    raise ValueError(f"unknown estimator {name!r}; choose mean, wpca, class_diff, median or trimmed_mean")


@dataclass
class Extraction:
    """What Stage 1 produced: the patched-in activations and how they were obtained."""

    means: Means
    """The estimate ``[n_layers, n_heads, d_head]``."""
    n_prompts: int
    """Extraction prompts folded in."""
    gold_accuracy: float
    """Share of extraction prompts whose unpatched answer (Yes vs No) matched the gold label (an ICL sanity check)."""


def collect(
    model: Any,
    texts: Sequence[str],
    gold: Sequence[bool],
    estimators: Sequence[Estimator],
    *,
    answer_ids: AnswerIds | None = None,
    batch_size: int = 4,
    show_progress: bool = True,
    desc: str = "extracting activations",
    pool: M.PrefixPool | None = None,
) -> float:
    """Run the texts in left-padded batches and fold their last-token hook_z into every estimator.

    With a :class:`armlens.model.PrefixPool`, each text runs one by one through the pool, leaving its prefix cache
    there for later head-mask runs on the same prompt (REINFORCE on ``per_example`` prompts).

    Returns the share of prompts where the unpatched model preferred the gold answer (Yes vs No logit).
    """
    if len(texts) != len(gold):
        raise ValueError("texts and gold labels differ in length")
    if not texts:
        raise ValueError("no extraction prompts")
    ids = answer_ids or AnswerIds.of(model)
    right = 0
    step = 1 if pool is not None else batch_size
    for idx in tqdm(M.length_batches(texts, step), desc=desc, disable=not show_progress, leave=False):
        if pool is not None:  # keep the prefix: the same prompt will be run again under head masks
            z, logits = M.capture_cached_hook_z_and_logits(model, pool.get(texts[idx[0]]))
        else:
            z, logits = M.capture_hook_z_and_logits(model, *M.tokenize(model, [texts[i] for i in idx]))
        labels = torch.tensor([gold[i] for i in idx])
        yes_no = logits[:, [ids.yes, ids.no]].softmax(-1)
        confidence = torch.where(labels, yes_no[:, 0], yes_no[:, 1]).cpu()
        right += int((confidence > 0.5).sum())
        for est in estimators:
            est.update(z.cpu(), labels, confidence)
    return right / len(texts)


def extract_means(
    model: Any,
    examples: Sequence[Example],
    *,
    mode: ExtractionMode = "icl",
    shots: int = 4,
    n_trials: int = 100,
    estimator: EstimatorName | Estimator = "mean",
    template: JudgeTemplate = JudgeTemplate(),
    batch_size: int = 4,
    seed: int = 0,
    show_progress: bool = True,
    pool: M.PrefixPool | None = None,
) -> Extraction:
    """Stage 1 (+1b): build extraction prompts from labelled examples and estimate the activations to patch."""
    texts, gold = extraction_prompts(model, examples, mode, shots=shots, n_trials=n_trials, template=template, seed=seed)
    est = make_estimator(estimator) if isinstance(estimator, str) else estimator
    acc = collect(model, texts, gold, [est], answer_ids=AnswerIds.of(model, template), batch_size=batch_size,
                  show_progress=show_progress, pool=pool if mode == "per_example" else None)
    return Extraction(means=est.result(), n_prompts=len(texts), gold_accuracy=acc)
