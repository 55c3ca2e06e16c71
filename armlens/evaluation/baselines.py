"""The judges an ARM is compared with, behind one interface: ``fit(few_shot, select)`` then ``score_pairs(pairs)``.

Context
-------
An Activation RM claims that a handful of patched head activations beats the judges people already use. That claim
is only as good as its baselines, so every baseline here runs on the *same model*, reads the *same judge prompt*
(:func:`armlens.prompts.scalar_prompt` / :func:`armlens.prompts.icl_prompt`) and, where it learns anything, learns
from the *same labelled pairs* the ARM gets (the few-shot draw for what the ARM averages, the selection set for what
the ARM selects). Each method is a :class:`Judge`; the runner and the RewardBench protocol treat them all alike: a
pair is correct iff ``score(chosen) > score(rejected)``, strictly (a tie is wrong).

Methods (registry names) and what each reads
--------------------------------------------
- ``arm``: :class:`armlens.rm.ActivationRM`: hook_z means of the few-shot set patched into the heads REINFORCE
  selects on the selection set; reads P(Yes) at the last token of the zero-shot prompt.
- ``mean-ablation``: the ARM pipeline with the ``mean_ablation`` reading (unanswered prompts, so no label reaches
  the means): the selected heads are mean-ablated. A baseline that isolates what the label contributes.
- ``zero-shot``: the same zero-shot judge prompt, no patching; P(Yes) at the last token (the direct ablation of ARM).
- ``few-shot-icl``: ``icl.shots`` class-balanced demonstrations from the few-shot set (one fixed, seeded draw per
  fit) answered in earlier chat turns, then the query; P(Yes) at the last token. The demonstrations are one cached
  prefix shared by every query (``icl.cache_demos``).
- ``generative``: greedy decoding of up to ``gen.max_new_tokens`` tokens after the zero-shot prompt; the first
  "yes"/"no" word of the text is the answer (Yes 1, No 0, unparseable 0.5 and counted).
- ``voting``: ``voting.n`` answers sampled at ``voting.temperature`` (seeded); score = share of Yes votes, an
  unparseable vote counting one half (counted). Majority by the vote share.
- ``longer`` / ``shorter``: the response's length in characters (``shorter``: minus it). No model.
- ``probe``: logistic regression (standardised features, seeded) on last-token activations of the zero-shot prompt
  (``probe.features``: the residual stream ``blocks.{L}.hook_resid_post`` at ``probe.layer``, default the middle
  layer, or every head's hook_z concatenated), trained on the Yes/No examples of the few-shot and selection pairs;
  score = P(Yes).
- ``steering``: a CAA-style mean-difference vector in the residual stream at ``blocks.{L}.hook_resid_post``: the
  answer token appended to each few-shot prompt, ``v = mean(resid | correct answer) - mean(resid | wrong answer)``
  (correct: Yes for chosen, No for rejected; the two answers balance out, the correctness direction stays). At
  scoring time ``coef * v`` is added at the last position (or all positions) of the zero-shot prompt; P(Yes) as the
  zero-shot judge. Layer and coefficient: the one candidate, or the best on the selection pairs by pairwise accuracy.
  ``coef = 0`` is exactly the zero-shot judge.
- ``savs``: Sparse Attention Vectors: per head, class means of last-token hook_z over the few-shot Yes and No
  examples; each head classifies an example by cosine similarity to the nearer class mean; the ``savs.top_k`` heads
  most accurate on the selection examples vote; score = share of Yes votes (``savs.score="margin"``: mean cosine
  margin instead, which rarely ties).
- ``implicit``: reference-free implicit reward (SimPO-style): the mean log-probability of the response tokens given
  the prompt, the prompt as the user turn and the response as the assistant turn of the chat template. No judge.
- ``random-heads`` / ``topk-heads``: the ARM's few-shot means patched into ``head.count`` heads drawn at random
  (seeded) or ranked by single-head attribution on the selection examples, instead of REINFORCE's heads.

Mask-based judges
-----------------
``arm``, ``mean-ablation``, ``zero-shot``, ``random-heads`` and ``topk-heads`` differ from the zero-shot judge only
in what they write into hook_z at the last token (:attr:`Judge.mask_based`, :meth:`Judge.patch_for`); ``steering``
(at the last position) only in the vector it adds to the residual stream there (:meth:`Judge.resid_for`); ``probe``
and ``savs`` only read the unpatched last token's activations (:meth:`Judge.branch_reads`). ``armlens eval`` scores
all of them (:meth:`Judge.in_branch_pass`), over every seed, as side-by-side branches over one prefix per judge prompt
(:func:`armlens.evaluation.branches.score_mask_judges`); their own ``score_pairs`` is the one-forward-per-prompt
reference it is tested against.

Where they live
---------------
The interface and shared settings are in :mod:`armlens.evaluation.judge`; the judges by family in
:mod:`armlens.evaluation.output_judges` (``zero-shot``, ``few-shot-icl``, ``generative``, ``voting``, ``longer``,
``shorter``, ``implicit``), :mod:`armlens.evaluation.activation_judges` (``probe``, ``steering``, ``savs``) and
:mod:`armlens.evaluation.arm_judges` (``arm``, ``mean-ablation``, ``random-heads``, ``topk-heads``). This module
names them (:data:`JUDGES`) and re-exports every judge, so ``from armlens.evaluation.baselines import X`` works for
all of them. Everything that touches the model goes through :mod:`armlens.model` (tokenise, run, hook names); hook
functions are small pure functions bound with ``functools.partial``.
"""


from __future__ import annotations

from collections.abc import Sequence

from armlens.errors import BadInputError
from armlens.evaluation.activation_judges import (
    ProbeJudge,
    SAVsJudge,
    SteeringJudge,
    add_vector_hook,
    grab_last_hook,
    last_hook_z,
    last_resid,
    resid_name,
)
from armlens.evaluation.arm_judges import ARMJudge, MeanAblationJudge, RandomHeadsJudge, TopKHeadsJudge
from armlens.evaluation.judge import Judge, JudgeConfig, PairScores
from armlens.evaluation.output_judges import (
    EMPTY_REWARD,
    FewShotICLJudge,
    GenerativeJudge,
    ImplicitRewardJudge,
    LongerJudge,
    ShorterJudge,
    VotingJudge,
    ZeroShotJudge,
    balanced_demos,
    response_logprobs,
)
from armlens.typing import Model

__all__ = [
    "EMPTY_REWARD", "JUDGES", "METHODS", "ARMJudge", "FewShotICLJudge", "GenerativeJudge", "ImplicitRewardJudge",
    "Judge", "JudgeConfig", "LongerJudge", "MeanAblationJudge", "PairScores", "ProbeJudge", "RandomHeadsJudge",
    "SAVsJudge", "ShorterJudge", "SteeringJudge", "TopKHeadsJudge", "VotingJudge", "ZeroShotJudge",
    "add_vector_hook", "balanced_demos", "grab_last_hook", "last_hook_z", "last_resid", "make_judge",
    "parse_methods", "resid_name", "response_logprobs",
]


JUDGES: dict[str, type[Judge]] = {
    cls.name: cls
    for cls in (ARMJudge, MeanAblationJudge, ZeroShotJudge, FewShotICLJudge, GenerativeJudge, VotingJudge, LongerJudge,
                ShorterJudge, ProbeJudge, SteeringJudge, SAVsJudge, ImplicitRewardJudge, RandomHeadsJudge, TopKHeadsJudge)
}
"""Method name -> judge class, in the order reports list them."""


METHODS: tuple[str, ...] = tuple(JUDGES)


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """Method names from ``"arm,zero-shot"`` or a list (``"all"``: every method); unknown names are an error."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if items == ["all"]:
        return list(METHODS)
    unknown = [s for s in items if s not in JUDGES]
    if unknown:
        raise BadInputError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} (or 'all')")
    if not items:
        raise BadInputError(f"no methods given; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(items))


def make_judge(name: str, model: Model | None, config: JudgeConfig | None = None) -> Judge:
    """A judge by registry name (see the module docstring for what each reads)."""
    if name not in JUDGES:
        raise BadInputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return JUDGES[name](model, config)
