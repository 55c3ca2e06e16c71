"""Token-by-token decoding, the one loop every generation in armlens runs: the prompt is run once and each new token
costs a one-token forward over the growing key/value cache (``use_cache=True``), or every step is a full forward
over prompt + generated tokens (``use_cache=False``, the reference the cached path is tested against).

Hooks: ``hooks_at(k)`` gives the hooks for a forward over the prompt followed by ``k`` generated tokens. The full
path calls it at every step; the cached path calls it once, ``hooks_at(0)``, for the prompt's forward, and decodes
without hooks. The two agree for hooks that only touch prompt positions, such as an ARM's patch at the prompt's read
position (``pos=-(1 + k)``): that position's keys and values are computed once, patched, and sit in the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from armlens.errors import BadInputError, SetupError
from armlens.model.hooks import Hook, hooks
from armlens.model.running import run_last_logits
from armlens.typing import Model

Chooser = Callable[[Tensor, int], Tensor]
"""``choose(logits [rows, d_vocab], n) -> token ids [rows, n]`` (greedy, sampling, ...)."""


class _FullSteps:
    """Every step a full forward over prompt + generated tokens (hooks re-applied at each step)."""

    def __init__(self, model: Model, tokens: Tensor, attn: Tensor, hooks_at: Callable[[int], list[Hook]]):
        self.model, self.tokens, self.attn, self.hooks_at = model, tokens, attn, hooks_at
        self.prompt_len = tokens.shape[1]

    def first(self) -> Tensor:
        return run_last_logits(self.model, self.tokens, self.attn, self.hooks_at(0))

    def expand(self, n: int) -> None:
        self.tokens, self.attn = self.tokens.repeat_interleave(n, 0), self.attn.repeat_interleave(n, 0)

    def next(self, col: Tensor, fed: Tensor, rows: Tensor) -> Tensor:
        self.tokens = torch.cat([self.tokens, col.unsqueeze(1)], dim=1)
        self.attn = torch.cat([self.attn, fed.to(self.attn.device, self.attn.dtype).unsqueeze(1)], dim=1)
        hooks = self.hooks_at(self.tokens.shape[1] - self.prompt_len)
        return run_last_logits(self.model, self.tokens[rows], self.attn[rows], hooks)


class _CachedSteps:
    """The prompt once (with its hooks), then one token per step over the key/value cache (every row, so the cache
    stays one batch; the logits of rows that already stopped are dropped)."""

    def __init__(self, model: Model, tokens: Tensor, attn: Tensor, prompt_hooks: list[Hook]):
        self.model, self.tokens, self.attn, self.prompt_hooks = model, tokens, attn, prompt_hooks
        self.past: Any = None

    def first(self) -> Tensor:
        with torch.inference_mode(), hooks(self.model, self.prompt_hooks):
            logits, self.past = self.model(self.tokens, return_type="logits_and_cache", use_cache=True,
                                           attention_mask=self.attn)
        if self.past is None or self.past.get_seq_length() != self.tokens.shape[1]:
            raise SetupError("the model returned no usable key/value cache; is transformers<5.24 installed? "
                             "(pass use_cache=False to decode with full forwards)")
        return logits[:, -1, :].float()

    def expand(self, n: int) -> None:
        self.attn = self.attn.repeat_interleave(n, 0)
        if n > 1:
            self.past.batch_repeat_interleave(n)

    def next(self, col: Tensor, fed: Tensor, rows: Tensor) -> Tensor:
        self.attn = torch.cat([self.attn, fed.to(self.attn.device, self.attn.dtype).unsqueeze(1)], dim=1)
        with torch.inference_mode():
            logits, self.past = self.model(col.unsqueeze(1), return_type="logits_and_cache", use_cache=True,
                                           past_key_values=self.past, attention_mask=self.attn)
        return logits[rows.to(logits.device), -1, :].float()


def decode(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    choose: Chooser,
    *,
    max_new_tokens: int,
    n: int = 1,
    stop_ids: Collection[int] = (),
    settle_ids: Collection[int] = (),
    hooks_at: Callable[[int], list[Hook]] | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Generated token ids of ``n`` continuations of each left-padded prompt: ``batch * n`` lists, row ``i * n + k``
    the ``k``-th continuation of prompt ``i``. The first token's distribution is computed once per prompt and drawn
    ``n`` times (``choose(logits, n)``); each later step calls ``choose(logits of the rows still going, 1)``, so a
    seeded sampler draws the same numbers on both paths. A row stops after a token of ``stop_ids`` (kept in its
    list), a token of ``settle_ids``, or ``max_new_tokens`` tokens."""
    if max_new_tokens < 1 or n < 1:
        raise BadInputError("decoding needs max_new_tokens >= 1 and n >= 1")
    hooks_at = hooks_at or (lambda k: [])
    steps = _CachedSteps(model, tokens, attention_mask, hooks_at(0)) if use_cache else \
        _FullSteps(model, tokens, attention_mask, hooks_at)
    stop, settle = set(stop_ids), set(settle_ids)
    first = choose(steps.first(), n)  # [batch, n]
    steps.expand(n)
    last = first.reshape(-1).to(tokens.device)
    generated: list[list[int]] = [[int(t)] for t in last.tolist()]
    active = torch.tensor([g[0] not in stop and g[0] not in settle for g in generated], dtype=torch.bool)
    fed = torch.ones_like(active)  # rows whose last token is real (chosen while the row was going)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    for _ in range(max_new_tokens - 1):
        if not bool(active.any()):
            break
        rows = active.nonzero().flatten()
        nxt = choose(steps.next(last, fed, rows), 1)[:, 0]
        fed = active.clone()
        last = torch.full_like(last, pad)
        last[rows.to(last.device)] = nxt.to(last.device)
        for r, t in zip(rows.tolist(), nxt.tolist(), strict=True):
            generated[r].append(int(t))
            if t in stop or t in settle:
                active[r] = False
    return generated
