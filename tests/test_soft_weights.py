"""Soft head weights (armlens.soft, issue 38 item d): the weighted patch ``z + w (mu - z)`` at its end points, the
gradient that reaches ``w``, the L1 budget, a soft ARM's save/load and scoring paths, and the frontier's soft series."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from armlens import model as M
from armlens.analysis import grid as G
from armlens.arm_config import ARMConfig
from armlens.data.records import PreferencePair
from armlens.errors import BadInputError
from armlens.patching import row_patch_hooks
from armlens.prompts import AnswerIds, Example, JudgeTemplate, examples_from_pairs, scalar_prompt
from armlens.rm import ActivationRM
from armlens.scoring import RowTable, score_rows, score_texts
from armlens.selection import ReinforceConfig
from armlens.soft import SoftConfig, WeightObjective, effective_heads, fit_soft_weights

SHORT = JudgeTemplate(max_field_tokens=24)
FAST = SoftConfig(steps=6, lr=0.3, batch_units=2)


def pairs(n: int = 6) -> list[PreferencePair]:
    return [PreferencePair(id=f"toy/{i}", source="toy", subset="toy", prompt=f"What is {i} plus {i}?",
                           chosen=f"It is {2 * i}.", rejected="I do not know.") for i in range(n)]


def texts(model, n: int = 3) -> list[str]:
    return [scalar_prompt(model, e, SHORT) for e in examples_from_pairs(pairs(n))]


def soft_arm(model, **soft) -> ActivationRM:
    cfg = ARMConfig(selector="soft", n_trials=2, template=SHORT, val_pairs=0, soft=dataclasses.replace(FAST, **soft))
    return ActivationRM(model, cfg).fit(pairs(), show_progress=False)


# ---------------------------------------------------------------------------------------------------- the patch


def test_weights_one_is_the_plain_patch_and_zero_is_no_patch_exactly(tiny_any):
    model = tiny_any
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=gen)
    mask = torch.rand(cfg.n_layers, cfg.n_heads, generator=gen) < 0.5
    mask[0, 0] = True
    ids = AnswerIds.of(model, SHORT)
    t = texts(model)
    # branch path (one branch per row; compared at the same branch position, as numerics may differ across them)
    def run(*patches):
        table = RowTable.for_model(model)
        rows = [table.add(m, k, weights=w) for m, k, w in patches]
        assert rows == list(range(len(patches)))  # weights are part of a row's identity
        return score_rows(model, t, *table.stacked(), answer_ids=ids, weights=table.weights())

    one, zero = torch.ones(mask.shape), torch.zeros(mask.shape)
    soft1, hard = run((means, mask, one), (None, None, None)), run((means, mask, None), (None, None, None))
    soft0, plain = run((means, mask, zero), (means, mask, None)), run((None, None, None), (means, mask, None))
    for field in ("yes", "no", "logsumexp"):
        assert torch.equal(getattr(soft1, field), getattr(hard, field)), field  # w = 1: the plain overwrite
        assert torch.equal(getattr(soft0, field), getattr(plain, field)), field  # w = 0: no patch
        assert not torch.equal(getattr(hard, field)[:, 0], getattr(hard, field)[:, 1]), field  # the patch acts
    # full-forward path (score_texts): the same end points, exactly
    s_hard = score_texts(model, t, means=means, mask=mask, answer_ids=ids)
    s_one = score_texts(model, t, means=means, mask=mask, answer_ids=ids, weights=torch.ones(mask.shape))
    s_zero = score_texts(model, t, means=means, mask=mask, answer_ids=ids, weights=torch.zeros(mask.shape))
    s_plain = score_texts(model, t, answer_ids=ids)
    assert torch.equal(s_one, s_hard) and torch.equal(s_zero, s_plain) and not torch.equal(s_hard, s_plain)


def test_a_half_weight_is_between_and_both_paths_agree(tiny):
    cfg = tiny.cfg
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    w = torch.full(mask.shape, 0.5)
    ids = AnswerIds.of(tiny, SHORT)
    t = texts(tiny)
    slow = score_texts(tiny, t, means=means, mask=mask, answer_ids=ids, weights=w, kind="logit_diff")
    table = RowTable.for_model(tiny)
    table.add(means, mask, weights=w)
    fast = score_rows(tiny, t, *table.stacked(), answer_ids=ids, weights=table.weights()).read("logit_diff")[:, 0]
    assert fast == pytest.approx(slow, abs=1e-4)
    hard = score_texts(tiny, t, means=means, mask=mask, answer_ids=ids, kind="logit_diff")
    plain = score_texts(tiny, t, answer_ids=ids, kind="logit_diff")
    assert not torch.allclose(slow, hard) and not torch.allclose(slow, plain)


def test_gradients_reach_the_weights_and_match_finite_differences(tiny_any):
    model = tiny_any
    cfg = model.cfg
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=torch.Generator().manual_seed(2))
    pool = M.PrefixPool(model)
    obj = WeightObjective(model, examples_from_pairs(pairs(2)), "pairwise", template=SHORT, pool=pool)
    theta = torch.zeros(cfg.n_layers, cfg.n_heads, requires_grad=True)
    loss = obj.loss(0, means, torch.sigmoid(theta))
    (grad,) = torch.autograd.grad(loss, theta)
    assert torch.isfinite(grad).all() and bool((grad != 0).any())
    assert all(p.grad is None for p in model.parameters())  # the model's weights get no gradient
    # central differences on the largest entry (float32 model: a loose tolerance)
    layer, head = divmod(int(grad.abs().flatten().argmax()), cfg.n_heads)
    eps = 1e-2
    with torch.no_grad():
        up, down = theta.detach().clone(), theta.detach().clone()
        up[layer, head] += eps
        down[layer, head] -= eps
        fd = (obj.loss(0, means, torch.sigmoid(up), grad=False) - obj.loss(0, means, torch.sigmoid(down), grad=False))
    assert float(fd) / (2 * eps) == pytest.approx(float(grad[layer, head]), rel=0.05, abs=1e-5)
    # the differentiable branch run gives the inference run's logits
    w = torch.sigmoid(theta).detach()
    every = torch.ones(1, cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    cache = pool[obj.texts[0]]
    hooks = row_patch_hooks(model, means[None], every, w[None])
    a = M.run_cached_branches(model, cache, 1, hooks, differentiable=True)
    b = M.run_cached_branches(model, cache, 1, hooks)
    assert torch.equal(a.detach(), b)


# ---------------------------------------------------------------------------------------------------- the fit


def test_a_larger_l1_gives_fewer_effective_heads(tiny):
    ex = examples_from_pairs(pairs())
    stage1 = ActivationRM(tiny, ARMConfig(selector="none", n_trials=2, template=SHORT)).fit(pairs(), show_progress=False)
    mu = stage1.fit_for().means  # Stage 1's means, no selection
    prune = {0.0: 0.01, 0.05: 0.01, 2.0: 0.05}  # the strongest: every weight ends below 0.05 and is pruned
    runs = {l1: fit_soft_weights(tiny, mu, ex, dataclasses.replace(FAST, l1=l1, steps=10, min_weight=prune[l1]),
                                 template=SHORT, show_progress=False) for l1 in prune}
    budget = {l1: effective_heads(r.probs)["weight_sum"] for l1, r in runs.items()}
    assert budget[0.0] > budget[0.05] > budget[2.0]
    assert effective_heads(runs[2.0].probs) == {"heads_over_half": 0.0, "weight_sum": 0.0}
    assert not bool(runs[2.0].mask.any())
    free = runs[0.0]
    assert free.method == "soft" and len(free.losses) == 10 and free.prob_trajectory.shape[0] == 10
    assert free.expected_heads[-1] == pytest.approx(float(free.prob_trajectory[-1].sum()))
    assert not torch.allclose(free.probs, torch.full_like(free.probs, float(torch.sigmoid(torch.tensor(-1.0)))))
    assert torch.equal(free.mask, free.probs > 0) and bool(((free.probs == 0) | (free.probs >= FAST.min_weight)).all())


def test_soft_config_checks_its_fields():
    for bad in ({"l1": -1.0}, {"l1": float("inf")}, {"steps": 0}, {"lr": 0.0}, {"min_weight": 1.0},
                {"batch_units": 0}, {"val_every": -1}):
        with pytest.raises(BadInputError, match=next(iter(bad))):
            SoftConfig(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- the ARM


def test_both_selectors_refuse_unusable_training_examples_naming_themselves(tiny):
    from armlens.selection import MaskObjective

    pool, t = M.PrefixPool(tiny), JudgeTemplate()
    labelled = [Example("q", "good", True), Example("q", "bad", False)]
    for make, who in ((lambda ex, o: MaskObjective(tiny, ex, o, template=t, pool=pool), "REINFORCE"),
                      (lambda ex, o: WeightObjective(tiny, ex, o, template=t, pool=pool), "soft-weight fitting")):
        with pytest.raises(BadInputError, match=f"{who} needs at least one labelled training example"):
            make([], "pairwise")
        with pytest.raises(BadInputError, match=f"{who}: every training example must be labelled"):
            make([Example("q", "good", None)], "answer")
        assert make(labelled, "pairwise").n_units == 1 and make(labelled, "answer").n_units == 2


def test_soft_arm_scores_with_its_weights_and_survives_save_and_load(tiny, tmp_path):
    rm = soft_arm(tiny, l1=0.0)
    fit = rm.fit_for()
    assert fit.weights is not None and torch.equal(fit.mask, fit.weights > 0) and bool(fit.mask.any())
    assert fit.selection is not None and fit.selection.method == "soft"
    test = pairs(3)
    chosen, rejected = rm.score_pairs(test, show_progress=False)  # branch path
    t = [scalar_prompt(tiny, Example(p.prompt, r, None, fit.criterion), SHORT) for p in test
         for r in (p.chosen, p.rejected)]
    slow = rm.score_texts(t)  # full forwards
    assert torch.stack([chosen, rejected], 1).flatten() == pytest.approx(slow, abs=1e-5)
    hard = score_texts(tiny, t, means=fit.means, mask=fit.mask, answer_ids=rm.answer_ids)
    assert not torch.allclose(slow, hard)  # the weights are used, not only the heads they touch
    with rm.patched():  # the patch context carries the weights too
        logits = M.run_last_logits(tiny, *M.tokenize(tiny, t[:1]))
    assert float(logits.softmax(-1)[0, rm.answer_ids.yes]) == pytest.approx(float(slow[0]), abs=1e-5)

    path = rm.save(tmp_path / "soft.arm")
    back = ActivationRM.load(path, tiny)
    assert back.config == rm.config and back.config.soft == rm.config.soft and back.config.selector == "soft"
    assert torch.equal(back.fit_for().weights, fit.weights) and torch.equal(back.fit_for().mask, fit.mask)
    assert torch.equal(back.score_texts(t), slow)
    assert back.config.to_dict()["soft"]["steps"] == FAST.steps


def test_the_soft_setting_leaves_old_configs_and_files_as_they_were(tiny, tmp_path):
    assert "soft" not in ARMConfig().to_dict()  # keys of fits and results saved before it exist stay the same
    assert "soft" in ARMConfig(soft=SoftConfig(l1=0.5)).to_dict()
    assert ARMConfig.from_dict(ARMConfig(soft=SoftConfig(l1=0.5)).to_dict()).soft.l1 == 0.5
    cfg = ARMConfig(n_trials=2, template=SHORT, val_pairs=0,
                    reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    rm = ActivationRM(tiny, cfg).fit(pairs(), show_progress=False)
    path = rm.save(tmp_path / "hard.arm")
    tensors, meta = ActivationRM.read(path)
    assert "soft" not in meta["config"] and not any(k.endswith(".weights") for k in tensors)
    back = ActivationRM.load(path, tiny)
    assert back.fit_for().weights is None and back.config.soft == SoftConfig()


def test_a_soft_arm_judge_in_the_branch_pass_scores_with_its_weights(tiny):
    from armlens.evaluation.baselines import JudgeConfig, make_judge
    from armlens.evaluation.branches import score_mask_judges

    jcfg = JudgeConfig(template=SHORT, arm=ARMConfig(selector="soft", n_trials=2, val_pairs=0, soft=FAST))
    judge = make_judge("arm", tiny, jcfg).fit(pairs())
    items = [(p, r) for p in pairs(3) for r in (p.chosen, p.rejected)]
    (shared,) = score_mask_judges(tiny, [(judge, items)])
    own = judge.score_responses(items)  # the judge's own full forwards
    assert shared == pytest.approx(own, abs=1e-5)
    assert judge.weights_for(items[0][0]) is not None


# ---------------------------------------------------------------------------------------------------- the frontier


def test_soft_axis_cells():
    cfg = G.AblationConfig(grid=["soft"], soft_l1s=[0.1, 0.0])
    cells = G.plan_cells(cfg, 2, 4)
    assert [c.setting for c in cells] == ["0", "0.1"] and [c.x for c in cells] == [0.0, 0.1]
    arms = [c.arm_config(cfg.arm) for c in cells]
    assert [a.selector for a in arms] == ["soft", "soft"] and [a.soft.l1 for a in arms] == [0.0, 0.1]
    assert len({G.fit_key(c, cfg.arm) for c in cells}) == 2
    assert G.fit_key(G.Cell("selection", "ARM", "reinforce"), cfg.arm) not in {G.fit_key(c, cfg.arm) for c in cells}
    with pytest.raises(BadInputError, match="l1=-1"):
        G.AblationConfig(soft_l1s=[-1.0])


def test_the_frontier_draws_the_soft_cells(tiny, tmp_path):
    from armlens.analysis import runs as A
    from armlens.analysis.frontier import frontier_table
    from armlens.io import read_json
    from armlens.plots.frontier import plot_frontier

    arm = ARMConfig(n_trials=2, template=SHORT, soft=FAST,
                    reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    cfg = G.AblationConfig(data="toy", seeds=[0], n_fewshot=4, limit=4, arm=arm, grid=["selection", "soft"],
                           soft_l1s=[0.0, 2.0], bootstrap=20)
    data = pairs(10)
    cells = A.run_ablations(tiny, data, cfg, tmp_path, show_progress=False)
    soft = cells[cells.axis == "soft"].set_index("setting")
    assert set(soft.index) == {"0", "2"}
    assert soft.loc["2", "weight_sum"] < soft.loc["0", "weight_sum"]  # the larger L1, the smaller budget
    table = frontier_table([tmp_path], n_boot=50)
    assert {"soft", "soft_half"} <= set(table["series"])
    for series, field in (("soft", "weight_sum"), ("soft_half", "heads_over_half")):
        rows = table[table.series == series].set_index("setting")
        assert rows.loc["0", "n_heads"] == pytest.approx(soft.loc["0", field])
        assert rows.loc["0", "accuracy"] == pytest.approx(soft.loc["0", "accuracy"])
    # the cell's scores are the soft ARM's own (its weights reached the runner's branches)
    run = A.SeedRun(tiny, cfg, data, 0, tmp_path, show_progress=False)
    cell = next(c for c in G.plan_cells(cfg, 2, 4) if c.axis == "soft" and c.setting == "0")
    rm = run.fit(cell)
    rec = read_json(A.cell_file(tmp_path, cell, 0))
    chosen, _ = rm.score_pairs(run.test, show_progress=False)
    assert rec["chosen_scores"] == pytest.approx(chosen.double().tolist(), abs=1e-5)
    names = {t.name for t in plot_frontier(table).data}
    assert {"soft weights (x: sum of w)", "soft weights (x: heads with w > 0.5)"} <= names
