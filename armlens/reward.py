"""Any armlens judge as a reward function for post-training (TRL's ``reward_funcs`` convention).

.. code-block:: python

    from trl import GRPOConfig, GRPOTrainer
    from armlens import ActivationRM, load_model
    from armlens.reward import arm_reward

    rm = ActivationRM.load("hhh.arm", load_model())
    reward = arm_reward(rm, weights={"helpful": 1.0, "harmless": 0.5})   # criteria named by a word of their text
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=GRPOConfig(...), train_dataset=prompts)

A reward function is called as ``reward(prompts=..., completions=..., **columns)`` and returns one float per
completion. Both of TRL's formats are read: standard (``prompts`` and ``completions`` are strings) and
conversational (lists of ``{"role", "content"}`` messages; the completion's assistant turns are the response).
Each completion is put in the zero-shot judge prompt "Does the response meet the criterion?" under its criterion
and read as the judge's score (``prob``, ``normalized`` or ``logit_diff``); the judge model runs on its own device
and the floats go back to the trainer, which puts them on the policy's device.

Factories: :func:`arm_reward` (an :class:`~armlens.rm.ActivationRM`, one criterion or a weighted mix of its
criteria), :func:`judge_reward` (any armlens :class:`~armlens.evaluation.judge.Judge`: the zero-shot judge, the
few-shot ICL judge, ...). Scoring goes through the branch fast path (:func:`armlens.scoring.score_patched`): the
completions of one prompt share the judge prompt's cache up to the response.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from armlens.data.records import PreferencePair, Prompt
from armlens.errors import BadInputError, NotFittedError
from armlens.prompts import DEFAULT_CRITERION, Example, prompt_key, scalar_prompt
from armlens.scoring import SCORE_KINDS, ScoreKind, score_patched

Normalize = Literal["none", "batch", "prompt"]
Scorer = Callable[[list[Prompt], list[str], list[str]], Tensor]
"""``scorer(prompts, responses, criteria) -> scores [n]``: one reading per (prompt, response) under a criterion."""


def as_prompt(prompt: Any) -> Prompt:
    """A TRL prompt (a string, or chat messages) as an armlens prompt; a trailing assistant turn is dropped."""
    if isinstance(prompt, str):
        return prompt
    messages = [{"role": str(m["role"]), "content": _content(m["content"])} for m in prompt]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise BadInputError("a conversational prompt holds no user message")
    return messages[0]["content"] if len(messages) == 1 and messages[0]["role"] == "user" else messages


def as_response(completion: Any) -> str:
    """A TRL completion (a string, or the assistant's chat messages) as the response text."""
    if isinstance(completion, str):
        return completion
    return "\n".join(_content(m["content"]) for m in completion if m.get("role", "assistant") == "assistant")


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    # multimodal content: a list of typed parts, of which the text ones count
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))


class RewardFunction:
    """A judge wrapped as a TRL reward function: ``reward(prompts, completions, **columns) -> list[float]``.

    Args:
        scorer: scores ``(prompts, responses, criteria)``.
        name: ``__name__``, the name TRL logs the reward under (``rewards/{name}/mean``).
        weights: criterion text -> weight; every completion is scored under each criterion and the weighted sum is
            the reward. ``None``: one criterion per completion, from the ``criterion`` column when the dataset has
            one, else ``criterion``.
        criterion: the criterion when there are no ``weights`` and no ``criterion`` column.
        offset, scale: the reward is ``(score - offset) * scale`` (after ``normalize``).
        normalize: ``none``; ``batch``: standardise over the call's completions; ``prompt``: over each prompt's
            completions (GRPO's groups; a group of one is centred only).
    """

    def __init__(self, scorer: Scorer, name: str, *, weights: Mapping[str, float] | None = None,
                 criterion: str = DEFAULT_CRITERION, offset: float = 0.0, scale: float = 1.0,
                 normalize: Normalize = "none"):
        if normalize not in ("none", "batch", "prompt"):
            raise BadInputError(f"unknown normalize {normalize!r}; choose none, batch or prompt")
        if weights is not None and (not weights or not all(math.isfinite(w) for w in weights.values())):
            raise BadInputError("weights must name at least one criterion, with finite weights")
        self.scorer, self.weights, self.criterion = scorer, dict(weights) if weights else None, criterion
        self.offset, self.scale, self.normalize = float(offset), float(scale), normalize
        self.__name__ = name
        self.last_scores: dict[str, list[float]] = {}
        """Raw scores of the latest call, per criterion (before the mix, normalisation and scaling)."""

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise BadInputError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not completions:
            return []
        ps, rs = [as_prompt(p) for p in prompts], [as_response(c) for c in completions]
        if self.weights is None:
            column = columns.get("criterion")
            crits = [str(c) for c in column] if column is not None else [self.criterion] * len(rs)
            scores = self.scorer(ps, rs, crits).double()
            self.last_scores = {"*": scores.tolist()}
        else:  # one call for every criterion: the branch path shares each prompt's cache across them
            names = list(self.weights)
            raw = self.scorer([p for _ in names for p in ps], [r for _ in names for r in rs],
                              [c for c in names for _ in rs]).double().reshape(len(names), len(rs))
            self.last_scores = {c: raw[i].tolist() for i, c in enumerate(names)}
            scores = (torch.tensor([self.weights[c] for c in names], dtype=torch.float64)[:, None] * raw).sum(0)
        scores = self._normalised(scores, [prompt_key(p) for p in ps])
        return [float(x) for x in (scores - self.offset) * self.scale]

    def _normalised(self, scores: Tensor, keys: list[str]) -> Tensor:
        if self.normalize == "none":
            return scores
        groups = [list(range(len(keys)))] if self.normalize == "batch" else _groups(keys)
        out = scores.clone()
        for idx in groups:
            s = scores[idx]
            std = float(s.std()) if len(idx) > 1 else 0.0
            out[idx] = (s - s.mean()) / (std if std > 1e-8 else 1.0)
        return out

    def __repr__(self) -> str:
        mix = f", weights={self.weights}" if self.weights else ""
        return f"RewardFunction({self.__name__!r}{mix}, normalize={self.normalize!r})"


def _groups(keys: Sequence[str]) -> list[list[int]]:
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return list(out.values())


def _resolve_weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float] | None:
    """Weights keyed by criterion text; a key may be a word of one criterion's text (``"harmless"``)."""
    if weights is None:
        return None
    out: dict[str, float] = {}
    for key, w in weights.items():
        hits = [n for n in names if n == key] or [n for n in names if key.lower() in n.lower()]
        if len(hits) != 1:
            raise BadInputError(f"weight key {key!r} matches {len(hits)} criteria of {list(names)}; name one exactly")
        out[hits[0]] = float(w)
    return out


def arm_reward(rm: Any, *, criterion: str | None = None, weights: Mapping[str, float] | None = None,
               score: ScoreKind | None = None, offset: float = 0.0, scale: float = 1.0,
               normalize: Normalize = "none", name: str = "arm") -> RewardFunction:
    """An :class:`~armlens.rm.ActivationRM` as a reward function: each completion in the zero-shot judge prompt
    under a criterion, with that criterion's heads patched, read as ``score`` (default: the ARM's own reading).

    ``criterion``: the criterion text (default: the ARM's configured one, or its only fit's; a multi-criterion ARM
    routes each text to its fit). ``weights``: a mix over the ARM's criteria (keys: criterion texts or a word of
    one). A ``criterion`` dataset column overrides ``criterion`` per row."""
    from armlens.rm import POOLED

    kind = score or rm.config.score
    if kind not in SCORE_KINDS:
        raise BadInputError(f"unknown score {kind!r}; choose one of {SCORE_KINDS}")
    fits = [c for c in rm.fits if c != POOLED]
    if criterion is None:
        criterion = rm.config.criterion or (fits[0] if len(rm.fits) == 1 and fits else DEFAULT_CRITERION)
        if weights is None and len(rm.fits) > 1 and rm.config.criterion is None:
            raise BadInputError(f"this ARM holds {len(rm.fits)} criteria; pass criterion=... or weights=... "
                                f"(its criteria: {'; '.join(rm.fits)})")

    def scorer(prompts: list[Prompt], responses: list[str], criteria: list[str]) -> Tensor:
        texts, patches, groups = [], [], []
        for p, r, c in zip(prompts, responses, criteria, strict=True):
            fit = rm.fit_for(c)
            texts.append(scalar_prompt(rm.model, Example(p, r, None, c), rm.config.template))
            patches.append((fit.means, fit.mask, fit.weights))
            groups.append((prompt_key(p), c))
        return score_patched(rm.model, texts, patches, answer_ids=rm.answer_ids, kind=kind, groups=groups)

    return RewardFunction(scorer, name, weights=_resolve_weights(fits or [criterion], weights), criterion=criterion,
                          offset=offset, scale=scale, normalize=normalize)


def judge_reward(judge: Any, *, criterion: str | None = None, weights: Mapping[str, float] | None = None,
                 score: ScoreKind | None = None, offset: float = 0.0, scale: float = 1.0,
                 normalize: Normalize = "none", name: str | None = None) -> RewardFunction:
    """A fitted armlens judge (:func:`armlens.evaluation.baselines.make_judge`: ``zero-shot``, ``few-shot-icl``, or
    any other pointwise judge) as a reward function. ``criterion`` defaults to the judge's configured one, else the
    default criterion; ``weights`` keys are criterion texts; ``score`` overrides the judge's reading."""
    if not judge.fitted:
        raise NotFittedError(f"the {judge.name} judge is not fitted: call fit() first")
    base = judge.config if score is None else dataclasses.replace(judge.config, score=score)
    crit = criterion or base.criterion or DEFAULT_CRITERION

    def scorer(prompts: list[Prompt], responses: list[str], criteria: list[str]) -> Tensor:
        out = torch.empty(len(responses), dtype=torch.float64)
        saved = judge.config
        try:
            for c in dict.fromkeys(criteria):
                idx = [i for i, x in enumerate(criteria) if x == c]
                judge.config = dataclasses.replace(base, criterion=c)
                items = [(_pair(prompts[i]), responses[i]) for i in idx]
                if judge.mask_based:  # the zero-shot judge with its patch: the branch fast path
                    texts = judge._prompts(judge._queries(items))
                    patches = [(*judge.patch_for(p), judge.weights_for(p)) for p, _ in items]
                    scores = score_patched(judge.model, texts, patches, kind=judge.config.score,
                                           answer_ids=_answer_ids(judge), groups=[prompt_key(p.prompt) for p, _ in items])
                else:
                    scores = judge.score_responses(items)
                out[idx] = scores.double().cpu()
        finally:
            judge.config = saved
        return out

    return RewardFunction(scorer, name or judge.name.replace("-", "_"), weights=weights, criterion=crit,
                          offset=offset, scale=scale, normalize=normalize)


def _answer_ids(judge: Any) -> Any:
    from armlens.prompts import AnswerIds

    return AnswerIds.of(judge.model, judge.config.template)


def _pair(prompt: Prompt) -> PreferencePair:
    """A carrier pair for a judge's ``score_responses`` (only its prompt is read; the criterion comes from config)."""
    return PreferencePair(id="reward/0", source="reward", subset="reward", prompt=prompt, chosen="", rejected="")


def length_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """The response's length in characters (a reward to log, or the ``longer`` baseline)."""
    return [float(len(as_response(c))) for c in completions]
