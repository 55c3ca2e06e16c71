"""``armlens bestofn`` on a tiny model: records, summary, resumption after a torn write, settings check."""

from __future__ import annotations

import json

import pytest
import torch

from armlens import model as M
from armlens.bestofn import REWARDS, RecordLog, summarize, summary_markdown
from armlens.cli import main
from armlens.prompts import JudgeTemplate
from armlens.rm import ActivationRM, ARMConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tiny, tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    mask[1, :2] = True
    means = torch.randn(tiny.cfg.n_layers, tiny.cfg.n_heads, tiny.cfg.d_head, generator=g)
    rm = ActivationRM.from_patch(tiny, means, mask, ARMConfig(template=JudgeTemplate(max_field_tokens=16)))
    rm.save(tmp_path / "t.arm")
    rows = [{"prompt": f"Question {i}?", "chosen": "A fine answer.", "rejected": "no"} for i in range(10)]
    rows.append({"prompt": "Question 0?", "chosen": "dup", "rejected": "dup2"})  # a repeated prompt counts once
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(M, "load_model", lambda *a, **k: tiny)
    return tmp_path


def _argv(t, *extra):
    return ["bestofn", "--rm", str(t / "t.arm"), "--data", f"path:{t / 'd.jsonl'}", "--out", str(t / "o"),
            "--n", "3", "--limit", "3", "--max-new-tokens", "6", "--icl-shots", "2", "--bootstrap", "50", "--quiet",
            *extra]


def test_bestofn_runs_resumes_and_reports(setup, capsys):
    t = setup
    assert main(_argv(t)) == 0
    summary = json.loads((t / "o" / "summary.json").read_text())
    assert summary["n_prompts"] == 3 and summary["n_per_prompt"] == 3
    assert set(summary["rewards"]) == set(REWARDS)
    assert summary["versions"]["torch"] and summary["config"]["seed"] == 0 and len(summary["seeds"]["per_prompt"]) == 3
    longer = summary["rewards"]["longer"]["length"]
    assert longer["diff"]["mean"] >= 0 and longer["selected"]["mean"] >= summary["pool"]["length"]["mean"]
    assert "arm vs zero-shot" in summary["agreement"]
    records = RecordLog(t / "o" / "records.jsonl").read()
    assert len(records) == 3 and all(len(r["responses"]) == 3 for r in records.values())
    first = (t / "o" / "records.jsonl").read_bytes()
    # a torn last line (an interrupted write) is dropped and that prompt redone, to the same record
    lines = first.splitlines(keepends=True)
    (t / "o" / "records.jsonl").write_bytes(b"".join(lines[:2]) + lines[2][:20])
    capsys.readouterr()
    assert main(_argv(t)) == 0
    assert "2 of 3 prompts already done" in capsys.readouterr().out
    assert (t / "o" / "records.jsonl").read_bytes() == first
    assert json.loads((t / "o" / "summary.json").read_text())["rewards"] == summary["rewards"]
    # other settings in the same folder are refused
    assert main(_argv(t, "--seed", "1")) == 2
    assert "other settings (seed differ" in capsys.readouterr().err


def test_summary_agreement_and_pool():
    recs = [{"responses": ["a", "bb"], "features": {"length": [1, 2], "formatted": [0, 1], "upbeat": [0, 0]},
             "scores": {"x": [0.1, 0.9], "y": [0.2, 0.8]}, "selected": {"x": 1, "y": 1}},
            {"responses": ["a", "bb"], "features": {"length": [1, 2], "formatted": [0, 0], "upbeat": [1, 0]},
             "scores": {"x": [0.9, 0.1], "y": [0.2, 0.8]}, "selected": {"x": 0, "y": 1}}]
    s = summarize(recs, ["x", "y"], bootstrap=20)
    assert s["agreement"]["x vs y"]["same_selection"]["mean"] == 0.5
    assert s["agreement"]["x vs y"]["spearman_mean"] == 0.0  # +1 and -1
    assert s["rewards"]["y"]["length"]["diff"]["mean"] == 0.5 and s["pool"]["formatted"]["mean"] == 0.25
    assert s["versus_reference"] == {} and s["reference"] is None  # no zero-shot reward among x, y
    # against a reference reward: x's selections minus y's, paired over prompts
    v = summarize(recs, ["x", "y"], bootstrap=20, reference="y")
    assert v["reference"] == "y" and list(v["versus_reference"]) == ["x"]
    assert v["versus_reference"]["x"]["length"]["diff"] == -0.5  # prompt 2: x picks 'a' (1), y picks 'bb' (2)
    assert v["versus_reference"]["x"]["upbeat"]["diff"] == 0.5
    assert "minus the y reward's selection" in summary_markdown(v)
