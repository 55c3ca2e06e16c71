"""``armlens demo`` end to end on a tiny model and the real HHH files (the default model runs it in the README)."""

from __future__ import annotations

import json

import pytest

from armlens.demo import ensure_hhh, run_demo
from armlens.plots import plot_method_accuracy


def test_demo_runs_and_resumes(tiny, data_root, tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(str(out), root=str(data_root), limit=3, n_fewshot=8, steps=2, max_field_tokens=80, show_progress=False,
                       figure=False, model=tiny)
    methods = summary["results"]["hhh"]["methods"]
    assert set(methods) == {"arm", "zero-shot", "few-shot-icl"}
    for e in methods.values():
        lo, hi = e["ci95"]
        assert 0 <= lo <= e["accuracy_mean"] <= hi <= 1
    assert "vs_arm" in methods["zero-shot"] and "vs_arm" not in methods["arm"]
    assert json.loads((out / "summary.json").read_text())["run"]["computed"] == 3
    again = run_demo(str(out), root=str(data_root), limit=3, n_fewshot=8, steps=2, max_field_tokens=80, show_progress=False,
                     figure=False, model=tiny)
    assert again["run"] == {"units": 3, "computed": 0, "reused": 3}
    fig = plot_method_accuracy(summary, "hhh")
    assert fig.layout.yaxis.title.text == "Pairwise accuracy (%)" and "hhh" in fig.layout.title.text
    assert [t.x[0] for t in fig.data] == ["arm", "zero-shot", "few-shot-icl"]


def test_demo_data_root_that_lacks_hhh_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="hhh"):
        ensure_hhh(str(tmp_path))
