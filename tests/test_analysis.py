"""Head analysis and the stage-ablation runner, on hand-made inputs and tiny random models."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

from armlens import io as aio
from armlens import model as M
from armlens.analysis import grid as G
from armlens.analysis import results as R
from armlens.analysis import runs as A
from armlens.analysis.heads import (
    attention_from_last,
    expected_random_jaccard,
    head_frame,
    jaccard,
    jaccard_matrix,
    mean_pairwise_jaccard,
    pairwise_jaccard,
    rank_agreement,
    selection_frequency,
    top_heads,
    trajectory_frame,
    trajectory_steps,
)
from armlens.data.records import PreferencePair
from armlens.prompts import AnswerIds, Example, JudgeTemplate, examples_from_pairs, scalar_prompt
from armlens.scoring import score_texts

SHORT = JudgeTemplate(max_field_tokens=24)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def toy_pairs(n: int = 24) -> list[PreferencePair]:
    topics = ["the sea", "bread", "a cat", "rain", "music", "trains", "tea", "chess", "snow", "maps", "ink", "jam"]
    return [
        PreferencePair(
            id=f"toy/{i}", source="toy", subset=f"toy-{'ab'[i % 2]}", prompt=f"Tell me about {topics[i % 12]} ({i}).",
            chosen=f"Here is a short, accurate note about {topics[i % 12]}.", rejected="No." * (1 + i % 3),
        )
        for i in range(n)
    ]


def mask_of(n_layers: int, n_heads: int, heads: list[tuple[int, int]]) -> torch.Tensor:
    m = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in heads:
        m[layer, head] = True
    return m


# ---------------------------------------------------------------------------------------------------- head analysis


def test_jaccard_known_values():
    a = mask_of(2, 3, [(0, 0), (0, 1), (1, 2)])
    b = mask_of(2, 3, [(0, 1), (1, 2), (1, 0), (1, 1)])
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(a, empty) == 0.0
    pj = pairwise_jaccard(torch.stack([a, b, a]))
    assert pj.shape == (3, 3)
    assert torch.allclose(pj.diagonal(), torch.ones(3))
    assert pj[0, 1] == pytest.approx(0.4) and pj[0, 2] == pytest.approx(1.0) and pj[1, 0] == pj[0, 1]
    assert mean_pairwise_jaccard(torch.stack([a, b, a])) == pytest.approx((0.4 + 1.0 + 0.4) / 3)  # off-diagonal
    assert math.isnan(mean_pairwise_jaccard(a[None]))


def test_jaccard_matrix_compares_different_seeds_only():
    a1, a2 = mask_of(2, 2, [(0, 0), (0, 1)]), mask_of(2, 2, [(0, 0)])
    b1, b2 = mask_of(2, 2, [(1, 1)]), mask_of(2, 2, [(0, 0), (1, 1)])
    m = jaccard_matrix({"helpful": [a1, a2], "harmless": [b1, b2], "single": [a1]})
    assert list(m.index) == ["helpful", "harmless", "single"] == list(m.columns)
    assert m.loc["helpful", "helpful"] == pytest.approx(0.5)  # J(a1, a2) (both orders)
    assert m.loc["harmless", "harmless"] == pytest.approx(0.5)
    # off-diagonal: seed 0 of one criterion against seed 1 of the other, never the same seed
    assert m.loc["helpful", "harmless"] == pytest.approx((jaccard(a1, b2) + jaccard(a2, b1)) / 2) == pytest.approx(1 / 6)
    assert m.loc["helpful", "single"] == pytest.approx(jaccard(a2, a1))  # only run 1 of "helpful" pairs with run 0
    assert math.isnan(m.loc["single", "single"])  # one run: no seed-to-seed agreement
    every = jaccard_matrix({"helpful": [a1, a2], "harmless": [b1, b2]}, skip_same_run=False)
    assert every.loc["helpful", "harmless"] == pytest.approx((0 + 1 / 3 + 0 + 1 / 2) / 4)
    assert every.loc["helpful", "helpful"] == pytest.approx(0.5)  # the diagonal never pairs a run with itself
    with pytest.raises(ValueError):
        jaccard_matrix({"x": []})


def test_expected_random_jaccard():
    assert expected_random_jaccard(10, 10, 10) == pytest.approx(1.0)
    assert expected_random_jaccard(0, 5, 10) == pytest.approx(0.0)
    assert expected_random_jaccard(5, 5, 100) == pytest.approx(0.25 / 9.75)


def test_selection_frequency_and_frames():
    masks = torch.stack([mask_of(3, 2, [(0, 0), (2, 1)]), mask_of(3, 2, [(0, 0)]), mask_of(3, 2, [(1, 1)])])
    freq = selection_frequency(masks)
    assert freq.shape == (3, 2)
    assert freq[0, 0] == pytest.approx(2 / 3) and freq[2, 1] == pytest.approx(1 / 3) and freq[1, 0] == 0.0
    frame = head_frame({"freq": freq, "other": -freq})
    assert list(frame.columns) == ["layer", "head", "label", "freq", "other"]
    assert len(frame) == 6 and frame.loc[5, "label"] == "L2H1" and frame.loc[5, "freq"] == pytest.approx(1 / 3)
    top = top_heads(freq, k=2)
    assert top["label"].tolist() == ["L0H0", "L1H1"]
    assert top_heads(freq, k=5, mask=mask_of(3, 2, [(2, 1)]))["label"].tolist() == ["L2H1"]
    with pytest.raises(ValueError):
        head_frame({"a": torch.zeros(2, 2), "b": torch.zeros(3, 2)})


def test_trajectory_helpers_and_rank_agreement():
    assert trajectory_steps(40, 6) == [0, 8, 16, 23, 31, 39]
    assert trajectory_steps(3, 6) == [0, 1, 2]
    assert trajectory_steps(1, 6) == [0]
    traj = torch.rand(5, 2, 3)
    frame = trajectory_frame(traj, ["L1H2"])
    assert frame["step"].tolist() == [1, 2, 3, 4, 5] and frame["prob"].tolist() == pytest.approx(traj[:, 1, 2].tolist())
    x = torch.arange(6.0).view(2, 3)
    assert rank_agreement(x, x * 10 + 1) == pytest.approx(1.0)
    assert rank_agreement(x, -x) == pytest.approx(-1.0)
    assert math.isnan(rank_agreement(x, torch.zeros(2, 3)))


def test_attention_from_last_reads_hook_pattern(tiny_gqa):
    model = tiny_gqa
    text = scalar_prompt(model, Example("Say hi.", "Hi!", None), SHORT)
    n_tokens = M.tokenize(model, [text])[0].shape[1]
    means = torch.randn(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, generator=torch.Generator().manual_seed(0))
    mask = mask_of(model.cfg.n_layers, model.cfg.n_heads, [(0, 0), (0, 1), (0, 2), (0, 3)])
    row = attention_from_last(model, text, 2, 1, means=means, mask=mask)
    assert row.label == "L2H1" and len(row.tokens) == len(row.weights) == n_tokens
    assert sum(row.weights) == pytest.approx(1.0, abs=1e-4) and min(row.weights) >= 0
    assert row.patched_weights is not None and sum(row.patched_weights) == pytest.approx(1.0, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(row.weights, row.patched_weights, strict=True)) > 1e-6  # layer 0 patched
    same = attention_from_last(model, text, 0, 1, means=means, mask=mask)  # a same-layer patch comes after the pattern
    assert same.patched_weights == pytest.approx(same.weights, abs=1e-6)
    assert "".join(row.tokens) == text
    assert len(row.frame()) == n_tokens
    with pytest.raises(ValueError):
        attention_from_last(model, text, 9, 0)


def test_segment_attention_sums_the_read_row_by_prompt_segment(tiny_gqa):
    from armlens.analysis.heads import last_token_attention, segment_attention
    from armlens.prompts import SEGMENTS, scalar_spans, token_segments

    model = tiny_gqa
    FULL = JudgeTemplate()  # no field cut
    ex = Example("Say hi to Response:\n me.", "Hi there, friend!\n\nCriterion: quoted", None, "Be kind.")
    text = scalar_prompt(model, ex, FULL)
    fields = scalar_spans(text, FULL)
    assert text[slice(*fields["criterion"])] == "Be kind."
    assert text[slice(*fields["prompt"])] == "Say hi to Response:\n me."  # a label inside a field stays in it
    assert text[slice(*fields["response"])] == ex.response
    assert text[slice(*fields["question"])] == FULL.question
    spans = M.token_spans(model, text)
    assert "".join(text[a:b] for a, b in spans) == text and len(spans) == M.tokenize(model, [text])[0].shape[1]
    names = token_segments(spans, fields, n_end=3)
    assert names[0] == "first" and names[-1] == "read" and names.count("response_end") == 3
    response = [i for i, n in enumerate(names) if n in ("response", "response_end")]
    assert response == list(range(response[0], response[-1] + 1))  # one run of tokens
    assert [n for n in names if n == "response_end"] == [names[i] for i in response[-3:]]
    assert "".join(text[slice(*spans[i])] for i in response) == ex.response
    rows = last_token_attention(model, text)
    shares = segment_attention(model, [text, text], FULL, n_end=3)
    assert shares.shape == (2, model.cfg.n_layers, model.cfg.n_heads, len(SEGMENTS))
    assert shares.sum(-1) == pytest.approx(torch.ones(2, model.cfg.n_layers, model.cfg.n_heads), abs=1e-4)
    read = SEGMENTS.index("read")
    assert shares[0, :, :, read] == pytest.approx(rows[:, :, -1], abs=1e-6)
    ends = [i for i, n in enumerate(names) if n == "response_end"]
    assert shares[0, 2, 1, SEGMENTS.index("response_end")].item() == pytest.approx(rows[2, 1, ends].sum().item(), abs=1e-6)
    assert rows[2, 1].tolist() == pytest.approx(attention_from_last(model, text, 2, 1).weights, abs=1e-6)
    with pytest.raises(ValueError, match="not a zero-shot judge prompt"):
        scalar_spans("no labels here", FULL)


# ---------------------------------------------------------------------------------------------------- ablation pieces


def test_flip_pairs_flips_exactly_that_share():
    pairs = toy_pairs(8)
    for share, n in ((0.0, 0), (0.25, 2), (0.5, 4), (1.0, 8)):
        flipped, ids = A.flip_pairs(pairs, share, seed=3)
        assert len(ids) == n and len(flipped) == len(pairs)
        before, after = examples_from_pairs(pairs), examples_from_pairs(flipped)
        label_after = {(i // 2, e.response): e.label for i, e in enumerate(after)}
        wrong = [label_after[(i // 2, e.response)] != e.label for i, e in enumerate(before)]
        assert sum(wrong) == 2 * n  # both examples of a flipped pair get the other label: exactly that share
        assert sum(e.label for e in after) == len(pairs)  # class balance kept
        assert {p.id for p, q in zip(pairs, flipped, strict=True) if p.chosen != q.chosen} == set(ids)
    assert A.flip_pairs(pairs, 0.25, seed=3)[1] == A.flip_pairs(pairs, 0.25, seed=3)[1]  # seeded
    with pytest.raises(ValueError):
        A.flip_pairs(pairs, 0.6 + 0.5, seed=0)


def test_score_rows_equals_score_texts(tiny_any):
    """The batched many-cells path (branches over one prefix, each row its own means and heads) equals scoring
    each (means, mask) separately with armlens.scoring.score_texts."""
    from armlens.scoring import score_rows

    model = tiny_any
    cfg = model.cfg
    texts = [scalar_prompt(model, e, SHORT) for e in examples_from_pairs(toy_pairs(2))]
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g)
    masks = torch.zeros(3, cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    masks[1, 0, 1] = masks[1, 1, 2] = True
    masks[2] = True
    ids = AnswerIds.of(model)
    rows = score_rows(model, texts, means, masks, answer_ids=ids, chunk=2)
    for r in range(3):
        want = score_texts(model, texts, means=means[r], mask=masks[r], answer_ids=ids)
        torch.testing.assert_close(rows.read("prob")[:, r], want, atol=1e-4, rtol=1e-3)
        want_ld = score_texts(model, texts, means=means[r], mask=masks[r], answer_ids=ids, kind="logit_diff")
        torch.testing.assert_close(rows.read("logit_diff")[:, r], want_ld, atol=1e-3, rtol=1e-3)
    assert rows.argmax.shape == (4, 3)


def test_cells_are_the_reference_arm_with_one_setting_changed():
    from armlens.analysis.sweep import reference_setting
    from armlens.rm import ARMConfig

    base = ARMConfig()
    cells = {(c.axis, c.setting): c for c in G.plan_cells(tiny_config(priors=[-1.0, -2.0],
                                                                      learning_rates=[0.3, base.reinforce.lr]), 2, 4)}
    turns = cells[("reading", "icl-turns")].arm_config(base)
    assert turns == dataclasses.replace(base, reading="icl", icl_layout="turns")
    assert cells[("prior", "-2")].arm_config(base).reinforce.init_logit == -2.0
    assert cells[("lr", "0.3")].arm_config(base).reinforce.lr == 0.3 and cells[("lr", "0.3")].x == 0.3
    assert cells[("criteria", "pooled")].arm_config(base).criteria == "pooled"
    # the reference settings give the reference fit: the same key as the selection axis' REINFORCE cell
    ref = G.fit_key(cells[("selection", "reinforce")], base)
    same = {(c.axis, c.setting) for c in cells.values() if G.fit_key(c, base) == ref}
    axes = ("reading", "estimator", "objective", "criteria", "prior", "lr")
    assert same >= {(a, reference_setting(a, base)) for a in axes}
    assert not any(a in axes and s != reference_setting(a, base) for a, s in same)  # other settings: other fits


# ---------------------------------------------------------------------------------------------------- the runner


def tiny_config(**kw) -> G.AblationConfig:
    from armlens.rm import ARMConfig
    from armlens.selection import ReinforceConfig
    from armlens.soft import SoftConfig

    arm = ARMConfig(n_trials=2, template=SHORT, reinforce=ReinforceConfig(steps=3, k_masks=4, n_final_eval=4,
                                                                           n_final_samples=3),
                    soft=SoftConfig(steps=2, batch_units=2))
    base = dict(data="toy", seeds=[0, 1], n_fewshot=4, limit=5, arm=arm, attribution_examples=2,
                fewshot_per_criterion=[2, 3], heads=[1, 2, 4], flips=[0.0, 0.5], steps=[2, 3], trials=[2], demos=[1],
                priors=[-1.0], learning_rates=[0.1, 1.0], sparsities=[0.5], soft_l1s=[0.5], bootstrap=50,
                gen_max_new_tokens=2,
                grid=list(G.AXES))
    base.update(kw)
    return G.AblationConfig(**base)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("ablate")
    cells = A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False, foreign_pairs=other_pairs())
    return out, cells


def other_pairs(n: int = 12) -> list[PreferencePair]:
    """Another dataset's pairs, for the foreign control: other prompts, another source and criterion wording."""
    return [PreferencePair(id=f"other/{i}", source="other", subset="other", prompt=f"Translate word {i} to French.",
                           chosen=f"Mot {i}.", rejected="I will not.") for i in range(n)]


def cell_path(out, cell, seed):
    path = out / "cells" / cell.axis / cell.key / f"seed{seed}.json.gz"  # gzip-compressed, with per-pair scores
    assert path == A.cell_file(out, cell, seed)
    return path


def test_runner_writes_every_cell(tiny_results, tiny):
    out, cells = tiny_results
    cfg = tiny_config()
    planned = G.plan_cells(cfg, tiny.cfg.n_layers, tiny.cfg.n_heads)
    assert {c.axis for c in planned} == set(G.AXES)
    for c in planned:
        for seed in cfg.seeds:
            assert cell_path(out, c, seed).is_file(), (c, seed)
    assert len(cells) == len(planned) * len(cfg.seeds)
    assert set(cells.columns) >= set(R.CELL_COLUMNS)
    assert cells["accuracy"].between(0, 1).all() and (cells["n_pairs"] == 5).all()
    rec = aio.read_json(cell_path(out, planned[0], 0))
    assert len(rec["correct"]) == len(rec["chosen_scores"]) == 5 and rec["test_sha256"]
    # invariants: "none" patches nothing and equals the zero-shot judge; "all" makes every score tie
    none = cells[(cells.axis == "selection") & (cells.setting == "none")].set_index("seed")["accuracy"]
    zs = cells[(cells.axis == "scoring") & (cells.series == "zero-shot") & (cells.setting == "prob")]
    assert zs.set_index("seed")["accuracy"].to_dict() == none.to_dict()
    every = cells[(cells.axis == "selection") & (cells.setting == "all")]
    assert (every["ties"] == 5).all() and (every["accuracy"] == 0).all() and (every["n_heads"] == 8).all()
    ref = cells[(cells.axis == "selection") & (cells.setting == "reinforce")].set_index("seed")
    same = cells[(cells.axis == "estimator") & (cells.setting == "mean")].set_index("seed")
    assert ref["accuracy"].to_dict() == same["accuracy"].to_dict()  # the shared reference fit
    # the step-count cell at the reference's steps equals the reference (the choice after S steps is an S-step run's)
    three = cells[(cells.axis == "steps") & (cells.setting == "3")].set_index("seed")
    assert three["accuracy"].to_dict() == ref["accuracy"].to_dict()
    gen = aio.read_json(cell_path(out, G.Cell("scoring", "ARM", "generative", reading="generative"), 0))
    assert sum(gen["answers"].values()) == 10
    # the per-seed head artifacts are there
    run = json.loads((out / "run.json").read_text())
    assert run["seeds_done"] == [0, 1] and run["data"]["sha256"] and run["versions"]["torch"]
    assert run["environments"] == {s: [{"device": "cpu", "torch": torch.__version__, "transformers":
                                        run["versions"]["transformers"], "python": run["versions"]["python"]}]
                                   for s in ("0", "1")}
    # each seed's split records its test pairs' prompts, the clusters of the sweep's bootstrap
    key = {p.id: p.prompt_key() for p in toy_pairs()}
    split = aio.read_json(out / "seeds" / "seed0" / "split.json.gz")
    assert split["test_used_prompts"] == [key[i] for i in split["test_used"]] and split["test_used"]
    res = R.load_results(out)
    assert set(res.seeds) == {0, 1}
    sel = res.seeds[0].selections["reference"]
    assert sel.prob_trajectory is not None and sel.prob_trajectory.shape == (3, 2, 4)
    assert len(sel.entropy) == 3
    likely = res.cells[(res.cells.axis == "selection") & (res.cells.setting == "likely") & (res.cells.seed == 0)]
    assert int(likely["n_heads"].iloc[0]) == int((sel.probs > 0.5).sum())  # the reference policy's most likely mask
    # the steps axis's long run: its curves to the longest step count, without the trajectory
    long = res.seeds[0].selections["steps3"]
    assert long.prob_trajectory is None and len(long.losses) == len(long.entropy) == 3
    assert long.losses == pytest.approx(sel.losses)  # the long run is the reference's REINFORCE stream, longer
    # each learning rate's run: its curves, and the reference's rate gives the reference run itself
    assert cfg.arm.reinforce.lr in cfg.learning_rates
    lrs = {lr: res.seeds[0].selections[f"lr{lr:g}"] for lr in cfg.learning_rates}
    assert all(r.prob_trajectory is None and len(r.entropy) == 3 for r in lrs.values())
    for lr, r in lrs.items():
        assert (r.entropy == pytest.approx(sel.entropy)) == (lr == cfg.arm.reinforce.lr), lr
    conv = R.convergence_table(res, "toy")
    assert set(conv["run"]) == {"reference", "steps3"} | {f"lr{lr:g}" for lr in cfg.learning_rates}
    assert set(conv["seed"]) == {0, 1}
    assert res.seeds[0].effects is not None and res.seeds[0].effects.shape == (2, 4)
    assert res.seeds[0].attention is not None and sum(res.seeds[0].attention.weights) == pytest.approx(1, abs=1e-3)
    summary = R.summarize(res.cells)
    assert (summary["n_seeds"] == 2).all()
    sel_rows = summary[summary.axis == "selection"]["setting"].tolist()
    assert sel_rows == list(G.SELECTIONS)


def test_convergence_table_reads_settling_off_the_curves():
    from armlens.selection import SelectionResult, policy_entropy, policy_probs

    prior = policy_entropy(policy_probs(torch.full((2, 3), -1.0)))
    probs = torch.tensor([[0.05, 0.5, 0.95], [0.2, 0.8, 0.01]])
    mask = probs > 0.5

    def sel(entropy, val=()):
        return SelectionResult(mask=mask, method="reinforce", probs=probs, entropy=list(entropy),
                               losses=[1.0] * len(entropy), val_losses=list(val))

    steady = [prior - 0.25 * (t + 1) for t in range(8)]  # falls by the same amount every step
    settled = [prior - 2.0] * 8  # all of its fall in the first step
    seeds = {s: R.SeedArtifacts(s, {"criterion-a": sel(steady, [(0, 0.7), (8, 0.5)]), "reference": sel(steady),
                                    "lr1-a": sel(settled), "flip-0.5": sel(steady)}, None, None) for s in (0, 1)}
    res = R.AblationResults({"config": {"arm": {"reinforce": {"init_logit": -1.0}}}}, R.load_cells("/nonexistent"),
                            seeds)
    table = R.convergence_table(res, "toy")
    assert len(table) == 4 and set(table["run"]) == {"reference", "lr1"}  # one row per run, criterion and seed
    ref = table[table.run == "reference"].iloc[0]
    assert ref["entropy_prior"] == pytest.approx(prior) and ref["last_quarter_share"] == pytest.approx(0.25)
    assert ref["undecided"] == 3 and ref["likely_heads"] == 2 and (ref["val_first"], ref["val_last"]) == (0.7, 0.5)
    assert table[table.run == "lr1"]["last_quarter_share"].tolist() == [0.0, 0.0]
    summary = R.convergence_summary(table)
    assert summary["n_seeds"].tolist() == [2, 2] and summary["jaccard"].tolist() == [1.0, 1.0]  # same mask both seeds
    md = R.convergence_markdown(summary)
    assert "| toy | reference | a | 2 | 8 |" in md and "0.700 -> 0.500" in md and "none held apart" in md


def test_ablation_cell_scores_like_activation_rm(tiny_results, tiny):
    """One ARM: a cell with the reference settings scores the test pairs exactly as an ActivationRM fitted with
    those settings on the same few-shot pairs (and the answered-reading cell as an ActivationRM with that reading)."""
    import dataclasses

    from armlens.rm import ActivationRM

    out, _ = tiny_results
    cfg = tiny_config()
    run = A.SeedRun(tiny, cfg, toy_pairs(), 0, out, show_progress=False)
    for cell, arm in ((G.Cell("selection", "ARM", "reinforce"), cfg.arm),
                      (next(c for c in G.plan_cells(cfg, 2, 4) if c.setting == "answered"),
                       dataclasses.replace(cfg.arm, reading="answered"))):
        rec = aio.read_json(cell_path(out, cell, 0))
        rm = ActivationRM(tiny, dataclasses.replace(arm, seed=0)).fit(run.fewshot, show_progress=False)
        chosen, rejected = rm.score_pairs(run.test, show_progress=False)
        assert rec["chosen_scores"] == pytest.approx(chosen.tolist(), abs=1e-5)
        assert rec["rejected_scores"] == pytest.approx(rejected.tolist(), abs=1e-5)


def test_runner_resumes_without_recomputing(tiny_results, tiny, monkeypatch):
    out, cells = tiny_results
    before = {p: p.stat().st_mtime_ns for p in [*out.rglob("*.json"), *out.rglob("*.json.gz")] if p.name != "run.json"}
    assert any(p.name == "selection-reference.json.gz" for p in before)

    def boom(*a, **k):
        raise AssertionError("a finished result was recomputed")

    for name in ("single_head_effects", "score_rows", "attention_from_last"):
        monkeypatch.setattr(A, name, boom)
    monkeypatch.setattr(A.ActivationRM, "fit", boom)
    meta = json.loads((out / "run.json").read_text())
    spent = meta["seconds"]
    # a seed partly computed elsewhere (a GPU, say) keeps that record when a run here resumes it
    elsewhere = {"device": "cuda:0 (a GPU)", "torch": "2.11.0", "transformers": "5.23.0", "python": "3.12.3"}
    meta["environments"]["1"].insert(0, elsewhere)
    (out / "run.json").write_text(json.dumps(meta))
    split_file = out / "seeds" / "seed1" / "split.json.gz"  # a split written before prompts were recorded, and
    split = aio.read_json(split_file)                      # before splits were compressed, gains them, compressed
    old = split_file.with_name("split.json")
    old.write_text(json.dumps({k: v for k, v in split.items() if k != "test_used_prompts"}))
    split_file.unlink()
    before.pop(split_file)
    again = A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    envs = json.loads((out / "run.json").read_text())["environments"]
    assert envs["1"] == meta["environments"]["1"] and envs["0"] == meta["environments"]["0"]  # no duplicate
    assert aio.read_json(split_file) == split and not old.exists()
    assert len(again) == len(cells)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # a resumed run adds its (short) time to each seed's compute time instead of replacing it
    after = json.loads((out / "run.json").read_text())["seconds"]
    assert set(after) == set(spent) and all(spent[s] <= after[s] < spent[s] + 60 for s in spent)


def test_a_folder_written_before_compression_resumes_and_reads_the_same(tiny_results, tiny, monkeypatch, tmp_path):
    """A results folder from before per-item files were compressed (plain cells, splits and REINFORCE histories)
    resumes without recomputing or rewriting anything, and reads back to the same cells and head artifacts."""
    import gzip
    import shutil

    src, cells = tiny_results
    out = tmp_path / "old"
    shutil.copytree(src, out)
    packed = list(out.rglob("*.json.gz"))
    assert {p.name for p in packed} >= {"seed0.json.gz", "split.json.gz", "selection-reference.json.gz"}
    for gz in packed:
        gz.with_name(gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "run.json"}

    def boom(*a, **k):
        raise AssertionError("a finished result was recomputed")

    for name in ("single_head_effects", "score_rows", "attention_from_last"):
        monkeypatch.setattr(A, name, boom)
    monkeypatch.setattr(A.ActivationRM, "fit", boom)
    again = A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    cols = ["axis", "series", "setting", "seed", "accuracy"]
    assert again[cols].equals(cells[cols])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and not list(out.rglob("*.gz"))
    old, new = R.load_results(out), R.load_results(src)
    assert old.cells.equals(new.cells) and R.load_cells(out, with_scores=True).equals(R.load_cells(src, with_scores=True))
    for s in new.seeds:
        assert old.seeds[s].selections.keys() == new.seeds[s].selections.keys()
        assert torch.equal(old.seeds[s].selections["reference"].probs, new.seeds[s].selections["reference"].probs)


def test_a_complete_folder_resumes_without_its_fit_cache(tiny_results, tiny, monkeypatch):
    """A fresh clone has the committed cells but not the fitted .arm files (a local cache): a rerun with nothing to
    add fits nothing; once a cell is missing, that seed's fits are made again."""
    import shutil

    out, cells = tiny_results
    for arms in out.glob("seeds/*/arms"):
        shutil.rmtree(arms)
    fits = []
    real_fit = A.ActivationRM.fit
    monkeypatch.setattr(A.ActivationRM, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    again = A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    assert len(again) == len(cells) and not fits
    cell_path(out, G.Cell("estimator", "ARM", "median"), 1).unlink()
    A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    assert fits and cell_path(out, G.Cell("estimator", "ARM", "median"), 1).is_file()


def test_runner_resume_adds_only_missing_cells(tiny_results, tiny, monkeypatch):
    out, _ = tiny_results
    victim = cell_path(out, G.Cell("estimator", "ARM", "median"), 1)
    victim.unlink()
    monkeypatch.setattr(A.ActivationRM, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-fitted")))
    A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    assert victim.is_file()


def test_runner_refuses_a_different_run(tiny_results, tiny):
    out, _ = tiny_results
    with pytest.raises(ValueError, match="different run"):
        A.run_ablations(tiny, toy_pairs(), tiny_config(n_fewshot=5), out, show_progress=False)


def test_plan_cells_rejects_unknown_axes():
    with pytest.raises(ValueError, match="unknown ablation axis"):
        G.plan_cells(tiny_config(grid=["selection", "bogus"]), 2, 4)
    cells = G.plan_cells(tiny_config(grid=["heads"], heads=[1, 2, 100]), 2, 4)
    assert sorted({c.x for c in cells}) == [1.0, 2.0]  # k beyond the model's 8 heads is dropped


def test_ablation_config_is_strict():
    with pytest.raises(ValueError, match="unknown AblationConfig field"):
        G.AblationConfig.from_dict({"data": "hhh", "stepz": 3})
    cfg = tiny_config()
    assert G.AblationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


    old = {k: v for k, v in cfg.to_dict().items() if k != "fewshot_per_criterion"} | {"shots": [2]}
    assert G.AblationConfig.from_dict(old).fewshot_per_criterion == [2]  # run.json written before the rename


def test_fit_keys_and_run_files_survive_a_new_option_at_its_old_behaviour():
    """A setting added later (``reinforce.final``) at the value that behaves as before keeps every cached fit's key
    and lets a results folder saved before it existed resume."""
    import dataclasses
    import hashlib

    from armlens.rm import ARMConfig

    base = ARMConfig()
    cell = G.Cell("selection", "ARM", "reinforce")
    key = G.fit_key(cell, base)
    likely = dataclasses.replace(base, reinforce=dataclasses.replace(base.reinforce, final="likely"))
    assert G.fit_key(cell, likely) != key
    arm = cell.arm_config(base).to_dict()
    del arm["reinforce"]["final"]  # what a fit's key hashed before the option existed
    blob = json.dumps({"arm": arm, "pairs": cell.pairs}, sort_keys=True, default=str)
    assert key == hashlib.sha256(blob.encode()).hexdigest()[:16]
    cfg = G.AblationConfig()
    old = cfg.to_dict()
    del old["arm"]["reinforce"]["final"]
    assert A.saved_fingerprint({"config": old}) == json.loads(json.dumps(cfg.fingerprint()))


def test_bad_reinforce_settings_are_refused_before_any_work():
    from armlens.selection import ReinforceConfig

    for bad, name in (({"lr": 0.0}, "lr=0.0"), ({"lr": float("nan")}, "lr=nan"), ({"steps": 0}, "steps=0"),
                      ({"k_masks": -2}, "k_masks=-2"), ({"steps": True}, "steps=True"), ({"sparsity": -0.1}, "sparsity=-0.1")):
        with pytest.raises(ValueError, match=f"ReinforceConfig: {re.escape(name)}"):
            ReinforceConfig(**bad)
    # the lr axis's settings are checked when the ablation config is made, before a model loads
    with pytest.raises(ValueError, match="lr=-1"):
        G.AblationConfig(learning_rates=[0.1, -1.0])
    assert G.AblationConfig(learning_rates=[0.3, 1.0]).learning_rates == [0.3, 1.0]


def test_control_values_zero_or_derange_the_selected_heads():
    means = torch.randn(2, 4, 3)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 2] = mask[1, 3] = True
    assert torch.equal(A.control_values(means, mask, "zeros", 0), torch.zeros_like(means))
    shuffled = A.control_values(means, mask, "shuffled", 0)
    heads = mask.nonzero().tolist()
    assert all(not torch.equal(shuffled[layer, h], means[layer, h]) for layer, h in heads)  # no head keeps its own mean
    assert sorted(shuffled[layer, h].tolist() for layer, h in heads) == sorted(means[layer, h].tolist() for layer, h in heads)
    assert torch.equal(shuffled[~mask], means[~mask]) and torch.equal(A.control_values(means, mask, "shuffled", 0),
                                                                      shuffled)  # seeded
    one = torch.zeros(2, 4, dtype=torch.bool)
    one[0, 2] = True  # one selected head: another head's mean, not its own
    lone = A.control_values(means, one, "shuffled", 0)[0, 2]
    assert not torch.equal(lone, means[0, 2]) and any(torch.equal(lone, m) for m in means.reshape(8, 3))


def test_controls_patch_other_values_into_the_reference_heads(tiny_results, tiny):
    """The controls axis: 'means' is the reference ARM itself; zeros, shuffled means and means read on another
    dataset's prompts, in the same heads, score differently (the values written matter to the scores, whatever they do
    to accuracy). The foreign means are Stage 1 with the reference's settings on the other pairs' seeded draw."""
    from armlens.activations import extract_means
    from armlens.prompts import examples_from_pairs

    out, _ = tiny_results
    cfg = tiny_config()
    cells = {c.setting: c for c in G.plan_cells(cfg, 2, 4) if c.axis == "controls"}
    assert set(cells) == {"means", "zeros", "shuffled", "foreign"} and cells["means"].values == "fit"
    rec = {s: aio.read_json(cell_path(out, c, 0)) for s, c in cells.items()}
    ref = aio.read_json(cell_path(out, G.Cell("selection", "ARM", "reinforce"), 0))
    assert rec["means"]["chosen_scores"] == ref["chosen_scores"] and rec["means"]["heads"] == ref["heads"]
    for s in ("zeros", "shuffled", "foreign"):
        assert rec[s]["heads"] == ref["heads"] and rec[s]["chosen_scores"] != ref["chosen_scores"], s
    info = rec["foreign"]["foreign"]
    assert info["data"] == "other" and len(info["few_shot_ids"]) == cfg.n_fewshot
    assert all(i.startswith("other/") for i in info["few_shot_ids"])
    # the same means, read again outside the runner and written into the reference's heads, reproduce the cell
    from armlens.data import split_pairs

    draw = split_pairs(other_pairs(), seed=0, n_fewshot=cfg.n_fewshot, n_select=0, stratify=True).fewshot
    assert [p.id for p in draw] == info["few_shot_ids"]
    base = dataclasses.replace(cfg.arm, seed=0)
    means = extract_means(tiny, examples_from_pairs(draw, base.criterion), base, show_progress=False).means
    run = A.SeedRun(tiny, cfg, toy_pairs(), 0, out, show_progress=False)
    mask = run.reference.fit_for(run.reference._criterion(run.test[0])).mask
    want = score_texts(tiny, run.test_texts[0::2], means=means, mask=mask, answer_ids=run.ids)
    assert rec["foreign"]["chosen_scores"] == pytest.approx(want.double().tolist(), abs=1e-5)


def test_foreign_dataset_rule():
    assert G.foreign_dataset(G.AblationConfig(data="llmbar")) == "hhh"
    assert G.foreign_dataset(G.AblationConfig(data="hhh")) == "llmbar"
    assert G.foreign_dataset(G.AblationConfig(data="hhh", foreign_data="xstest")) == "xstest"


def test_sparsity_axis_refits_with_a_penalty_per_head():
    cfg = G.AblationConfig(grid=["sparsity"], sparsities=[0.01, 0.001])
    cells = G.plan_cells(cfg, 2, 4)
    assert [c.setting for c in cells] == ["0.001", "0.01"] and [c.x for c in cells] == [0.001, 0.01]
    arms = [c.arm_config(cfg.arm) for c in cells]
    assert [a.reinforce.sparsity for a in arms] == [0.001, 0.01]
    assert len({G.fit_key(c, cfg.arm) for c in cells}) == 2  # each value is its own fit
    with pytest.raises(ValueError, match="sparsity=-1"):
        G.AblationConfig(sparsities=[-1.0])


def test_frontier_table_and_figure(tiny_results, tiny):
    from armlens.analysis.frontier import frontier_markdown, frontier_table
    from armlens.plots.frontier import plot_frontier

    out, cells = tiny_results
    table = frontier_table([out], n_boot=100)
    assert set(table["series"]) == {"topk_prob", "topk_attribution", "random", "penalised", "soft", "soft_half",
                                    "reinforce", "zero-shot"}
    assert (table["low"] <= table["accuracy"] + 1e-12).all() and (table["accuracy"] <= table["high"] + 1e-12).all()
    none = cells[(cells.axis == "selection") & (cells.setting == "none")]["accuracy"].mean()
    zero = table[table.series == "zero-shot"].iloc[0]
    assert zero["accuracy"] == pytest.approx(none) and zero["n_heads"] == 0 and zero["n_seeds"] == 2
    k2 = table[(table.series == "random") & (table.setting == "2")].iloc[0]
    assert k2["n_heads"] == 2 and k2["n_pairs"] == 10  # 5 pairs x 2 seeds
    pen = table[table.series == "penalised"].iloc[0]
    cell = cells[(cells.axis == "sparsity")]
    assert pen["n_heads"] == pytest.approx(cell["n_heads"].mean())
    assert "| toy | random | 2 | 2.0 |" in frontier_markdown(table)
    # every point is paired with the full sampled set of the same seeds: the difference of the cells' accuracies
    ref = table[table.series == "reinforce"].iloc[0]
    assert ref["vs_arm"] == 0 and ref["vs_arm_low"] == 0 and ref["vs_arm_high"] == 0
    arm = cells[(cells.axis == "selection") & (cells.setting == "reinforce")].set_index("seed")["accuracy"]
    rnd = cells[(cells.axis == "heads") & (cells.series == "random") & (cells.setting == "2")].set_index("seed")
    assert k2["vs_arm"] == pytest.approx((rnd["accuracy"] - arm).mean())
    assert k2["vs_arm_low"] <= k2["vs_arm"] + 1e-12 <= k2["vs_arm_high"] + 2e-12
    fig = plot_frontier(table)
    names = {t.name for t in fig.data}
    # a series missing from the first panel still gets its one legend entry
    import pandas as pd

    two = pd.concat([table.assign(data="a")[lambda d: d.series != "penalised"], table.assign(data="b")])
    legend = [t.name for t in plot_frontier(two).data if t.showlegend is not False]
    assert legend.count("REINFORCE + sparsity penalty") == 1 and legend.count("random k heads") == 1
    assert {"random k heads", "top-k by P(select)", "REINFORCE + sparsity penalty"} <= names
    # agreement of the frontier's head sets across seeds, against random sets of their sizes
    from armlens.analysis.frontier import frontier_stability, stability_markdown
    from armlens.analysis.heads import expected_random_jaccard

    stable = frontier_stability([out])
    assert set(stable["series"]) == {"reinforce", "penalised", "topk_prob", "topk_attribution"}
    row = stable[(stable.series == "reinforce")].iloc[0]
    a, b = (set(h) for h in cells[(cells.axis == "selection") & (cells.setting == "reinforce")]
            .sort_values("seed")["heads"])
    assert row["n_seeds"] == 2 and row["jaccard"] == pytest.approx(len(a & b) / len(a | b))
    n_total = tiny.cfg.n_layers * tiny.cfg.n_heads  # from run.json's model shape
    assert row["jaccard_random"] == pytest.approx(expected_random_jaccard(len(a), len(b), n_total))
    assert "| toy | reinforce | reinforce |" in stability_markdown(stable)
