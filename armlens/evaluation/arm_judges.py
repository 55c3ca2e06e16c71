"""The ARM as a judge, and the baselines that are the ARM pipeline with one part changed: ``mean-ablation`` (no
label in the means), ``random-heads`` and ``topk-heads`` (other heads than REINFORCE's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError
from armlens.evaluation.judge import Judge
from armlens.patching import HeadMask, Means
from armlens.rm import ActivationRM, ARMConfig


class ARMJudge(Judge):
    name = "arm"
    reads = "P(Yes) at the last token with the selected heads' hook_z overwritten by few-shot mean activations"
    trains = True
    settings: ClassVar[tuple[str, ...]] = ("template", "criterion", "batch_size", "score", "seed", "arm")
    mask_based = True
    fit_suffix = ".arm"

    rm: ActivationRM

    def arm_config(self) -> ARMConfig:
        """The ARM this method fits: :meth:`JudgeConfig.arm_config` (the judge's template, criterion, routing, score,
        batch size and seed on ``config.arm``)."""
        return self.config.arm_config()

    def patch_for(self, pair: PreferencePair) -> tuple[Means | None, HeadMask | None]:
        return self.rm.patch_for(pair)

    def weights_for(self, pair: PreferencePair) -> Tensor | None:
        return self.rm.weights_for(pair)

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        self.rm = ActivationRM(self.model, self.arm_config()).fit(few_shot, select,
                                                                  show_progress=self.config.show_progress)
        self._record_fit()

    def _record_fit(self) -> None:
        self.fit_info.update(heads=self.rm.heads, n_heads=len(self.rm.heads),
                             **{k: v for k, v in self.rm.fit_info.items() if not k.endswith("_ids")})

    def _save_fit(self, path: Path, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        self.rm.save(path)

    def _load_fit(self, path: Path, few_shot: list[PreferencePair], select: list[PreferencePair]) -> bool:
        rm = ActivationRM.load(path, self.model)  # refuses another model (ValueError)
        if rm.config.to_dict() != self.arm_config().to_dict():
            raise BadInputError("it was fitted with other ARM settings")
        for name, pairs in (("few_shot", few_shot), ("select", select)):
            if rm.fit_info.get(f"{name}_hash") != pairs_hash(pairs):
                raise BadInputError(f"it was fitted on other {name.replace('_', '-')} pairs")
        self.rm = rm
        self._record_fit()
        return True

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        texts = self._prompts(self._queries(items))
        out = torch.empty(len(items))
        by_fit: dict[str, list[int]] = {}
        for i, (pair, _) in enumerate(items):  # each pair by its criterion's fit
            by_fit.setdefault(self.rm.fit_for(self.rm._criterion(pair)).criterion, []).append(i)
        for key, idx in by_fit.items():
            out[idx] = self.rm.score_texts([texts[i] for i in idx], criterion=None if len(self.rm.fits) == 1 else key,
                                           show_progress=self.config.show_progress).float()
        return out


class MeanAblationJudge(ARMJudge):
    name = "mean-ablation"
    reads = ("P(Yes) with the selected heads' hook_z overwritten by their unconditional mean over unanswered judge "
             "prompts (the ARM pipeline without the label: a baseline, not an ARM)")

    def arm_config(self) -> ARMConfig:
        return dataclasses.replace(super().arm_config(), reading="mean_ablation")


class RandomHeadsJudge(ARMJudge):
    name = "random-heads"
    reads = "P(Yes) with the ARM's few-shot means patched into head.count heads drawn at random (seeded)"
    settings = (*ARMJudge.settings, "head.count")
    selector: ClassVar[str] = "random"

    def head_count(self) -> int:
        """``head.count``, or the REINFORCE prior's expected number of heads."""
        if self.config.head.count is not None:
            return self.config.head.count
        cfg = self.model.cfg
        prior = float(torch.sigmoid(torch.tensor(self.config.arm.reinforce.init_logit)))
        return max(1, round(prior * cfg.n_layers * cfg.n_heads))

    def arm_config(self) -> ARMConfig:
        return dataclasses.replace(super().arm_config(), selector=self.selector, top_k=self.head_count())


class TopKHeadsJudge(RandomHeadsJudge):
    name = "topk-heads"
    reads = "P(Yes) with the ARM's few-shot means patched into the head.count heads of largest single-head attribution"
    selector = "topk_attribution"
