"""The scoring engine at the physical limit: shared prefixes, per-text row sets and row patches, checked against one
full forward per (prompt, patch) with :func:`armlens.scoring.score_texts` on tiny MHA and GQA models."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.scoring import RowTable, score_patched, score_rows, score_texts

TEMPLATE = JudgeTemplate()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def pair_texts(model, n: int = 3) -> tuple[list[str], list[int]]:
    """Chosen and rejected judge prompts of ``n`` pairs, and each text's pair index (its prefix-sharing group)."""
    texts, groups = [], []
    for i in range(n):
        prompt = f"Please tell me something true and useful about topic number {i}, in a sentence or two."
        for r in (f"Here is a careful answer about topic {i}.", "No." * (1 + i)):
            texts.append(scalar_prompt(model, Example(prompt, r, None, "Be helpful."), TEMPLATE))
            groups.append(i)
    return texts, groups


def random_rows(model, n_rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_rows, cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g)
    masks = torch.rand(n_rows, cfg.n_layers, cfg.n_heads, generator=g) < 0.4
    masks[0] = False  # row 0: the plain judge
    return means, masks


def test_extend_prefix_equals_full_forward(tiny_any):
    model = tiny_any
    texts, _ = pair_texts(model, 1)
    rows = [M.tokenize(model, [t])[0] for t in texts]
    common = M.common_prefix_length([r[0].tolist() for r in rows])
    assert 20 < common < min(r.shape[1] for r in rows)
    shared = M.shared_prefix(model, rows[0][:, :common])
    for tok in rows:
        cache = M.extend_prefix(model, shared, tok)
        got = M.run_cached_branches(model, cache, 2)[0]
        want = M.run_last_logits(model, tok, torch.ones_like(tok))[0]
        torch.testing.assert_close(got, want.expand_as(got), atol=1e-4, rtol=1e-4)
    assert shared.get_seq_length() == common  # the shared cache is never grown by the prompts extending it
    # a prompt whose prefix is exactly the shared part needs no extension
    exact = M.extend_prefix(model, M.shared_prefix(model, rows[0][:, :-1]), rows[0])
    torch.testing.assert_close(M.run_cached_branches(model, exact, 1)[0, 0],
                               M.run_last_logits(model, rows[0], torch.ones_like(rows[0]))[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="longer than its shared prefix"):
        M.extend_prefix(model, shared, rows[0][:, :common])


def test_common_prefix_length():
    assert M.common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert M.common_prefix_length([[1, 2], [1, 2]]) == 2
    assert M.common_prefix_length([[5], [1]]) == 0
    assert M.common_prefix_length([]) == 0


@pytest.mark.parametrize("share", [True, False])
def test_score_rows_equals_score_texts_per_row(tiny_any, share):
    """Every (text, row) asked for equals one full forward of that text under that row's patch; the rest is NaN."""
    model = tiny_any
    texts, groups = pair_texts(model)
    means, masks = random_rows(model, 4)
    wanted = [[0, 1, 2, 3], [1, 3], [0], [2, 3], [], [0, 1, 2, 3]]
    ids = AnswerIds.of(model)
    rows = score_rows(model, texts, means, masks, answer_ids=ids, rows_per_text=wanted, groups=groups,
                      min_shared_tokens=1 if share else 10**6, chunk=2)
    for r in range(4):
        for kind in ("prob", "normalized", "logit_diff"):
            want = score_texts(model, texts, means=means[r], mask=masks[r], answer_ids=ids, kind=kind)
            got = rows.read(kind)[:, r]
            for i, w in enumerate(wanted):
                if r in w:
                    torch.testing.assert_close(got[i], want[i], atol=1e-4, rtol=1e-3)
                else:
                    assert torch.isnan(got[i]) and rows.argmax[i, r] == -1
    plain = M.run_last_logits(model, *M.tokenize(model, [texts[0]]))[0]
    assert int(rows.argmax[0, 0]) == int(plain.argmax())


def test_row_table_dedupes_by_what_reaches_the_model(tiny):
    cfg = tiny.cfg
    means, masks = random_rows(tiny, 3)
    table = RowTable.for_model(tiny)
    assert table.add(means[1], masks[1]) == 0
    assert table.add(means[1].clone(), masks[1].clone()) == 0  # same content: same row
    other = means[1].clone()
    other[~masks[1]] += 5.0  # values of unselected heads never reach the model
    assert table.add(other, masks[1]) == 0
    assert table.add(means[2], masks[2]) == 1
    plain = table.add(means[2], torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool))
    assert plain == 2 and table.add(None, None) == plain and len(table) == 3
    m, k = table.stacked()
    assert m.shape == (3, cfg.n_layers, cfg.n_heads, cfg.d_head) and not bool(k[2].any())


def test_score_patched_equals_score_texts(tiny_any):
    model = tiny_any
    texts, groups = pair_texts(model)
    means, masks = random_rows(model, 3, seed=1)
    patches = [(means[i % 3], masks[i % 3]) for i in range(len(texts))]
    patches[1] = (None, None)
    got = score_patched(model, texts, patches, groups=groups, kind="normalized")
    for i, (m, k) in enumerate(patches):
        want = score_texts(model, [texts[i]], means=m, mask=k, kind="normalized")[0]
        torch.testing.assert_close(got[i], want, atol=1e-4, rtol=1e-3)


def test_pair_prefix_sharing_runs_the_common_part_once(tiny, monkeypatch):
    """With sharing, each group's common tokens are one forward and each prompt runs only its own tail."""
    texts, groups = pair_texts(tiny, 2)
    calls: list[int] = []
    real = M.shared_prefix

    def counting(model, tokens):
        calls.append(int(tokens.shape[1]))
        return real(model, tokens)

    monkeypatch.setattr(M, "shared_prefix", counting)
    means, masks = random_rows(tiny, 2)
    score_rows(tiny, texts, means, masks, answer_ids=AnswerIds.of(tiny), groups=groups, min_shared_tokens=1)
    assert len(calls) == 2 and min(calls) > 20
    calls.clear()
    score_rows(tiny, texts, means, masks, answer_ids=AnswerIds.of(tiny), groups=groups, min_shared_tokens=10**6)
    assert calls == []


def test_subgroups_share_their_longer_prefix_on_top_of_the_group(tiny_any, monkeypatch):
    """In-context prompts: one group (the demonstrations), and each pair's chosen and rejected queries a subgroup
    that also shares its prompt; the scores equal one full forward per text, and less is run."""
    from armlens.prompts import icl_prompt

    model = tiny_any
    demos = [Example(f"Question {i}: is {i} even?", "Yes." if i % 2 == 0 else "No.", i % 2 == 0) for i in range(2)]
    pairs = [(f"Tell me about the number {k} and why it matters " * 3, f"It is {k}.", f"I will not say {k}.")
             for k in range(3)]
    texts = [icl_prompt(model, demos, Example(p, r, None), TEMPLATE) for p, c, x in pairs for r in (c, x)]
    subgroups = [k for k in range(3) for _ in range(2)]
    means, masks = random_rows(model, 2, seed=3)
    ids = AnswerIds.of(model)
    run: list[int] = []  # tokens each extension runs (all but the last token, beyond what is cached)
    real = M.extend_prefix

    def counting(model_, shared, tokens):
        run.append(int(tokens.shape[1]) - 1 - shared.get_seq_length())
        return real(model_, shared, tokens)

    monkeypatch.setattr(M, "extend_prefix", counting)
    plain = score_rows(model, texts, means, masks, answer_ids=ids, groups=[0] * 6, min_shared_tokens=1)
    plain_run, run[:] = sum(run), []
    nested = score_rows(model, texts, means, masks, answer_ids=ids, groups=[0] * 6, subgroups=subgroups,
                        min_shared_tokens=1)
    for k in ("yes", "no", "logsumexp"):
        torch.testing.assert_close(getattr(nested, k), getattr(plain, k), atol=1e-4, rtol=1e-3)
    for i, t in enumerate(texts):
        want = score_texts(model, [t], means=means[0], mask=masks[0], kind="prob")[0]
        torch.testing.assert_close(nested.read("prob")[i, 0], want, atol=1e-4, rtol=1e-3)
    # 3 subgroup prefixes built on the group's, then 6 texts extended from them: each pair's prompt runs once
    assert len(run) == 9 and sum(run) < 0.7 * plain_run
    with pytest.raises(ValueError, match="subgroups"):
        score_rows(model, texts, means, masks, answer_ids=ids, groups=[0] * 6, subgroups=[0])


def test_row_patch_hooks_refuse_bad_shapes(tiny):
    from armlens.patching import row_patch_hooks

    cfg = tiny.cfg
    with pytest.raises(ValueError, match="same rows"):
        row_patch_hooks(tiny, torch.zeros(2, cfg.n_layers, cfg.n_heads, cfg.d_head),
                        torch.zeros(3, cfg.n_layers, cfg.n_heads, dtype=torch.bool))


def _mask_requests(model, pairs, seeds: int):
    from armlens.bench import _fake_mask_judges

    items = [(p, r) for p in pairs for r in (p.chosen, p.rejected)]
    return [(j, items) for j in _fake_mask_judges(model, seeds, TEMPLATE)]


def _check_shared_scoring_is_exact(model, pairs, demos, atol: float) -> None:
    """score_mask_judges (shared pair prefixes and own prefixes) and the cached-demonstration ICL judge against one
    full forward per (method, seed, prompt)."""
    from armlens.evaluation.baselines import FewShotICLJudge, JudgeConfig, make_judge
    from armlens.evaluation.branches import score_mask_judges
    from armlens.evaluation.judge import ICLSettings, SAVsSettings, SteeringSettings

    requests = _mask_requests(model, pairs, seeds=2)
    assert len({type(j).__name__ for j, _ in requests}) == 3
    for method in ("probe", "savs", "steering"):  # the activation baselines: read at, or steer, the last token
        jcfg = JudgeConfig(template=TEMPLATE, savs=SAVsSettings(top_k=4), steering=SteeringSettings(coefs=(2.0,)))
        requests.append((make_judge(method, model, jcfg).fit(demos), requests[0][1]))
    for min_shared in (1, 10**9):
        for (judge, items), got in zip(requests, score_mask_judges(model, requests, min_shared_tokens=min_shared),
                                       strict=True):
            torch.testing.assert_close(got, judge.score_responses(items), atol=atol, rtol=1e-3)
    items = requests[0][1]
    cfg = JudgeConfig(template=TEMPLATE, icl=ICLSettings(shots=2))
    uncached = JudgeConfig(template=TEMPLATE, icl=ICLSettings(shots=2, cache_demos=False))
    full = FewShotICLJudge(model, uncached).fit(demos)
    torch.testing.assert_close(FewShotICLJudge(model, cfg).fit(demos).score_responses(items),
                               full.score_responses(items), atol=atol, rtol=1e-3)


def test_eval_bench_rows_on_tiny(tiny, data_root):
    from armlens.bench import eval_rows

    rows, info = eval_rows(tiny, root=str(data_root), n_pairs=2, seeds=2, icl_shots=2,
                           template=JudgeTemplate(max_field_tokens=32), log=lambda s: None)
    assert [r.name for r in rows] == ["eval_3_methods_x_1_seeds", "eval_3_methods_x_2_seeds",
                                      "eval_3_methods_x_2_seeds_own_prefix", "icl_cached_demos", "implicit_shared_prompt"]
    assert rows[0].reference < rows[1].reference  # one seed's share of the naive loop
    assert info["eval_units"] == 6 and len(info["eval_prompt_tokens"]) == 4
    for r in rows:
        assert r.reference > 0 and r.fast > 0 and list(r.to_dict())[-1] == "ratio"
        assert float(r.note.rsplit(" ", 1)[-1]) < 1e-3  # max |score diff| against the naive path


@pytest.mark.slow
def test_shared_scoring_is_exact_on_the_default_model(default_model, data_root):
    from armlens.data import load_pairs

    pairs = load_pairs("hhh", root=str(data_root), limit=4)
    _check_shared_scoring_is_exact(default_model, pairs[:2], pairs[2:], atol=1e-4)


def test_shared_scoring_is_exact_on_tiny_models(tiny_any):
    from armlens.data.records import PreferencePair

    pairs = [PreferencePair(id=f"p{i}", source="toy", subset="toy", prompt=f"Please say something true about {t}.",
                            chosen=f"A careful, true note about {t}.", rejected="No." * (i + 1))
             for i, t in enumerate(["owls", "tea", "maps", "ink"])]
    _check_shared_scoring_is_exact(tiny_any, pairs[:2], pairs[2:], atol=1e-4)
