"""Scoring across criteria: ``score_pairs(fit=...)``, ``score(fit=...)`` and ``armlens score --criterion`` route every
pair to one chosen fit (an ARM fitted on HHH scores LLMBar), named or given by its criterion text."""

from __future__ import annotations

import json

import pytest
import torch

from armlens import model as M
from armlens.cli import main
from armlens.data.records import PreferencePair
from armlens.errors import BadInputError
from armlens.prompts import CRITERIA
from armlens.rm import POOLED, ActivationRM, CriterionARM

HARMLESS, HELPFUL = CRITERIA["hhh-harmless"], CRITERIA["hhh-helpful"]


def two_fits(model) -> ActivationRM:
    """An ARM holding the fits of two HHH criteria, each writing other means into other heads."""
    cfg = model.cfg
    fits = {}
    for i, (text, heads) in enumerate([(HARMLESS, [(0, 0), (1, 2)]), (HELPFUL, [(0, 3), (1, 1)])]):
        mask = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=torch.Generator().manual_seed(i)) * 3
        fits[text] = CriterionARM(text, means, mask)
    rm = ActivationRM(model)
    rm.fits = fits
    return rm


def llmbar_pairs(n: int = 3) -> list[PreferencePair]:
    """Pairs whose criterion (LLMBar's) is none of the ARM's."""
    return [PreferencePair(id=f"llmbar/{i}", source="llmbar", subset="llmbar-natural", prompt=f"Write {i + 2} words.",
                           chosen=" ".join(["word"] * (i + 2)), rejected="No.") for i in range(n)]


def test_score_pairs_routes_every_pair_to_the_chosen_fit(tiny):
    rm, pairs = two_fits(tiny), llmbar_pairs()
    with pytest.raises(BadInputError, match=r"no fit for the criterion .*--criterion NAME"):
        rm.score_pairs(pairs, show_progress=False)
    chosen, rejected = rm.score_pairs(pairs, show_progress=False, fit="hhh-helpful")
    # the reference: an ARM holding only that fit (a one-fit ARM scores every criterion with it)
    only = ActivationRM.from_patch(tiny, rm.fits[HELPFUL].means, rm.fits[HELPFUL].mask)
    c1, r1 = only.score_pairs(pairs, show_progress=False)
    torch.testing.assert_close(chosen, c1)
    torch.testing.assert_close(rejected, r1)
    by_text = rm.score_pairs(pairs, show_progress=False, fit=HELPFUL)  # the exact criterion text chooses it too
    assert torch.equal(by_text[0], chosen) and torch.equal(by_text[1], rejected)
    other = rm.score_pairs(pairs, show_progress=False, fit="hhh-harmless")
    assert not torch.allclose(other[0], chosen)  # another fit, other scores


def test_score_takes_the_chosen_fit(tiny):
    rm = two_fits(tiny)
    helpful = rm.score("Write two words.", ["word word", "No."], fit="hhh-helpful")
    assert helpful == rm.score("Write two words.", ["word word", "No."], criterion=HELPFUL)
    other = rm.score("Write two words.", "word word", criterion=CRITERIA["llmbar"], fit="hhh-harmless")
    only = ActivationRM.from_patch(tiny, rm.fits[HARMLESS].means, rm.fits[HARMLESS].mask)
    assert other == pytest.approx(only.score("Write two words.", "word word", criterion=CRITERIA["llmbar"]), abs=1e-5)


def test_an_unknown_fit_is_refused_naming_the_fits(tiny):
    rm = two_fits(tiny)
    with pytest.raises(BadInputError) as e:
        rm.score_pairs(llmbar_pairs(), show_progress=False, fit="llmbar")
    message = str(e.value)
    assert "no fit named 'llmbar'" in message and "\n" not in message
    assert f"hhh-harmless/hh-rlhf ({HARMLESS!r})" in message and f"hhh-helpful ({HELPFUL!r})" in message
    pooled = ActivationRM.from_patch(tiny, rm.fits[HELPFUL].means, rm.fits[HELPFUL].mask)
    assert pooled.fit_key("pooled") == pooled.fit_key("*") == POOLED
    with pytest.raises(BadInputError, match=r"no fit named 'hhh-helpful'; its fits: pooled \("):
        pooled.score_pairs(llmbar_pairs(), show_progress=False, fit="hhh-helpful")


def test_cli_score_with_a_chosen_criterion(saved_tiny_model, tmp_path, capsys):
    folder = saved_tiny_model()
    rm = two_fits(M.load_model(str(folder)))
    arm = rm.save(tmp_path / "hhh.arm")
    data = tmp_path / "llmbar.jsonl"
    data.write_text("".join(json.dumps({"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                                        "subset": "llmbar-natural"}) + "\n" for p in llmbar_pairs()))
    argv = ["score", "--rm", str(arm), "--data", f"path:{data}", "--model", str(folder), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "s0")]) == 2  # each pair to its own criterion: no fit for it
    assert "holds no fit for the criterion" in capsys.readouterr().err
    out = tmp_path / "s1"
    assert main([*argv, "--out", str(out), "--criterion", "hhh-helpful"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and summary["config"]["fit"] == HELPFUL
    assert summary["config"]["cli"]["criterion"] == "hhh-helpful"
    assert summary["config"]["heads"] == rm.fits[HELPFUL].heads
