"""``ARMConfig()`` is the one home of the ARM's defaults (issue 40): the stage functions default to it, the configs are
frozen, and what the README, the docs, the module docstrings and ``repr`` say the defaults are is what it holds."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import armlens.activations as A
from armlens.arm_config import ARMConfig
from armlens.evaluation.judge import JudgeConfig
from armlens.prompts import JudgeTemplate
from armlens.rm import ActivationRM
from armlens.selection import ReinforceConfig
from armlens.testing import tiny_model

ROOT = Path(__file__).resolve().parents[1]
FIELDS = sorted((f.name for f in dataclasses.fields(ARMConfig)), key=len, reverse=True)
STATED = re.compile(r"\b(" + "|".join(FIELDS) + r")\s*=\s*([\"'])([^\"']*)\2")
"""``field="value"`` or ``field='value'`` for a field of ARMConfig."""


def stated_defaults() -> list[tuple[str, int, str, str]]:
    """(file, line, field, value) for each ARM setting a README or docs line states as a default (the line says
    "default", or shows an ``ActivationRM(...)`` repr)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "default" in line.lower() or "ActivationRM(model=" in line:
                found += [(path.name, i, m.group(1), m.group(3)) for m in STATED.finditer(line)]
    return found


def test_the_readme_and_docs_state_armconfigs_defaults():
    stated = stated_defaults()
    assert {(f, field) for f, _, field, _ in stated} >= {("README.md", "reading"), ("method.md", "reading")}
    for name, line, field, value in stated:
        assert value == str(getattr(ARMConfig(), field)), f"{name}:{line} states {field}={value!r}"


def test_the_activations_docstring_names_the_default_reading():
    (default,) = re.findall(r"``(\w+)`` \(the default", A.__doc__ or "")
    assert default == ARMConfig().reading


def test_the_repr_shows_armconfigs_defaults():
    text = repr(ActivationRM(tiny_model()))
    cfg = ARMConfig()
    for field in ("reading", "estimator", "selector", "score"):
        assert f"{field}={getattr(cfg, field)!r}" in text, field
    assert f"seed={cfg.seed})" in text


def test_stage_1_defaults_are_armconfigs():
    """``extract_means(model, examples)`` reads as ``ARMConfig()`` does: its settings are ARMConfig's Stage 1 slice."""
    cfg = ARMConfig()
    for fn in (A.extract_means, A.extraction_prompts):
        default = inspect.signature(fn).parameters["config"].default
        assert default.reading == cfg.reading and isinstance(cfg, type(default)), fn.__name__
        assert default == A.ExtractionConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(default)})


@pytest.mark.parametrize("config", [ARMConfig(), A.ExtractionConfig(), ReinforceConfig(), JudgeTemplate(),
                                    JudgeConfig(), *(getattr(JudgeConfig(), s) for s in JudgeConfig.flat_sections)],
                         ids=lambda c: type(c).__name__)
def test_configs_are_frozen_and_hashable(config):
    name = dataclasses.fields(config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, name, getattr(config, name))
    assert hash(config) == hash(dataclasses.replace(config))  # usable as a cache key
