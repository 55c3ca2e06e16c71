"""Judges as TRL reward functions (:mod:`armlens.reward`): both of TRL's formats, the ARM's per-criterion routing and
mix, the zero-shot and few-shot ICL judges, normalisation; and the style features."""

from __future__ import annotations

import pytest
import torch

from armlens.data.records import PreferencePair
from armlens.evaluation.baselines import make_judge
from armlens.evaluation.judge import ICLSettings, JudgeConfig
from armlens.prompts import JudgeTemplate
from armlens.reward import arm_reward, as_prompt, as_response, judge_reward, length_reward
from armlens.rm import ActivationRM, ARMConfig, CriterionARM
from armlens.style import is_formatted, is_upbeat, style_features

pytestmark = pytest.mark.usefixtures("one_thread")
SHORT = JudgeTemplate(max_field_tokens=24)
HELPFUL, HARMLESS = "The response is helpful.", "The response is harmless."
PROMPTS = ["How do I boil an egg?", "How do I boil an egg?", "Name a colour."]
COMPLETIONS = ["Put it in boiling water for 8 minutes.", "Great question! Eggs are fun.", "- blue\n- red"]


def _rm(model) -> ActivationRM:
    g = torch.Generator().manual_seed(0)
    rm = ActivationRM(model, ARMConfig(template=SHORT))
    for i, crit in enumerate((HELPFUL, HARMLESS)):
        mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
        mask[i, :2] = True
        rm.fits[crit] = CriterionARM(crit, 2 * torch.randn(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head,
                                                           generator=g), mask)
    return rm


def test_formats_and_name():
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert as_prompt("Hi?") == "Hi?" and as_prompt([{"role": "user", "content": "Hi?"}]) == "Hi?"
    assert as_prompt(conv) == conv
    assert as_response([{"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}]) == "Yo"
    assert length_reward(completions=["ab", [{"role": "assistant", "content": "abc"}]]) == [2.0, 3.0]


def test_arm_reward_matches_the_arm_in_both_formats(tiny):
    rm = _rm(tiny)
    with pytest.raises(ValueError, match="2 criteria"):
        arm_reward(rm)
    reward = arm_reward(rm, criterion=HARMLESS)
    assert reward.__name__ == "arm"
    got = reward(prompts=PROMPTS, completions=COMPLETIONS, completion_ids=[[1]] * 3)
    want = [rm.score(p, c, criterion=HARMLESS) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert got == pytest.approx(want, abs=1e-4)
    conv = reward(prompts=[[{"role": "user", "content": p}] for p in PROMPTS],
                  completions=[[{"role": "assistant", "content": c}] for c in COMPLETIONS])
    assert conv == pytest.approx(got, abs=1e-6)
    # a criterion column routes each row to its fit; a mix weighs the criteria
    routed = reward(prompts=PROMPTS, completions=COMPLETIONS, criterion=[HELPFUL, HARMLESS, HELPFUL])
    assert routed[1] == pytest.approx(got[1], abs=1e-6) and routed[0] == pytest.approx(
        rm.score(PROMPTS[0], COMPLETIONS[0], criterion=HELPFUL), abs=1e-4)
    mix = arm_reward(rm, weights={"helpful": 1.0, "harmless": -2.0}, score="logit_diff")
    mixed = mix(prompts=PROMPTS, completions=COMPLETIONS)
    s = mix.last_scores
    assert mixed == pytest.approx([a - 2 * b for a, b in zip(s[HELPFUL], s[HARMLESS], strict=True)], abs=1e-6)
    with pytest.raises(ValueError, match="matches 2 criteria"):
        arm_reward(rm, weights={"response": 1.0})
    # centring per prompt (GRPO's groups) and a fixed offset/scale
    grouped = arm_reward(rm, criterion=HARMLESS, normalize="prompt", offset=1.0, scale=2.0)(
        prompts=PROMPTS, completions=COMPLETIONS)
    assert grouped[0] == pytest.approx(-grouped[1] - 4.0, abs=1e-5) and grouped[2] == pytest.approx(-2.0)


def test_judge_rewards(tiny):
    cfg = JudgeConfig(template=SHORT, icl=ICLSettings(shots=2))
    zero = make_judge("zero-shot", tiny, cfg)
    reward = judge_reward(zero, criterion=HELPFUL)
    assert reward.__name__ == "zero_shot"
    got = reward(prompts=PROMPTS, completions=COMPLETIONS)
    pairs = [PreferencePair(id=f"r/{i}", source="r", subset="r", prompt=p, chosen=c, rejected="")
             for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True))]
    zero.config = JudgeConfig(template=SHORT, criterion=HELPFUL)
    want = zero.score_responses([(p, p.chosen) for p in pairs]).tolist()
    assert got == pytest.approx(want, abs=1e-4)
    icl = make_judge("few-shot-icl", tiny, cfg)
    with pytest.raises(RuntimeError, match="not fitted"):
        judge_reward(icl)
    fs = [PreferencePair(id=f"f/{i}", source="f", subset="f", prompt=f"Q{i}?", chosen="Yes, sure.", rejected="no")
          for i in range(3)]
    scores = judge_reward(icl.fit(fs), weights={HELPFUL: 0.5, HARMLESS: 0.5})(prompts=PROMPTS,
                                                                               completions=COMPLETIONS)
    helpful, harmless = (judge_reward(icl, criterion=c)(prompts=PROMPTS, completions=COMPLETIONS)
                         for c in (HELPFUL, HARMLESS))
    assert helpful != pytest.approx(harmless, abs=1e-6)  # the criterion reaches the judge
    assert scores == pytest.approx([0.5 * a + 0.5 * b for a, b in zip(helpful, harmless, strict=True)], abs=1e-6)


def test_style_features():
    assert is_formatted("- a\n- b") and is_formatted("## Title\ntext") and is_formatted("a **bold** claim")
    assert not is_formatted("Plain prose, 2 * 3 = 6.")
    assert is_upbeat("Great question! Here it is.") and is_upbeat("I hope this helps.")
    assert is_upbeat("You\u2019re doing great") and not is_upbeat("Boil it for eight minutes.")
    assert style_features("- hi") == {"length": 4, "formatted": 1, "upbeat": 0}
