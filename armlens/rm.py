"""``ActivationRM``: the few-shot reward model that ties the stages together.

.. code-block:: python

    from armlens import ActivationRM, load_model, load_pairs, split_pairs

    model = load_model()                                   # SmolLM2-135M-Instruct, offline
    rm = ActivationRM(model).fit(few_shot_pairs)           # Stage 1 means + Stage 2 REINFORCE heads
    rm.score("How do I boil an egg?", "Put it in boiling water for 8 minutes.")
    chosen, rejected = rm.score_pairs(test_pairs)          # rewards for RewardBench-style accuracy
    rm.save("hhh.arm"); rm2 = ActivationRM.load("hhh.arm", model)

A fitted ARM is two tensors (``means [n_layers, n_heads, d_head]`` and ``mask [n_layers, n_heads]``) plus the config
that produced them. ``save`` writes one safetensors file whose metadata holds the config, the model fingerprint and
the selection history as JSON; ``load`` refuses a different model with a message naming both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from armlens import model as M
from armlens.activations import EstimatorName, ExtractionMode, extract_means, make_estimator
from armlens.data.records import PreferencePair, Prompt, pairs_hash
from armlens.patching import HeadMask, Means, PatchHandle, mask_labels, patched
from armlens.prompts import (
    DEFAULT_CRITERION,
    AnswerIds,
    Example,
    JudgeTemplate,
    criterion_for,
    examples_from_pairs,
    scalar_prompt,
)
from armlens.scoring import ScoreKind, score_patched, score_texts
from armlens.selection import ReinforceConfig, SelectionResult, SelectorName, select_heads

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class ARMConfig:
    """Everything that decides what an ARM computes. Saved with every fitted ARM and every result."""

    mode: ExtractionMode = "per_example"
    """Extraction reading: ``per_example`` (one zero-shot prompt per labelled example; armlens' CPU default, its
    prompts double as REINFORCE's) or ``icl`` (MTV's: ``shots`` answered demonstrations + a query, ~5x longer)."""
    shots: int = 4
    """Demonstrations per ``icl`` extraction prompt (class-balanced)."""
    n_trials: int = 100
    """``icl`` extraction prompts averaged (MTV: 100)."""
    estimator: EstimatorName = "mean"
    """Stage 1b: ``mean`` (reference), ``wpca`` (weighted-PCA denoising), ``class_diff``, ``median``, ``trimmed_mean``."""
    wpca_rank: int = 1
    """Principal directions kept by ``wpca``."""
    wpca_weighting: Literal["uniform", "confidence"] = "uniform"
    """``wpca`` example weights: uniform, or the unpatched model's confidence in the gold answer."""
    selector: SelectorName = "reinforce"
    """Stage 2: reinforce, all, none, random, topk_prob, topk_attribution."""
    top_k: int | None = None
    """Head count for the random / top-k selectors."""
    n_train: int = 100
    """Training examples (at most) REINFORCE draws from."""
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    """REINFORCE settings."""
    score: ScoreKind = "prob"
    """Stage 3 reading: ``prob`` (full-vocabulary P(Yes), reference), ``normalized``, ``logit_diff``."""
    template: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge's words and field truncation."""
    criterion: str | None = None
    """Criterion text for every example; ``None``: per dataset/subset (``armlens.prompts.CRITERIA``)."""
    batch_size: int = 1
    """Prompts per forward pass (scoring; extraction runs prompt by prompt through the prefix pool). 1 on CPUs:
    ``armlens bench`` measured 1.01 pairs/s one at a time vs 0.82 in left-padded batches of 8 on 2 cores (padding
    costs more than batching saves); raise it on a GPU."""
    seed: int = 0
    """Seed of the extraction draw, the REINFORCE run and the training subsample."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ARMConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ARM config field(s): {sorted(unknown)}")
        if "reinforce" in d:
            d["reinforce"] = ReinforceConfig(**d["reinforce"])
        if "template" in d:
            d["template"] = JudgeTemplate(**d["template"])
        return cls(**d)


class ActivationRM:
    """A few-shot Activation Reward Model on a TransformerLens bridge.

    Args:
        model: a bridge from :func:`armlens.load_model` or :func:`armlens.tiny_model`.
        config: :class:`ARMConfig`; keyword overrides are applied on top (``ActivationRM(model, steps=...)`` is not
            accepted: nested REINFORCE settings go through ``config.reinforce``).
    """

    def __init__(self, model: Any, config: ARMConfig | None = None, **overrides: Any):
        self.model = model
        self.config = dataclasses.replace(config or ARMConfig(), **overrides)
        self.answer_ids = AnswerIds.of(model, self.config.template)  # fails early if Yes/No are not single tokens
        self.means: Means | None = None
        self.mask: HeadMask | None = None
        self.selection: SelectionResult | None = None
        self.fit_info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------ fitting

    def fit(
        self,
        few_shot: Sequence[PreferencePair] | Sequence[Example],
        select: Sequence[PreferencePair] | Sequence[Example] | None = None,
        *,
        show_progress: bool = True,
    ) -> ActivationRM:
        """Stage 1 on ``few_shot`` (pairs give a Yes and a No example each), Stage 2 on ``select`` (default: the
        same examples), subsampled to ``n_train``. Returns ``self``."""
        cfg = self.config
        fs_examples = self._examples(few_shot)
        if not fs_examples:
            raise ValueError("fit() needs at least one few-shot pair or labelled example")
        sel_examples = self._examples(select) if select is not None else fs_examples
        if not sel_examples:
            raise ValueError("the head-selection set is empty")
        estimator = make_estimator(cfg.estimator, rank=cfg.wpca_rank, weighting=cfg.wpca_weighting)
        pool = M.PrefixPool(self.model, cfg.reinforce.prefix_cache_mb)  # shared by extraction and REINFORCE
        t0 = time.perf_counter()
        extraction = extract_means(
            self.model, fs_examples, mode=cfg.mode, shots=cfg.shots, n_trials=cfg.n_trials, estimator=estimator,
            template=cfg.template, batch_size=cfg.batch_size, seed=cfg.seed, show_progress=show_progress, pool=pool,
        )
        self.means = extraction.means
        t_extract = time.perf_counter() - t0
        rng = random.Random(cfg.seed)
        train = list(sel_examples)
        if len(train) > cfg.n_train:
            train = rng.sample(train, cfg.n_train)
        self.selection = select_heads(
            self.model, self.means, train, cfg.selector, k=cfg.top_k,
            config=dataclasses.replace(cfg.reinforce, seed=cfg.seed), template=cfg.template,
            show_progress=show_progress, pool=pool,
        )
        self.mask = self.selection.mask
        self.fit_info = {
            "n_few_shot_examples": len(fs_examples),
            "n_selection_examples": len(train),
            "n_extraction_prompts": extraction.n_prompts,
            "extraction_gold_accuracy": extraction.gold_accuracy,
            "timings_s": {"extraction": t_extract, **self.selection.timings},
        }
        for name, data in (("few_shot", few_shot), ("select", select)):
            if data and isinstance(data[0], PreferencePair):
                self.fit_info[f"{name}_ids"] = [p.id for p in data]  # type: ignore[union-attr]
                self.fit_info[f"{name}_hash"] = pairs_hash(list(data))  # type: ignore[arg-type]
        logger.info("fitted ARM: %d heads %s", int(self.mask.sum()), ", ".join(self.heads[:12]))
        return self

    def _examples(self, data: Sequence[PreferencePair] | Sequence[Example] | None) -> list[Example]:
        if not data:
            return []
        if isinstance(data[0], PreferencePair):
            return examples_from_pairs(data, self.config.criterion)  # type: ignore[arg-type]
        return list(data)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------------ scoring

    def _require_fit(self) -> tuple[Means, HeadMask]:
        if self.means is None or self.mask is None:
            raise RuntimeError("this ActivationRM is not fitted: call fit() or ActivationRM.load()")
        return self.means, self.mask

    def patch_for(self, pair: PreferencePair | None = None) -> tuple[Means, HeadMask]:
        """The ``(means, mask)`` this ARM writes into hook_z when it scores ``pair`` (routing point: an ARM that holds
        one fit per criterion returns that criterion's; ``None``: the ARM's default)."""
        return self._require_fit()

    @property
    def heads(self) -> list[str]:
        """Selected heads as ``L{l}H{h}`` labels."""
        return mask_labels(self.mask) if self.mask is not None else []

    def _criterion(self, pair: PreferencePair | None) -> str:
        if self.config.criterion is not None:
            return self.config.criterion
        return criterion_for(pair) if pair is not None else DEFAULT_CRITERION

    def score_texts(self, texts: Sequence[str], *, show_progress: bool = False) -> Float[Tensor, " batch"]:
        """Rewards for already-rendered judge prompts (the heads patched)."""
        means, mask = self._require_fit()
        return score_texts(self.model, texts, means=means, mask=mask, answer_ids=self.answer_ids,
                           kind=self.config.score, batch_size=self.config.batch_size, show_progress=show_progress)

    def score(self, prompt: Prompt, response: str | Sequence[str], criterion: str | None = None) -> float | list[float]:
        """Reward of one response (a float) or several responses to the same prompt (a list)."""
        responses = [response] if isinstance(response, str) else list(response)
        crit = criterion or self._criterion(None)
        texts = [scalar_prompt(self.model, Example(prompt, r, None, crit), self.config.template) for r in responses]
        scores = self.score_texts(texts).tolist()
        return scores[0] if isinstance(response, str) else scores

    def score_pairs(
        self, pairs: Sequence[PreferencePair], *, show_progress: bool = True
    ) -> tuple[Float[Tensor, " n_pairs"], Float[Tensor, " n_pairs"]]:
        """Rewards of (chosen, rejected) for each pair, each pair under :meth:`patch_for` (the branch path: a pair's
        two prompts share their common prefix, the patch is a branch of the last token)."""
        if not pairs:
            raise ValueError("score_pairs() got no pairs")
        texts, patches, groups = [], [], []
        for p in pairs:
            crit, patch = self._criterion(p), self.patch_for(p)
            for response in (p.chosen, p.rejected):
                texts.append(scalar_prompt(self.model, Example(p.prompt, response, None, crit), self.config.template))
                patches.append(patch)
                groups.append(p.id)
        scores = score_patched(self.model, texts, patches, answer_ids=self.answer_ids, kind=self.config.score,
                               groups=groups, show_progress=show_progress)
        return scores[0::2], scores[1::2]

    def __call__(self, prompt: Prompt, response: str | Sequence[str]) -> float | list[float]:
        """Reward-function form: ``rm(prompt, response)``."""
        return self.score(prompt, response)

    # ------------------------------------------------------------------------------------------------ patching

    def patched(self) -> Any:
        """``with rm.patched(): model(...)``: the model with this ARM's heads patched, inside the block only."""
        means, mask = self._require_fit()
        return patched(self.model, means, mask)

    def patch(self) -> PatchHandle:
        """Patch until ``handle.remove()``."""
        means, mask = self._require_fit()
        return PatchHandle(self.model, means, mask)

    # ------------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """One safetensors file: tensors (means, mask, selection history) + JSON metadata. Written atomically."""
        from safetensors.torch import save_file

        means, mask = self._require_fit()
        path = Path(path)
        tensors: dict[str, Tensor] = {"means": means.contiguous().cpu(), "mask": mask.to(torch.uint8).contiguous().cpu()}
        sel = self.selection
        if sel is not None and sel.probs is not None:
            tensors["probs"] = sel.probs.float().contiguous().cpu()
        if sel is not None and sel.prob_trajectory is not None:
            tensors["prob_trajectory"] = sel.prob_trajectory.float().contiguous().cpu()
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "model": M.model_fingerprint(self.model),
            "selection": {
                "method": sel.method if sel else "unknown",
                "losses": sel.losses if sel else [],
                "expected_heads": sel.expected_heads if sel else [],
                "final_candidate_losses": sel.final_candidate_losses if sel else [],
            },
            "fit_info": self.fit_info,
            "heads": self.heads,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"armlens": json.dumps(meta)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, model: Any) -> ActivationRM:
        """Load a saved ARM onto ``model``; a different model (id, shape or weights) is refused."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no saved ARM at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("armlens")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"{path} is not a readable armlens ARM file: {e}") from e
        if raw is None:
            raise ValueError(f"{path} is a safetensors file but holds no armlens metadata")
        meta = json.loads(raw)
        saved, here = meta["model"], M.model_fingerprint(model)
        diffs = [k for k in ("n_layers", "n_heads", "d_head", "d_vocab", "embedding_checksum") if saved.get(k) != here.get(k)]
        if diffs:
            raise ValueError(
                f"{path} was fitted on model {saved.get('model_id')!r} "
                f"({saved['n_layers']} layers x {saved['n_heads']} heads x {saved['d_head']} d_head) and cannot be "
                f"loaded on {here['model_id']!r} ({here['n_layers']} x {here['n_heads']} x {here['d_head']}): "
                f"{', '.join(diffs)} differ"
            )
        rm = cls(model, ARMConfig.from_dict(meta["config"]))
        rm.means = tensors["means"]
        rm.mask = tensors["mask"].bool()
        s = meta.get("selection", {})
        rm.selection = SelectionResult(
            mask=rm.mask, method=s.get("method", "unknown"), probs=tensors.get("probs"),
            prob_trajectory=tensors.get("prob_trajectory"), losses=s.get("losses", []),
            expected_heads=s.get("expected_heads", []), final_candidate_losses=s.get("final_candidate_losses", []),
        )
        rm.fit_info = meta.get("fit_info", {})
        return rm

    def __repr__(self) -> str:
        cfg = self.config
        if self.mask is None:
            state = "not fitted"
        else:
            heads = self.heads
            shown = ", ".join(heads[:8]) + (f", ... (+{len(heads) - 8})" if len(heads) > 8 else "")
            state = f"{len(heads)} heads [{shown}]"
        shots = self.fit_info.get("n_few_shot_examples", "?")
        return (
            f"ActivationRM(model={M.model_id(self.model)!r}, {state}, examples={shots}, mode={cfg.mode!r}, "
            f"estimator={cfg.estimator!r}, selector={cfg.selector!r}, score={cfg.score!r}, seed={cfg.seed})"
        )
