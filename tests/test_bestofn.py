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


def test_replicates_score_the_same_pool_and_pool_over_fits(setup, tiny, capsys):
    t = setup
    g = torch.Generator().manual_seed(5)
    mask = torch.zeros(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    mask[0, 1] = True
    other = ActivationRM.from_patch(tiny, torch.randn(tiny.cfg.n_layers, tiny.cfg.n_heads, tiny.cfg.d_head,
                                                      generator=g), mask,
                                    ARMConfig(template=JudgeTemplate(max_field_tokens=16), seed=1))
    other.save(t / "t1.arm")
    assert main(_argv(t, "--replicates", str(t / "t1.arm"))) == 0
    summary = json.loads((t / "o" / "summary.json").read_text())
    records = [json.loads(line) for line in (t / "o" / "records.jsonl").read_text().splitlines()]
    reps = [json.loads(line) for line in (t / "o" / "replicate-seed1.jsonl").read_text().splitlines()]
    assert [r["id"] for r in reps] == [r["id"] for r in records]  # the same sampled pool, no new sampling
    rep = summary["replicates"]
    assert set(rep["fits"]) == {"arm", "arm seed 1"} and rep["n_fits"] == 2
    assert rep["fits"]["arm seed 1"]["n_prompts"] == 3 and "upbeat" in rep["pooled"]
    assert summary["config"]["replicates"]["arm seed 1"]["sha256"]
    assert "pooled over 2 fits" in (t / "o" / "summary.md").read_text()
    # a rerun reads the replicate's scores back
    assert main(_argv(t, "--replicates", str(t / "t1.arm"))) == 0
    assert len((t / "o" / "replicate-seed1.jsonl").read_text().splitlines()) == 3
    # the run's own seed again is not a replicate: refused before anything is sampled
    argv = _argv(t, "--replicates", str(t / "t.arm"))
    argv[argv.index(str(t / "o"))] = str(t / "fresh")
    assert main(argv) == 2
    assert "replicates need other seeds" in capsys.readouterr().err
    assert not (t / "fresh" / "records.jsonl").exists()


def test_replicate_summary_and_exclusion(tmp_path):
    from armlens.bestofn import replicate_summary, score_replicate
    from armlens.data.records import PreferencePair

    def rec(i, lengths, picks):
        return {"id": f"p{i}", "prompt": f"Q{i}", "criterion": "c", "responses": ["x"] * len(lengths),
                "features": {"length": lengths, "formatted": [0] * len(lengths), "upbeat": [0] * len(lengths)},
                "selected": picks}
    records = [rec(i, [10, 20, 30], {"arm": 2, "zero-shot": 0}) for i in range(4)]
    longest = lambda prompts, completions, **_: [float(k) for k in range(len(completions))]  # noqa: E731
    banned = [PreferencePair(id="f", source="s", subset="s", prompt="Q3", chosen="a", rejected="b")]
    reps = score_replicate(records, longest, RecordLog(tmp_path / "r.jsonl"), exclude=banned)
    assert sorted(reps) == ["p0", "p1", "p2"] and all(r["selected"] == 2 for r in reps.values())
    out = replicate_summary(records, {"arm seed 1": reps}, bootstrap=200)
    assert out["fits"]["arm"]["n_prompts"] == 4 and out["fits"]["arm seed 1"]["n_prompts"] == 3
    assert out["pooled"]["length"]["diff"] == 20.0 and out["pooled"]["length"]["ci95"] == [20.0, 20.0]
    with pytest.raises(ValueError, match="selected on no prompt"):
        replicate_summary(records, {"empty": {}})
