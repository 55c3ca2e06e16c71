"""Generation: the one decoding path of armlens (the generative and voting judges, the ablations' generative
reading), with one stop-token set and one yes/no parser.

Answers are a few tokens, so decoding is a plain loop of full forwards through :func:`armlens.model.run_last_logits`.
An ARM's patch, when given, is written at the prompt's read position (its last token) at every step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
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
) -> list[list[str]]:
    """``n`` continuations of each prompt (greedy when ``temperature <= 0``), decoded to text: ``[len(texts)][n]``.

    The one generation path of armlens. A plain loop of full forwards through :func:`armlens.model.run_last_logits`
    (answers are a few tokens): the first token's distribution is computed once per prompt and sampled ``n`` times;
    a row stops at an end-of-turn token, at a token that is a yes/no word on its own, or after ``max_new_tokens``.
    Seeded (one generator per call). ``patch``: ``(means, mask)`` written into hook_z at the prompt's read position
    (its last token) at every step, as an ARM reads it.
    """
    if not texts:
        raise ValueError("no prompts to generate from")
    if max_new_tokens < 1 or n < 1:
        raise ValueError("generation needs max_new_tokens >= 1 and n >= 1")
    gen = torch.Generator().manual_seed(seed)
    stop, settle = _stop_token_ids(model), _answer_token_ids(model)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    out: list[list[str]] = [[] for _ in texts]
    for idx in tqdm(M.length_batches(texts, batch_size), desc=desc, disable=not show_progress, leave=False):
        tokens, attn = M.tokenize(model, [texts[i] for i in idx])
        prompt_len = tokens.shape[1]
        first = _next_tokens(M.run_last_logits(model, tokens, attn, _read_patch(model, patch, 0)), n, temperature,
                             gen)  # [b, n]
        tokens = torch.cat([tokens.repeat_interleave(n, 0), first.reshape(-1, 1)], dim=1)
        attn = torch.cat([attn.repeat_interleave(n, 0), torch.ones_like(first.reshape(-1, 1))], dim=1)
        generated: list[list[int]] = [[int(t)] for t in first.reshape(-1)]
        active = torch.tensor([g[0] not in stop and g[0] not in settle for g in generated], dtype=torch.bool)
        for _ in range(max_new_tokens - 1):
            if not bool(active.any()):
                break
            rows = active.nonzero().flatten()
            hooks = _read_patch(model, patch, tokens.shape[1] - prompt_len)
            nxt = _next_tokens(M.run_last_logits(model, tokens[rows], attn[rows], hooks), 1, temperature, gen)[:, 0]
            col = torch.full((tokens.shape[0], 1), pad, dtype=tokens.dtype, device=tokens.device)
            col[rows.to(tokens.device), 0] = nxt
            tokens = torch.cat([tokens, col], dim=1)
            attn = torch.cat([attn, active.to(attn.device, attn.dtype).unsqueeze(1)], dim=1)
            for r, t in zip(rows.tolist(), nxt.tolist(), strict=True):
                generated[r].append(int(t))
                if t in stop:
                    active[r] = False
            for r in rows.tolist():  # a yes/no token settles the answer
                if active[r] and generated[r][-1] in settle:
                    active[r] = False
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
