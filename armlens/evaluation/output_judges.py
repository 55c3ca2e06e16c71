"""Judges that read the model's output on the judge prompt, or no model at all: the answer token's probability
(``zero-shot``, ``few-shot-icl``), generated answers (``generative``, ``voting``), the response's likelihood
(``implicit``) and its length (``longer``, ``shorter``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.data.records import PreferencePair, Prompt
from armlens.errors import BadInputError
from armlens.evaluation.judge import Judge, JudgeConfig
from armlens.generation import generate_answers, votes_to_scores
from armlens.io import atomic_write, read_json, to_json
from armlens.patching import HeadMask, Means
from armlens.prompts import AnswerIds, Example, cut_to_tokens, icl_prompt, prompt_key
from armlens.scoring import score_patched, score_texts
from armlens.typing import Model

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ token probability


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
    settings = ("template", "criterion", "batch_size", "score", "seed", "icl.shots")

    demos: list[Example]

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        self.demos = balanced_demos(self._examples(few_shot), self.config.icl.shots, self.config.seed)
        self.fit_info["n_demos"] = len(self.demos)
        self.fit_info["demo_labels"] = [bool(d.label) for d in self.demos]

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        """Every prompt read after the demonstrations. With a :attr:`memo_folder` (the evaluation runner sets one per
        unit: a unit is tens of minutes on a CPU), the scores are saved :data:`MEMO_PART` prompts at a time and read
        back after a stop; they are a function of the prompt text, which holds this seed's demonstrations."""
        cfg = self.config
        texts = [icl_prompt(self.model, self.demos, q, cfg.template) for q in self._queries(items)]
        ids = AnswerIds.of(self.model, cfg.template)
        pair_of = dict(zip(texts, (prompt_key(p.prompt) for p, _ in items), strict=True))

        def compute(todo: list[str]) -> Float[Tensor, " n"]:
            if cfg.icl.cache_demos:  # every prompt starts with the same demonstrations: one shared prefix cache,
                # and a pair's chosen and rejected queries also share their prompt on top of it
                return score_patched(self.model, todo, [(None, None)] * len(todo), answer_ids=ids, kind=cfg.score,
                                     groups=[0] * len(todo), subgroups=[pair_of[t] for t in todo],
                                     show_progress=cfg.show_progress, desc=self.name)
            return score_texts(self.model, todo, answer_ids=ids, kind=cfg.score, batch_size=cfg.batch_size,
                               show_progress=cfg.show_progress, desc=self.name)

        if self.memo_folder is None:
            return compute(texts)
        # a store of this call only: these long prompts are scored once per seed, not kept for other seeds
        values = per_model_memo(weakref.WeakKeyDictionary(), self.model, texts, lambda todo: compute(todo).tolist(),
                                folder=self.memo_folder)
        return torch.tensor(values, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------------- generation


MEMO_PART = 256
"""Keys computed and saved together by :func:`per_model_memo` with a folder (a stop loses at most one part)."""


def per_model_memo(store: weakref.WeakKeyDictionary[Any, dict[str, Any]], model: Model, keys: Sequence[str],
                   compute: Callable[[list[str]], Sequence[Any]], *, folder: Path | None = None,
                   part: int | None = None) -> list[Any]:
    """The value of each key for ``model``: the keys not in ``store`` yet are computed with ``compute(todo)`` (each
    once, in first-appearance order) and kept there per model, gone with the model.

    ``folder``: also keep them on disk, so that a long seed-free job (:meth:`Judge.seed_free`: every seed of a dataset
    in one process) resumes after a stop. Keys found in the folder's ``part-*.json`` files are read back instead of
    computed; the others are computed ``part`` (default :data:`MEMO_PART`) at a time, each part written atomically
    as soon as it is done. Saved keys are hashes of the model's fingerprint and the key, so another model never reads
    them; values must be JSON.
    """
    memo = store.setdefault(model, {})
    todo = list(dict.fromkeys(k for k in keys if k not in memo))
    if todo and folder is None:
        memo.update(zip(todo, compute(todo), strict=True))
    elif todo and folder is not None:
        tag = to_json(M.model_fingerprint(model), None)
        hashed = {k: hashlib.blake2b(f"{tag}\0{k}".encode(), digest_size=16).hexdigest() for k in todo}
        saved, n_files = _read_memo(folder)
        memo.update((k, saved[hashed[k]]) for k in todo if hashed[k] in saved)
        todo = [k for k in todo if k not in memo]
        step = max(1, MEMO_PART if part is None else part)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            values = list(compute(chunk))
            memo.update(zip(chunk, values, strict=True))
            saved_part = {hashed[k]: v for k, v in zip(chunk, values, strict=True)}
            atomic_write(folder / f"part-{n_files:05d}.json", to_json(saved_part, None))
            n_files += 1
    return [memo[k] for k in keys]


def _read_memo(folder: Path) -> tuple[dict[str, Any], int]:
    """The values saved in ``folder`` by :func:`per_model_memo`, and the next free part number; a broken part file is
    skipped with a warning (its keys are computed again)."""
    saved: dict[str, Any] = {}
    files = sorted(folder.glob("part-*.json")) if folder.is_dir() else []
    for path in files:
        try:
            values = read_json(path)
            if not isinstance(values, dict):
                raise BadInputError("not a JSON object")
            saved.update(values)
        except (OSError, ValueError) as e:
            logger.warning("%s not used (%s); its values are computed again", path, e)
    numbers = [int(m.group(1)) for p in files if (m := re.fullmatch(r"part-(\d+)\.json", p.name))]
    return saved, max(numbers, default=-1) + 1


class GenerativeJudge(Judge):
    name = "generative"
    reads = "the greedily generated answer to the zero-shot prompt, parsed for Yes/No (1 / 0; unparseable 0.5)"
    settings: ClassVar[tuple[str, ...]] = ("template", "criterion", "batch_size", "gen.max_new_tokens")
    n_samples: int = 1
    temperature: float = 0.0

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        """Greedy answers are a function of the prompt alone, so every seed of an evaluation asks for the same ones
        on the test pairs it shares with the others: each is generated once per model and kept
        (:data:`_GREEDY_MEMO`); sampled answers (``voting``) are drawn anew."""
        cfg = self.config
        texts = self._prompts(self._queries(items))

        def generate(asked: list[str]) -> list[list[str]]:
            return generate_answers(self.model, asked, n=self.n_samples, temperature=self.temperature,
                                    max_new_tokens=cfg.gen.max_new_tokens, seed=cfg.seed, batch_size=cfg.batch_size,
                                    show_progress=cfg.show_progress, desc=self.name)

        if self.n_samples == 1 and self.temperature <= 0:
            answers = per_model_memo(_GREEDY_MEMO, self.model, [json.dumps([cfg.gen.max_new_tokens, t]) for t in texts],
                                     lambda todo: generate([json.loads(k)[1] for k in todo]), folder=self.memo_folder)
        else:
            answers = generate(texts)
        scores, counts = votes_to_scores(answers)
        self.last_stats = {"answers": counts, "unparseable": counts["unparseable"],
                           "n_answers": sum(counts.values()), "examples": [a[0] for a in answers[:4]]}
        if counts["unparseable"]:
            logger.info("%s: %d of %d answers unparseable", self.name, counts["unparseable"], sum(counts.values()))
        return scores


_GREEDY_MEMO: weakref.WeakKeyDictionary[Any, dict[str, list[str]]] = weakref.WeakKeyDictionary()
"""Greedy answers already generated, per model (gone with the model)."""


class VotingJudge(GenerativeJudge):
    name = "voting"
    reads = "share of Yes among N answers sampled at a temperature (seeded; unparseable votes count one half)"
    settings = ("template", "criterion", "batch_size", "gen.max_new_tokens", "seed", "voting.n", "voting.temperature")

    def __init__(self, model: Model | None, config: JudgeConfig | None = None):
        super().__init__(model, config)
        if self.config.voting.n < 1:
            raise BadInputError("voting needs voting.n >= 1")
        self.n_samples = self.config.voting.n
        self.temperature = self.config.voting.temperature


# ----------------------------------------------------------------------------------------------------------- length


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


# -------------------------------------------------------------------------------------------------- implicit reward


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


EMPTY_REWARD = -1e9
"""Implicit reward of an empty response (it has no tokens to average)."""


def response_logprobs(
    model: Model, prompts: Sequence[Prompt], responses: Sequence[str], *, max_response_tokens: int | None = None,
    batch_size: int = 4, share_prompts: bool = True, show_progress: bool = False, desc: str = "log-likelihood",
) -> Float[Tensor, " n"]:
    """Mean log-probability of each response's tokens after the chat-templated prompt (assistant turn).

    ``share_prompts``: responses to the same prompt (a pair's chosen and rejected, the bias suite's hacked ones) run
    the prompt once, as a key/value cache each response continues (:func:`armlens.model.run_cached_continuation`);
    the same numbers within float tolerance. A prompt asked once, or whose tokens change where a response begins,
    takes a full forward, batched ``batch_size`` at a time."""
    if len(prompts) != len(responses):
        raise BadInputError("prompts and responses differ in length")
    prefixes = [M.apply_chat_template(model, _messages(p)) for p in prompts]
    bodies = [cut_to_tokens(model, r, max_response_tokens, marker="", where="end") for r in responses]
    out = torch.empty(len(prompts))

    def put(i: int, token_logp: Tensor, n_resp: int) -> None:
        if n_resp < 1:  # an empty response has no likelihood: it loses to any non-empty one
            logger.warning("response %d is empty after tokenisation; its implicit reward is %g", i, EMPTY_REWARD)
            out[i] = EMPTY_REWARD
        else:
            out[i] = token_logp[-n_resp:].mean().cpu()

    asked: dict[str, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        asked.setdefault(prefix, []).append(i)
    alone = [i for idx in asked.values() if len(idx) == 1 or not share_prompts for i in idx]
    shared = [(prefix, idx) for prefix, idx in asked.items() if len(idx) > 1 and share_prompts]
    bar = tqdm(total=len(prompts), desc=desc, disable=not show_progress, leave=False)
    for prefix, idx in shared:
        head = M.tokenize(model, [prefix])[0]
        n_prefix = head.shape[1]
        if n_prefix < 2:
            alone += idx
            continue
        cache = None
        for i in idx:
            tokens = M.tokenize(model, [prefix + bodies[i]])[0]
            if not torch.equal(tokens[:, :n_prefix], head):  # the response's first token merges into the prompt's
                alone.append(i)
                continue
            cache = M.shared_prefix(model, head[:, :-1]) if cache is None else cache
            logp = M.run_cached_continuation(model, cache, tokens[:, n_prefix - 1:]).log_softmax(-1)[0]
            put(i, logp[:-1].gather(-1, tokens[0, n_prefix:].unsqueeze(-1)).squeeze(-1), tokens.shape[1] - n_prefix)
            bar.update(1)
    order = sorted(alone)
    full = [prefixes[i] + bodies[i] for i in order]
    for batch in M.length_batches(full, batch_size):
        idx = [order[b] for b in batch]
        tokens, attn = M.tokenize(model, [full[b] for b in batch])
        logp = M.run_with_hooks(model, tokens, attn).log_softmax(-1)  # [b, pos, vocab]
        token_logp = logp[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)  # logp of token t+1
        lengths = attn.sum(-1)
        for row, i in enumerate(idx):
            put(i, token_logp[row], int(lengths[row]) - len(M.encode(model, prefixes[i])))
        bar.update(len(idx))
    bar.close()
    return out


class ImplicitRewardJudge(Judge):
    name = "implicit"
    reads = "length-normalised log-likelihood of the response as the assistant turn (SimPO-style, reference-free)"
    settings = ("template", "batch_size")

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        """Reads no few-shot data, so every seed of an evaluation asks for the same (prompt, response) scores:
        each is computed once per model and cap, and kept (:data:`_IMPLICIT_MEMO`)."""
        cfg = self.config

        def compute(todo: list[str]) -> list[float]:
            asked = [json.loads(k) for k in todo]
            return response_logprobs(self.model, [a[1] for a in asked], [a[2] for a in asked],
                                     max_response_tokens=cfg.template.max_field_tokens, batch_size=cfg.batch_size,
                                     show_progress=cfg.show_progress, desc=self.name).tolist()

        keys = [json.dumps([cfg.template.max_field_tokens, p.prompt, r]) for p, r in items]
        return torch.tensor(per_model_memo(_IMPLICIT_MEMO, self.model, keys, compute, folder=self.memo_folder),
                            dtype=torch.float32)


_IMPLICIT_MEMO: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()
"""Implicit rewards already computed, per model (gone with the model)."""
