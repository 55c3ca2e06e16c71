"""The fast path: keys/values of every token but the last computed once (:class:`PrefixCache`, shared in a bounded
:class:`PrefixPool`), then any number of last-token runs over them, K head masks as K side-by-side branches in one
forward (:func:`run_cached_branches`).

An ARM only changes hook_z at the last position, so every earlier position's keys and values are the same whatever
heads are patched.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from armlens.errors import BadInputError, SetupError
from armlens.model.hooks import Hook, hooks, last_z_readers
from armlens.model.multimodal import image_hooks
from armlens.model.tokens import tokenize
from armlens.typing import Model


@dataclass
class PrefixCache:
    """Keys/values of every token but the last, computed once and reused for any number of last-token runs.

    An ARM only changes hook_z at the last position, so every earlier position's keys and values are the same
    whatever heads are patched: the prefix is run once and each head mask costs a single-token forward.
    """

    past: Any
    """Hugging Face ``DynamicCache`` for the prefix (never mutated: runs work on copies)."""
    last_tokens: Int[Tensor, "batch 1"]
    """The last real token of each row."""
    attention_mask: Int[Tensor, "batch pos"]
    """Mask over prefix + last token (left padding)."""

    @property
    def batch(self) -> int:
        return int(self.last_tokens.shape[0])


def prefix_cache(
    model: Model, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"]
) -> PrefixCache:
    """Run all positions but the last once and keep their key/value cache."""
    if tokens.shape[1] < 2:
        raise BadInputError("the prefix cache needs prompts of at least two tokens")
    prefix, images = image_hooks(model, tokens[:, :-1])
    with torch.inference_mode(), hooks(model, images):
        _, past = model(
            prefix, return_type="logits_and_cache", use_cache=True, attention_mask=attention_mask[:, :-1]
        )
    if past is None or past.get_seq_length() != tokens.shape[1] - 1:
        raise SetupError(
            "the model returned no usable key/value cache; is transformers<5.24 installed? "
            "(transformers 5.24 renamed the cache argument TransformerLens 4.3 reads)"
        )
    return PrefixCache(past=past, last_tokens=tokens[:, -1:], attention_mask=attention_mask)


def shared_prefix(model: Model, tokens: Int[Tensor, "1 pos"]) -> Any:
    """Key/value cache of *all* of ``tokens`` (one unpadded row): a prefix several prompts share, run once and
    then extended per prompt by :func:`extend_prefix` (e.g. in-context demonstrations, or the judge prompt up to the
    response that a pair's chosen and rejected prompts have in common)."""
    if tokens.ndim != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
        raise BadInputError(f"shared_prefix() takes one non-empty row of token ids, got shape {tuple(tokens.shape)}")
    run, images = image_hooks(model, tokens)
    with torch.inference_mode(), hooks(model, images):
        _, past = model(run, return_type="logits_and_cache", use_cache=True,
                        attention_mask=torch.ones_like(tokens))
    if past is None or past.get_seq_length() != tokens.shape[1]:
        raise SetupError("the model returned no usable key/value cache; is transformers<5.24 installed?")
    return past


def extend_prefix(model: Model, shared: Any, tokens: Int[Tensor, "1 pos"]) -> PrefixCache:
    """The :class:`PrefixCache` of one unpadded prompt whose first ``shared.get_seq_length()`` tokens are already in
    ``shared`` (from :func:`shared_prefix`; copied, never mutated): only the tokens between the shared part and the
    last token are run (none when the prompt's prefix is exactly the shared part)."""
    n_shared = shared.get_seq_length()
    if tokens.shape[0] != 1 or tokens.shape[1] <= n_shared:
        raise BadInputError(f"the prompt ({tokens.shape[1]} tokens) must be longer than its shared prefix ({n_shared})")
    past = shared
    if tokens.shape[1] - 1 > n_shared:
        past = copy.deepcopy(shared)
        run, images = image_hooks(model, tokens[:, n_shared:-1])
        with torch.inference_mode(), hooks(model, images):
            model(run, return_type="logits_and_cache", use_cache=True, past_key_values=past,
                  attention_mask=torch.ones_like(tokens[:, :-1]))
        if past.get_seq_length() != tokens.shape[1] - 1:
            raise SetupError("extending a shared prefix cache did not grow it; is transformers<5.24 installed?")
    return PrefixCache(past=past, last_tokens=tokens[:, -1:], attention_mask=torch.ones_like(tokens))


def run_cached_continuation(model: Model, shared: Any, tokens: Int[Tensor, "1 pos"]) -> Float[Tensor, "1 pos d_vocab"]:
    """Logits at every position of ``tokens`` (one unpadded row) run after a :func:`shared_prefix` cache (copied,
    never mutated): what a full forward of prefix + ``tokens`` gives at those positions, for the cost of ``tokens``
    alone (e.g. several responses' likelihoods after one prompt)."""
    if tokens.ndim != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
        raise BadInputError(f"run_cached_continuation() takes one non-empty row of token ids, got {tuple(tokens.shape)}")
    past = copy.deepcopy(shared)
    n = shared.get_seq_length() + tokens.shape[1]
    with torch.inference_mode():
        logits = model(tokens, past_key_values=past, attention_mask=torch.ones(1, n, dtype=torch.long,
                                                                                device=tokens.device))
    return logits.float()


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Number of leading token ids every row has in common (0 for no rows)."""
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


class PrefixPool:
    """Prefix caches of single prompts, keyed by text, computed on first use, kept in an LRU bounded in megabytes.

    Shared by extraction (``per_example`` prompts are REINFORCE's training prompts) and head selection, so each
    training prompt's prefix is run once per fit. On the default model a cache costs ~46 KB per prompt token.
    """

    def __init__(self, model: Model, max_mb: float | int = 1500.0):
        self.model, self.max_bytes = model, int(max_mb * 2**20)
        self._cache: OrderedDict[str, tuple[PrefixCache, int]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, text: str) -> PrefixCache:
        if text in self._cache:
            self._cache.move_to_end(text)
            self.hits += 1
            return self._cache[text][0]
        self.misses += 1
        cache = prefix_cache(self.model, *tokenize(self.model, [text]))
        size = _cache_bytes(cache.past)
        if size <= self.max_bytes:
            self._cache[text] = (cache, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._cache.popitem(last=False)
                self.bytes -= dropped
        return cache

    __getitem__ = get

    def __len__(self) -> int:
        return len(self._cache)


def _cache_bytes(past: Any) -> int:
    """Bytes held by a ``DynamicCache``'s keys and values."""
    return sum(t.numel() * t.element_size() for layer in past.layers for t in (layer.keys, layer.values))


def run_cached_last_logits(
    model: Model, cache: PrefixCache, fwd_hooks: Sequence[Hook] = ()
) -> Float[Tensor, "batch d_vocab"]:
    """Last-token logits over a shared prefix cache: only the last token is run (hooks see ``pos == 1``)."""
    past = copy.deepcopy(cache.past)
    with torch.inference_mode():
        logits = model.run_with_hooks(cache.last_tokens, fwd_hooks=list(fwd_hooks),
                                      attention_mask=cache.attention_mask, past_key_values=past)
    return logits[:, -1, :].float()


def run_cached_branches(
    model: Model, cache: PrefixCache, n_branches: int, fwd_hooks: Sequence[Hook] = (), *, differentiable: bool = False
) -> Float[Tensor, "batch branch d_vocab"]:
    """Last-token logits for ``n_branches`` copies of each prompt's last token, in one forward over the prefix cache.

    The copies sit side by side as extra positions that share one position id and attend to the prefix and to
    themselves only (a block-diagonal 4D mask), so K head masks cost one forward with K new positions and *no* copy
    of the prefix cache per mask (K calls of :func:`run_cached_last_logits` would run the last token K times).
    Hooks see hook_z of shape ``[batch, n_branches, n_heads, d_head]``: position i is branch i
    (:func:`armlens.patching.patch_branch_hooks` patches branch i with mask i).

    ``differentiable``: run with autograd on (not in inference mode), so that the logits carry a graph back to any
    tensor a hook mixed in that requires grad (soft head weights, :mod:`armlens.soft`). The prefix cache is a copy of
    plain tensors that require no grad, so the backward pass runs through the last token's branches only, never
    through the prefix; the model's weights are untouched (take gradients with ``torch.autograd.grad(loss, [w])``,
    which fills no ``.grad`` of the model's parameters).
    """
    batch, k = cache.batch, n_branches
    prefix_mask = cache.attention_mask[:, :-1].bool()
    p = prefix_mask.shape[1]
    keep = torch.zeros(batch, 1, k, p + k, dtype=torch.bool, device=prefix_mask.device)
    keep[:, 0, :, :p] = prefix_mask[:, None, :]
    keep[:, 0, :, p:] = torch.eye(k, dtype=torch.bool, device=prefix_mask.device)
    positions = prefix_mask.sum(-1, keepdim=True).expand(batch, k)
    tokens = cache.last_tokens.expand(batch, k)
    past = copy.deepcopy(cache.past)
    with contextlib.nullcontext() if differentiable else torch.inference_mode():
        logits = model.run_with_hooks(
            tokens, fwd_hooks=list(fwd_hooks), attention_mask=keep, position_ids=positions, past_key_values=past
        )
    return logits.float()


def capture_cached_hook_z_and_logits(
    model: Model, cache: PrefixCache, fwd_hooks: Sequence[Hook] = ()
) -> tuple[Float[Tensor, "batch n_layers n_heads d_head"], Float[Tensor, "batch d_vocab"]]:
    """:func:`capture_hook_z_and_logits` over a prefix cache: only the last token is run."""
    out, readers = last_z_readers(model.cfg.n_layers)
    logits = run_cached_last_logits(model, cache, list(fwd_hooks) + readers)
    return torch.stack(out, dim=1), logits  # type: ignore[arg-type]
