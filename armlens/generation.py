"""Generation: the one decoding path of armlens (the generative and voting judges, the ablations' generative
reading), with one stop-token set and one yes/no parser.

Decoding goes through :func:`armlens.model.decode`: the prompt once, then one token per step over its key/value
cache. An ARM's patch, when given, is written at the prompt's read position (its last token), whose patched keys and
values every generated token attends to. :func:`generate_responses` samples assistant responses (best-of-N).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.errors import BadInputError
from armlens.patching import patch_hooks
from armlens.typing import HeadMask, Means, Model

_ANSWER_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_answer(text: str) -> Literal["yes", "no"] | None:
    """The first standalone "yes"/"no" word in ``text`` (any case), or ``None`` when there is none."""
    m = _ANSWER_RE.search(text)
    return None if m is None else m.group(1).lower()  # type: ignore[return-value]


def _answer_token_ids(model: Model) -> set[int]:
    """Token ids that settle an answer on their own (single-token spellings of yes/no): decoding can stop there."""
    out = set()
    for word in ("Yes", "yes", "YES", "No", "no", "NO"):
        for w in (word, " " + word):
            ids = M.encode(model, w)
            if len(ids) == 1:
                out.add(ids[0])
    return out


def _stop_token_ids(model: Model) -> set[int]:
    tok = model.tokenizer
    vocab = tok.get_vocab()
    ids = {tok.eos_token_id, tok.pad_token_id}
    ids |= {vocab[s] for s in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>") if s in vocab}
    return {i for i in ids if i is not None}


def _next_tokens(
    logits: Float[Tensor, "rows d_vocab"], n: int, temperature: float, generator: torch.Generator | None
) -> Int[Tensor, "rows n"]:
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True).expand(-1, n)
    probs = (logits.float() / temperature).softmax(-1).cpu()
    return torch.multinomial(probs, n, replacement=True, generator=generator).to(logits.device)


def _read_patch(model: Model, patch: tuple[Means, HeadMask] | None, n_generated: int) -> list[M.Hook]:
    """Hooks patching the prompt's read position once ``n_generated`` tokens follow it (none without a patch)."""
    if patch is None or not bool(patch[1].any()):
        return []
    return patch_hooks(model, patch[0], patch[1], pos=-(1 + n_generated))


USE_CACHE = True
"""Default of every ``use_cache`` argument here: decode over a key/value cache (the prompt once, then one token per
step); ``False``: a full forward per token, the reference (tests that script ``run_last_logits`` switch to it)."""


def _sampler(temperature: float, generator: torch.Generator) -> Callable[[Tensor, int], Tensor]:
    return lambda logits, n: _next_tokens(logits, n, temperature, generator)


def generate_answers(
    model: Model,
    texts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 6,
    seed: int = 0,
    batch_size: int = 4,
    show_progress: bool = False,
    desc: str = "generating",
    patch: tuple[Means, HeadMask] | None = None,
    use_cache: bool | None = None,
) -> list[list[str]]:
    """``n`` continuations of each prompt (greedy when ``temperature <= 0``), decoded to text: ``[len(texts)][n]``.

    The judges' generation path, through :func:`armlens.model.decode` (over a key/value cache unless ``use_cache``
    is False): the first token's distribution is computed once per prompt and sampled ``n`` times; a row stops at an
    end-of-turn token, at a token that is a yes/no word on its own, or after ``max_new_tokens``. Seeded (one
    generator per call). ``patch``: ``(means, mask)`` written into hook_z at the prompt's read position (its last
    token), as an ARM reads it; every later token attends to the patched position.
    """
    return _generate(model, texts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                     batch_size=batch_size, show_progress=show_progress, desc=desc, patch=patch,
                     use_cache=use_cache, settle=True)


def generate_responses(
    model: Model,
    prompts: Sequence[str | Sequence[dict[str, str]]],
    *,
    n: int = 1,
    temperature: float = 0.7,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 4,
    show_progress: bool = False,
    desc: str = "sampling",
    use_cache: bool | None = None,
) -> list[list[str]]:
    """``n`` assistant responses to each prompt (a user message, or a list of chat messages), chat-templated with a
    generation prompt: ``[len(prompts)][n]``. Sampled at ``temperature`` (greedy at 0), seeded; a row stops at an
    end-of-turn token or after ``max_new_tokens``."""
    texts = [M.apply_chat_template(model, [{"role": "user", "content": p}] if isinstance(p, str) else
                                   [dict(m) for m in p]) for p in prompts]
    return _generate(model, texts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                     batch_size=batch_size, show_progress=show_progress, desc=desc, patch=None,
                     use_cache=use_cache, settle=False)


def _generate(model: Model, texts: Sequence[str], *, n: int, temperature: float, max_new_tokens: int, seed: int,
              batch_size: int, show_progress: bool, desc: str, patch: tuple[Means, HeadMask] | None,
              use_cache: bool | None, settle: bool) -> list[list[str]]:
    if not texts:
        raise BadInputError("no prompts to generate from")
    if max_new_tokens < 1 or n < 1:
        raise BadInputError("generation needs max_new_tokens >= 1 and n >= 1")
    choose = _sampler(temperature, torch.Generator().manual_seed(seed))
    stop = _stop_token_ids(model)
    settle_ids = _answer_token_ids(model) if settle else set()
    out: list[list[str]] = [[] for _ in texts]
    for idx in tqdm(M.length_batches(texts, batch_size), desc=desc, disable=not show_progress, leave=False):
        tokens, attn = M.tokenize(model, [texts[i] for i in idx])
        generated = M.decode(model, tokens, attn, choose, max_new_tokens=max_new_tokens, n=n, stop_ids=stop,
                             settle_ids=settle_ids, hooks_at=lambda k: _read_patch(model, patch, k),
                             use_cache=USE_CACHE if use_cache is None else use_cache)
        for j, i in enumerate(idx):
            for k in range(n):
                ids = [t for t in generated[j * n + k] if t not in stop]
                out[i].append(model.tokenizer.decode(ids, skip_special_tokens=True))
    return out


def votes_to_scores(answers: Sequence[Sequence[str]]) -> tuple[Float[Tensor, " n"], dict[str, int]]:
    """Per prompt, the share of Yes answers (an unparseable answer counts one half) and the answer counts."""
    scores, counts = [], {"yes": 0, "no": 0, "unparseable": 0}
    for row in answers:
        parsed = [parse_answer(a) for a in row]
        for p in parsed:
            counts[p or "unparseable"] += 1
        scores.append(sum(1.0 if p == "yes" else 0.5 if p is None else 0.0 for p in parsed) / len(parsed))
    return torch.tensor(scores, dtype=torch.float32), counts
