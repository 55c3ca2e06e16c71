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
- ``few-shot-icl``: ``icl_shots`` class-balanced demonstrations from the few-shot set (one fixed, seeded draw per
  fit) answered in earlier chat turns, then the query; P(Yes) at the last token. The demonstrations are one cached
  prefix shared by every query (``icl_cache_demos``).
- ``generative``: greedy decoding of up to ``gen_max_new_tokens`` tokens after the zero-shot prompt; the first
  "yes"/"no" word of the text is the answer (Yes 1, No 0, unparseable 0.5 and counted).
- ``voting``: ``voting_n`` answers sampled at ``voting_temperature`` (seeded); score = share of Yes votes, an
  unparseable vote counting one half (counted). Majority by the vote share.
- ``longer`` / ``shorter``: the response's length in characters (``shorter``: minus it). No model.
- ``probe``: logistic regression (standardised features, seeded) on last-token activations of the zero-shot prompt
  (``probe_features``: the residual stream ``blocks.{L}.hook_resid_post`` at ``probe_layer``, default the middle
  layer, or every head's hook_z concatenated), trained on the Yes/No examples of the few-shot and selection pairs;
  score = P(Yes).
- ``steering``: a CAA-style mean-difference vector in the residual stream at ``blocks.{L}.hook_resid_post``: the
  answer token appended to each few-shot prompt, ``v = mean(resid | correct answer) - mean(resid | wrong answer)``
  (correct: Yes for chosen, No for rejected; the two answers balance out, the correctness direction stays). At
  scoring time ``coef * v`` is added at the last position (or all positions) of the zero-shot prompt; P(Yes) as the
  zero-shot judge. Layer and coefficient: the one candidate, or the best on the selection pairs by pairwise accuracy.
  ``coef = 0`` is exactly the zero-shot judge.
- ``savs``: Sparse Attention Vectors: per head, class means of last-token hook_z over the few-shot Yes and No
  examples; each head classifies an example by cosine similarity to the nearer class mean; the ``savs_top_k`` heads
  most accurate on the selection examples vote; score = share of Yes votes (``savs_score="margin"``: mean cosine
  margin instead, which rarely ties).
- ``implicit``: reference-free implicit reward (SimPO-style): the mean log-probability of the response tokens given
  the prompt, the prompt as the user turn and the response as the assistant turn of the chat template. No judge.
- ``random-heads`` / ``topk-heads``: the ARM's few-shot means patched into ``head_count`` heads drawn at random
  (seeded) or ranked by single-head attribution on the selection examples, instead of REINFORCE's heads.

Mask-based judges
-----------------
``arm``, ``zero-shot``, ``random-heads`` and ``topk-heads`` differ from the zero-shot judge only in what they write
into hook_z at the last token (:attr:`Judge.mask_based`, :meth:`Judge.patch_for`). ``armlens eval`` scores all of
them, over every seed, as side-by-side branches over one prefix per judge prompt
(:func:`armlens.evaluation.branches.score_mask_judges`); their own ``score_pairs`` is the one-forward-per-prompt
reference it is tested against.

Everything that touches the model goes through :mod:`armlens.model` (tokenise, run, hook names); hook functions are
small pure functions bound with ``functools.partial``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import config as C
from armlens import model as M
from armlens.data.records import PreferencePair, Prompt, pairs_hash
from armlens.generation import generate_answers, votes_to_scores
from armlens.patching import HeadMask, Means
from armlens.prompts import (
    AnswerIds,
    Example,
    JudgeTemplate,
    criterion_for,
    cut_to_tokens,
    examples_from_pairs,
    icl_prompt,
    scalar_prompt,
)
from armlens.rm import ActivationRM, ARMConfig
from armlens.scoring import ScoreKind, score_from_logits, score_patched, score_texts
from armlens.typing import Model

logger = logging.getLogger(__name__)

PairScores = tuple[Float[Tensor, " n_pairs"], Float[Tensor, " n_pairs"]]


@dataclass
class JudgeConfig:
    """Settings shared by every judge, then each method's own. Recorded with every result."""

    template: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge's words and field truncation (every prompt-based method uses the same)."""
    criterion: str | None = None
    """Criterion text for every pair; ``None``: per dataset/subset (``armlens.prompts.CRITERIA``)."""
    score: ScoreKind = "prob"
    """Reading of the answer logits for the token-probability judges (ARM included): prob, normalized, logit_diff."""
    batch_size: int = 1
    """Prompts per forward pass (1 on CPUs: see ``ARMConfig.batch_size``; raise it on a GPU)."""
    seed: int = 0
    """Seed of every random choice (demonstration draw, sampling, probe, ARM)."""
    show_progress: bool = False
    """tqdm bars while fitting and scoring."""
    arm: ARMConfig = field(default_factory=ARMConfig)
    """The ARM's own settings (its template, criterion, score, batch size and seed are taken from the fields above)."""
    icl_shots: int = 4
    """few-shot-icl: demonstrations in the prompt (class-balanced; at most the few-shot examples available)."""
    icl_cache_demos: bool = True
    """few-shot-icl: run the demonstrations once as a cached prefix shared by every query (same scores within float
    tolerance; ``False``: one full forward per prompt, in ``batch_size`` batches)."""
    gen_max_new_tokens: int = 6
    """generative / voting: tokens decoded at most per answer (decoding stops early at a Yes/No token or EOS)."""
    voting_n: int = 5
    """voting: sampled judgements per prompt."""
    voting_temperature: float = 0.7
    """voting: sampling temperature."""
    probe_features: Literal["resid", "hook_z"] = "resid"
    """probe: ``resid`` (``blocks.{L}.hook_resid_post`` at the last token) or ``hook_z`` (all heads, concatenated)."""
    probe_layer: int | None = None
    """probe: residual-stream layer (``None``: the middle layer, ``n_layers // 2``)."""
    probe_c: float = 1.0
    """probe: inverse L2 regularisation strength of the logistic regression."""
    steering_layers: tuple[int, ...] | None = None
    """steering: candidate layers (``None``: the middle layer only); several are chosen between on the selection set."""
    steering_coefs: tuple[float, ...] = (1.0,)
    """steering: candidate multipliers of the mean-difference vector (0 gives the zero-shot judge)."""
    steering_positions: Literal["last", "all"] = "last"
    """steering: add the vector at the last (read) position only, or at every position."""
    savs_top_k: int = 20
    """savs: voting heads (at most all heads)."""
    savs_score: Literal["vote", "margin"] = "vote"
    """savs: share of Yes votes (the SAVs rule) or the mean cosine margin of the voting heads."""
    head_count: int | None = None
    """random-heads / topk-heads: heads patched (``None``: REINFORCE's prior expected count,
    ``sigmoid(arm.reinforce.init_logit) * n_layers * n_heads``, rounded)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeConfig:
        return C.from_dict(cls, d)


# ---------------------------------------------------------------------------------------------------- the interface


class Judge:
    """A pairwise judge: ``fit`` on labelled pairs (a no-op for zero-shot methods), then ``score_pairs``.

    ``info()`` returns what ``fit`` chose (heads, layer, demonstrations, ...); ``last_stats`` holds counters of the
    latest ``score_pairs`` call (e.g. unparseable answers), both JSON-serialisable.
    """

    name: ClassVar[str] = "judge"
    reads: ClassVar[str] = ""
    """One line: what the method reads (shown in reports)."""
    trains: ClassVar[bool] = False
    """Whether ``fit`` uses the labelled pairs."""
    settings: ClassVar[tuple[str, ...]] = ()
    """The :class:`JudgeConfig` fields that can change this method's scores (cached results are keyed by them)."""
    mask_based: ClassVar[bool] = False
    """Whether the method is the zero-shot judge with a patch of last-token hook_z (:meth:`patch_for`), so that it
    can be scored as a branch over a prefix shared with every other such method."""

    @classmethod
    def key_settings(cls, config: JudgeConfig) -> dict[str, Any]:
        """The values of :attr:`settings` in ``config``, JSON-ready."""
        d = config.to_dict()
        return {k: d[k] for k in cls.settings}

    def __init__(self, model: Model | None, config: JudgeConfig | None = None):
        self.model = model
        self.config = config or JudgeConfig()
        self.fitted = not self.trains
        self.fit_info: dict[str, Any] = {}
        self.last_stats: dict[str, Any] = {}

    def fit(self, few_shot: Sequence[PreferencePair], select: Sequence[PreferencePair] | None = None) -> Judge:
        """Learn from ``few_shot`` (and ``select``, default: ``few_shot``). Returns ``self``."""
        if self.trains:
            if not few_shot:
                raise ValueError(f"{self.name}: fit() needs at least one few-shot pair")
            self._fit(list(few_shot), list(select) if select else list(few_shot))
            self.fit_info["few_shot_hash"] = pairs_hash(list(few_shot))
        self.fitted = True
        return self

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        raise NotImplementedError

    def score_pairs(self, pairs: Sequence[PreferencePair]) -> PairScores:
        """Scores of (chosen, rejected) for each pair: float tensors of shape ``[n_pairs]``."""
        if not pairs:
            raise ValueError(f"{self.name}: score_pairs() got no pairs")
        scores = self.score_responses([(p, r) for p in pairs for r in (p.chosen, p.rejected)])
        return scores[0::2].contiguous(), scores[1::2].contiguous()

    def score_responses(self, items: Sequence[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        """Score of each ``(pair, response)``: the response judged in the pair's context (prompt, criterion).

        Every method here is pointwise (a response's score does not depend on the other response of its pair), so
        a pair whose rejected response changed needs only that response re-scored (the bias suite relies on it).
        """
        if not items:
            raise ValueError(f"{self.name}: nothing to score")
        if not self.fitted:
            raise RuntimeError(f"the {self.name} judge is not fitted: call fit() first")
        self.last_stats = {}
        return self._score(list(items))

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        raise NotImplementedError

    def patch_for(self, pair: PreferencePair) -> tuple[Means | None, HeadMask | None] | None:
        """For a mask-based judge, the ``(means, mask)`` written into last-token hook_z of ``pair``'s zero-shot judge
        prompts (``(None, None)``: unpatched); ``None`` for every other judge."""
        return None

    def info(self) -> dict[str, Any]:
        return {"method": self.name, "reads": self.reads, **self.fit_info}

    # helpers shared by the prompt-based judges

    def _criterion(self, pair: PreferencePair) -> str:
        return self.config.criterion if self.config.criterion is not None else criterion_for(pair)

    def _queries(self, items: Sequence[tuple[PreferencePair, str]]) -> list[Example]:
        """Unlabelled scalar questions, one per ``(pair, response)``."""
        return [Example(p.prompt, r, None, self._criterion(p)) for p, r in items]

    def _examples(self, pairs: Sequence[PreferencePair]) -> list[Example]:
        """Labelled scalar examples (chosen: Yes, rejected: No), interleaved."""
        return examples_from_pairs(pairs, self.config.criterion)

    def _prompts(self, examples: Sequence[Example]) -> list[str]:
        return [scalar_prompt(self.model, e, self.config.template) for e in examples]


# ---------------------------------------------------------------------------------------------------- token probability


class ZeroShotJudge(Judge):
    name = "zero-shot"
    reads = "P(Yes) at the last token of the zero-shot judge prompt (no patching)"
    settings = ("template", "criterion", "batch_size", "score")
    mask_based = True

    def patch_for(self, pair: PreferencePair) -> tuple[Means | None, HeadMask | None]:
        return None, None

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        return score_texts(self.model, self._prompts(self._queries(items)), answer_ids=AnswerIds.of(self.model, cfg.template),
                           kind=cfg.score, batch_size=cfg.batch_size, show_progress=cfg.show_progress, desc=self.name)


def balanced_demos(examples: Sequence[Example], shots: int, seed: int) -> list[Example]:
    """``shots`` labelled examples, half Yes and half No (the odd one by a coin), shuffled; seeded."""
    rng = random.Random(seed)
    pos = [e for e in examples if e.label]
    neg = [e for e in examples if e.label is False]
    n_pos = n_neg = shots // 2
    if shots % 2:
        if rng.random() < 0.5:
            n_pos += 1
        else:
            n_neg += 1
    demos = rng.sample(pos, min(n_pos, len(pos))) + rng.sample(neg, min(n_neg, len(neg)))
    rng.shuffle(demos)
    return demos


class FewShotICLJudge(Judge):
    name = "few-shot-icl"
    reads = "P(Yes) at the last token after k answered demonstrations in the prompt"
    trains = True
    settings = ("template", "criterion", "batch_size", "score", "seed", "icl_shots")

    demos: list[Example]

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        self.demos = balanced_demos(self._examples(few_shot), self.config.icl_shots, self.config.seed)
        self.fit_info["n_demos"] = len(self.demos)
        self.fit_info["demo_labels"] = [bool(d.label) for d in self.demos]

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        texts = [icl_prompt(self.model, self.demos, q, cfg.template) for q in self._queries(items)]
        ids = AnswerIds.of(self.model, cfg.template)
        if cfg.icl_cache_demos:  # every prompt starts with the same demonstrations: one shared prefix cache
            return score_patched(self.model, texts, [(None, None)] * len(texts), answer_ids=ids, kind=cfg.score,
                                 groups=[0] * len(texts), show_progress=cfg.show_progress, desc=self.name)
        return score_texts(self.model, texts, answer_ids=ids, kind=cfg.score, batch_size=cfg.batch_size,
                           show_progress=cfg.show_progress, desc=self.name)


# ---------------------------------------------------------------------------------------------------- generation

class GenerativeJudge(Judge):
    name = "generative"
    reads = "the greedily generated answer to the zero-shot prompt, parsed for Yes/No (1 / 0; unparseable 0.5)"
    settings: ClassVar[tuple[str, ...]] = ("template", "criterion", "batch_size", "gen_max_new_tokens")
    n_samples: int = 1
    temperature: float = 0.0

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        texts = self._prompts(self._queries(items))
        answers = generate_answers(self.model, texts, n=self.n_samples, temperature=self.temperature,
                                   max_new_tokens=cfg.gen_max_new_tokens, seed=cfg.seed, batch_size=cfg.batch_size,
                                   show_progress=cfg.show_progress, desc=self.name)
        scores, counts = votes_to_scores(answers)
        self.last_stats = {"answers": counts, "unparseable": counts["unparseable"],
                           "n_answers": sum(counts.values()), "examples": [a[0] for a in answers[:4]]}
        if counts["unparseable"]:
            logger.info("%s: %d of %d answers unparseable", self.name, counts["unparseable"], sum(counts.values()))
        return scores


class VotingJudge(GenerativeJudge):
    name = "voting"
    reads = "share of Yes among N answers sampled at a temperature (seeded; unparseable votes count one half)"
    settings = ("template", "criterion", "batch_size", "gen_max_new_tokens", "seed", "voting_n", "voting_temperature")

    def __init__(self, model: Model | None, config: JudgeConfig | None = None):
        super().__init__(model, config)
        if self.config.voting_n < 1:
            raise ValueError("voting needs voting_n >= 1")
        self.n_samples = self.config.voting_n
        self.temperature = self.config.voting_temperature


# ---------------------------------------------------------------------------------------------------- length


class LongerJudge(Judge):
    name = "longer"
    reads = "the response's length in characters (the longer wins)"
    sign: ClassVar[float] = 1.0

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        lengths = [float(len(r)) for _, r in items]
        return self.sign * torch.tensor(lengths, dtype=torch.float32)


class ShorterJudge(LongerJudge):
    name = "shorter"
    reads = "minus the response's length in characters (the shorter wins)"
    sign = -1.0


# ---------------------------------------------------------------------------------------------------- activations


def resid_name(layer: int) -> str:
    """``blocks.{layer}.hook_resid_post``."""
    return M.resid_post_name(layer)


def _check_hook(model: Model, name: str) -> None:
    if name not in model.hook_dict:
        raise ValueError(f"the model has no hook point {name!r}")


def grab_last_hook(
    x: Float[Tensor, "batch pos d_model"], hook: Any, *, store: dict[int, Tensor], key: int
) -> None:
    """Keep ``x[:, -1]`` (the last real token under left padding) in ``store[key]``."""
    store[key] = x[:, -1].detach().float().cpu().clone()


def add_vector_hook(
    x: Float[Tensor, "batch pos d_model"], hook: Any, *, vector: Float[Tensor, " d_model"], coef: float,
    positions: Literal["last", "all"] = "last",
) -> Float[Tensor, "batch pos d_model"]:
    """Add ``coef * vector`` to the residual stream at the last position (or every position)."""
    x = x.clone()
    v = (coef * vector).to(x.device, x.dtype)
    if positions == "all":
        x = x + v
    else:
        x[:, -1] = x[:, -1] + v
    return x


def last_resid(
    model: Model, texts: Sequence[str], layers: Sequence[int], *, batch_size: int = 4, show_progress: bool = False,
    desc: str = "residual stream",
) -> dict[int, Float[Tensor, "batch d_model"]]:
    """``blocks.{l}.hook_resid_post`` at each text's last token, for every layer in ``layers`` (one pass per batch)."""
    for layer in layers:
        _check_hook(model, resid_name(layer))
    parts: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    batches = M.length_batches(texts, batch_size)
    for idx in tqdm(batches, desc=desc, disable=not show_progress, leave=False):
        store: dict[int, Tensor] = {}
        hooks = [(resid_name(layer), functools.partial(grab_last_hook, store=store, key=layer)) for layer in layers]
        M.run_last_logits(model, *M.tokenize(model, [texts[i] for i in idx]), hooks)
        for layer in layers:
            parts[layer].append(store[layer])
    inverse = torch.tensor([i for idx in batches for i in idx]).argsort()
    return {layer: torch.cat(parts[layer])[inverse] for layer in layers}


def last_hook_z(
    model: Model, texts: Sequence[str], *, batch_size: int = 4, show_progress: bool = False, desc: str = "hook_z",
) -> Float[Tensor, "batch n_layers n_heads d_head"]:
    """Every head's hook_z at each text's last token."""
    parts = []
    batches = M.length_batches(texts, batch_size)
    for idx in tqdm(batches, desc=desc, disable=not show_progress, leave=False):
        z, _ = M.capture_hook_z_and_logits(model, *M.tokenize(model, [texts[i] for i in idx]))
        parts.append(z.cpu())
    return torch.cat(parts)[torch.tensor([i for idx in batches for i in idx]).argsort()]


def _labels(examples: Sequence[Example]) -> Tensor:
    return torch.tensor([bool(e.label) for e in examples])


def _union(a: Sequence[PreferencePair], b: Sequence[PreferencePair]) -> list[PreferencePair]:
    seen, out = set(), []
    for p in list(a) + list(b):
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


class ProbeJudge(Judge):
    name = "probe"
    reads = "logistic regression on last-token activations (residual stream or all hook_z) of the zero-shot prompt"
    trains = True
    settings = ("template", "criterion", "batch_size", "seed", "probe_features", "probe_layer", "probe_c")

    def _layer(self) -> int:
        n = self.model.cfg.n_layers
        layer = self.config.probe_layer if self.config.probe_layer is not None else n // 2
        if not 0 <= layer < n:
            raise ValueError(f"probe_layer {layer} is outside the model's {n} layers")
        return layer

    def _features(self, examples: Sequence[Example]) -> Float[Tensor, "batch d"]:
        cfg = self.config
        texts = self._prompts(examples)
        if cfg.probe_features == "hook_z":
            z = last_hook_z(self.model, texts, batch_size=cfg.batch_size, show_progress=cfg.show_progress)
            return z.flatten(1)
        if cfg.probe_features != "resid":
            raise ValueError(f"unknown probe features {cfg.probe_features!r}; choose resid or hook_z")
        layer = self._layer()
        return last_resid(self.model, texts, [layer], batch_size=cfg.batch_size, show_progress=cfg.show_progress)[layer]

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = self._examples(_union(few_shot, select))
        x, y = self._features(train).double().numpy(), _labels(train).numpy()
        self.clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.config.probe_c, max_iter=2000, random_state=self.config.seed)
        ).fit(x, y)
        self.fit_info.update(
            n_train=len(train), features=self.config.probe_features, n_features=int(x.shape[1]),
            layer=self._layer() if self.config.probe_features == "resid" else None,
            train_accuracy=float(self.clf.score(x, y)),
        )

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        x = self._features(self._queries(items)).double().numpy()
        yes_col = list(self.clf.classes_).index(True)
        return torch.tensor(self.clf.predict_proba(x)[:, yes_col], dtype=torch.float32)


class SteeringJudge(Judge):
    name = "steering"
    reads = "P(Yes) of the zero-shot prompt with a CAA mean-difference vector added to the residual stream"
    trains = True
    settings = ("template", "criterion", "batch_size", "score", "steering_layers", "steering_coefs",
                "steering_positions")

    vector: Tensor
    layer: int
    coef: float

    def _candidates(self) -> list[int]:
        n = self.model.cfg.n_layers
        layers = list(self.config.steering_layers) if self.config.steering_layers is not None else [n // 2]
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad or not layers:
            raise ValueError(f"steering layers {bad or layers} are not within the model's {n} layers")
        if not self.config.steering_coefs:
            raise ValueError("steering needs at least one coefficient")
        return layers

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        cfg = self.config
        layers = self._candidates()
        examples = self._examples(few_shot)
        prompts = self._prompts(examples)
        # each prompt with the correct and with the wrong answer appended (the answer token is the last token)
        right = [p + (cfg.template.yes if e.label else cfg.template.no) for p, e in zip(prompts, examples, strict=True)]
        wrong = [p + (cfg.template.no if e.label else cfg.template.yes) for p, e in zip(prompts, examples, strict=True)]
        acts = last_resid(self.model, right + wrong, layers, batch_size=cfg.batch_size,
                          show_progress=cfg.show_progress, desc="steering vectors")
        n = len(right)
        vectors = {layer: acts[layer][:n].mean(0) - acts[layer][n:].mean(0) for layer in layers}
        grid = [(layer, float(c)) for layer in layers for c in cfg.steering_coefs]
        results = []
        if len(grid) > 1:  # choose on the selection pairs by strict pairwise accuracy, then mean margin
            for layer, coef in grid:
                self.vector, self.layer, self.coef = vectors[layer], layer, coef
                scores = self._score([(p, r) for p in select for r in (p.chosen, p.rejected)])
                c, r = scores[0::2], scores[1::2]
                results.append({"layer": layer, "coef": coef, "accuracy": float((c > r).float().mean()),
                                "margin": float((c - r).mean())})
            best = max(results, key=lambda d: (d["accuracy"], d["margin"]))
            layer, coef = best["layer"], best["coef"]
        else:
            layer, coef = grid[0]
        self.vector, self.layer, self.coef = vectors[layer], layer, coef
        self.fit_info.update(layer=layer, coef=coef, vector_norm=float(vectors[layer].norm()), grid=results,
                             positions=cfg.steering_positions, n_examples=len(examples))

    def hooks(self) -> list[M.Hook]:
        """The steering hook (with coefficient 0 it adds nothing: the zero-shot judge)."""
        name = resid_name(self.layer)
        _check_hook(self.model, name)
        fn = functools.partial(add_vector_hook, vector=self.vector, coef=self.coef,
                               positions=self.config.steering_positions)
        return [(name, fn)]

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        ids = AnswerIds.of(self.model, cfg.template)
        texts = self._prompts(self._queries(items))
        out = torch.empty(len(texts))
        hooks = self.hooks()
        for idx in tqdm(M.length_batches(texts, cfg.batch_size), desc=self.name, disable=not cfg.show_progress,
                        leave=False):
            logits = M.run_last_logits(self.model, *M.tokenize(self.model, [texts[i] for i in idx]), hooks)
            out[idx] = score_from_logits(logits, ids.yes, ids.no, cfg.score).cpu()
        return out


class SAVsJudge(Judge):
    name = "savs"
    reads = "per-head nearest-class-mean votes (cosine) on last-token hook_z; the top-k heads by accuracy vote"
    trains = True
    settings = ("template", "criterion", "batch_size", "savs_top_k", "savs_score")

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        cfg = self.config
        fs = self._examples(few_shot)
        z = last_hook_z(self.model, self._prompts(fs), batch_size=cfg.batch_size, show_progress=cfg.show_progress)
        y = _labels(fs)
        self.mu_yes, self.mu_no = z[y].mean(0), z[~y].mean(0)  # [n_layers, n_heads, d_head]
        sel = fs if [p.id for p in select] == [p.id for p in few_shot] else self._examples(select)
        z_sel = z if sel is fs else last_hook_z(self.model, self._prompts(sel), batch_size=cfg.batch_size,
                                                show_progress=cfg.show_progress)
        votes = self._votes(z_sel)  # [batch, n_layers, n_heads]
        accuracy = (votes == _labels(sel)[:, None, None]).float().mean(0)
        n_layers, n_heads = accuracy.shape
        k = min(cfg.savs_top_k, n_layers * n_heads)
        if k < 1:
            raise ValueError("savs_top_k must be >= 1")
        # stable ranking: higher accuracy first, then lower head index
        flat = accuracy.flatten()
        order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))[:k]
        self.mask = torch.zeros(flat.numel(), dtype=torch.bool)
        self.mask[order] = True
        self.mask = self.mask.view(n_layers, n_heads)
        self.fit_info.update(
            heads=[f"L{i // n_heads}H{i % n_heads}" for i in order], head_accuracy=[float(flat[i]) for i in order],
            n_few_shot_examples=len(fs), n_selection_examples=len(sel), score=cfg.savs_score,
        )

    def _margins(self, z: Float[Tensor, "batch n_layers n_heads d_head"]) -> Float[Tensor, "batch n_layers n_heads"]:
        cos = torch.nn.functional.cosine_similarity
        return cos(z, self.mu_yes.unsqueeze(0), dim=-1) - cos(z, self.mu_no.unsqueeze(0), dim=-1)

    def _votes(self, z: Float[Tensor, "batch n_layers n_heads d_head"]) -> Tensor:
        return self._margins(z) > 0

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        z = last_hook_z(self.model, self._prompts(self._queries(items)), batch_size=cfg.batch_size,
                        show_progress=cfg.show_progress, desc=self.name)
        if cfg.savs_score == "margin":
            return self._margins(z)[:, self.mask].mean(-1)
        return (self._margins(z)[:, self.mask] > 0).float().mean(-1)


# ---------------------------------------------------------------------------------------------------- implicit reward


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


EMPTY_REWARD = -1e9
"""Implicit reward of an empty response (it has no tokens to average)."""


def response_logprobs(
    model: Model, prompts: Sequence[Prompt], responses: Sequence[str], *, max_response_tokens: int | None = None,
    batch_size: int = 4, show_progress: bool = False, desc: str = "log-likelihood",
) -> Float[Tensor, " n"]:
    """Mean log-probability of each response's tokens after the chat-templated prompt (assistant turn)."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    prefixes = [M.apply_chat_template(model, _messages(p)) for p in prompts]
    bodies = [cut_to_tokens(model, r, max_response_tokens, marker="", where="end") for r in responses]
    n_prefix = [len(M.encode(model, p)) for p in prefixes]
    out = torch.empty(len(prompts))
    full = [p + b for p, b in zip(prefixes, bodies, strict=True)]
    for idx in tqdm(M.length_batches(full, batch_size), desc=desc, disable=not show_progress, leave=False):
        tokens, attn = M.tokenize(model, [prefixes[i] + bodies[i] for i in idx])
        logp = M.run_with_hooks(model, tokens, attn).log_softmax(-1)  # [b, pos, vocab]
        token_logp = logp[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)  # logp of token t+1
        lengths = attn.sum(-1)
        for row, i in enumerate(idx):
            n_resp = int(lengths[row]) - n_prefix[i]
            if n_resp < 1:  # an empty response has no likelihood: it loses to any non-empty one
                logger.warning("response %d is empty after tokenisation; its implicit reward is %g", i, EMPTY_REWARD)
                out[i] = EMPTY_REWARD
                continue
            out[i] = token_logp[row, -n_resp:].mean().cpu()
    return out


class ImplicitRewardJudge(Judge):
    name = "implicit"
    reads = "length-normalised log-likelihood of the response as the assistant turn (SimPO-style, reference-free)"
    settings = ("template", "batch_size")

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        prompts = [p.prompt for p, _ in items]
        responses = [r for _, r in items]
        return response_logprobs(self.model, prompts, responses, max_response_tokens=cfg.template.max_field_tokens,
                                 batch_size=cfg.batch_size, show_progress=cfg.show_progress, desc=self.name)


# ---------------------------------------------------------------------------------------------------- the ARM


class ARMJudge(Judge):
    name = "arm"
    reads = "P(Yes) at the last token with the selected heads' hook_z overwritten by few-shot mean activations"
    trains = True
    settings: ClassVar[tuple[str, ...]] = ("template", "criterion", "batch_size", "score", "seed", "arm")
    mask_based = True

    rm: ActivationRM

    def arm_config(self) -> ARMConfig:
        cfg = self.config
        return dataclasses.replace(cfg.arm, template=cfg.template, criterion=cfg.criterion, score=cfg.score,
                                   batch_size=cfg.batch_size, seed=cfg.seed)

    def patch_for(self, pair: PreferencePair) -> tuple[Means | None, HeadMask | None]:
        return self.rm.patch_for(pair)

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        self.rm = ActivationRM(self.model, self.arm_config()).fit(few_shot, select,
                                                                  show_progress=self.config.show_progress)
        self.fit_info.update(heads=self.rm.heads, n_heads=len(self.rm.heads),
                             **{k: v for k, v in self.rm.fit_info.items() if not k.endswith("_ids")})

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
    reads = "P(Yes) with the ARM's few-shot means patched into head_count heads drawn at random (seeded)"
    settings = (*ARMJudge.settings, "head_count")
    selector: ClassVar[str] = "random"

    def head_count(self) -> int:
        """``head_count``, or the REINFORCE prior's expected number of heads."""
        if self.config.head_count is not None:
            return self.config.head_count
        cfg = self.model.cfg
        prior = float(torch.sigmoid(torch.tensor(self.config.arm.reinforce.init_logit)))
        return max(1, round(prior * cfg.n_layers * cfg.n_heads))

    def arm_config(self) -> ARMConfig:
        return dataclasses.replace(super().arm_config(), selector=self.selector, top_k=self.head_count())


class TopKHeadsJudge(RandomHeadsJudge):
    name = "topk-heads"
    reads = "P(Yes) with the ARM's few-shot means patched into the head_count heads of largest single-head attribution"
    selector = "topk_attribution"


# ---------------------------------------------------------------------------------------------------- registry

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
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} (or 'all')")
    if not items:
        raise ValueError(f"no methods given; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(items))


def make_judge(name: str, model: Model | None, config: JudgeConfig | None = None) -> Judge:
    """A judge by registry name (see the module docstring for what each reads)."""
    if name not in JUDGES:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return JUDGES[name](model, config)
