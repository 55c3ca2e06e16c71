"""GRPO through TRL's own GRPOTrainer with the ARM as the reward: two steps on a tiny policy (needs the ``rl`` extra)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

from armlens import testing as T  # noqa: E402
from armlens.grpo import compare_policies, run_grpo, sample_policy  # noqa: E402
from armlens.prompts import JudgeTemplate  # noqa: E402
from armlens.reward import arm_reward  # noqa: E402
from armlens.rm import ActivationRM, ARMConfig  # noqa: E402


@pytest.mark.usefixtures("one_thread")
def test_two_grpo_steps_with_the_arm_reward(tiny, tmp_path):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    mask[0, 1] = True
    rm = ActivationRM.from_patch(tiny, torch.randn(tiny.cfg.n_layers, tiny.cfg.n_heads, tiny.cfg.d_head, generator=g),
                                 mask, ARMConfig(template=JudgeTemplate(max_field_tokens=16)))
    reward = arm_reward(rm, score="logit_diff")
    calls = []

    def counted(**kw):
        calls.append(len(kw["completions"]))
        return reward(**kw)

    counted.__name__ = "arm"
    policy, tok = T.tiny_hf_model(seed=3)
    before = [p.detach().clone() for p in policy.parameters()]
    history = run_grpo(policy, tok, counted, ["Hi?", "Name a colour.", "Why?", "Go"], tmp_path, steps=2,
                       num_generations=2, prompts_per_step=2, max_completion_length=6, learning_rate=1e-2)
    assert calls == [4, 4]  # 2 prompts x 2 generations per step, scored by the ARM
    assert len(history) == 2 and all("rewards/arm/mean" in h and "rewards/length/mean" in h for h in history)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and "rewards/formatted/mean" in steps[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True)), "no update"


@pytest.mark.usefixtures("one_thread")
def test_criterion_column_reaches_the_reward(tiny, tmp_path):
    seen = []

    def reward(prompts, completions, criterion=None, **_):
        seen.extend(criterion)
        return [0.0] * len(completions)

    reward.__name__ = "r"
    policy, tok = T.tiny_hf_model(seed=3)
    run_grpo(policy, tok, reward, ["Hi?", "Why?"], tmp_path, steps=1, num_generations=2, prompts_per_step=2,
             max_completion_length=4, conversational=True, columns={"criterion": ["c-hi", "c-why"]})
    assert sorted(set(seen)) == ["c-hi", "c-why"] and len(seen) == 4
    with pytest.raises(ValueError, match="one value per prompt"):
        run_grpo(policy, tok, reward, ["Hi?", "Why?"], tmp_path, steps=1, columns={"criterion": ["only one"]})


@pytest.mark.usefixtures("one_thread")
def test_sample_policy_is_seeded_per_prompt(tmp_path):
    policy, tok = T.tiny_hf_model(seed=3)
    a = sample_policy(policy, tok, ["Hi?", "Why?"], n=3, max_new_tokens=5, seed=7)
    b = sample_policy(policy, tok, ["Hi?", "Why?"], n=3, max_new_tokens=5, seed=7)
    assert a == b and [len(g) for g in a] == [3, 3]
    # prompt i is sampled under seed + i: the second prompt alone with seed 8 draws what it drew in the pair
    assert sample_policy(policy, tok, ["Why?"], n=3, max_new_tokens=5, seed=8) == a[1:]
    policy.train()
    sample_policy(policy, tok, ["Hi?"], n=1, max_new_tokens=2)
    assert policy.training


def test_compare_policies_is_paired_and_finds_a_planted_change():
    prompts = 30
    initial = [[f"answer {i}", f"reply {i}"] for i in range(prompts)]
    longer = [[c + " and a much longer tail of words" for c in g] for g in initial]
    listed = [[f"- {c}\n- more" for c in g] for g in initial]
    out = compare_policies({"initial": initial, "long": longer, "listed": listed, "same": initial},
                           {"r": {"initial": [[0.0, 0.0]] * prompts, "long": [[1.0, 0.5]] * prompts}},
                           bootstrap=2000)
    assert out["n_prompts"] == prompts and out["n_per_prompt"] == 2
    long = out["vs_base"]["long"]
    assert long["length"]["diff"] == pytest.approx(len(" and a much longer tail of words"))
    assert long["length"]["ci95"][0] > 0 and long["formatted"]["diff"] == 0
    assert long["reward:r"]["diff"] == pytest.approx(0.75) and "reward:r" not in out["vs_base"]["listed"]
    assert out["vs_base"]["listed"]["formatted"]["diff"] == 1.0
    same = out["vs_base"]["same"]
    assert same["length"]["diff"] == 0 and same["length"]["p"] == 1.0
    assert out["between"]["long - listed"]["formatted"]["diff"] == -1.0
    with pytest.raises(ValueError, match="base policy"):
        compare_policies({"long": longer})
    with pytest.raises(ValueError, match="same, non-empty"):
        compare_policies({"initial": initial, "short": initial[:3]})
