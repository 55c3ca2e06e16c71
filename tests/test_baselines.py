"""The baseline judges: shapes, exact semantics on hand-made pairs, and invariants (tiny random models)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from armlens import generation
from armlens import model as M
from armlens import testing as T
from armlens.data.records import PreferencePair
from armlens.evaluation import output_judges
from armlens.evaluation.baselines import (
    METHODS,
    Judge,
    JudgeConfig,
    balanced_demos,
    make_judge,
    parse_methods,
    response_logprobs,
)
from armlens.evaluation.judge import (
    GenSettings,
    ICLSettings,
    ProbeSettings,
    SAVsSettings,
    SteeringSettings,
    VotingSettings,
)
from armlens.generation import generate_answers, parse_answer, votes_to_scores
from armlens.model import decoding
from armlens.prompts import AnswerIds, JudgeTemplate, examples_from_pairs
from armlens.rm import ActivationRM, ARMConfig
from armlens.selection import ReinforceConfig

SHORT = JudgeTemplate(max_field_tokens=24)


def make_pairs(n: int = 8, offset: int = 0) -> list[PreferencePair]:
    topics = ["the sea", "bread", "a cat", "rain", "music", "trains", "tea", "chess", "snow", "maps", "owls", "ink"]
    return [
        PreferencePair(
            id=f"toy/{i}", source="toy", subset="toy", prompt=f"Tell me about {topics[i % len(topics)]}.",
            chosen=f"Here is a short, accurate note about {topics[i % len(topics)]}.", rejected="No." * (1 + i % 3),
        )
        for i in range(offset, offset + n)
    ]


def fast_config(**kw) -> JudgeConfig:
    arm = ARMConfig(n_trials=4, reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    base = dict(template=SHORT, arm=arm, icl=ICLSettings(shots=2), gen=GenSettings(max_new_tokens=3),
                voting=VotingSettings(n=3), savs=SAVsSettings(top_k=5))
    base.update(kw)
    return JudgeConfig(**base)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_scores_pairs(tiny, method):
    pairs = make_pairs(7)
    judge = make_judge(method, tiny, fast_config())
    if judge.trains:
        with pytest.raises(RuntimeError, match="not fitted"):
            judge.score_pairs(pairs[5:])
    judge.fit(pairs[:3], pairs[3:5])
    chosen, rejected = judge.score_pairs(pairs[5:])
    assert chosen.shape == rejected.shape == (2,)
    assert chosen.dtype == torch.float32 and torch.isfinite(chosen).all() and torch.isfinite(rejected).all()
    info = judge.info()
    assert info["method"] == method and info["reads"]
    # pointwise: a response's score does not depend on the other response of its pair
    again = judge.score_responses([(pairs[6], pairs[6].rejected), (pairs[5], pairs[5].chosen)])
    if method != "voting":  # sampled: the draw depends on the batch
        torch.testing.assert_close(again, torch.stack([rejected[1], chosen[0]]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no pairs"):
        judge.score_pairs([])


def test_grouped_query_model_runs_the_activation_methods(tiny_gqa):
    pairs = make_pairs(6)
    for method in ("probe", "steering", "savs", "implicit"):
        hook_z = fast_config(probe=ProbeSettings(features="hook_z"))
        judge = make_judge(method, tiny_gqa, hook_z).fit(pairs[:3], pairs[3:4])
        c, r = judge.score_pairs(pairs[4:])
        assert c.shape == (2,) and torch.isfinite(r).all()


def test_length_baselines_give_known_accuracy(tiny):
    def pair(i, chosen, rejected):
        return PreferencePair(id=f"len/{i}", source="toy", subset="toy", prompt="q", chosen=chosen, rejected=rejected)

    pairs = [pair(0, "long answer", "short"), pair(1, "a much longer one", "tiny"), pair(2, "abcdef", "abc"),
             pair(3, "ab", "abcdefgh"), pair(4, "same", "SAME")]  # 3 longer-chosen, 1 shorter-chosen, 1 tie
    for method, expected in (("longer", 3 / 5), ("shorter", 1 / 5)):
        c, r = make_judge(method, tiny).fit([]).score_pairs(pairs)
        assert float((c > r).float().mean()) == pytest.approx(expected)
        assert int((c == r).sum()) == 1
    c, _ = make_judge("longer", tiny).score_pairs(pairs)
    assert c.tolist() == [11.0, 17.0, 6.0, 2.0, 4.0]


def test_the_judge_is_the_one_source_of_the_arms_shared_settings(tiny):
    """The ARM methods fit ``arm`` with the judge's template, criterion, routing, score, batch size and seed; a
    different value set on ``arm`` itself (which would be replaced without a word) is refused, while the defaults that
    config.json files hold there still load, for every seed."""
    from armlens.errors import BadInputError
    from armlens.evaluation.judge import ARM_SHARED

    cfg = JudgeConfig(template=SHORT, criterion="Be brief.", routing="oracle", score="logit_diff", batch_size=4,
                      seed=3, arm=ARMConfig(n_trials=4))
    arm = make_judge("arm", tiny, cfg).arm_config()
    assert {k: getattr(arm, k) for k in ARM_SHARED} == {k: getattr(cfg, k) for k in ARM_SHARED}
    assert arm.n_trials == 4 and arm == cfg.arm_config()
    for field, value in (("score", "normalized"), ("batch_size", 8), ("template", SHORT), ("seed", 1)):
        with pytest.raises(BadInputError, match=f"arm.{field}="):
            JudgeConfig(arm=ARMConfig(**{field: value}))
        JudgeConfig(**{field: value}, arm=ARMConfig(**{field: value}))  # the same value: nothing is overwritten
    saved = JudgeConfig.from_dict(JudgeConfig().to_dict())  # config.json: ARMConfig()'s values under arm
    assert [dataclasses.replace(saved, seed=s).arm_config().seed for s in (0, 1, 2)] == [0, 1, 2]  # eval's seeds


def test_parse_answer():
    assert parse_answer("Yes") == "yes"
    assert parse_answer(" no.") == "no"
    assert parse_answer("I think YES, it does") == "yes"
    assert parse_answer("No, yes") == "no"  # the first answer word counts
    assert parse_answer("Yesterday") is None and parse_answer("Nothing") is None
    assert parse_answer("") is None and parse_answer("maybe") is None
    scores, counts = votes_to_scores([["Yes"], ["no"], ["hmm"], ["yes", "no", "???", "yes"]])
    torch.testing.assert_close(scores, torch.tensor([1.0, 0.0, 0.5, (1 + 0 + 0.5 + 1) / 4]))
    assert counts == {"yes": 3, "no": 2, "unparseable": 2}


def scripted_logits(model):
    """Fake last-token logits: after the prompt, answer Yes if the response holds GOOD, No for BAD, a fair coin for
    COIN and junk ("x") otherwise; once an answer has started, end the turn."""
    ids = AnswerIds.of(model)
    eos, junk = model.tokenizer.eos_token_id, M.encode(model, "x")[0]

    def fake(model_, tokens, attention_mask, fwd_hooks=()):
        out = torch.full((tokens.shape[0], model.cfg.d_vocab), -20.0)
        for i in range(tokens.shape[0]):
            text = model.tokenizer.decode(tokens[i][attention_mask[i].bool()])
            head, _, generated = text.rpartition("<|im_start|>assistant\n")
            response = head.rsplit("Response:", 1)[-1]
            if generated:
                out[i, eos if "x" not in generated else junk] = 0.0
            elif "GOOD" in response:
                out[i, ids.yes] = 0.0
            elif "BAD" in response:
                out[i, ids.no] = 0.0
            elif "COIN" in response:
                out[i, ids.yes] = out[i, ids.no] = 0.0
            else:
                out[i, junk] = 0.0
        return out

    return fake


def scripted_pairs():
    return [PreferencePair(id="s/0", source="s", subset="s", prompt="q0", chosen="GOOD", rejected="BAD"),
            PreferencePair(id="s/1", source="s", subset="s", prompt="q1", chosen="GOOD", rejected="nonsense"),
            PreferencePair(id="s/2", source="s", subset="s", prompt="q2", chosen="nonsense", rejected="BAD")]


def test_generative_judge_parses_and_counts_unparseable(tiny, monkeypatch):
    monkeypatch.setattr(M, "run_last_logits", scripted_logits(tiny))
    monkeypatch.setattr(decoding, "run_last_logits", scripted_logits(tiny))
    monkeypatch.setattr(generation, "USE_CACHE", False)  # the script fakes full forwards
    monkeypatch.setitem(output_judges._GREEDY_MEMO, tiny, {})  # answers of the real tiny model stay out
    judge = make_judge("generative", tiny, fast_config(gen=GenSettings(max_new_tokens=4)))
    c, r = judge.score_pairs(scripted_pairs())
    assert c.tolist() == [1.0, 1.0, 0.5] and r.tolist() == [0.0, 0.5, 0.0]
    stats = judge.last_stats
    assert stats["unparseable"] == 2 and stats["n_answers"] == 6 and stats["answers"] == {"yes": 2, "no": 2, "unparseable": 2}
    # junk runs to max_new_tokens; a Yes/No token settles the answer at once
    texts = ["<|im_start|>user\nResponse:\nnonsense<|im_end|>\n<|im_start|>assistant\n",
             "<|im_start|>user\nResponse:\nGOOD<|im_end|>\n<|im_start|>assistant\n"]
    assert generate_answers(tiny, texts, max_new_tokens=4) == [["xxxx"], ["Yes"]]


def test_greedy_answers_are_generated_once_per_model_and_sampled_votes_are_not(tiny, monkeypatch):
    """Every seed of an evaluation asks the generative judge the same questions on the test pairs the seeds share."""
    calls = []
    real = output_judges.generate_answers
    monkeypatch.setattr(output_judges, "generate_answers",
                        lambda m, texts, **kw: calls.append(len(texts)) or real(m, texts, **kw))
    monkeypatch.setitem(output_judges._GREEDY_MEMO, tiny, {})
    pairs = make_pairs(3)
    two = GenSettings(max_new_tokens=2)
    first = make_judge("generative", tiny, fast_config(seed=0, gen=two)).score_pairs(pairs[:2])
    second = make_judge("generative", tiny, fast_config(seed=1, gen=two)).score_pairs(pairs)
    assert calls == [4, 2]  # the second seed generates only the new pair's two answers
    assert torch.equal(second[0][:2], first[0]) and torch.equal(second[1][:2], first[1])
    judge = make_judge("generative", tiny, fast_config(gen=GenSettings(max_new_tokens=2)))
    text = judge._prompts(judge._queries([(pairs[2], pairs[2].chosen)]))[0]
    assert output_judges._GREEDY_MEMO[tiny][json.dumps([2, text])] == real(tiny, [text], max_new_tokens=2)[0]
    make_judge("generative", tiny, fast_config(gen=GenSettings(max_new_tokens=3))).score_pairs(pairs[:1])
    assert calls[-1] == 2  # another answer length is another question
    for _ in range(2):
        make_judge("voting", tiny, fast_config(voting=VotingSettings(n=2, temperature=1.0))).score_pairs(pairs[:1])
    assert calls[-2:] == [2, 2]  # sampled votes are drawn every time


def test_voting_is_seeded(tiny, monkeypatch):
    monkeypatch.setattr(M, "run_last_logits", scripted_logits(tiny))
    monkeypatch.setattr(decoding, "run_last_logits", scripted_logits(tiny))
    monkeypatch.setattr(generation, "USE_CACHE", False)  # the script fakes full forwards
    coin = [PreferencePair(id=f"c/{i}", source="c", subset="c", prompt=f"q{i}", chosen="COIN", rejected="COIN")
            for i in range(6)]
    cfg = fast_config(voting=VotingSettings(n=5, temperature=1.0), seed=3)
    a = make_judge("voting", tiny, cfg).score_pairs(coin)
    b = make_judge("voting", tiny, cfg).score_pairs(coin)
    other = make_judge("voting", tiny, dataclasses.replace(cfg, seed=4)).score_pairs(coin)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], other[0]) and torch.equal(a[1], other[1]))
    scores = torch.cat(a)
    assert ((scores * 5).round() == scores * 5).all() and 0 < float(scores.mean()) < 1  # shares of 5 votes, mixed
    judge = make_judge("voting", tiny, cfg)
    judge.score_pairs(scripted_pairs())  # deterministic answers stay deterministic under sampling
    assert judge.last_stats["answers"] == {"yes": 10, "no": 10, "unparseable": 10}


def separable_pairs(n: int, offset: int = 0) -> list[PreferencePair]:
    return [PreferencePair(id=f"sep/{i}", source="sep", subset="sep", prompt=f"Question {i}?",
                           chosen="Yes yes yes", rejected="zzzz qqqq") for i in range(offset, offset + n)]


@pytest.mark.parametrize("features", ["resid", "hook_z"])
def test_probe_learns_a_separable_toy(tiny, features):
    cfg = fast_config(probe=ProbeSettings(features=features))
    judge = make_judge("probe", tiny, cfg).fit(separable_pairs(6), [])
    assert judge.info()["train_accuracy"] == 1.0
    c, r = judge.score_pairs(separable_pairs(4, offset=20))  # unseen prompts
    assert float(c.min()) > float(r.max())  # every chosen response above every rejected one, not only pairwise
    assert (r < 0.5).all()  # and the rejected ones read as No


def test_steering_with_coefficient_zero_is_the_zero_shot_judge(tiny_any):
    pairs = make_pairs(6)
    zero_shot = make_judge("zero-shot", tiny_any, fast_config()).score_pairs(pairs[4:])
    still = make_judge("steering", tiny_any, fast_config(steering=SteeringSettings(coefs=(0.0,)))).fit(pairs[:4])
    assert still.info()["coef"] == 0.0 and still.info()["vector_norm"] > 0
    steered = still.score_pairs(pairs[4:])
    torch.testing.assert_close(steered[0], zero_shot[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(steered[1], zero_shot[1], atol=1e-6, rtol=1e-5)
    everywhere = SteeringSettings(coefs=(8.0,), positions="all")
    pushed = make_judge("steering", tiny_any, fast_config(steering=everywhere))
    moved = pushed.fit(pairs[:4]).score_pairs(pairs[4:])
    assert not torch.allclose(moved[0], zero_shot[0], atol=1e-4)


def test_steering_picks_layer_and_coefficient_on_the_selection_pairs(tiny):
    pairs = make_pairs(3)
    two_by_two = SteeringSettings(layers=(0, 1), coefs=(0.0, 4.0))
    grid = make_judge("steering", tiny, fast_config(steering=two_by_two))
    info = grid.fit(pairs[:2], pairs[2:3]).info()
    assert len(info["grid"]) == 4
    best = max(info["grid"], key=lambda g: (g["accuracy"], g["margin"]))
    assert (info["layer"], info["coef"]) == (best["layer"], best["coef"])
    with pytest.raises(ValueError, match="layers"):
        make_judge("steering", tiny, fast_config(steering=SteeringSettings(layers=(99,)))).fit(pairs[:2])


def test_savs_votes_of_the_top_heads(tiny):
    pairs = make_pairs(8)
    judge = make_judge("savs", tiny, fast_config(savs=SAVsSettings(top_k=100))).fit(pairs[:4], pairs[4:6])
    n_heads = tiny.cfg.n_layers * tiny.cfg.n_heads
    info = judge.info()
    assert len(info["heads"]) == n_heads == int(judge.mask.sum())  # k is capped at the number of heads
    assert info["head_accuracy"] == sorted(info["head_accuracy"], reverse=True)
    c, r = judge.score_pairs(pairs[6:])
    votes = torch.cat([c, r]) * n_heads
    assert torch.allclose(votes, votes.round(), atol=1e-5)  # shares of head votes
    top3 = make_judge("savs", tiny, fast_config(savs=SAVsSettings(top_k=3))).fit(pairs[:4], pairs[4:6])
    assert top3.info()["heads"] == info["heads"][:3]
    margin_cfg = fast_config(savs=SAVsSettings(top_k=3, score="margin"))
    margin = make_judge("savs", tiny, margin_cfg).fit(pairs[:4], pairs[4:6])
    mc, _ = margin.score_pairs(pairs[6:])
    assert ((mc >= -2) & (mc <= 2)).all()


def test_implicit_reward_is_the_mean_response_logprob(tiny_any):
    prompts = ["Tell me about tea.", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                      {"role": "user", "content": "And rain?"}]]
    responses = ["Tea is a drink.", "Rain is water falling."]
    batched = response_logprobs(tiny_any, prompts, responses, batch_size=2)
    single = torch.cat([response_logprobs(tiny_any, [p], [r], batch_size=1) for p, r in zip(prompts, responses, strict=True)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    # by hand, for the first one
    prefix = M.apply_chat_template(tiny_any, [{"role": "user", "content": prompts[0]}])
    n_prefix = len(M.encode(tiny_any, prefix))
    tokens, attn = M.tokenize(tiny_any, [prefix + responses[0]])
    logp = M.run_with_hooks(tiny_any, tokens, attn).log_softmax(-1)[0]
    target = tokens[0, n_prefix:]
    manual = logp[n_prefix - 1 : -1].gather(-1, target.unsqueeze(-1)).mean()
    torch.testing.assert_close(batched[0], manual, atol=1e-5, rtol=1e-5)


def test_responses_to_one_prompt_share_its_forward_and_score_the_same(tiny_any, monkeypatch):
    """Two prompts asked three times each (chosen, rejected, a hacked one) and one asked once: the shared prompts
    run once each, and every score is the full forward's; an empty response still gets EMPTY_REWARD."""
    prompts = ["Tell me about tea."] * 3 + [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                                           {"role": "user", "content": "And rain?"}]] * 3 + ["Alone here."]
    responses = ["Tea is a drink.", "No.", "Tea is a drink!!! Great question!", "Rain is water falling.", "Wet.", "",
                 "Indeed."]
    runs = []
    real = M.shared_prefix
    monkeypatch.setattr(M, "shared_prefix", lambda m, t: runs.append(t.shape[1]) or real(m, t))
    shared = response_logprobs(tiny_any, prompts, responses, batch_size=2)
    assert len(runs) == 2  # one cache per repeated prompt; the lone prompt takes a full forward
    full = response_logprobs(tiny_any, prompts, responses, batch_size=2, share_prompts=False)
    assert len(runs) == 2
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)
    assert shared[5] == output_judges.EMPTY_REWARD and (shared[:5] < 0).all()


def test_icl_judge_without_demonstrations_is_the_zero_shot_judge(tiny):
    pairs = make_pairs(6)
    zero = make_judge("zero-shot", tiny, fast_config()).score_pairs(pairs[4:])
    no_demos = fast_config(icl=ICLSettings(shots=0))
    icl0 = make_judge("few-shot-icl", tiny, no_demos).fit(pairs[:4]).score_pairs(pairs[4:])
    torch.testing.assert_close(icl0[0], zero[0])
    icl = make_judge("few-shot-icl", tiny, fast_config(icl=ICLSettings(shots=3))).fit(pairs[:4])
    assert icl.info()["n_demos"] == 3 and not torch.allclose(icl.score_pairs(pairs[4:])[0], zero[0])
    examples = examples_from_pairs(pairs[:4])
    demos = balanced_demos(examples, 4, seed=1)
    assert sum(d.label for d in demos) == 2 and demos == balanced_demos(examples, 4, seed=1)


@pytest.mark.parametrize("cache_demos", [True, False])
def test_icl_judge_keeps_its_scores_in_a_memo_folder(tiny, tmp_path, monkeypatch, cache_demos):
    """A few-shot-icl unit (tens of minutes at full size) saves its scores part by part and resumes from them: with
    a memo folder its scores equal the scores without one, a new judge of the same seed reads every one back and
    computes nothing, a lost part is computed again (only it), and another seed's demonstrations read nothing."""
    monkeypatch.setattr(output_judges, "MEMO_PART", 4)
    pairs = make_pairs(9)
    calls = []
    fn = "score_patched" if cache_demos else "score_texts"
    real = getattr(output_judges, fn)
    monkeypatch.setattr(output_judges, fn,
                        lambda m, texts, *a, **kw: calls.append(len(texts)) or real(m, texts, *a, **kw))

    def judge(seed=0, memo=True):
        icl = ICLSettings(shots=2, cache_demos=cache_demos)
        j = make_judge("few-shot-icl", tiny, fast_config(icl=icl, seed=seed))
        j.memo_folder = tmp_path / "memo" if memo else None
        return j.fit(pairs[:4])

    plain = judge(memo=False).score_pairs(pairs[4:])
    assert calls == [10]
    first = judge().score_pairs(pairs[4:])
    assert calls == [10, 4, 4, 2] and len(list((tmp_path / "memo").glob("part-*.json"))) == 3
    for a, b in zip(first, plain, strict=True):
        torch.testing.assert_close(a, b)
    again = judge().score_pairs(pairs[4:])
    assert calls == [10, 4, 4, 2]  # a resumed unit: everything read back
    torch.testing.assert_close(again[0], first[0])
    (tmp_path / "memo" / "part-00001.json").unlink()
    judge().score_pairs(pairs[4:])
    assert calls == [10, 4, 4, 2, 4]
    other = judge(seed=1)
    assert other.demos != judge().demos
    other.score_pairs(pairs[4:])
    assert calls[5:] == [4, 4, 2]  # other demonstrations, other prompts: nothing read back


def test_arm_judge_is_the_activation_rm(tiny_gqa):
    pairs = make_pairs(6)
    judge = make_judge("arm", tiny_gqa, fast_config(seed=2, score="logit_diff")).fit(pairs[:2], pairs[2:4])
    rm = judge.rm
    assert isinstance(rm, ActivationRM) and judge.info()["heads"] == rm.heads
    assert rm.config.seed == 2 and rm.config.score == "logit_diff" and rm.config.template == SHORT
    c, r = judge.score_pairs(pairs[4:])
    c2, r2 = rm.score_pairs(pairs[4:], show_progress=False)
    torch.testing.assert_close(c, c2)
    torch.testing.assert_close(r, r2)


def test_method_names_and_configs():
    assert parse_methods("arm, zero-shot,arm") == ["arm", "zero-shot"]
    assert parse_methods("all") == list(METHODS) and len(METHODS) == 14 and "mean-ablation" in METHODS
    with pytest.raises(ValueError, match="unknown method"):
        parse_methods("arm,gpt4")
    with pytest.raises(ValueError, match="no methods"):
        parse_methods("")
    with pytest.raises(ValueError, match="unknown method"):
        make_judge("nope", None)
    cfg = fast_config(steering=SteeringSettings(layers=(1, 2)))
    assert JudgeConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown JudgeConfig field"):
        JudgeConfig.from_dict({"bogus": 1})
    assert issubclass(type(make_judge("longer", None)), Judge)


@pytest.mark.slow
def test_baselines_on_the_default_model_with_real_pairs(default_model, data_root):
    from armlens.data import load_pairs

    pairs = load_pairs("hhh", root=data_root, subsets=["hhh-helpful"], limit=4)
    cfg = JudgeConfig(template=JudgeTemplate(max_field_tokens=48), gen=GenSettings(max_new_tokens=2))
    zero = make_judge("zero-shot", default_model, cfg).score_pairs(pairs)
    assert zero[0].shape == (4,) and ((zero[0] > 0) & (zero[0] < 1)).all()
    implicit = make_judge("implicit", default_model, cfg).score_pairs(pairs)
    assert (implicit[0] < 0).all() and torch.isfinite(implicit[1]).all()  # mean log-probabilities
    prompts, responses = [p.prompt for p in pairs for _ in range(2)], [r for p in pairs for r in (p.chosen, p.rejected)]
    shared = response_logprobs(default_model, prompts, responses)  # a pair's two responses after one prompt forward
    torch.testing.assert_close(shared, response_logprobs(default_model, prompts, responses, share_prompts=False),
                               atol=2e-5, rtol=2e-5)
    gen = make_judge("generative", default_model, cfg)
    gen.score_pairs(pairs)
    assert gen.last_stats["n_answers"] == 8
    assert gen.last_stats["unparseable"] < gen.last_stats["n_answers"]  # the instruct model answers Yes/No


def test_implicit_judge_computes_each_response_once_per_model(tiny, monkeypatch):
    """Every seed of an evaluation asks the implicit judge the same questions: the second judge (another seed)
    computes nothing, and its scores are the first one's."""
    from armlens.evaluation import output_judges

    pairs = make_pairs(3)
    calls = []
    real = output_judges.response_logprobs
    monkeypatch.setattr(output_judges, "response_logprobs",
                        lambda m, prompts, responses, **kw: calls.append(len(responses)) or real(m, prompts, responses, **kw))
    output_judges._IMPLICIT_MEMO.pop(tiny, None)
    first = make_judge("implicit", tiny, fast_config(seed=0)).score_pairs(pairs)
    second = make_judge("implicit", tiny, fast_config(seed=1)).score_pairs(pairs[1:] + pairs[:1])
    assert calls == [6]  # three pairs' six responses, once
    torch.testing.assert_close(second[0], torch.cat([first[0][1:], first[0][:1]]))
    want = real(tiny, [p.prompt for p in pairs], [p.chosen for p in pairs], max_response_tokens=SHORT.max_field_tokens)
    torch.testing.assert_close(first[0], want)


@pytest.mark.parametrize("method", ["implicit", "generative"])
def test_a_seed_free_judge_keeps_what_it_computed_in_its_memo_folder(tiny, tmp_path, monkeypatch, method, caplog):
    """With a memo folder, a judge in a new process (an emptied memo) reads back every saved value and computes
    nothing; a lost or broken part is computed again, and only it; another model reads nothing."""
    from armlens.evaluation import output_judges

    store = output_judges._IMPLICIT_MEMO if method == "implicit" else output_judges._GREEDY_MEMO
    pairs = make_pairs(5)
    calls = []
    monkeypatch.setattr(output_judges, "MEMO_PART", 4)

    def judge(model):
        j = make_judge(method, model, fast_config(gen=GenSettings(max_new_tokens=2)))
        j.memo_folder = tmp_path / "memo"
        return j

    def spy(name):
        real = getattr(output_judges, name)
        monkeypatch.setattr(output_judges, name,
                            lambda m, a, *rest, **kw: calls.append(len(a)) or real(m, a, *rest, **kw))

    spy("response_logprobs" if method == "implicit" else "generate_answers")
    monkeypatch.setitem(store, tiny, {})
    first = judge(tiny).score_pairs(pairs)
    assert calls == [4, 4, 2] and len(list((tmp_path / "memo").glob("part-*.json"))) == 3
    monkeypatch.setitem(store, tiny, {})  # a new process
    again = judge(tiny).score_pairs(pairs)
    assert calls == [4, 4, 2]
    torch.testing.assert_close(again[0], first[0])
    torch.testing.assert_close(again[1], first[1])
    (tmp_path / "memo" / "part-00001.json").unlink()
    (tmp_path / "memo" / "part-00002.json").write_text("{broken")
    monkeypatch.setitem(store, tiny, {})
    with caplog.at_level("WARNING"):
        judge(tiny).score_pairs(pairs)
    assert "part-00002.json not used" in caplog.text
    assert calls == [4, 4, 2, 4, 2]  # the six lost values, in new parts
    other = T.tiny_model(n_layers=2, n_heads=4, d_head=16, seed=5)
    monkeypatch.setitem(store, other, {})
    judge(other).score_pairs(pairs[:1])
    assert calls == [4, 4, 2, 4, 2, 2]  # saved under another model's fingerprint: nothing read back
