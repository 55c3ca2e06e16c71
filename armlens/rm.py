"""``ActivationRM``: the few-shot reward model that ties the stages together.

.. code-block:: python

    from armlens import ActivationRM, load_model, load_pairs, split_pairs

    model = load_model()                                   # SmolLM2-135M-Instruct, offline
    rm = ActivationRM(model).fit(few_shot_pairs)           # per criterion: Stage 1 means + Stage 2 REINFORCE heads
    rm.score("How do I boil an egg?", "Put it in boiling water for 8 minutes.")
    chosen, rejected = rm.score_pairs(test_pairs)          # each pair scored by its criterion's ARM
    rm.save("hhh.arm"); rm2 = ActivationRM.load("hhh.arm", model)

An ARM is fit *per criterion* (the paper's ``mu_{l,j}`` and head set per criterion j): pairs whose judge question
names the same criterion (:func:`armlens.prompts.criterion_for`: HHH's helpful / harmless / honest / other, XSTest's
should-respond / should-refuse; LLMBar, HH-RLHF and TruthfulQA ask one each) share one :class:`CriterionARM` (two
tensors, ``means [n_layers, n_heads, d_head]`` and ``mask [n_layers, n_heads]``, and the selection history).
``criteria="pooled"`` fits one over everything, as an ablation. ``save`` writes one safetensors file holding every
criterion's tensors, with the config, the model fingerprint and the histories as JSON metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import torch
from jaxtyping import Float
from torch import Tensor

from armlens import model as M
from armlens.activations import extract_means
from armlens.arm_config import ARMConfig
from armlens.data.records import PreferencePair, Prompt, image_key, pairs_hash
from armlens.errors import (
    ArmlensWarning,
    BadDataError,
    BadInputError,
    ModelMismatchError,
    NotFittedError,
    NotFoundError,
)
from armlens.io import read_tensors, write_tensors
from armlens.parallel import check_processes, fork_map
from armlens.patching import HeadMask, Means, PatchHandle, mask_labels, parse_heads, patched
from armlens.prompts import (
    DEFAULT_CRITERION,
    AnswerIds,
    Example,
    criterion_for,
    examples_from_pairs,
    prompt_key,
    scalar_prompt,
)
from armlens.scoring import score_patched, score_texts
from armlens.selection import (
    SelectionResult,
    check_pairwise_examples,
    select_heads,
)
from armlens.soft import fit_soft_weights
from armlens.typing import HeadValues, Model

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
POOLED = "*"
"""Routing key of the one fit of a ``criteria="pooled"`` ARM."""


@dataclass
class CriterionARM:
    """One criterion's fit: what is written into hook_z, where, and how it was chosen."""

    criterion: str
    """The criterion text (its routing key), or ``"*"`` for a pooled ARM."""
    means: Means
    """Stage 1(b) activations ``[n_layers, n_heads, d_head]``."""
    mask: HeadMask
    """Selected heads ``[n_layers, n_heads]``."""
    selection: SelectionResult | None = None
    """Stage 2 result and history."""
    info: dict[str, Any] = field(default_factory=dict)
    """Sizes, extraction sanity check and timings."""
    weights: HeadValues | None = None
    """Soft weights ``[n_layers, n_heads]`` (``selector="soft"``): the heads of ``mask`` get ``z + w (mu - z)``;
    ``None``: the plain overwrite. Analyses that read only ``means`` and ``mask`` see a soft fit's support."""

    @property
    def heads(self) -> list[str]:
        return mask_labels(self.mask)


def _label(key: str) -> str:
    """A fit's routing key as logs show it."""
    return "pooled" if key == POOLED else key[:48]


def hold_apart(examples: Sequence[Example], n_pairs: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split examples into (train, validation) by prompt: ``n_pairs`` prompt groups (seeded) go to validation when at
    least three times as many stay for training; else everything trains."""
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(prompt_key(e.prompt), []).append(e)
    keys = sorted(groups)
    if n_pairs <= 0 or len(keys) < 4 * n_pairs:
        return list(examples), []
    random.Random(f"val-{seed}").shuffle(keys)
    val_keys = set(keys[:n_pairs])
    return ([e for e in examples if prompt_key(e.prompt) not in val_keys],
            [e for e in examples if prompt_key(e.prompt) in val_keys])


class ActivationRM:
    """A few-shot Activation Reward Model on a TransformerLens bridge: one :class:`CriterionARM` per criterion.

    Args:
        model: a bridge from :func:`armlens.load_model` (tests: :func:`armlens.testing.tiny_model`).
        config: :class:`ARMConfig`; keyword overrides are applied on top (nested REINFORCE settings go through
            ``config.reinforce``).
    """

    def __init__(self, model: Model, config: ARMConfig | None = None, **overrides: Any):
        self.model = model
        self.config = dataclasses.replace(config or ARMConfig(), **overrides)
        self.answer_ids = AnswerIds.of(model, self.config.template)  # fails early if Yes/No are not single tokens
        self.fits: dict[str, CriterionARM] = {}
        self.fit_info: dict[str, Any] = {}
        self.forced: list[str] = []
        """What differs between this model and the one the ARM was fitted on, when loaded with ``force=True``."""

    @classmethod
    def from_patch(cls, model: Model, means: Means, mask: HeadMask, config: ARMConfig | None = None) -> ActivationRM:
        """An ARM that writes the given ``means`` into the heads of ``mask`` for every criterion (hand-made patches,
        transfers, benchmarks): one pooled fit with no selection history."""
        rm = cls(model, dataclasses.replace(config or ARMConfig(), criteria="pooled"))
        rm.fits = {POOLED: CriterionARM(POOLED, means, mask)}
        return rm

    # ------------------------------------------------------------------------------------------------ fitting

    def route_key(self, criterion: str) -> str:
        """The fit that scores questions about ``criterion``."""
        return POOLED if self.config.criteria == "pooled" else criterion

    def _groups(self, examples: Sequence[Example]) -> dict[str, list[Example]]:
        groups: dict[str, list[Example]] = {}
        for e in examples:
            groups.setdefault(self.route_key(e.criterion), []).append(e)
        return groups

    def fit(
        self,
        few_shot: Sequence[PreferencePair] | Sequence[Example],
        select: Sequence[PreferencePair] | Sequence[Example] | None = None,
        *,
        show_progress: bool = True,
        extraction_cache: dict[str, Any] | None = None,
        processes: int | None = None,
    ) -> ActivationRM:
        """Per criterion: Stage 1 on ``few_shot`` (pairs give a Yes and a No example each), Stage 2 on ``select``
        (default: the same examples, less ``val_pairs`` held apart), subsampled to ``n_train``. Returns ``self``.

        ``extraction_cache``: a dict shared between fits (e.g. an ablation grid's) that keeps Stage 1 results keyed by
        everything that decides them, so fits that differ only in Stage 2 settings run Stage 1 once.

        ``processes``: criteria fitted side by side in forked one-thread processes (:mod:`armlens.parallel`; the
        result is the same whatever the number). Default: one per torch thread, at most one per criterion, on a CPU
        model under Linux; 1 elsewhere (GPU models always fit in this process)."""
        fs_groups = self._groups(self._examples(few_shot))
        if not fs_groups:
            raise BadInputError("fit() needs at least one few-shot pair or labelled example")
        sel_groups = self._groups(self._examples(select)) if select is not None else fs_groups
        if select is not None and not sel_groups:
            raise BadInputError("the head-selection set is empty")
        self.fits = {}
        jobs = [(key, fs, sel_groups.get(key, fs)) for key, fs in fs_groups.items()]
        objective = {"reinforce": self.config.reinforce.objective, "soft": self.config.soft.objective}
        if objective.get(self.config.selector) == "pairwise":
            for _, _, sel in jobs:  # now, not after Stage 1's minutes
                check_pairwise_examples(sel)
        n_processes = check_processes(self.model, processes, len(jobs))
        if n_processes > 1:
            logger.info("fitting %d criteria in %d processes of one thread each", len(jobs), n_processes)
            done = fork_map(self._fit_forked, [(*job, extraction_cache) for job in jobs], n_processes)
            for (key, _, _), (fit, new_entries) in zip(jobs, done, strict=True):
                self.fits[key] = fit
                if extraction_cache is not None:
                    extraction_cache.update(new_entries)
        else:
            for key, fs, sel in jobs:
                if show_progress and len(fs_groups) > 1:
                    logger.info("fitting criterion %d/%d: %s", len(self.fits) + 1, len(fs_groups), _label(key))
                self.fits[key] = self._fit_one(key, fs, sel, show_progress=show_progress, cache=extraction_cache)
        timings: dict[str, float] = {}
        for fit in self.fits.values():  # per phase, summed over criteria
            for phase, seconds in fit.info["timings_s"].items():
                timings[phase] = timings.get(phase, 0.0) + seconds
        self.fit_info = {"criteria": list(self.fits), "n_few_shot_examples": sum(len(g) for g in fs_groups.values()),
                         "timings_s": timings}
        for name, data in (("few_shot", few_shot), ("select", select)):
            if data and isinstance(data[0], PreferencePair):
                self.fit_info[f"{name}_ids"] = [p.id for p in data]  # type: ignore[union-attr]
                self.fit_info[f"{name}_hash"] = pairs_hash(list(data))  # type: ignore[arg-type]
        logger.info("fitted ARM: %s", "; ".join(f"{len(f.heads)} heads" for f in self.fits.values()))
        return self

    def _fit_forked(self, key: str, fs: list[Example], sel: list[Example], cache: dict[str, Any] | None
                    ) -> tuple[CriterionARM, dict[str, Any]]:
        """:meth:`_fit_one` in a forked child: the fit and the Stage 1 cache entries it added (the child's cache is
        a copy, so they are sent back to the parent's)."""
        before = set(cache or ())
        fit = self._fit_one(key, fs, sel, show_progress=False, cache=cache)
        logger.info("fitted criterion %s: %d heads", _label(key), len(fit.heads))
        return fit, {k: v for k, v in (cache or {}).items() if k not in before}

    def _fit_one(self, key: str, fs: list[Example], sel: list[Example], *, show_progress: bool,
                 cache: dict[str, Any] | None = None) -> CriterionARM:
        cfg = self.config
        pool = M.PrefixPool(self.model, cfg.reinforce.prefix_cache_mb)  # shared by extraction and REINFORCE
        t0 = time.perf_counter()
        stage1 = (cfg.reading, cfg.icl_layout, cfg.demos_per_class, cfg.n_trials, cfg.estimator, cfg.wpca_rank,
                  cfg.wpca_weighting, cfg.seed, cfg.template, tuple((prompt_key(e.prompt), e.response, e.label,
                                                                     e.criterion) for e in fs))
        if any(e.images for e in fs):  # examples that differ only in their images must not share Stage 1
            stage1 += (tuple(tuple(image_key(i) for i in e.images) for e in fs),)
        cache_key = hashlib.sha256(repr(stage1).encode()).hexdigest()
        if cache is not None and cache_key in cache:
            extraction = cache[cache_key]
        else:
            extraction = extract_means(self.model, fs, cfg, show_progress=show_progress, pool=pool)
            if cache is not None:
                cache[cache_key] = extraction
        t_extract = time.perf_counter() - t0
        train, val = hold_apart(sel, cfg.val_pairs, cfg.seed)
        if len(train) > cfg.n_train:  # keep siblings together (the pairwise objective needs them)
            keys = sorted({prompt_key(e.prompt) for e in train})
            random.Random(cfg.seed).shuffle(keys)
            kept, n = set(), 0
            counts = {k: sum(prompt_key(e.prompt) == k for e in train) for k in keys}
            for k in keys:
                if n + counts[k] <= cfg.n_train:
                    kept.add(k)
                    n += counts[k]
            train = [e for e in train if prompt_key(e.prompt) in kept]
        if cfg.selector == "soft":
            selection = fit_soft_weights(self.model, extraction.means, train, cfg.soft, template=cfg.template,
                                         show_progress=show_progress, pool=pool, val=val, seed=cfg.seed)
        else:
            selection = select_heads(
                self.model, extraction.means, train, cfg.selector, k=cfg.top_k,
                config=dataclasses.replace(cfg.reinforce, seed=cfg.seed), template=cfg.template,
                show_progress=show_progress, pool=pool, val=val,
            )
        info = {
            "n_few_shot_examples": len(fs),
            "n_selection_examples": len(train),
            "n_validation_examples": len(val),
            "n_extraction_prompts": extraction.n_prompts,
            "extraction_gold_accuracy": extraction.gold_accuracy,
            "extraction_sibling_queries": extraction.sibling_queries,
            "timings_s": {"extraction": t_extract, **selection.timings},
            "prefix_pool": {"prompts": len(pool), "bytes": pool.bytes},  # its size at the end: its peak
        }
        return CriterionARM(key, extraction.means, selection.mask, selection, info,
                            weights=selection.probs.clone() if cfg.selector == "soft" and selection.probs is not None else None)

    def _examples(self, data: Sequence[PreferencePair] | Sequence[Example] | None) -> list[Example]:
        if not data:
            return []
        if isinstance(data[0], PreferencePair):
            return examples_from_pairs(data, self.config.criterion, self.config.routing)  # type: ignore[arg-type]
        return list(data)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------------ routing

    def _require_fit(self) -> None:
        if not self.fits:
            raise NotFittedError("this ActivationRM is not fitted: call fit() or ActivationRM.load()")

    def fit_for(self, criterion: str | None = None) -> CriterionARM:
        """The fit that scores ``criterion`` (``None``: the only fit, when there is one)."""
        self._require_fit()
        if criterion is None:
            if len(self.fits) == 1:
                return next(iter(self.fits.values()))
            raise BadInputError(f"this ARM holds {len(self.fits)} criteria; name one (criterion=...): "
                                + "; ".join(self.fits))
        key = self.route_key(criterion)
        if key in self.fits:
            return self.fits[key]
        if len(self.fits) == 1:  # a one-criterion ARM scores whatever it is given (e.g. a transfer experiment)
            return next(iter(self.fits.values()))
        raise BadInputError(f"this ARM holds no fit for the criterion {criterion!r}; it holds: " + "; ".join(self.fits)
                            + " (fit on pairs of that criterion, or with criteria='pooled', or score with one chosen "
                            "fit: score_pairs(fit=NAME), `armlens score --criterion NAME`)")

    def _criterion(self, pair: PreferencePair | None) -> str:
        if self.config.criterion is not None:
            return self.config.criterion
        return criterion_for(pair, self.config.routing) if pair is not None else DEFAULT_CRITERION

    def patch_for(self, pair: PreferencePair | None = None) -> tuple[Means, HeadMask]:
        """The ``(means, mask)`` this ARM writes into hook_z when it scores ``pair`` (its criterion's fit; ``None``:
        the only fit)."""
        fit = self.fit_for(None if pair is None else self._criterion(pair))
        return fit.means, fit.mask

    def weights_for(self, pair: PreferencePair | None = None) -> HeadValues | None:
        """The soft weights of :meth:`patch_for`'s heads (``None``: the plain overwrite, every fit but a soft one)."""
        return self.fit_for(None if pair is None else self._criterion(pair)).weights

    @property
    def means(self) -> Means:
        """The means of a one-criterion ARM (several criteria: use ``fits`` or :meth:`patch_for`)."""
        return self.fit_for().means

    @property
    def mask(self) -> HeadMask:
        """The head mask of a one-criterion ARM (several criteria: use ``fits`` or :meth:`patch_for`)."""
        return self.fit_for().mask

    @property
    def selection(self) -> SelectionResult | None:
        """The selection history of a one-criterion ARM."""
        return self.fit_for().selection

    @property
    def heads(self) -> list[str]:
        """Selected heads as ``L{l}H{h}`` labels (the union over criteria)."""
        if not self.fits:
            return []
        union = torch.stack([f.mask for f in self.fits.values()]).any(0)
        return mask_labels(union)

    # ------------------------------------------------------------------------------------------------ scoring

    def score_texts(self, texts: Sequence[str], *, criterion: str | None = None,
                    show_progress: bool = False) -> Float[Tensor, " batch"]:
        """Rewards for already-rendered judge prompts, with ``criterion``'s heads patched."""
        fit = self.fit_for(criterion)
        return score_texts(self.model, texts, means=fit.means, mask=fit.mask, answer_ids=self.answer_ids,
                           kind=self.config.score, batch_size=self.config.batch_size, show_progress=show_progress,
                           weights=fit.weights)

    # One response gives a float, several a list. A str is also a Sequence[str]; the first overload wins for it.
    @overload
    def score(self, prompt: Prompt, response: str, criterion: str | None = None,  # type: ignore[overload-overlap]
              images: Sequence[Any] = (), *, fit: str | None = None) -> float: ...
    @overload
    def score(self, prompt: Prompt, response: Sequence[str], criterion: str | None = None,
              images: Sequence[Any] = (), *, fit: str | None = None) -> list[float]: ...
    def score(self, prompt: Prompt, response: str | Sequence[str], criterion: str | None = None,
              images: Sequence[Any] = (), *, fit: str | None = None) -> float | list[float]:
        """Reward of one response (a float) or several responses to the same prompt (a list). ``criterion``: the
        question's criterion text (``None``: the configured one, or the scoring fit's); ``images``: what the prompt
        shows (paths or PIL images; vision-language models); ``fit``: the fit that scores, by name or criterion text
        (:meth:`fit_key`; ``None``: the criterion's own fit)."""
        responses = [response] if isinstance(response, str) else list(response)
        key = None if fit is None else self.fit_key(fit)
        crit = criterion or self.config.criterion
        if crit is None:
            only = self.fit_for() if key is None else self.fits[key]  # its criterion (pooled: the default text)
            crit = only.criterion if only.criterion != POOLED else DEFAULT_CRITERION
        texts = [scalar_prompt(self.model, Example(prompt, r, None, crit, tuple(images)), self.config.template)
                 for r in responses]
        scores = self.score_texts(texts, criterion=crit if key is None else key).tolist()
        return scores[0] if isinstance(response, str) else scores

    @staticmethod
    def fit_names(key: str, routing: str = "label-free") -> list[str]:
        """The names of the fit whose routing key is ``key``: ``pooled``, or the :data:`~armlens.prompts.CRITERIA`
        names whose text it is (``hhh-helpful``); none for a criterion text of the user's own."""
        from armlens.prompts import CRITERIA, ORACLE_CRITERIA

        if key == POOLED:
            return ["pooled"]
        table = ORACLE_CRITERIA if routing == "oracle" else CRITERIA
        return [name for name, text in table.items() if text == key]

    @classmethod
    def choose_fit(cls, name: str, keys: Sequence[str], routing: str = "label-free") -> str:
        """Which of the fits ``keys`` (routing keys: criterion texts, or ``"*"``) ``name`` chooses: a fit's name
        (:meth:`fit_names`: ``pooled``, ``hhh-helpful``) or its exact criterion text. Anything else is a
        :class:`~armlens.errors.BadInputError` listing the fits."""
        if name in keys:
            return name
        for key in keys:
            if name.strip().lower() in cls.fit_names(key, routing):
                return key
        fits = "; ".join(f"{'/'.join(cls.fit_names(k, routing)) or 'unnamed'}" + ("" if k == POOLED else f" ({k!r})")
                         for k in keys)
        raise BadInputError(f"this ARM holds no fit named {name!r}; its fits: {fits} (give a name, or a fit's "
                            "exact criterion text)")

    def fit_key(self, name: str) -> str:
        """The routing key of the fit ``name`` chooses (:meth:`choose_fit`)."""
        self._require_fit()
        return self.choose_fit(name, list(self.fits), self.config.routing)

    def score_pairs(
        self, pairs: Sequence[PreferencePair], *, show_progress: bool = True, fit: str | None = None
    ) -> tuple[Float[Tensor, " n_pairs"], Float[Tensor, " n_pairs"]]:
        """Rewards of (chosen, rejected) for each pair, each pair under :meth:`patch_for` (the branch path: a pair's
        two prompts share their common prefix, the patch is a branch of the last token).

        ``fit``: score every pair with this one fit instead, by name or criterion text (:meth:`choose_fit`: an ARM
        fitted on HHH scores LLMBar with ``fit="hhh-helpful"``, a pooled ARM with ``fit="pooled"``); each pair's
        judge question keeps its own criterion text, only the patched heads and means change."""
        if not pairs:
            raise BadInputError("score_pairs() got no pairs")
        chosen = None if fit is None else self.fits[self.fit_key(fit)]
        texts, patches, groups = [], [], []
        for p in pairs:
            crit = self._criterion(p)
            patch = ((*self.patch_for(p), self.weights_for(p)) if chosen is None
                     else (chosen.means, chosen.mask, chosen.weights))
            for response in (p.chosen, p.rejected):
                texts.append(scalar_prompt(self.model, Example(p.prompt, response, None, crit, tuple(p.images)), self.config.template))
                patches.append(patch)
                groups.append(p.id)
        scores = score_patched(self.model, texts, patches, answer_ids=self.answer_ids, kind=self.config.score,
                               groups=groups, show_progress=show_progress)
        return scores[0::2], scores[1::2]

    @overload
    def __call__(self, prompt: Prompt, response: str) -> float: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, prompt: Prompt, response: Sequence[str]) -> list[float]: ...
    def __call__(self, prompt: Prompt, response: str | Sequence[str]) -> float | list[float]:
        """Reward-function form: ``rm(prompt, response)``."""
        return self.score(prompt, response)

    # ------------------------------------------------------------------------------------------------ patching

    def patched(self, criterion: str | None = None) -> AbstractContextManager[Model]:
        """``with rm.patched(): model(...)``: the model with ``criterion``'s heads patched, inside the block only."""
        fit = self.fit_for(criterion)
        return patched(self.model, fit.means, fit.mask, weights=fit.weights)

    def patch(self, criterion: str | None = None) -> PatchHandle:
        """Patch ``criterion``'s heads until ``handle.remove()``."""
        fit = self.fit_for(criterion)
        return PatchHandle(self.model, fit.means, fit.mask, weights=fit.weights)

    # ------------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """One safetensors file: every criterion's tensors (``{i}.means``, ``{i}.mask``, selection history) + JSON
        metadata (config, model fingerprint, per-criterion records). Written atomically."""
        self._require_fit()
        path = Path(path)
        tensors: dict[str, Tensor] = {}
        records = []
        for i, fit in enumerate(self.fits.values()):
            tensors[f"{i}.means"] = fit.means.contiguous().cpu()
            tensors[f"{i}.mask"] = fit.mask.to(torch.uint8).contiguous().cpu()
            if fit.weights is not None:
                tensors[f"{i}.weights"] = fit.weights.float().contiguous().cpu()
            sel = fit.selection
            if sel is not None and sel.probs is not None:
                tensors[f"{i}.probs"] = sel.probs.float().contiguous().cpu()
            if sel is not None and sel.prob_trajectory is not None:
                tensors[f"{i}.prob_trajectory"] = sel.prob_trajectory.float().contiguous().cpu()
            records.append({"criterion": fit.criterion, "heads": fit.heads, "info": fit.info,
                            "selection": selection_record(sel) if sel is not None else None})
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "model": M.model_fingerprint(self.model),
            "fits": records,
            "fit_info": self.fit_info,
        }
        return write_tensors(path, tensors, meta)

    @staticmethod
    def read(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, metadata)`` of a saved ARM, checked without a model: a readable armlens ARM file whose tensors
        match the digest saved with them (files from before digests have none), every fit's means finite and its
        mask 0 or 1. Anything else is a :class:`~armlens.errors.BadDataError` naming the file (the command line
        calls this before the model loads)."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"no saved ARM at {path}" + (" (it is a folder)" if path.is_dir() else ""))
        tensors, meta = read_tensors(path, "armlens ARM file")
        if not isinstance(meta, dict) or not {"config", "model"} <= set(meta) or (
                meta.get("format_version", 1) > 1 and "fits" not in meta):
            raise BadDataError(f"{path} holds no saved ARM (its metadata lacks the ARM's config, model or fits; "
                               "is it another kind of armlens file?)")
        if meta.get("format_version", 1) == 1:  # one pooled fit, tensors without a prefix
            tensors = {f"0.{k}": v for k, v in tensors.items()}
        n_fits = len(meta.get("fits") or [None])
        for i in range(n_fits):
            means, mask = tensors.get(f"{i}.means"), tensors.get(f"{i}.mask")
            if means is None or mask is None:
                raise BadDataError(f"{path} is incomplete: fit {i} has no {'means' if means is None else 'mask'}")
            if not torch.isfinite(means).all():
                raise BadDataError(f"{path} is corrupt: fit {i}'s means hold NaN or infinite values")
            if mask.is_floating_point() or not ((mask == 0) | (mask == 1)).all():
                raise BadDataError(f"{path} is corrupt: fit {i}'s head mask holds values other than 0 and 1")
            if means.dim() != 3 or tuple(mask.shape) != tuple(means.shape[:2]):
                raise BadDataError(f"{path} is corrupt: fit {i}'s means {tuple(means.shape)} and mask "
                                   f"{tuple(mask.shape)} are not [layers, heads, d_head] and [layers, heads]")
            w = tensors.get(f"{i}.weights")
            if w is not None and (tuple(w.shape) != tuple(mask.shape) or not bool(((w >= 0) & (w <= 1)).all())):
                raise BadDataError(f"{path} is corrupt: fit {i}'s soft weights are not [layers, heads] in [0, 1]")
        return tensors, meta

    @classmethod
    def load(cls, path: str | Path, model: Model, *, force: bool = False) -> ActivationRM:
        """Load a saved ARM onto ``model`` (the file is checked first: :meth:`read`).

        A model that differs from the one the ARM was fitted on (id, architecture including ``n_key_value_heads``,
        or sampled attention/MLP/embedding weights: :func:`armlens.model.model_fingerprint`) is refused with a
        :class:`~armlens.errors.ModelMismatchError` (a ValueError) naming what differs. ``force=True`` loads it
        anyway, with an :class:`~armlens.errors.ArmlensWarning` (a deliberate transfer, e.g. to a fine-tune), and
        records the differences in ``rm.forced``; a different number of layers or heads or a different d_head is
        refused even then.
        """
        path = Path(path)
        tensors, meta = cls.read(path)
        saved, here = meta["model"], M.model_fingerprint(model)
        shape, other = M.fingerprint_differences(saved, here)
        fitted = f"{path} was fitted on model {saved.get('model_id')!r} and cannot be loaded on {here['model_id']!r}"
        if shape:
            raise ModelMismatchError(f"{fitted}: {'; '.join(shape)} differ (the head means do not fit this model)")
        if other and not force:
            raise ModelMismatchError(f"{fitted}: {'; '.join(other)} differ; pass force=True (--force) to transfer it "
                                     "anyway")
        if other:
            warnings.warn(f"loading {path} on a different model ({'; '.join(other)} differ), as forced",
                          ArmlensWarning, stacklevel=2)
        cfg = ARMConfig.from_dict(meta["config"])
        if meta.get("format_version", 1) == 1:  # one pooled fit
            cfg = dataclasses.replace(cfg, criteria="pooled")
            records = [{"criterion": POOLED, "selection": meta.get("selection"), "info": meta.get("fit_info", {})}]
        else:
            records = meta["fits"]
        rm = cls(model, cfg)
        rm.forced = list(other)
        for i, rec in enumerate(records):
            mask = tensors[f"{i}.mask"].bool()
            s = rec.get("selection")
            sel = None if s is None else selection_from_record(
                s, mask, tensors.get(f"{i}.probs"), tensors.get(f"{i}.prob_trajectory"))
            rm.fits[rec["criterion"]] = CriterionARM(rec["criterion"], tensors[f"{i}.means"], mask, sel,
                                                     rec.get("info", {}), weights=tensors.get(f"{i}.weights"))
        rm.fit_info = meta.get("fit_info", {})
        return rm

    def __repr__(self) -> str:
        cfg = self.config
        if not self.fits:
            state = "not fitted"
        else:
            parts = []
            for fit in self.fits.values():
                heads = fit.heads
                shown = ", ".join(heads[:6]) + (f", ... (+{len(heads) - 6})" if len(heads) > 6 else "")
                name = "pooled" if fit.criterion == POOLED else repr(fit.criterion[:32])
                parts.append(f"{name}: {len(heads)} heads [{shown}]")
            state = f"{len(self.fits)} criteria {{{'; '.join(parts)}}}"
        kind = "" if cfg.is_arm else " (mean-ablation baseline, not an ARM)"
        return (
            f"ActivationRM(model={M.model_id(self.model)!r}, {state}, reading={cfg.reading!r}{kind}, "
            f"estimator={cfg.estimator!r}, selector={cfg.selector!r}, score={cfg.score!r}, seed={cfg.seed})"
        )


def selection_record(sel: SelectionResult) -> dict[str, Any]:
    """JSON-ready history of a selection (its tensors are stored beside it)."""
    return {
        "method": sel.method, "losses": sel.losses, "expected_heads": sel.expected_heads, "entropy": sel.entropy,
        "val_losses": sel.val_losses, "final_candidate_losses": sel.final_candidate_losses,
        "checkpoint_masks": {str(k): mask_labels(v) for k, v in sel.checkpoint_masks.items()},
        "timings": sel.timings,
    }


def selection_from_record(
    s: dict[str, Any], mask: HeadMask, probs: Tensor | None, trajectory: Tensor | None
) -> SelectionResult:
    """:func:`selection_record` read back."""
    return SelectionResult(
        mask=mask, method=s.get("method", "unknown"), probs=probs, prob_trajectory=trajectory,
        losses=s.get("losses", []), expected_heads=s.get("expected_heads", []), entropy=s.get("entropy", []),
        val_losses=[tuple(v) for v in s.get("val_losses", [])],  # type: ignore[misc]
        final_candidate_losses=s.get("final_candidate_losses", []),
        checkpoint_masks={int(k): parse_heads(v, *mask.shape) for k, v in s.get("checkpoint_masks", {}).items()},
        timings=s.get("timings", {}),
    )
