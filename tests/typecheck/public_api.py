"""Typed use of armlens' public surface, for the type checker only (never run): tests/test_public_api.py runs mypy on
this file, so each ``assert_type`` below is a claim about what an editor sees. The ``type: ignore`` lines are claims
too: mypy runs with ``--warn-unused-ignores``, so a name that comes back (``armlens.tiny_model``) fails the check."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import assert_type

import armlens
from armlens import (
    ActivationRM,
    ARMConfig,
    ArmlensError,
    CriterionARM,
    JudgeTemplate,
    PreferencePair,
    ReinforceConfig,
    load_model,
    load_pairs,
    model_info,
    split_pairs,
)
from armlens.data.splits import Split
from armlens.model import ModelInfo
from armlens.patching import PatchHandle
from armlens.typing import HeadMask, Means, Model


def fit_and_score(model: Model, pairs: list[PreferencePair]) -> None:
    config = ARMConfig(reinforce=ReinforceConfig(), template=JudgeTemplate())
    rm = ActivationRM(model, config, seed=0).fit(pairs)
    assert_type(rm, ActivationRM)
    assert_type(rm.score("How do I boil an egg?", "Boil it for 8 minutes."), float)
    assert_type(rm.score("How do I boil an egg?", ["Boil it.", "Fry it."]), list[float])
    assert_type(rm.score("How do I boil an egg?", ("Boil it.", "Fry it.")), list[float])
    assert_type(rm("How do I boil an egg?", "Boil it."), float)
    assert_type(rm("How do I boil an egg?", ["Boil it.", "Fry it."]), list[float])
    assert_type(rm.fits, dict[str, CriterionARM])
    fit = rm.fit_for()
    assert_type(fit, CriterionARM)
    assert_type(fit.heads, list[str])
    assert_type(fit.means, Means)
    assert_type(fit.mask, HeadMask)
    assert_type(rm.heads, list[str])
    assert_type(ActivationRM.load("helpful.arm", model), ActivationRM)


def patching(rm: ActivationRM) -> None:
    block = rm.patched()
    assert_type(block, AbstractContextManager[Model])
    with block as patched_model:
        assert_type(patched_model, Model)
    handle = rm.patch()
    assert_type(handle, PatchHandle)
    with handle as same:
        assert_type(same, PatchHandle)
    handle.remove()


def loading() -> None:
    model = load_model()
    assert_type(model, Model)
    assert_type(model_info(model), ModelInfo)
    pairs = load_pairs("hhh", subsets=["hhh-helpful"])
    assert_type(pairs, list[PreferencePair])
    assert_type(split_pairs(pairs, seed=0, n_fewshot=16, n_select=0), Split)
    assert_type(armlens.__version__, str)
    try:
        pass
    except ArmlensError as e:
        assert_type(e, ArmlensError)


def not_public() -> None:
    _ = armlens.tiny_model  # type: ignore[attr-defined]  # tests' models: armlens.testing.tiny_model
    _ = armlens.no_such_name  # type: ignore[attr-defined]
