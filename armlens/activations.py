"""Stage 1 and 1b: the mean activations an ARM patches in, and the estimators that produce them.

Context
-------
``mu[l, h] = mean over extraction prompts x of hook_z[l](x)[read position, h]``: a tensor ``[n_layers, n_heads,
d_head]``. The paper defines it as the activation *while the model evaluates the correct preference*
(``mu = 1/n sum_i E[z | p_i, r_i, y_i]``), so the label must reach the activations (``docs/method.md``). Readings:

- ``icl`` (MTV's reading; the default of armlens' first release, before the defaults sweep): each extraction prompt holds ``shots`` answered
  demonstrations *per class* and one unanswered query drawn from another prompt (never a sibling or duplicate of a
  demonstration), read at the last token; ``n_trials`` prompts are averaged, their queries alternating Yes/No. The
  label enters through the answered demonstrations. Layout ``lines`` (the reference: one user turn of ``question
  answer`` blocks) or ``turns`` (each demonstration a user turn answered by an assistant turn).
- ``answered`` (the default: :class:`ExtractionConfig`, which :class:`armlens.rm.ARMConfig` extends): one prompt per labelled example, its
  zero-shot judge prompt followed by the gold answer word, read at that answer token, where the model is giving the
  label.
- ``mean_ablation``: one zero-shot judge prompt per example, *no answer*: the unconditional mean. Patching it is
  mean-ablation of the selected heads, an ablation baseline, not an ARM.

Activations are reduced the moment they are read: each forward pass yields only ``[batch, n_layers, n_heads,
d_head]`` at the read position, which is folded into the estimator's running statistics (never a full cache).

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
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens import rules as R
from armlens.errors import BadInputError
from armlens.prompts import (
    AnswerIds,
    Example,
    JudgeTemplate,
    answered_prompt,
    icl_lines_prompt,
    icl_prompt,
    prompt_key,
    scalar_prompt,
)
from armlens.typing import Means, Model, Z

logger = logging.getLogger(__name__)

Reading = Literal["icl", "answered", "mean_ablation"]
IclLayout = Literal["lines", "turns"]
EstimatorName = Literal["mean", "wpca", "class_diff", "median", "trimmed_mean"]
READINGS: tuple[str, ...] = ("icl", "answered", "mean_ablation")
LABELLED_READINGS: tuple[str, ...] = ("icl", "answered")
"""Readings through which the label reaches the activations (an ARM); ``mean_ablation`` is the baseline."""


# ---------------------------------------------------------------------------------------------------- extraction


@dataclass
class ExtractionPrompts:
    """Texts to read, the gold label of the question each holds, and where to read."""

    texts: list[str]
    gold: list[bool]
    logits_from_end: int = 1
    """Where the unpatched judge's answer logits are (1: the read position; 2: the token before, ``answered``)."""
    pooled: bool = False
    """The texts are REINFORCE's own zero-shot prompts (their prefix caches can be shared)."""
    sibling_queries: int = 0
    """``icl`` prompts whose query had to share its prompt with the demonstrations (see :func:`_icl_trials`)."""


def _icl_trials(
    examples: Sequence[Example], shots: int, n_trials: int, rng: random.Random
) -> tuple[list[tuple[list[int], int]], int]:
    """``n_trials`` draws of (demonstration indices, query index), and how many queries had to share a prompt.

    The query is drawn first (its gold answer alternating Yes/No where both are possible), then ``shots`` Yes and
    ``shots`` No demonstrations, shuffled, from prompts other than the query's (never a sibling or a duplicate of
    the query). Only when no such draw exists (every labelled example shares one prompt, as a small few-shot draw of
    HHH can, one dialogue holding many responses) is the query another response to the demonstrations' prompt: never
    a demonstration itself, never a duplicate of one; those trials are counted and logged."""
    keys = [prompt_key(e.prompt) for e in examples]
    trials, siblings = [], 0
    for t in range(n_trials):
        want = t % 2 == 0  # alternate the query's gold answer, so the mean does not lean to one class
        candidates = [i for i, e in enumerate(examples) if bool(e.label) == want] or list(range(len(examples)))
        order = rng.sample(candidates, len(candidates))
        for q in order:
            pos = [i for i, e in enumerate(examples) if e.label and keys[i] != keys[q]]
            neg = [i for i, e in enumerate(examples) if not e.label and keys[i] != keys[q]]
            if len(pos) >= shots and len(neg) >= shots:
                demos = rng.sample(pos, shots) + rng.sample(neg, shots)
                break
        else:
            for q in order:  # the fallback: same prompt, other response
                pos = [i for i, e in enumerate(examples) if e.label and examples[i].response != examples[q].response]
                neg = [i for i, e in enumerate(examples) if not e.label and examples[i].response != examples[q].response]
                if len(pos) >= shots and len(neg) >= shots:
                    demos = rng.sample(pos, shots) + rng.sample(neg, shots)
                    siblings += 1
                    break
            else:
                raise BadInputError(f"icl extraction with {shots} shot(s) per class needs, beside any query, at least "
                                    f"{shots} Yes and {shots} No examples with other responses; use fewer shots or more "
                                    "few-shot pairs")
        rng.shuffle(demos)
        trials.append((demos, q))
    if siblings:
        logger.warning("icl extraction: %d of %d queries share their prompt with the demonstrations (the few-shot "
                       "examples of this criterion come from %d prompt(s))", siblings, n_trials, len(set(keys)))
    return trials, siblings


@dataclass(frozen=True)
class ExtractionConfig:
    """Stage 1 (+1b): what :func:`extract_means` reads and how it reduces it. :class:`armlens.rm.ARMConfig` extends
    it, so these defaults are the ARM's (``extract_means(model, examples)`` reads as ``ARMConfig()`` does)."""

    reading: Reading = "answered"
    """Stage 1 reading: ``answered`` (each example's judge prompt + its gold answer, read at the answer token; the
    sweep's choice), ``icl`` (answered class-balanced demonstrations + a query; MTV's) or ``mean_ablation``
    (unanswered prompts: the unconditional mean, a baseline, not an ARM)."""
    icl_layout: IclLayout = "lines"
    """``icl`` layout: ``lines`` (one user turn of answered questions, the reference) or ``turns`` (chat turns)."""
    demos_per_class: int = 1
    """``icl``: answered demonstrations per class (Yes and No) in each extraction prompt."""
    n_trials: int = 32
    """``icl``: extraction prompts averaged (MTV: 100)."""
    estimator: EstimatorName = "mean"
    """Stage 1b: ``mean`` (reference), ``wpca`` (weighted-PCA denoising), ``class_diff``, ``median``, ``trimmed_mean``."""
    wpca_rank: int = 1
    """Principal directions kept by ``wpca``."""
    wpca_weighting: Literal["uniform", "confidence"] = "uniform"
    """``wpca`` example weights: uniform, or the unpatched model's confidence in the gold answer."""
    template: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge's words and field truncation."""
    batch_size: int = 1
    """Prompts per forward pass (scoring and ``icl``/``answered`` extraction). 1 on CPUs: ``armlens bench`` measured
    1.01 pairs/s one at a time vs 0.82 in left-padded batches of 8 on 2 cores; raise it on a GPU."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed of the extraction draw, the REINFORCE run and the training subsample."""


def extraction_prompts(model: Model, examples: Sequence[Example],
                       config: ExtractionConfig = ExtractionConfig()) -> ExtractionPrompts:
    """The prompts Stage 1 reads for ``config.reading`` (see the module docstring).

    ``icl``: ``n_trials`` prompts with ``demos_per_class`` answered demonstrations per class and one unanswered query
    from another prompt, laid out as ``icl_layout``. ``answered``: one judge prompt + gold answer per example.
    ``mean_ablation``: one unanswered judge prompt per example. The ``icl`` settings are used by ``icl`` only.
    """
    reading, shots, n_trials, layout = config.reading, config.demos_per_class, config.n_trials, config.icl_layout
    template = config.template
    if not examples:
        raise BadInputError("no labelled examples to extract activations from")
    if any(e.label is None for e in examples):
        raise BadInputError("extraction examples must be labelled")
    gold = [bool(e.label) for e in examples]
    if reading == "mean_ablation":
        return ExtractionPrompts([scalar_prompt(model, e, template) for e in examples], gold, pooled=True)
    if reading == "answered":
        return ExtractionPrompts([answered_prompt(model, e, template) for e in examples], gold, logits_from_end=2)
    if reading != "icl":
        raise BadInputError(f"unknown extraction reading {reading!r}; choose from {', '.join(READINGS)}")
    if shots < 1 or n_trials < 1:
        raise BadInputError(f"icl extraction needs shots >= 1 and n_trials >= 1, got {shots} and {n_trials}")
    if layout not in ("lines", "turns"):
        raise BadInputError(f"unknown icl layout {layout!r}; choose 'lines' or 'turns'")
    render = icl_lines_prompt if layout == "lines" else icl_prompt
    texts, qgold = [], []
    trials, siblings = _icl_trials(examples, shots, n_trials, random.Random(config.seed))
    for demos, q in trials:
        texts.append(render(model, [examples[i] for i in demos], examples[q], template))
        qgold.append(gold[q])
    return ExtractionPrompts(texts, qgold, sibling_queries=siblings)


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
            raise BadInputError("no activations were collected")
        return (self.total / self.n).float()


class WeightedPCAEstimator(Estimator):
    """Weighted-PCA denoising: the weighted mean projected on the top-``rank`` uncentred principal directions."""

    name = "wpca"

    def __init__(self, rank: int = 1, weighting: Literal["uniform", "confidence"] = "uniform") -> None:
        if rank < 1:
            raise BadInputError("wpca rank must be >= 1")
        if weighting not in ("uniform", "confidence"):
            raise BadInputError(f"unknown wpca weighting {weighting!r}")
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
            raise BadInputError("no activations were collected")
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
            raise BadInputError("no activations were collected")
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
                raise BadInputError("class_diff needs examples of both classes")
            return z.mean(0) + z[labels].mean(0) - z[~labels].mean(0)
        raise BadInputError(f"unknown stacked estimator {self.name!r}")


def make_estimator(name: str, *, rank: int = 1, weighting: str = "uniform", trim: float = 0.1) -> Estimator:
    """An estimator by name: ``mean``, ``wpca``, ``class_diff``, ``median`` or ``trimmed_mean``."""
    if name == "mean":
        return MeanEstimator()
    if name == "wpca":
        return WeightedPCAEstimator(rank=rank, weighting=weighting)  # type: ignore[arg-type]
    if name in ("class_diff", "median", "trimmed_mean"):
        return StackEstimator(name, trim=trim)
    raise BadInputError(f"unknown estimator {name!r}; choose mean, wpca, class_diff, median or trimmed_mean")


@dataclass
class Extraction:
    """What Stage 1 produced: the patched-in activations and how they were obtained."""

    means: Means
    """The estimate ``[n_layers, n_heads, d_head]``."""
    n_prompts: int
    """Extraction prompts folded in."""
    gold_accuracy: float
    """Share of extraction prompts whose unpatched answer (Yes vs No) matched the gold label (an ICL sanity check)."""
    sibling_queries: int = 0
    """``icl`` prompts whose query shares its prompt with the demonstrations (only when no other draw exists)."""


def collect(
    model: Model,
    prompts: ExtractionPrompts,
    estimators: Sequence[Estimator],
    *,
    answer_ids: AnswerIds | None = None,
    batch_size: int = 4,
    show_progress: bool = True,
    desc: str = "extracting activations",
    pool: M.PrefixPool | None = None,
) -> float:
    """Run the prompts (left-padded batches) and fold their read-position hook_z into every estimator.

    With a :class:`armlens.model.PrefixPool` and pooled prompts (REINFORCE's own zero-shot prompts), each text runs
    one by one through the pool, leaving its prefix cache there for the later head-mask runs on the same prompt.

    Returns the share of prompts where the unpatched model preferred the gold answer (Yes vs No logit).
    """
    texts, gold = prompts.texts, prompts.gold
    if len(texts) != len(gold):
        raise BadInputError("texts and gold labels differ in length")
    if not texts:
        raise BadInputError("no extraction prompts")
    ids = answer_ids or AnswerIds.of(model)
    right = 0
    use_pool = pool is not None and prompts.pooled
    for idx in tqdm(M.length_batches(texts, 1 if use_pool else batch_size), desc=desc, disable=not show_progress,
                    leave=False):
        if use_pool:  # keep the prefix: the same prompt will be run again under head masks
            z, logits = M.capture_cached_hook_z_and_logits(model, pool.get(texts[idx[0]]))  # type: ignore[union-attr]
        else:
            z, logits = M.capture_hook_z_and_logits(model, *M.tokenize(model, [texts[i] for i in idx]),
                                                    logits_from_end=prompts.logits_from_end)
        labels = torch.tensor([gold[i] for i in idx])
        yes_no = logits[:, [ids.yes, ids.no]].softmax(-1).cpu()
        confidence = torch.where(labels, yes_no[:, 0], yes_no[:, 1])
        right += int((confidence > 0.5).sum())
        for est in estimators:
            est.update(z.cpu(), labels, confidence)
    return right / len(texts)


def extract_means(
    model: Model,
    examples: Sequence[Example],
    config: ExtractionConfig = ExtractionConfig(),
    *,
    estimator: Estimator | None = None,
    show_progress: bool = True,
    pool: M.PrefixPool | None = None,
) -> Extraction:
    """Stage 1 (+1b) as ``config`` sets it (an :class:`armlens.rm.ARMConfig` is one): build the reading's extraction
    prompts from labelled examples and estimate the activations. ``estimator``: one made by hand, instead of
    ``config``'s (:func:`make_estimator`)."""
    prompts = extraction_prompts(model, examples, config)
    est = estimator or make_estimator(config.estimator, rank=config.wpca_rank, weighting=config.wpca_weighting)
    acc = collect(model, prompts, [est], answer_ids=AnswerIds.of(model, config.template), batch_size=config.batch_size,
                  show_progress=show_progress, pool=pool)
    return Extraction(means=est.result(), n_prompts=len(prompts.texts), gold_accuracy=acc,
                      sibling_queries=prompts.sibling_queries)
