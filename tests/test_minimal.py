"""Leave-one-out in one branch pass equals a full forward with the head removed; pruning keeps the accuracy it
promises and only removes heads."""

from __future__ import annotations

import pytest
import torch

from armlens.analysis.minimal import leave_one_out, prune, score_sets, without_each
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.scoring import score_texts

TEMPLATE = JudgeTemplate(max_field_tokens=24)


def _pairs(model, n=4):
    texts = []
    for i in range(n):
        for r in (f"Here is a kind and careful answer number {i}.", "No." * (1 + i % 3)):
            texts.append(scalar_prompt(model, Example(prompt=f"Tell me about item {i}.", response=r, label=True,
                                                      criterion="The response is helpful."), TEMPLATE))
    return texts


def _patch(model, seed=0, k=5):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g) * 3.0
    mask = torch.zeros(cfg.n_layers * cfg.n_heads, dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=g)[:k]] = True
    return means, mask.view(cfg.n_layers, cfg.n_heads)


def test_leave_one_out_branch_pass_equals_full_forward_without_the_head(tiny):
    texts = _pairs(tiny)
    means, mask = _patch(tiny)
    ids = AnswerIds.of(tiny, TEMPLATE)
    masks, heads = without_each(mask)
    assert masks.shape[0] == 1 + int(mask.sum()) and torch.equal(masks[0], mask)
    branch = score_sets(tiny, texts, means, masks, ids).scores
    for r in range(masks.shape[0]):
        if r:
            layer, head = heads[r - 1].tolist()
            assert not masks[r, layer, head] and int(masks[r].sum()) == int(mask.sum()) - 1
        full = score_texts(tiny, texts, means=means, mask=masks[r], answer_ids=ids)
        assert torch.allclose(branch[:, r], full.float(), atol=1e-5), r
    loo = leave_one_out(tiny, texts, means, mask, ids)
    assert loo.without.shape == (int(mask.sum()), 2) and sorted(loo.order()) == list(range(int(mask.sum())))


@pytest.mark.parametrize("margin", [0.1, 1.0])
def test_prune_keeps_its_promise(tiny, margin):
    texts = _pairs(tiny)
    means, mask = _patch(tiny, k=4)
    ids = AnswerIds.of(tiny, TEMPLATE)
    res = prune(tiny, texts, means, mask, ids, margin=margin, grid=4)
    assert torch.equal(res.mask & mask, res.mask)  # only removes
    assert res.accuracy >= res.full_accuracy - margin - 1e-9
    # the reported accuracy is the set's own, scored again
    again = float(score_sets(tiny, texts, means, res.mask[None], ids).accuracy[0])
    assert again == pytest.approx(res.accuracy)
    if margin == 1.0:  # anything holds: every head goes, and the set is the plain judge
        assert int(res.mask.sum()) == 0
    rec = res.to_dict()
    assert rec["n_heads"] == int(res.mask.sum()) and rec["n_full"] == 4


def test_a_prefix_pool_gives_the_same_scores_and_runs_each_prefix_once(tiny):
    from armlens.model import PrefixPool

    texts = _pairs(tiny)
    means, mask = _patch(tiny, k=4)
    ids = AnswerIds.of(tiny, TEMPLATE)
    masks, _ = without_each(mask)
    plain = score_sets(tiny, texts, means, masks, ids).scores
    pool = PrefixPool(tiny, 100.0)
    pooled = score_sets(tiny, texts, means, masks, ids, pool=pool).scores
    assert torch.allclose(pooled, plain, atol=1e-5)
    assert (pool.misses, pool.hits, len(pool)) == (len(texts), 0, len(texts))
    again = score_sets(tiny, texts, means, masks, ids, pool=pool).scores  # a later pass: branches only
    assert torch.equal(again, pooled) and (pool.misses, pool.hits) == (len(texts), len(texts))
    # the search itself: the same minimal set with and without the pool
    res = prune(tiny, texts, means, mask, ids, margin=0.1, grid=4)
    res_pool = prune(tiny, texts, means, mask, ids, margin=0.1, grid=4, pool=PrefixPool(tiny, 100.0))
    assert torch.equal(res.mask, res_pool.mask) and res.rounds == res_pool.rounds
