"""GRPO through TRL's own GRPOTrainer with the ARM as the reward: two steps on a tiny policy (needs the ``rl`` extra)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

from armlens import model as M  # noqa: E402
from armlens.grpo import run_grpo  # noqa: E402
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
    policy, tok = M.tiny_hf_model(seed=3)
    before = [p.detach().clone() for p in policy.parameters()]
    history = run_grpo(policy, tok, counted, ["Hi?", "Name a colour.", "Why?", "Go"], tmp_path, steps=2,
                       num_generations=2, prompts_per_step=2, max_completion_length=6, learning_rate=1e-2)
    assert calls == [4, 4]  # 2 prompts x 2 generations per step, scored by the ARM
    assert len(history) == 2 and all("rewards/arm/mean" in h and "rewards/length/mean" in h for h in history)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and "rewards/formatted/mean" in steps[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True)), "no update"
