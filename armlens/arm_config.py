"""``ARMConfig``: everything that decides what an ARM computes, and the one home of its defaults.

It extends the Stage 1 settings (:class:`armlens.activations.ExtractionConfig`: reading, layout, demonstrations,
trials, estimator, judge template, batch size, seed) with the fit's routing (``criteria``, ``criterion``,
``routing``), Stage 2 head selection (``selector``, ``top_k``, ``n_train``, ``val_pairs``, ``reinforce``) and Stage 3's
score reading. It is frozen: a fitted ARM, a result and a cache key hold exactly the settings they were made with (a
changed copy is ``dataclasses.replace(cfg, ...)``). ``docs/defaults.md`` says how the defaults were chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from armlens import config
from armlens import rules as R
from armlens.activations import LABELLED_READINGS, ExtractionConfig
from armlens.prompts import Routing
from armlens.scoring import ScoreKind
from armlens.selection import ReinforceConfig, SelectorName
from armlens.soft import SoftConfig

Criteria = Literal["per_criterion", "pooled"]


@dataclass(frozen=True)
class ARMConfig(ExtractionConfig):
    """Everything that decides what an ARM computes: the one place its defaults live (``fit``, ``eval``, ``demo``,
    ``ablate`` and the notebooks all start from ``ARMConfig()``). Saved with every fitted ARM and every result. The
    Stage 1 fields (``reading`` ... ``wpca_weighting``, ``template``, ``batch_size``, ``seed``) are
    :class:`~armlens.activations.ExtractionConfig`'s."""

    criteria: Criteria = "per_criterion"
    """One ARM per criterion (the paper's) or one ``pooled`` over every criterion (an ablation)."""
    selector: SelectorName = "reinforce"
    """Stage 2: reinforce, all, none, random, topk_prob, topk_attribution, or soft (a learned weight per head,
    ``z + w (mu - z)``: :mod:`armlens.soft`)."""
    top_k: int | None = None
    """Head count for the random / top-k selectors."""
    n_train: int = 100
    """Training examples (at most) REINFORCE draws from, per criterion."""
    val_pairs: Annotated[int, R.INDEX] = 2
    """Selection pairs held apart per criterion for REINFORCE's validation curve (only when at least three times as
    many remain for training; they are not trained on)."""
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    """REINFORCE settings."""
    soft: SoftConfig = field(default_factory=SoftConfig)
    """Soft head weights' settings (used by ``selector="soft"``)."""
    score: ScoreKind = "prob"
    """Stage 3 reading: ``prob`` (full-vocabulary P(Yes), reference), ``normalized``, ``logit_diff``."""
    criterion: str | None = None
    """Criterion text for every example (then one ARM); ``None``: per dataset/section (``armlens.prompts.CRITERIA``)."""
    routing: Routing = "label-free"
    """With ``criterion=None``: ``label-free`` criteria (the default), or ``oracle`` routing by a subset name that
    carries the gold label (XSTest's should-respond / should-refuse): an ablation, never a headline."""

    @property
    def is_arm(self) -> bool:
        """Whether the label reaches the activations (``mean_ablation`` is a baseline, not an ARM)."""
        return self.reading in LABELLED_READINGS

    def to_dict(self) -> dict[str, Any]:
        d = config.to_dict(self)
        if self.soft == SoftConfig():  # left out at its defaults: the keys of fits and results saved before it stay
            del d["soft"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ARMConfig:
        d = dict(d)
        if "mode" in d:  # format 1 files: mode per_example (unlabelled) / icl, shots in total
            mode = d.pop("mode")
            d["reading"] = "mean_ablation" if mode == "per_example" else mode
            d["icl_layout"] = "turns"
            d["demos_per_class"] = max(1, int(d.pop("shots", 2)) // 2)
        return config.from_dict(cls, d)
