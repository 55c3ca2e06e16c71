"""Direct logit attribution of a patch (armlens.analysis.attribution): the heads' effects plus the norm term are the
change through the direct path, measured by a run that pins every other path; the patched logits are the scoring
path's."""

from __future__ import annotations

import torch

from armlens.analysis.attribution import (
    direct_logit_attribution,
    direct_path_diff,
    mean_effects,
    pair_separation,
)
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.scoring import score_texts

TEMPLATE = JudgeTemplate(max_field_tokens=24)


def _setup(model):
    torch.manual_seed(0)
    cfg = model.cfg
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head) * 2.0
    mask = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = mask[1, 3] = True  # heads in both layers: the first one's path runs through the second
    texts = [scalar_prompt(model, Example(prompt=f"Say something about item {i}.", response=r, label=True,
                                          criterion="The response is kind."), TEMPLATE)
             for i, r in enumerate(["Sure, here it is.", "No.", "A longer answer, with several words in it."])]
    return means, mask, texts, AnswerIds.of(model, TEMPLATE)


def test_attributed_sum_equals_the_direct_path_change(tiny):
    means, mask, texts, ids = _setup(tiny)
    attr = direct_logit_attribution(tiny, texts, means, mask, ids, batch_size=2)
    assert attr.effects.shape == (3, tiny.cfg.n_layers, tiny.cfg.n_heads)
    assert torch.all(attr.effects[:, ~mask] == 0) and torch.all(attr.effects[:, mask] != 0)
    measured = direct_path_diff(tiny, texts, means, mask, ids) - attr.clean
    err = (attr.direct - measured).abs().max().item()
    assert err < 1e-4 * max(1.0, measured.abs().max().item()), err
    # the linearisation's remainder is real (not zero), and leaving it out misses the measured change
    assert attr.norm_term.abs().max() > 1e-4
    assert (attr.effects.sum((1, 2)) - measured).abs().max() > 10 * err
    # the patched logits are what the scoring path gives for the same patch; the indirect part is the rest
    want = score_texts(tiny, texts, means=means, mask=mask, answer_ids=ids, kind="logit_diff")
    assert torch.allclose(attr.patched, want.float(), atol=1e-4)
    assert torch.allclose(attr.clean + attr.direct + attr.indirect, attr.patched, atol=1e-5)


def test_pair_separation_and_means(tiny):
    means, mask, texts, ids = _setup(tiny)
    a = direct_logit_attribution(tiny, texts[:2], means, mask, ids)
    b = direct_logit_attribution(tiny, texts[1:], means, mask, ids)
    sep = pair_separation(a, b)
    assert torch.allclose(sep, a.effects - b.effects)
    assert torch.allclose(mean_effects([a, b]), torch.cat([a.effects, b.effects]).mean(0))
    # one head alone: its effect is the same as inside the set (a direct effect does not depend on the others'
    # writes except through the norm's scale)
    one = torch.zeros_like(mask)
    one[1, 0] = True
    alone = direct_logit_attribution(tiny, texts, means, one, ids)
    assert torch.all(alone.effects[:, ~one] == 0)


def test_a_prefix_pool_gives_the_same_attribution_as_full_forwards(tiny_any):
    """The pooled path (each prefix from a PrefixPool, the clean and patched last token as branches over it) equals
    the full forwards, on a plain and a grouped-query model; a second call runs no prefix again."""
    from armlens.model import PrefixPool

    means, mask, texts, ids = _setup(tiny_any)
    full = direct_logit_attribution(tiny_any, texts, means, mask, ids, batch_size=2)
    pool = PrefixPool(tiny_any, 100.0)
    pooled = direct_logit_attribution(tiny_any, texts, means, mask, ids, pool=pool)
    for k in ("effects", "norm_term", "clean", "patched"):
        assert torch.allclose(getattr(pooled, k), getattr(full, k), atol=1e-4, rtol=1e-4), k
    assert pool.misses == len(texts)
    direct_logit_attribution(tiny_any, texts, means, mask, ids, pool=pool)
    assert pool.misses == len(texts) and pool.hits == 3 * len(texts)
