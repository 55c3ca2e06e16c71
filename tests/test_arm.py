"""The ARM core, tested by invariants on tiny random models (multi-head and grouped-query)."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest
import torch

from armlens import model as M
from armlens import testing as T
from armlens.activations import (
    ExtractionConfig,
    MeanEstimator,
    WeightedPCAEstimator,
    extract_means,
    extraction_prompts,
    make_estimator,
)
from armlens.data.records import PreferencePair
from armlens.patching import (
    capture_last_z,
    mask_labels,
    parse_heads,
    patch,
    patch_hooks,
    patched,
    single_head_masks,
)
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.rm import ActivationRM, ARMConfig
from armlens.scoring import score_from_logits, score_texts
from armlens.selection import (
    ReinforceConfig,
    mask_losses,
    mask_losses_reference,
    reinforce,
    select_heads,
    single_head_effects,
)

SHORT = JudgeTemplate(max_field_tokens=24)


def icl(**settings) -> ExtractionConfig:
    """An ``icl`` extraction with the short template."""
    return ExtractionConfig("icl", template=SHORT, **settings)
FAST_PATH_ATOL = 1e-4


def make_pairs(n: int = 8) -> list[PreferencePair]:
    topics = ["the sea", "bread", "a cat", "rain", "music", "trains", "tea", "chess", "snow", "maps"]
    return [
        PreferencePair(
            id=f"toy/{i}", source="toy", subset="toy", prompt=f"Tell me about {topics[i % len(topics)]}.",
            chosen=f"Here is a short, accurate note about {topics[i % len(topics)]}.", rejected="No." * (1 + i % 3),
        )
        for i in range(n)
    ]


def texts_for(model, n=3):
    exs = [Example(p.prompt, p.chosen if i % 2 else p.rejected, None) for i, p in enumerate(make_pairs(n))]
    return [scalar_prompt(model, e, SHORT) for e in exs]


def random_means(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, generator=g)


def test_empty_mask_gives_unpatched_scores(tiny_any):
    texts = texts_for(tiny_any)
    plain = score_texts(tiny_any, texts)
    empty = torch.zeros(tiny_any.cfg.n_layers, tiny_any.cfg.n_heads, dtype=torch.bool)
    tokens, attn = M.tokenize(tiny_any, texts)
    ids = AnswerIds.of(tiny_any)
    hooked = M.run_last_logits(tiny_any, tokens, attn, patch_hooks(tiny_any, random_means(tiny_any), empty))
    torch.testing.assert_close(score_from_logits(hooked, ids.yes, ids.no), plain)
    torch.testing.assert_close(score_texts(tiny_any, texts, means=random_means(tiny_any), mask=empty), plain)


def test_patching_own_activations_is_a_noop(tiny_any):
    text = texts_for(tiny_any, 1)[0]
    z, logits = capture_last_z(tiny_any, [text])
    full = torch.ones(tiny_any.cfg.n_layers, tiny_any.cfg.n_heads, dtype=torch.bool)
    tokens, attn = M.tokenize(tiny_any, [text])
    again = M.run_last_logits(tiny_any, tokens, attn, patch_hooks(tiny_any, z[0], full))
    torch.testing.assert_close(again, logits, atol=1e-5, rtol=1e-5)
    # ...while patching other activations does change the output (the check can fail)
    other = M.run_last_logits(tiny_any, tokens, attn, patch_hooks(tiny_any, random_means(tiny_any), full))
    assert not torch.allclose(other, logits, atol=1e-3)


def test_mean_of_one_example_is_that_example(tiny_any):
    ex = Example("Say hi.", "Hi!", True)
    text = scalar_prompt(tiny_any, ex, SHORT)
    z, _ = capture_last_z(tiny_any, [text])
    ext = extract_means(tiny_any, [ex], ExtractionConfig("mean_ablation", template=SHORT), show_progress=False)
    torch.testing.assert_close(ext.means, z[0])
    assert ext.n_prompts == 1


def test_batched_equals_one_by_one_under_padding(tiny_any):
    texts = texts_for(tiny_any, 5)
    means = random_means(tiny_any)
    mask = torch.rand(tiny_any.cfg.n_layers, tiny_any.cfg.n_heads, generator=torch.Generator().manual_seed(1)) < 0.5
    batched = score_texts(tiny_any, texts, means=means, mask=mask, batch_size=5, kind="logit_diff")
    single = score_texts(tiny_any, texts, means=means, mask=mask, batch_size=1, kind="logit_diff")
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    # running means are batch-size independent too
    exs = [Example(p.prompt, p.chosen, True) for p in make_pairs(5)]
    a = extract_means(tiny_any, exs, ExtractionConfig("mean_ablation", template=SHORT, batch_size=5), show_progress=False).means
    b = extract_means(tiny_any, exs, ExtractionConfig("mean_ablation", template=SHORT, batch_size=1), show_progress=False).means
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_per_row_masks_equal_separate_runs(tiny_gqa):
    text = texts_for(tiny_gqa, 1)[0]
    means = random_means(tiny_gqa)
    masks = torch.rand(3, tiny_gqa.cfg.n_layers, tiny_gqa.cfg.n_heads, generator=torch.Generator().manual_seed(2)) < 0.4
    tokens, attn = M.tokenize(tiny_gqa, [text] * 3)
    rows = M.run_last_logits(tiny_gqa, tokens, attn, patch_hooks(tiny_gqa, means, masks))
    for r in range(3):
        one = M.run_last_logits(tiny_gqa, tokens[:1], attn[:1], patch_hooks(tiny_gqa, means, masks[r]))
        torch.testing.assert_close(rows[r : r + 1], one, atol=1e-5, rtol=1e-5)


def test_fast_path_equals_full_recomputation(tiny_any):
    """Losses of K masks over a shared prefix cache equal one full forward per mask, with padded batches."""
    texts = texts_for(tiny_any, 2)
    means = random_means(tiny_any)
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(6, tiny_any.cfg.n_layers, tiny_any.cfg.n_heads, generator=g) < 0.5
    masks[0] = False
    ids = AnswerIds.of(tiny_any)
    gold = torch.tensor([ids.yes, ids.no])
    cache = M.prefix_cache(tiny_any, *M.tokenize(tiny_any, texts))  # two prompts of different lengths: padded
    fast = mask_losses(tiny_any, cache, means, masks, gold, chunk=4)
    for b, text in enumerate(texts):
        ref = mask_losses_reference(tiny_any, text, means, masks, int(gold[b]))
        torch.testing.assert_close(fast[b], ref, atol=FAST_PATH_ATOL, rtol=FAST_PATH_ATOL)


def test_hooks_never_outlive_the_call(tiny):
    texts = texts_for(tiny, 2)
    base = score_texts(tiny, texts)
    means = random_means(tiny)
    mask = torch.ones(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    with patched(tiny, means, mask):
        inside = score_texts(tiny, texts)
    assert not torch.allclose(inside, base)
    torch.testing.assert_close(score_texts(tiny, texts), base)
    with pytest.raises(RuntimeError, match="boom"):
        with patched(tiny, means, mask):
            raise RuntimeError("boom")
    torch.testing.assert_close(score_texts(tiny, texts), base)
    handle = patch(tiny, means, mask)
    torch.testing.assert_close(score_texts(tiny, texts), inside)
    handle.remove()
    handle.remove()  # idempotent
    torch.testing.assert_close(score_texts(tiny, texts), base)


def test_parse_heads():
    mask = parse_heads("L1H2, L0H0", 2, 4)
    assert mask.sum() == 2 and mask[1, 2] and mask[0, 0]
    assert parse_heads([(1, 3)], 2, 4)[1, 3]
    with pytest.raises(ValueError, match="outside"):
        parse_heads("L5H0", 2, 4)
    with pytest.raises(ValueError, match="bad head label"):
        parse_heads("head3", 2, 4)


def test_single_head_masks_hold_nothing_then_each_head_alone():
    masks = single_head_masks(2, 3)
    assert masks.shape == (7, 2, 3) and not masks[0].any()
    assert [mask_labels(m) for m in masks[1:]] == [["L0H0"], ["L0H1"], ["L0H2"], ["L1H0"], ["L1H1"], ["L1H2"]]


def test_bad_means_shape_is_refused(tiny):
    with pytest.raises(ValueError, match="n_layers, n_heads, d_head"):
        patch_hooks(tiny, torch.zeros(3, 3, 3), torch.ones(3, 3, dtype=torch.bool))


def test_score_kinds():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0]])
    p = logits.softmax(-1)[0]
    torch.testing.assert_close(score_from_logits(logits, 0, 2, "prob"), p[0:1])
    torch.testing.assert_close(score_from_logits(logits, 0, 2, "normalized"), (p[0] / (p[0] + p[2])).view(1))
    torch.testing.assert_close(score_from_logits(logits, 0, 2, "logit_diff"), torch.tensor([1.0]))
    with pytest.raises((ValueError, TypeError)):  # TypeError: the runtime type checker catches it first
        score_from_logits(logits, 0, 2, "bogus")


# ------------------------------------------------------------------------------------------------- estimators


def test_wpca_recovers_the_mean_along_a_dominant_direction():
    g = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    coef = 2 + torch.rand(50, generator=g)
    noise = 0.01 * torch.randn(50, 8, generator=g)
    z = (coef[:, None] * direction + noise).view(50, 1, 1, 8)
    labels, conf = torch.ones(50, dtype=torch.bool), torch.ones(50)
    mean, wpca, full_rank = MeanEstimator(), WeightedPCAEstimator(rank=1), WeightedPCAEstimator(rank=8)
    for est in (mean, wpca, full_rank):
        est.update(z, labels, conf)
    torch.testing.assert_close(full_rank.result(), mean.result(), atol=1e-5, rtol=1e-5)  # rank = d_head: the mean
    denoised = wpca.result()[0, 0]
    # the rank-1 estimate lies on the direction and keeps the mean's projection on it
    torch.testing.assert_close(denoised, (mean.result()[0, 0] @ direction) * direction, atol=1e-2, rtol=0)
    assert (denoised - mean.result()[0, 0]).norm() > 0  # the noise component was removed


def test_wpca_confidence_weighting_weights_examples():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 1, 2)
    labels = torch.ones(2, dtype=torch.bool)
    est = WeightedPCAEstimator(rank=2, weighting="confidence")
    est.update(z, labels, torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(est.result()[0, 0], torch.tensor([0.75, 0.25]))


def test_stacked_estimators():
    z = torch.tensor([0.0, 1.0, 2.0, 100.0]).view(4, 1, 1, 1)
    labels = torch.tensor([True, True, False, False])
    conf = torch.ones(4)
    med, diff = make_estimator("median"), make_estimator("class_diff")
    trim = make_estimator("trimmed_mean", trim=0.25)
    for est in (med, diff, trim):
        est.update(z, labels, conf)
    assert float(med.result()) == 1.0  # torch's lower median
    assert float(trim.result()) == 1.5
    assert float(diff.result()) == pytest.approx(25.75 + 0.5 - 51.0)
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("nope")


@pytest.mark.parametrize("layout", ["turns", "lines"])
def test_icl_extraction_prompts_are_balanced_and_seeded(tiny, layout):
    exs = [e for i in range(6) for e in (Example(f"q{i}", f"good{i}", True), Example(f"q{i}", f"bad{i}", False))]
    ep = extraction_prompts(tiny, exs, icl(demos_per_class=2, n_trials=6, icl_layout=layout, seed=5))
    again = extraction_prompts(tiny, exs, icl(demos_per_class=2, n_trials=6, icl_layout=layout, seed=5))
    assert ep.texts == again.texts and len(ep.texts) == 6
    assert ep.gold == [True, False] * 3  # queries alternate Yes/No
    yes, no = ("<|im_start|>assistant\nYes<|im_end|>", "<|im_start|>assistant\nNo<|im_end|>") if layout == "turns" \
        else ("Answer Yes or No. Yes", "Answer Yes or No. No")
    for t in ep.texts:  # 2 Yes and 2 No demonstrations answered, one query left open
        assert t.count(yes) == 2 and t.count(no) == 2
        assert t.endswith("<|im_start|>assistant\n")
        assert t.count("<|im_start|>user") == (5 if layout == "turns" else 1)
        # the query's prompt is never a demonstration's (no sibling of a demonstration is asked)
        prompts = [seg.split("Prompt:\n")[1].split("\n")[0] for seg in t.split("Criterion:")[1:]]
        assert prompts[-1] not in prompts[:-1]
    with pytest.raises(ValueError, match="labelled"):
        extraction_prompts(tiny, [Example("q", "a", None)], ExtractionConfig("mean_ablation"))
    with pytest.raises(ValueError, match="no labelled examples"):
        extraction_prompts(tiny, [], icl())
    with pytest.raises(ValueError, match="at least 3 Yes and 3 No"):
        extraction_prompts(tiny, exs[:4], icl(demos_per_class=3))
    two = extraction_prompts(tiny, exs[:4], icl(n_trials=4))  # two pairs suffice
    assert len(two.texts) == 4 and two.sibling_queries == 0
    with pytest.raises(ValueError, match="other responses"):  # one pair: no query that is not a demonstration
        extraction_prompts(tiny, exs[:2], icl())
    # one prompt with several responses (an HHH dialogue): the query is another response to it, counted
    one = [Example("q0", f"answer {j}", j % 2 == 0) for j in range(4)]
    ep_one = extraction_prompts(tiny, one, icl(n_trials=4))
    assert ep_one.sibling_queries == 4
    for t in ep_one.texts:
        blocks = t.split("Response:\n")[1:]
        query, demos = blocks[-1].split("\n")[0], [b.split("\n")[0] for b in blocks[:-1]]
        assert query not in demos  # never a demonstration, never a duplicate of one


def test_answered_reading_reads_the_answer_token(tiny_any):
    """``answered`` reads hook_z at the gold answer token appended to the judge prompt (a full forward agrees)."""
    ex_yes, ex_no = Example("Say hi.", "Hi!", True), Example("Say hi.", "Hi!", False)
    ep = extraction_prompts(tiny_any, [ex_yes, ex_no], ExtractionConfig("answered", template=SHORT))
    ids = AnswerIds.of(tiny_any)
    for text, want in zip(ep.texts, (ids.yes, ids.no), strict=True):
        assert M.tokenize(tiny_any, [text])[0][0, -1].item() == want
    yes = extract_means(tiny_any, [ex_yes], ExtractionConfig("answered", template=SHORT), show_progress=False)
    z, _ = capture_last_z(tiny_any, [ep.texts[0]])
    torch.testing.assert_close(yes.means, z[0])


def test_label_carrying_readings_recover_a_planted_answer_direction(tiny_any):
    """Planted signal: the same texts under flipped labels. The unlabelled reading cannot tell the labelings apart
    (identical means); both label-carrying readings can, and the answered reading's difference is exactly the
    planted answer direction: hook_z at a Yes answer token minus at a No answer token."""
    texts = [("Name a colour.", "Blue."), ("Count to two.", "One, two."), ("Greet me.", "Hello!"),
             ("Say a fruit.", "Apple."), ("Name a month.", "May.")]
    labelled = [Example(p, r, i % 2 == 0) for i, (p, r) in enumerate(texts) for _ in (0,)]
    labelled += [Example(p, r + " Indeed.", i % 2 == 1) for i, (p, r) in enumerate(texts)]
    flipped = [Example(e.prompt, e.response, not e.label) for e in labelled]

    def mu(reading, exs):
        return extract_means(tiny_any, exs, ExtractionConfig(reading, n_trials=8, template=SHORT),
                             show_progress=False).means

    torch.testing.assert_close(mu("mean_ablation", labelled), mu("mean_ablation", flipped))
    for reading in ("icl", "answered"):
        assert not torch.allclose(mu(reading, labelled), mu(reading, flipped), atol=1e-4), reading
    all_yes = [Example(e.prompt, e.response, True) for e in labelled]
    all_no = [Example(e.prompt, e.response, False) for e in labelled]
    direction = mu("answered", all_yes) - mu("answered", all_no)
    yes_z = capture_last_z(tiny_any, extraction_prompts(tiny_any, all_yes, ExtractionConfig("answered", template=SHORT)).texts)[0]
    no_z = capture_last_z(tiny_any, extraction_prompts(tiny_any, all_no, ExtractionConfig("answered", template=SHORT)).texts)[0]
    torch.testing.assert_close(direction, (yes_z - no_z).mean(0), atol=1e-5, rtol=1e-4)
    assert float(direction.norm()) > 1e-3


# ------------------------------------------------------------------------------------------------- REINFORCE


def planted_model(target=(1, 2)):
    """A tiny model in which head ``target`` alone decides Yes vs No when its last-token output is patched.

    Last-layer o_proj keeps only the target head's columns, writing along one residual direction v; the unembedding
    gives Yes +v and No -v. Patching the target head with ``+e`` pushes every answer to Yes; other heads cannot.
    """
    model = T.tiny_model(n_layers=2, n_heads=4, n_key_value_heads=2, d_head=16, seed=7)
    hf = model.original_model
    layer, head = target
    d_head, d_model = model.cfg.d_head, model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(d_model, generator=g), dim=0)
    e = torch.nn.functional.normalize(torch.randn(d_head, generator=g), dim=0)
    ids = AnswerIds.of(model)
    with torch.no_grad():
        o = hf.model.layers[layer].self_attn.o_proj.weight
        o.zero_()
        o[:, head * d_head : (head + 1) * d_head] = torch.outer(v, e) * 3.0
        w = hf.lm_head.weight
        w[ids.yes] += 40.0 * v
        w[ids.no] -= 40.0 * v
    means = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, d_head)
    means[layer, head] = 4.0 * e
    return model, means


def test_reinforce_finds_the_planted_head():
    model, means = planted_model(target=(1, 2))
    exs = [Example(p.prompt, p.chosen, True) for p in make_pairs(6)]
    cfg = ReinforceConfig(steps=60, k_masks=16, n_final_samples=6, n_final_eval=6, seed=0, objective="answer",
                          lr=0.1)  # the reference's rate: the planted head rises alone
    result = reinforce(model, means, exs, cfg, template=SHORT, show_progress=False)
    assert result.mask[1, 2], f"planted head not selected: {result.mask}"
    assert result.probs[1, 2] > 0.9 and int(result.probs.flatten().argmax()) == 1 * 4 + 2
    # today's default rate (1.0) settles every head within the steps: the planted one is chosen and certain, but
    # heads without an effect are settled too, either way (the trade-off docs/defaults.md reports)
    fast = reinforce(model, means, exs, dataclasses.replace(cfg, lr=ReinforceConfig().lr), template=SHORT,
                     show_progress=False)
    assert ReinforceConfig().lr == 1.0 and fast.mask[1, 2] and fast.probs[1, 2] > 0.99
    assert int(((fast.probs > 0.1) & (fast.probs < 0.9)).sum()) <= 1
    assert result.losses[-1] < result.losses[0]
    assert result.prob_trajectory.shape == (60, 2, 4) and len(result.expected_heads) == 60
    # ...and the single-head attribution sweep agrees
    effects = single_head_effects(model, means, exs, template=SHORT, show_progress=False)
    assert int(effects.flatten().argmax()) == 1 * 4 + 2 and effects[1, 2] > 1.0


def test_reinforce_is_seeded(tiny):
    exs = [Example(p.prompt, p.chosen, i % 2 == 0) for i, p in enumerate(make_pairs(4))]
    means = random_means(tiny)
    cfg = ReinforceConfig(steps=4, k_masks=8, n_final_samples=3, n_final_eval=2, seed=11, objective="answer")
    a = reinforce(tiny, means, exs, cfg, template=SHORT, show_progress=False)
    b = reinforce(tiny, means, exs, cfg, template=SHORT, show_progress=False)
    torch.testing.assert_close(a.prob_trajectory, b.prob_trajectory)
    assert torch.equal(a.mask, b.mask) and a.losses == b.losses


def test_final_choice_likely_is_the_same_runs_most_likely_mask(tiny):
    """``final="likely"`` changes only the last choice: the same policy, its heads with P(select) > 0.5."""
    import dataclasses

    exs = [Example(p.prompt, p.chosen, i % 2 == 0) for i, p in enumerate(make_pairs(4))]
    means = random_means(tiny)
    cfg = ReinforceConfig(steps=6, k_masks=8, n_final_samples=3, n_final_eval=2, seed=5, init_logit=0.5,
                          objective="answer")
    sampled = reinforce(tiny, means, exs, cfg, template=SHORT, show_progress=False)
    likely = reinforce(tiny, means, exs, dataclasses.replace(cfg, final="likely"), template=SHORT, show_progress=False)
    torch.testing.assert_close(likely.prob_trajectory, sampled.prob_trajectory)
    assert torch.equal(likely.mask, sampled.probs > 0.5) and likely.final_candidate_losses == []
    assert not torch.equal(likely.mask, sampled.mask)  # a sampled mask is not the most likely one here


def test_selectors(tiny):
    exs = [Example(p.prompt, p.chosen, True) for p in make_pairs(3)]
    means = random_means(tiny)
    n = tiny.cfg.n_layers * tiny.cfg.n_heads
    assert int(select_heads(tiny, means, exs, "all").mask.sum()) == n
    assert int(select_heads(tiny, means, exs, "none").mask.sum()) == 0
    assert int(select_heads(tiny, means, exs, "random", k=3).mask.sum()) == 3
    top = select_heads(tiny, means, exs, "topk_attribution", k=2, template=SHORT, show_progress=False)
    assert int(top.mask.sum()) == 2 and top.probs[top.mask].min() >= top.probs[~top.mask].max()
    with pytest.raises(ValueError, match="needs k"):
        select_heads(tiny, means, exs, "random")


def test_default_fit_refuses_unpaired_examples_before_stage_1(tiny, monkeypatch):
    """The default objective is pairwise: unpaired labelled examples get the clear error at once (no Stage 1 run),
    and fit with objective='answer'."""
    import armlens.rm as rm_module

    exs = [Example("Is water wet?", "Yes.", True), Example("Is fire cold?", "Yes.", False)]
    calls = []
    real = rm_module.extract_means
    monkeypatch.setattr(rm_module, "extract_means", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(ValueError, match="objective='answer'"):
        ActivationRM(tiny, ARMConfig(criterion="c", val_pairs=0, template=SHORT)).fit(exs, show_progress=False)
    assert not calls
    quick = ARMConfig(criterion="c", val_pairs=0, template=SHORT, reinforce=ReinforceConfig(
        steps=2, k_masks=4, n_final_samples=2, n_final_eval=2, objective="answer"))
    assert ActivationRM(tiny, quick).fit(exs, show_progress=False, processes=1).fits and calls


def test_pairwise_reinforce_is_seeded_and_needs_sibling_order():
    """Pairwise REINFORCE runs on (chosen, rejected) siblings, is seeded, and refuses examples out of pair order."""
    model, means = planted_model(target=(1, 2))
    from armlens.prompts import examples_from_pairs

    exs = examples_from_pairs(make_pairs(4))
    cfg = ReinforceConfig(steps=6, k_masks=8, n_final_samples=3, n_final_eval=3, objective="pairwise", seed=2)
    a = reinforce(model, means, exs, cfg, template=SHORT, show_progress=False)
    b = reinforce(model, means, exs, cfg, template=SHORT, show_progress=False)
    assert a.losses == b.losses and all(0 < x < 50 for x in a.losses)
    with pytest.raises(ValueError, match="siblings") as err:
        reinforce(model, means, exs[1:] + exs[:1], cfg, template=SHORT, show_progress=False)
    assert "objective='answer'" in str(err.value)  # the error names the way out for unpaired examples


def test_pairwise_loss_is_the_log_sigmoid_gap(tiny):
    from armlens.prompts import examples_from_pairs
    from armlens.selection import MaskObjective

    exs = examples_from_pairs(make_pairs(2))
    means = random_means(tiny)
    masks = torch.rand(3, 2, 4, generator=torch.Generator().manual_seed(0)) < 0.5
    pool = M.PrefixPool(tiny)
    obj = MaskObjective(tiny, exs, "pairwise", template=SHORT, pool=pool)
    ids = AnswerIds.of(tiny)
    logp = []
    for e in exs[:2]:
        tokens, attn = M.tokenize(tiny, [scalar_prompt(tiny, e, SHORT)])
        logp.append(torch.stack([M.run_last_logits(tiny, tokens, attn, patch_hooks(tiny, means, m))[0]
                                 .log_softmax(-1)[ids.yes] for m in masks]))
    want = -torch.nn.functional.logsigmoid(logp[0] - logp[1])
    torch.testing.assert_close(obj.losses(0, means, masks), want, atol=1e-4, rtol=1e-4)
    sparse = MaskObjective(tiny, exs, "pairwise", template=SHORT, pool=pool, sparsity=0.5)
    torch.testing.assert_close(sparse.losses(0, means, masks), want + 0.5 * masks.sum((1, 2)), atol=1e-4, rtol=1e-4)


def test_reinforce_records_entropy_validation_and_checkpoints(tiny):
    """Monitoring: entropy and validation per step; the choice after S of N steps equals an S-step run's."""
    from armlens.prompts import examples_from_pairs

    exs = examples_from_pairs(make_pairs(6))
    means = random_means(tiny)
    long = ReinforceConfig(steps=8, k_masks=8, n_final_samples=3, n_final_eval=3, seed=4, val_every=4,
                           checkpoints=(4, 8))
    res = reinforce(tiny, means, exs[:8], long, template=SHORT, show_progress=False, val=exs[8:])
    assert len(res.entropy) == 8 and res.entropy[0] > 0
    assert [s for s, _ in res.val_losses] == [4, 8] and all(v > 0 for _, v in res.val_losses)
    short = reinforce(tiny, means, exs[:8], dataclasses.replace(long, steps=4, checkpoints=()), template=SHORT,
                      show_progress=False)
    assert torch.equal(res.checkpoint_masks[4], short.mask)
    assert torch.equal(res.checkpoint_masks[8], res.mask)


def test_sparsity_shrinks_the_head_set(tiny):
    from armlens.prompts import examples_from_pairs

    exs = examples_from_pairs(make_pairs(4))
    means = random_means(tiny)
    base = ReinforceConfig(steps=40, k_masks=16, n_final_samples=4, n_final_eval=4, seed=1, init_logit=0.0)
    free = reinforce(tiny, means, exs, base, template=SHORT, show_progress=False)
    sparse = reinforce(tiny, means, exs, dataclasses.replace(base, sparsity=2.0), template=SHORT, show_progress=False)
    assert sparse.expected_heads[-1] < free.expected_heads[-1] - 1.0


# ------------------------------------------------------------------------------------------------- ActivationRM


def small_config(**kw):
    base = dict(n_trials=6, demos_per_class=1, template=SHORT,
                reinforce=ReinforceConfig(steps=3, k_masks=8, n_final_samples=3, n_final_eval=3))
    base.update(kw)
    return ARMConfig(**base)


def test_activation_rm_fit_score_save_load_roundtrip(tiny_gqa, tmp_path):
    pairs = make_pairs(6)
    rm = ActivationRM(tiny_gqa, small_config()).fit(pairs[:4], show_progress=False)
    (fit,) = rm.fits.values()  # one criterion: the properties read its fit
    assert rm.mask is fit.mask and rm.means is fit.means and rm.means.shape == (3, 4, 16)
    assert rm.mask.shape == (3, 4) and rm.mask.dtype == torch.bool and rm.heads == mask_labels(rm.mask) != []
    assert "ActivationRM(model='tiny-llama" in repr(rm) and "seed=0" in repr(rm)
    chosen, rejected = rm.score_pairs(pairs[4:], show_progress=False)
    assert chosen.shape == rejected.shape == (2,)
    for i, p in enumerate(pairs[4:]):  # full forwards vs the branch path of score_pairs, both responses
        crit = rm._criterion(p)
        assert rm.score(p.prompt, [p.chosen, p.rejected], criterion=crit) == pytest.approx(
            [float(chosen[i]), float(rejected[i])], abs=1e-5)
    unpatched = ActivationRM.from_patch(tiny_gqa, rm.means, torch.zeros_like(rm.mask), rm.config)
    plain = unpatched.score(pairs[4].prompt, pairs[4].chosen, criterion=rm._criterion(pairs[4]))
    assert abs(plain - float(chosen[0])) > 1e-4  # the patched heads change the reward
    path = rm.save(tmp_path / "toy.arm")
    loaded = ActivationRM.load(path, tiny_gqa)
    assert torch.equal(loaded.means, rm.means) and torch.equal(loaded.mask, rm.mask)
    assert torch.equal(loaded.selection.prob_trajectory, rm.selection.prob_trajectory)
    assert loaded.config == rm.config and loaded.heads == rm.heads
    c2, r2 = loaded.score_pairs(pairs[4:], show_progress=False)
    assert torch.equal(c2, chosen) and torch.equal(r2, rejected)


def test_load_on_wrong_model_is_refused(tiny, tiny_gqa, tmp_path):
    rm = ActivationRM(tiny, small_config(selector="all")).fit(make_pairs(3), show_progress=False)
    path = rm.save(tmp_path / "a.arm")
    with pytest.raises(ValueError, match="cannot be loaded"):
        ActivationRM.load(path, tiny_gqa)
    other_weights = T.tiny_model(n_layers=2, n_heads=4, d_head=16, seed=99)  # same shape, other weights
    with pytest.raises(ValueError, match="weights of model.embed_tokens.weight"):
        ActivationRM.load(path, other_weights)
    (tmp_path / "junk.arm").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        ActivationRM.load(tmp_path / "junk.arm", tiny)
    with pytest.raises(FileNotFoundError):
        ActivationRM.load(tmp_path / "missing.arm", tiny)


def test_unfitted_and_empty_inputs_are_clear_errors(tiny):
    rm = ActivationRM(tiny, small_config())
    with pytest.raises(RuntimeError, match="not fitted"):
        rm.score("hi", "there")
    with pytest.raises(ValueError, match="at least one"):
        rm.fit([], show_progress=False)


def test_yes_must_be_a_single_token(tiny):
    with pytest.raises(ValueError, match="not a single token"):
        ActivationRM(tiny, small_config(template=JudgeTemplate(yes="Absolutely")))


def test_pooled_extraction_equals_batched(tiny_gqa):
    exs = [Example(p.prompt, p.chosen, i % 2 == 0) for i, p in enumerate(make_pairs(4))]
    pool = M.PrefixPool(tiny_gqa, max_mb=10)
    pooled = extract_means(tiny_gqa, exs, ExtractionConfig("mean_ablation", template=SHORT), show_progress=False, pool=pool).means
    plain = extract_means(tiny_gqa, exs, ExtractionConfig("mean_ablation", template=SHORT), show_progress=False).means
    torch.testing.assert_close(pooled, plain, atol=1e-4, rtol=1e-4)
    assert len(pool) == 4 and pool.misses == 4
    pool.get(scalar_prompt(tiny_gqa, exs[0], SHORT))
    assert pool.hits == 1


def test_prefix_pool_is_bounded_in_memory(tiny):
    texts = texts_for(tiny, 4)
    one = M.PrefixPool(tiny, max_mb=100)
    one.get(texts[0])
    size_mb = one.bytes / 2**20
    pool = M.PrefixPool(tiny, max_mb=size_mb * 2.5)
    for t in texts:
        pool.get(t)
    assert len(pool) <= 3 and pool.bytes <= pool.max_bytes


def test_branches_equal_one_cached_run_per_mask(tiny_any):
    """The block-diagonal branch form equals one last-token run over the prefix cache per mask (and hence full
    forwards) on padded batches."""
    texts = texts_for(tiny_any, 2)
    cache = M.prefix_cache(tiny_any, *M.tokenize(tiny_any, texts))
    means = random_means(tiny_any)
    masks = torch.rand(5, tiny_any.cfg.n_layers, tiny_any.cfg.n_heads, generator=torch.Generator().manual_seed(4)) < 0.5
    from armlens.patching import patch_branch_hooks

    branches = M.run_cached_branches(tiny_any, cache, 5, patch_branch_hooks(tiny_any, means, masks))
    per_mask = torch.stack([M.run_cached_last_logits(tiny_any, cache, patch_hooks(tiny_any, means, m)) for m in masks],
                           dim=1)
    assert not torch.allclose(per_mask[:, 0], per_mask[:, 1])  # the masks differ in effect
    torch.testing.assert_close(branches, per_mask, atol=FAST_PATH_ATOL, rtol=FAST_PATH_ATOL)


@pytest.mark.parametrize("reading", ["icl", "answered", "mean_ablation"])
def test_every_reading_fits(tiny, reading):
    rm = ActivationRM(tiny, small_config(reading=reading, estimator="wpca")).fit(make_pairs(4), show_progress=False)
    assert rm.fits["The response is helpful, honest and harmless: it answers the request accurately and safely."]
    assert rm.fit_for().info["n_extraction_prompts"] == (6 if reading == "icl" else 8)
    assert torch.isfinite(rm.means).all()
    assert ("not an ARM" in repr(rm)) == (reading == "mean_ablation")


# ------------------------------------------------------------------------------------------------- per criterion


def two_criteria_pairs(n: int = 4) -> list[PreferencePair]:
    """Pairs of two HHH subsets, whose judge questions name different criteria."""
    out = []
    for subset in ("harmless", "helpful"):
        for p in make_pairs(n):
            out.append(PreferencePair(id=f"{subset}/{p.id}", source="hhh", subset=f"hhh-{subset}",
                                      prompt=f"{p.prompt} ({subset})", chosen=p.chosen, rejected=p.rejected))
    return out


def test_one_arm_per_criterion_routes_each_pair(tiny, tmp_path):
    from armlens.prompts import criterion_for

    pairs = two_criteria_pairs()
    rm = ActivationRM(tiny, small_config()).fit(pairs, show_progress=False)
    crit = {s: criterion_for(s) for s in ("hhh-harmless", "hhh-helpful")}
    assert set(rm.fits) == set(crit.values())
    a, b = rm.fits[crit["hhh-harmless"]], rm.fits[crit["hhh-helpful"]]
    assert not torch.allclose(a.means, b.means)  # each criterion's own few-shot examples
    assert a.info["n_few_shot_examples"] == b.info["n_few_shot_examples"] == 8
    chosen, rejected = rm.score_pairs(pairs, show_progress=False)
    for i, p in enumerate(pairs):  # each pair scored by its criterion's fit, and not by the other
        own = a if p.subset == "hhh-harmless" else b
        other = b if own is a else a
        text = scalar_prompt(tiny, Example(p.prompt, p.chosen, None, criterion_for(p)), SHORT)
        want = score_texts(tiny, [text], means=own.means, mask=own.mask)[0]
        torch.testing.assert_close(chosen[i], want)
        means, mask = rm.patch_for(p)
        assert means is own.means and mask is own.mask
        if not (torch.equal(own.mask, other.mask) and torch.equal(own.means, other.means)):
            assert rm.patch_for(p)[0] is not other.means
    with pytest.raises(ValueError, match="holds 2 criteria"):
        _ = rm.means
    with pytest.raises(ValueError, match="no fit for the criterion"):
        rm.fit_for("Something else entirely.")
    loaded = ActivationRM.load(rm.save(tmp_path / "two.arm"), tiny)
    assert set(loaded.fits) == set(rm.fits)
    c2, r2 = loaded.score_pairs(pairs, show_progress=False)
    assert torch.equal(c2, chosen) and torch.equal(r2, rejected)


def test_pooled_criteria_fit_one_arm(tiny):
    pairs = two_criteria_pairs()
    rm = ActivationRM(tiny, small_config(criteria="pooled")).fit(pairs, show_progress=False)
    assert list(rm.fits) == ["*"] and rm.fit_for().info["n_few_shot_examples"] == 16
    means, mask = rm.patch_for(pairs[0])
    assert means is rm.means and rm.patch_for(pairs[-1])[1] is mask


@pytest.mark.skipif(sys.platform != "linux", reason="forked fits run on Linux only")
def test_forked_criteria_fits_equal_the_serial_fit(tiny, caplog):
    import logging

    pairs = two_criteria_pairs()
    serial_cache: dict = {}
    serial = ActivationRM(tiny, small_config()).fit(pairs, show_progress=False, processes=1,
                                                      extraction_cache=serial_cache)
    forked_cache: dict = {}
    with caplog.at_level(logging.INFO, logger="armlens.rm"):
        forked = ActivationRM(tiny, small_config()).fit(pairs, show_progress=False, processes=2,
                                                          extraction_cache=forked_cache)
    assert "fitting 2 criteria in 2 processes" in caplog.text  # the fits really ran in children
    assert list(forked.fits) == list(serial.fits)
    for key, a in serial.fits.items():
        b = forked.fits[key]
        assert torch.equal(a.means, b.means) and torch.equal(a.mask, b.mask)
        assert a.selection.losses == b.selection.losses and a.info["n_extraction_prompts"] == b.info[
            "n_extraction_prompts"]
    assert set(forked_cache) == set(serial_cache) and len(serial_cache) == 2  # the children's Stage 1 came back
    assert torch.get_num_threads() == min(2, os.cpu_count() or 1)  # the parent keeps its threads
    with pytest.raises(ValueError, match="processes must be a whole number"):
        ActivationRM(tiny, small_config()).fit(pairs, show_progress=False, processes=0)


def test_default_processes_follow_the_thread_budget(tiny):
    from armlens.parallel import check_processes, default_processes

    assert default_processes(tiny, 1) == 1  # one criterion: nothing to spread
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert default_processes(tiny, 4) == 1  # a one-thread run stays serial
        torch.set_num_threads(2)
        assert default_processes(tiny, 4) == (2 if sys.platform == "linux" else 1)
    finally:
        torch.set_num_threads(threads)
    if sys.platform == "linux":
        assert check_processes(tiny, 8, 3) == 3  # capped at one per job
