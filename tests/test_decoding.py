"""Generation over a key/value cache (:func:`armlens.model.decode`) agrees token for token with one full forward per
token, with and without an ARM's patch at the read position; the default model's greedy answers too (``slow``)."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M
from armlens.generation import generate_answers, generate_responses

PROMPTS = ["Hello there, how are you today?", "Hi", "Name a colour."]


def _greedy(logits, n):
    return logits.argmax(-1, keepdim=True).expand(-1, n)


def _seeded_sampler(seed):
    gen = torch.Generator().manual_seed(seed)
    return lambda logits, n: torch.multinomial(logits.softmax(-1), n, replacement=True, generator=gen)


def _tokens(model):
    return M.tokenize(model, [M.apply_chat_template(model, [{"role": "user", "content": p}]) for p in PROMPTS])


@pytest.mark.usefixtures("one_thread")
def test_cached_decoding_matches_full_forwards(tiny_any):
    tokens, attn = _tokens(tiny_any)
    assert (attn == 0).any(), "the prompts should need left padding"
    cached = M.decode(tiny_any, tokens, attn, _greedy, max_new_tokens=10, use_cache=True)
    full = M.decode(tiny_any, tokens, attn, _greedy, max_new_tokens=10, use_cache=False)
    assert cached == full and all(len(g) == 10 for g in cached)
    # sampling n per prompt: the same seeded draws on both paths
    cached = M.decode(tiny_any, tokens, attn, _seeded_sampler(3), max_new_tokens=8, n=3, use_cache=True)
    full = M.decode(tiny_any, tokens, attn, _seeded_sampler(3), max_new_tokens=8, n=3, use_cache=False)
    assert cached == full and len(cached) == 3 * len(PROMPTS)
    # a row stops at its stop token; the others go on
    stop = {cached[0][2]}
    short = M.decode(tiny_any, tokens, attn, _seeded_sampler(3), max_new_tokens=8, n=3, stop_ids=stop)
    assert short[0] == cached[0][:3] and any(len(g) == 8 for g in short)


@pytest.mark.usefixtures("one_thread")
def test_patch_at_the_read_position_applies_while_decoding(tiny):
    texts = [M.apply_chat_template(tiny, [{"role": "user", "content": p}]) for p in PROMPTS]
    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(tiny.cfg.n_layers, tiny.cfg.n_heads, tiny.cfg.d_head, generator=g)
    mask = torch.zeros(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    mask[0, :2] = True
    kw = {"max_new_tokens": 8, "batch_size": 3}
    cached = generate_answers(tiny, texts, patch=(means, mask), use_cache=True, **kw)
    assert cached == generate_answers(tiny, texts, patch=(means, mask), use_cache=False, **kw)
    assert cached != generate_answers(tiny, texts, use_cache=True, **kw), "the patch changed nothing"


@pytest.mark.usefixtures("one_thread")
def test_generate_responses_is_seeded(tiny):
    a = generate_responses(tiny, PROMPTS[:2], n=2, max_new_tokens=6, seed=1)
    assert a == generate_responses(tiny, PROMPTS[:2], n=2, max_new_tokens=6, seed=1, use_cache=False)
    assert a != generate_responses(tiny, PROMPTS[:2], n=2, max_new_tokens=6, seed=2)
    assert [len(r) for r in a] == [2, 2]
    chat = [{"role": "user", "content": PROMPTS[0]}]
    assert generate_responses(tiny, [chat], max_new_tokens=6, temperature=0.0) == \
        generate_responses(tiny, [PROMPTS[0]], max_new_tokens=6, temperature=0.0)


@pytest.mark.slow
def test_default_model_cached_greedy_decoding_matches(default_model):
    tokens, attn = _tokens(default_model)
    cached = M.decode(default_model, tokens, attn, _greedy, max_new_tokens=16, use_cache=True)
    full = M.decode(default_model, tokens, attn, _greedy, max_new_tokens=16, use_cache=False)
    assert cached == full
