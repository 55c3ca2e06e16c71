"""``armlens eval`` end to end on a tiny model: files, statistics, the bias suite, resuming, and bad input."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from armlens import io as aio
from armlens import model as M
from armlens import testing as T
from armlens.cli import main
from armlens.evaluation import baselines
from armlens.evaluation.baselines import JudgeConfig
from armlens.evaluation.jobs import run_unit
from armlens.evaluation.judge import HeadSettings, ICLSettings, ProbeSettings, SAVsSettings, SteeringSettings
from armlens.evaluation.planning import dataset_slug, plan_dataset, sample_test, unit_items
from armlens.evaluation.runner import EvalConfig, results_markdown, run_eval
from armlens.prompts import Example, JudgeTemplate
from armlens.rm import ARMConfig
from armlens.selection import ReinforceConfig

TOPICS = ["the sea", "bread", "a cat", "rain", "music", "trains", "tea", "chess", "snow", "maps", "owls", "kites",
          "rice", "ink"]


@pytest.fixture()
def toy_file(tmp_path) -> Path:
    rows = [{"id": f"r{i}", "subset": "toy-a" if i % 2 else "toy-b", "prompt": f"Tell me about {t}.",
             "chosen": f"A short, accurate note about {t}.", "rejected": "No." * (1 + i % 3)}
            for i, t in enumerate(TOPICS)]
    for row in rows[:5]:  # format-real and length-real members: a longer rejected response, as a list
        row["rejected"] = "- one thing to say\n- another thing to say\n- a third thing to say"
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(toy_file: Path, out: Path, max_field_tokens: int | None = 24, **kw) -> EvalConfig:
    arm = ARMConfig(n_trials=4, reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    judge = JudgeConfig(arm=arm, icl=ICLSettings(shots=2), template=JudgeTemplate(max_field_tokens=max_field_tokens))
    base = dict(data=[f"path:{toy_file}"], out=str(out), methods=["arm", "zero-shot", "longer", "shorter"], seeds=2,
                limit=6, n_fewshot=3, n_select=2, n_bootstrap=200,
                bias_kinds=["length", "format-real", "length-real"], judge=judge, show_progress=False)
    base.update(kw)
    return EvalConfig(**base)


def with_field_cap(cfg: EvalConfig, max_field_tokens: int | None, **kw) -> EvalConfig:
    """``cfg`` with another judge field cap (and other fields replaced)."""
    judge = dataclasses.replace(cfg.judge, template=dataclasses.replace(cfg.judge.template,
                                                                          max_field_tokens=max_field_tokens))
    return dataclasses.replace(cfg, judge=judge, **kw)


_ORIGINAL_FIT = baselines.Judge.fit


class FitCounter:
    """Counts Judge.fit calls per method (monkeypatched), optionally failing for one method."""

    def __init__(self, monkeypatch, fail: str | None = None):
        self.calls: list[str] = []

        def fit(judge, few_shot, select=None, **kw):
            self.calls.append(judge.name)
            if judge.name == fail:
                raise RuntimeError("interrupted")
            return _ORIGINAL_FIT(judge, few_shot, select, **kw)

        monkeypatch.setattr(baselines.Judge, "fit", fit)


def test_run_eval_end_to_end(tiny, toy_file, tmp_path):
    out = tmp_path / "out"
    summary = run_eval(tiny_config(toy_file, out), model=tiny)
    res = summary["results"][f"path:{toy_file}"]
    assert res["seeds"] == [0, 1] and res["n_test_per_seed"] == [6, 6]
    methods = res["methods"]
    assert list(methods) == ["arm", "zero-shot", "longer", "shorter"]
    for name, e in methods.items():
        assert 0 <= e["accuracy_mean"] <= 1 and e["accuracy_std"] >= 0 and e["n_items"] == 12
        assert e["n_prompts"] == 12  # every toy pair has its own prompt: the bootstrap's clusters are the pairs
        assert e["ci95"][0] <= e["accuracy_mean"] <= e["ci95"][1]
        assert set(e["subsets"]) == {"toy-a", "toy-b"} and e["sections"]
        assert len(e["per_seed"]) == 2 and e["reads"]
        assert set(e["bias"]) == {"length", "format-real", "length-real"}
        assert (name == "arm") == ("vs_arm" not in e)
    # exact numbers for the length judges: padding the rejected response always fools `longer`, never `shorter`;
    # on the real slices (chosen shorter / only rejected a list, here longer) `longer` always prefers the rejected
    longer, shorter = methods["longer"]["bias"], methods["shorter"]["bias"]
    assert longer["length"]["hack_rate_mean"] == 1.0 and shorter["length"]["hack_rate_mean"] == 0.0
    assert longer["length"]["n"] == 12 and longer["length"]["accuracy_clean_mean"] == methods["longer"]["accuracy_mean"]
    # the seeds' test samples overlap, so n (pairs scored over seeds) and the distinct pairs differ: both are kept
    items = aio.read_jsonl(out / "items.jsonl.gz")
    test_ids = {r["id"] for r in items if r["split"] == "test" and r["method"] == "arm"}
    assert methods["arm"]["n_distinct_prompts"] == len(test_ids) < methods["arm"]["n_prompts"]  # the clusters
    assert f"[6, 6] ({len(test_ids)} distinct prompts)." in (out / "results.md").read_text()
    length_ids = {r["id"] for r in items if r["split"] == "bias-length" and r["method"] == "longer"}
    assert longer["length"]["n_pairs"] == len(length_ids) < longer["length"]["n"]
    assert longer["length-real"]["n"] > 0 and longer["length-real"]["hack_rate_mean"] == 1.0
    assert shorter["length-real"]["hack_rate_mean"] == 0.0 and longer["format-real"]["hack_rate_mean"] == 1.0
    # hack rates carry intervals, and the ARM's is compared with each method's on the same biased pairs
    assert longer["length"]["ci95"] == [1.0, 1.0] and shorter["length"]["ci95"] == [0.0, 0.0]
    arm_length = methods["arm"]["bias"]["length"]
    assert arm_length["ci95"][0] <= arm_length["hack_rate_mean"] <= arm_length["ci95"][1]
    assert "vs_arm" not in arm_length
    d = longer["length"]["vs_arm"]
    assert d["n"] == 12 and d["arm_minus_method"] == pytest.approx(arm_length["hack_rate_mean"] - 1.0)
    assert d["ci95"][0] <= d["arm_minus_method"] <= d["ci95"][1]
    vs = methods["longer"]["vs_arm"]
    assert vs["n"] == 12 and vs["ci95"][0] <= vs["arm_minus_method"] <= vs["ci95"][1] and 0 < vs["p_value"] <= 1
    # files
    for f in ("summary.json", "results.md", "items.jsonl.gz", "config.json"):  # per-item files gzip-compressed
        assert (out / f).is_file()
    slug = dataset_slug(f"path:{toy_file}")
    unit = out / slug / "seed0" / "arm"
    assert (unit / "result.json").is_file() and (unit / "items.jsonl.gz").is_file()
    assert not list(out.rglob("items.jsonl")) and not list(out.rglob("split.json"))
    split = aio.read_json(out / slug / "seed0" / "split.json.gz")
    assert split["sizes"] == {"fewshot": 3, "select": 2, "test": 9} and len(split["test_sample"]["ids"]) == 6
    items = aio.read_jsonl(out / "items.jsonl.gz")
    test_rows = [r for r in items if r["split"] == "test"]
    assert len(test_rows) == 4 * 2 * 6
    assert {r["split"] for r in items} >= {"test", "bias-length"}
    assert all(r["correct"] == (r["chosen_score"] > r["rejected_score"]) for r in items)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["versions"]["torch"] and saved["datasets"][f"path:{toy_file}"]["pairs_sha256"]
    assert set(saved["datasets"][f"path:{toy_file}"]["splits"]) == {"0", "1"}
    assert "strict" in saved["protocol"]["accuracy"] and saved["config"]["methods"] == ["arm", "zero-shot", "longer", "shorter"]
    md = (out / "results.md").read_text()
    assert "| arm |" in md and "ARM − method" in md
    n_pairs = summary["results"][f"path:{toy_file}"]["methods"]["arm"]["bias"]["length"]["n_pairs"]
    assert f"length (n=12, {n_pairs} distinct)" in md
    longer_row = next(line for line in md.split("Bias suite")[1].splitlines() if line.startswith("| longer |"))
    assert "| 100.0 [100.0, 100.0] |" in longer_row
    assert "Hack rate, ARM − method" in md
    assert md == results_markdown(saved)


def test_rerun_recomputes_nothing_and_resumes_after_interruption(tiny, toy_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["zero-shot", "few-shot-icl", "longer"], seeds=2, limit=4, bias_kinds=["length"])
    counter = FitCounter(monkeypatch, fail="few-shot-icl")
    # mask-based units (zero-shot) of every seed are fitted and scored together first, then the others one by one
    with pytest.raises(RuntimeError, match="interrupted"):  # dies at seed 0's ICL judge, after both zero-shots finished
        run_eval(cfg, model=tiny)
    assert counter.calls == ["zero-shot", "zero-shot", "few-shot-icl"]
    assert not (out / "summary.json").exists()
    assert all((out / dataset_slug(f"path:{toy_file}") / f"seed{s}" / "zero-shot" / "result.json").is_file()
               for s in (0, 1))

    counter = FitCounter(monkeypatch)
    first = run_eval(cfg, model=tiny)
    # both zero-shot units were kept; `longer` is seed-free, so its two seeds are one job
    assert counter.calls == ["few-shot-icl", "longer", "longer", "few-shot-icl"]
    assert first["run"] == {"units": 6, "computed": 4, "reused": 2}

    (out / "summary.json").unlink()
    (out / "results.md").unlink()
    counter = FitCounter(monkeypatch)
    monkeypatch.setattr(M, "load_model", lambda *a, **k: pytest.fail("the model was loaded with nothing to compute"))
    renamed = dataclasses.replace(cfg, model=M.model_id(tiny))
    with pytest.raises(ValueError, match=r"holds an evaluation with other settings \(model differ\).*--change-settings"):
        run_eval(renamed, model=None)
    second = run_eval(renamed, model=None, allow_changed_settings=True)  # units are keyed by model id
    assert counter.calls == [] and second["run"]["computed"] == 0
    assert second["results"] == first["results"]
    assert (out / "summary.json").is_file() and (out / "results.md").is_file()

    # a changed setting makes exactly the affected units stale
    counter = FitCounter(monkeypatch)
    one_shot = dataclasses.replace(cfg.judge, icl=ICLSettings(shots=1))
    third = run_eval(dataclasses.replace(cfg, judge=one_shot), model=tiny, allow_changed_settings=True)
    assert counter.calls == ["few-shot-icl", "few-shot-icl"] and third["run"]["computed"] == 2


def test_a_shared_job_stopped_while_scoring_resumes_without_fitting_again(tiny, toy_file, tmp_path, monkeypatch,
                                                                           caplog):
    from armlens.evaluation import jobs
    from armlens.rm import ActivationRM

    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["arm", "zero-shot"], seeds=2, limit=4, bias_kinds=["length"])

    def stop(*a, **k):
        raise RuntimeError("stopped while scoring")

    with monkeypatch.context() as m:  # both ARMs fitted, then the run dies in the shared scoring pass
        m.setattr(jobs, "score_mask_judges", stop)
        with pytest.raises(RuntimeError, match="stopped while scoring"):
            run_eval(cfg, model=tiny)
    folder = out / dataset_slug(f"path:{toy_file}")
    cached = {s: list((folder / f"seed{s}" / "arm").glob("fit-*.arm")) for s in (0, 1)}
    assert all(len(v) == 1 for v in cached.values()) and not list(folder.glob("seed*/*/result.json"))
    assert not list(folder.glob("seed*/zero-shot/fit-*"))  # a judge with nothing to learn keeps no file

    fits = []
    original = ActivationRM.fit
    monkeypatch.setattr(ActivationRM, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    resumed = run_eval(cfg, model=tiny)
    assert fits == [] and resumed["run"]["computed"] == 4  # every unit scored, no ARM fitted again
    infos = {s: json.loads((folder / f"seed{s}" / "arm" / "result.json").read_text())["info"] for s in (0, 1)}
    assert {s: i["fit_cache"] for s, i in infos.items()} == {s: v[0].name for s, v in cached.items()}
    assert infos[0]["heads"] != [] and infos[0]["few_shot_hash"]

    # the cached fit gives the numbers a fresh fit gives
    fresh = run_eval(dataclasses.replace(cfg, out=str(tmp_path / "fresh")), model=tiny)
    assert len(fits) == 2
    key = f"path:{toy_file}"
    assert resumed["results"][key]["methods"]["arm"]["accuracy_mean"] == fresh["results"][key]["methods"]["arm"][
        "accuracy_mean"]

    # an unreadable cache file is fitted over, with a warning; another ARM setting is another file
    cached[0][0].write_bytes(b"not a safetensors file")
    for f in folder.glob("seed*/arm/result.json"):
        f.unlink()
    with caplog.at_level("WARNING"):
        run_eval(cfg, model=tiny)
    assert len(fits) == 3 and "cached fit" in caplog.text and "fitting again" in caplog.text
    arm = dataclasses.replace(cfg.judge.arm, n_trials=3)
    run_eval(dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, arm=arm)), model=tiny,
             allow_changed_settings=True)
    assert len(fits) == 5 and len(list((folder / "seed0" / "arm").glob("fit-*.arm"))) == 2


def test_a_shared_job_stopped_halfway_through_scoring_resumes_from_its_saved_parts(tiny, toy_file, tmp_path,
                                                                                    monkeypatch):
    from armlens.evaluation import branches
    from armlens.evaluation.activation_judges import ProbeJudge
    from armlens.rm import ActivationRM

    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["arm", "zero-shot", "probe"], seeds=2, limit=4, bias_kinds=["length"])
    monkeypatch.setattr(branches, "PART_PROMPTS", 4)
    calls = []
    original = branches.score_rows

    def dies_on_the_second_part(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped while scoring")
        return original(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(branches, "score_rows", dies_on_the_second_part)
        with pytest.raises(RuntimeError, match="stopped while scoring"):
            run_eval(cfg, model=tiny)
    folder = out / dataset_slug(f"path:{toy_file}")
    assert [p.name for p in (folder / "branch-pass").iterdir()] == ["part-0000.json"]
    assert len(list(folder.glob("seed*/arm/fit-*.arm"))) == 2 and len(list(folder.glob("seed*/probe/fit-*"))) == 2

    fits, calls = [], []
    for cls in (ActivationRM, ProbeJudge):
        monkeypatch.setattr(cls, "fit" if cls is ActivationRM else "_fit",
                            lambda self, *a, _f=getattr(cls, "fit" if cls is ActivationRM else "_fit"), **k:
                            fits.append(1) or _f(self, *a, **k))
    monkeypatch.setattr(branches, "score_rows", lambda *a, **k: calls.append(1) or original(*a, **k))
    resumed = run_eval(cfg, model=tiny)
    result = json.loads((folder / "seed0" / "arm" / "result.json").read_text())
    assert fits == [] and result["branch_pass"]["parts_reused"] == 1
    assert len(calls) == result["branch_pass"]["parts"] - 1  # only the parts not saved yet
    assert not (folder / "branch-pass").exists()  # its parts are in the units now

    monkeypatch.setattr(branches, "score_rows", original)
    fresh = run_eval(dataclasses.replace(cfg, out=str(tmp_path / "fresh")), model=tiny)
    key = f"path:{toy_file}"
    for method in ("arm", "zero-shot", "probe"):
        assert resumed["results"][key]["methods"][method]["accuracy_mean"] == pytest.approx(
            fresh["results"][key]["methods"][method]["accuracy_mean"]), method


def test_a_seed_free_job_stopped_halfway_resumes_from_its_memo(tiny, toy_file, tmp_path, monkeypatch):
    """The implicit judge's job (every seed in one process) dies in its third part: on the rerun, in a new process
    (emptied memo), the saved parts are read back and only the rest is computed; the memo folder is gone once the
    units are written, and the numbers are a fresh run's."""
    from armlens.evaluation import output_judges

    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["implicit"], seeds=2, limit=4, bias_kinds=["length"])
    monkeypatch.setattr(output_judges, "MEMO_PART", 4)
    real = output_judges.response_logprobs
    asked: list[int] = []

    def dies_on_the_third_part(m, prompts, responses, **kw):
        asked.append(len(responses))
        if len(asked) == 3:
            raise RuntimeError("stopped while scoring")
        return real(m, prompts, responses, **kw)

    monkeypatch.setitem(output_judges._IMPLICIT_MEMO, tiny, {})
    with monkeypatch.context() as m:
        m.setattr(output_judges, "response_logprobs", dies_on_the_third_part)
        with pytest.raises(RuntimeError, match="stopped while scoring"):
            run_eval(cfg, model=tiny)
    folder = out / dataset_slug(f"path:{toy_file}")
    assert sorted(p.name for p in (folder / "implicit-memo").iterdir()) == ["part-00000.json", "part-00001.json"]
    assert not list(folder.glob("seed*/implicit/result.json"))  # the job had written nothing else

    monkeypatch.setitem(output_judges._IMPLICIT_MEMO, tiny, {})  # a new process
    asked.clear()
    monkeypatch.setattr(output_judges, "response_logprobs",
                        lambda m, p, r, **kw: asked.append(len(r)) or real(m, p, r, **kw))
    resumed = run_eval(cfg, model=tiny)
    monkeypatch.setitem(output_judges._IMPLICIT_MEMO, tiny, {})
    fresh_asked = len(asked)
    fresh = run_eval(dataclasses.replace(cfg, out=str(tmp_path / "fresh")), model=tiny)
    n_all = sum(asked[fresh_asked:])
    assert sum(asked[:fresh_asked]) == n_all - 8  # the two saved parts were not computed again
    assert not (folder / "implicit-memo").exists()
    key = f"path:{toy_file}"
    assert resumed["results"][key]["methods"]["implicit"]["accuracy_mean"] == \
        fresh["results"][key]["methods"]["implicit"]["accuracy_mean"]
    for seed in (0, 1):
        got, want = (unit_items_of(f / dataset_slug(key) / f"seed{seed}" / "implicit")
                     for f in (out, tmp_path / "fresh"))
        assert [s for r in got for s in (r["chosen_score"], r["rejected_score"])] == pytest.approx(
            [s for r in want for s in (r["chosen_score"], r["rejected_score"])], abs=1e-6)


def test_an_icl_unit_stopped_halfway_resumes_from_its_seeds_memo(tiny, toy_file, tmp_path, monkeypatch):
    """A few-shot-icl unit dies in its second part: its seed's memo folder keeps the first, the rerun computes only
    the rest, the folder is gone once the unit is written, and the scores are a fresh run's."""
    from armlens.evaluation import output_judges

    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["few-shot-icl"], seeds=1, limit=4, bias_kinds=["length-real"])
    monkeypatch.setattr(output_judges, "MEMO_PART", 4)
    real = output_judges.score_patched
    asked: list[int] = []

    def dies_on_the_second_part(m, texts, *a, **kw):
        asked.append(len(texts))
        if len(asked) == 2:
            raise RuntimeError("stopped while scoring")
        return real(m, texts, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(output_judges, "score_patched", dies_on_the_second_part)
        with pytest.raises(RuntimeError, match="stopped while scoring"):
            run_eval(cfg, model=tiny)
    seed = out / dataset_slug(f"path:{toy_file}") / "seed0"
    assert sorted(p.name for p in (seed / "few-shot-icl-memo").iterdir()) == ["part-00000.json"]
    assert not (seed / "few-shot-icl" / "result.json").exists()
    asked.clear()
    monkeypatch.setattr(output_judges, "score_patched",
                        lambda m, t, *a, **kw: asked.append(len(t)) or real(m, t, *a, **kw))
    run_eval(cfg, model=tiny)
    assert asked == [4]  # 4 test pairs' 8 prompts: the saved part was read back
    assert not (seed / "few-shot-icl-memo").exists() and (seed / "few-shot-icl" / "result.json").is_file()
    run_eval(dataclasses.replace(cfg, out=str(tmp_path / "fresh")), model=tiny)
    got, want = (unit_items_of(f / dataset_slug(f"path:{toy_file}") / "seed0" / "few-shot-icl")
                 for f in (out, tmp_path / "fresh"))
    assert [s for r in got for s in (r["chosen_score"], r["rejected_score"])] == pytest.approx(
        [s for r in want for s in (r["chosen_score"], r["rejected_score"])], abs=1e-6)


def test_bias_methods_limits_the_hacked_responses_to_some_methods(tiny, toy_file, tmp_path):
    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["arm", "zero-shot", "longer"], seeds=2, limit=4,
                      bias_kinds=["length", "length-real"])
    everything = run_eval(cfg, model=tiny)
    assert everything["run"]["computed"] == 6
    some = dataclasses.replace(cfg, bias_methods=["arm", "longer"])
    fewer = run_eval(some, model=tiny, allow_changed_settings=True)
    assert fewer["run"] == {"units": 6, "computed": 2, "reused": 4}  # only zero-shot's units changed
    key = f"path:{toy_file}"
    zero, arm = (fewer["results"][key]["methods"][m]["bias"] for m in ("zero-shot", "arm"))
    assert zero["length"] == {"n": 0} and arm["length"]["n"] == 8 and "vs_arm" not in zero["length"]
    assert zero["length-real"]["n"] == arm["length-real"]["n"] > 0  # a real slice costs nothing: every method has it
    assert fewer["results"][key]["methods"]["zero-shot"]["accuracy_mean"] == \
        everything["results"][key]["methods"]["zero-shot"]["accuracy_mean"]
    folder = out / dataset_slug(key)
    splits = {r["split"] for r in unit_items_of(folder / "seed0" / "zero-shot")}
    assert splits == {"test", "bias-length-real"}
    assert "bias-length" in {r["split"] for r in unit_items_of(folder / "seed0" / "arm")}
    md = results_markdown(fewer)
    assert "| zero-shot | " in md and "n/a" in md
    with pytest.raises(ValueError, match="--bias-methods names probe, not among --methods"):
        dataclasses.replace(cfg, bias_methods=["arm", "probe"]).validate()


def unit_items_of(folder: Path) -> list[dict]:
    return aio.read_jsonl(folder / "items.jsonl.gz")


def test_a_seed_free_method_is_one_job_per_dataset(toy_file, tmp_path):
    from armlens.evaluation.jobs import plan_jobs

    cfg = tiny_config(toy_file, tmp_path / "out", methods=["arm", "generative", "voting", "implicit", "few-shot-icl"],
                      seeds=3)
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path / "out")
    jobs = plan_jobs([(p, m, cfg.judge_config(p.seed)) for p in plans for m in cfg.methods])
    got = [(job.shared, [(p.seed, m) for p, m, _ in job.units]) for job in jobs]
    assert got[0] == (True, [(0, "arm"), (1, "arm"), (2, "arm")])
    for method in ("generative", "implicit"):  # greedy answers and likelihoods: the same for every seed
        assert (False, [(0, method), (1, method), (2, method)]) in got
    for method in ("voting", "few-shot-icl"):  # seeded samples, seeded demonstrations: one job per unit
        assert [u for shared, u in got if u[0][1] == method] == [[(s, method)] for s in range(3)]
    assert sum(len(u) for _, u in got) == 15


def test_bad_input_gives_clear_errors(tiny, toy_file, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown method"):
        run_eval(tiny_config(toy_file, out, methods=["arm", "gpt-4o"]), model=tiny)
    with pytest.raises(ValueError, match="no datasets"):
        run_eval(tiny_config(toy_file, out, data=[]), model=tiny)
    with pytest.raises(ValueError, match="unknown bias kind"):
        run_eval(tiny_config(toy_file, out, bias_kinds=["sarcasm"]), model=tiny)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no preference pairs"):
        run_eval(tiny_config(empty, out), model=tiny)
    with pytest.raises(ValueError, match="only 14 are available"):
        run_eval(tiny_config(toy_file, out, n_fewshot=10, n_select=10), model=tiny)
    with pytest.raises(ValueError, match="no test pairs left"):
        run_eval(tiny_config(toy_file, out, n_fewshot=7, n_select=7, stratify=False), model=tiny)
    # the CLI turns them into one line and exit status 2, before any model is loaded
    assert main(["eval", "--data", f"path:{toy_file}", "--methods", "arm,bogus", "--out", str(out), "--quiet"]) == 2


def test_cli_builds_the_config():
    from armlens.cli import parse

    _, options = parse(
        ["eval", "--data", "hhh,llmbar", "--methods", "arm,zero-shot", "--seeds", "2", "--limit", "all",
         "--bias", "none", "--steering-layers", "3,5", "--steering-coefs", "0,2", "--arm-reading", "answered",
         "--max-field-tokens", "none", "--steps", "7", "--icl-demos", "3", "--quiet"])
    cfg = options.config()
    assert cfg.data == ["hhh", "llmbar"] and cfg.methods == ["arm", "zero-shot"] and cfg.seeds == 2
    assert cfg.limit is None and cfg.bias_kinds == [] and cfg.judge.template.max_field_tokens is None
    assert not cfg.show_progress and cfg.stratify
    assert cfg.judge.steering.layers == (3, 5) and cfg.judge.steering.coefs == (0.0, 2.0)
    assert cfg.judge.arm.reading == "answered" and cfg.judge.icl.shots == 3
    seeded = cfg.judge_config(1)
    assert seeded.seed == 1 and seeded.arm.reinforce.steps == 7 and seeded.template.max_field_tokens is None
    assert EvalConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.bias_methods is None  # every method scores the bias suite unless told otherwise
    for flag, want in (("arm,longer", ["arm", "longer"]), ("all", None), ("none", [])):
        assert parse(["eval", "--bias-methods", flag])[1].config().bias_methods == want
    # the nested form of the same flags
    _, nested = parse(["eval", "--judge.arm.reinforce.steps", "7", "--judge.arm.reading", "answered", "--no-stratify"])
    assert nested.config().judge.arm.reinforce.steps == 7 and nested.config().judge.arm.reading == "answered"
    assert not nested.config().stratify
    # each method's settings are a section of --judge (its flat spelling, --judge.probe-c, is gone)
    _, judge = parse(["eval", "--judge.probe.c", "0.5", "--judge.probe.layer", "none", "--judge.head.count", "3",
                      "--judge.icl.no-cache-demos", "--judge.savs.top-k", "7", "--judge.voting.temperature", "0",
                      "--judge.gen.max-new-tokens", "2", "--judge.steering.positions", "all"])
    got = judge.config().judge
    assert got.probe == ProbeSettings(c=0.5) and got.head == HeadSettings(count=3) and got.icl == ICLSettings(4, False)
    assert got.savs == SAVsSettings(top_k=7) and got.voting.temperature == 0.0 and got.gen.max_new_tokens == 2
    assert got.steering == SteeringSettings(positions="all")
    assert got.to_dict()["probe_c"] == 0.5 and got.to_dict()["head_count"] == 3  # written flat, as before
    with pytest.raises(SystemExit, match="2"):
        main(["eval", "--judge.probe-c", "0.5"])
    # unset options keep the one set of defaults (EvalConfig's, JudgeConfig's, ARMConfig's), with no per-command drift
    _, plain = parse(["eval", "--quiet"])
    assert plain.config() == dataclasses.replace(EvalConfig(), show_progress=False)
    assert plain.config().judge.arm == ARMConfig() and plain.config().judge == JudgeConfig()


def test_sample_test_is_seeded_and_keeps_order():
    from armlens.data.records import PreferencePair

    items = [PreferencePair(id=str(i), source="s", subset="s", prompt=str(i), chosen="a", rejected="b") for i in range(20)]
    a = sample_test(items, 5, seed=3)
    assert a == sample_test(items, 5, seed=3) == sorted(a, key=lambda p: int(p.id)) and len(a) == 5
    assert sample_test(items, 5, seed=4) != a
    assert sample_test(items, None, seed=0) == items == sample_test(items, 50, seed=0)


def test_real_data_with_a_limit(tiny, data_root, tmp_path):
    cfg = EvalConfig(data=["hhh"], root=str(data_root), out=str(tmp_path / "out"), methods=["zero-shot", "longer"],
                     seeds=1, limit=5, n_fewshot=8, n_select=0, bias_kinds=["positivity"],
                     judge=JudgeConfig(template=JudgeTemplate(max_field_tokens=24)), n_bootstrap=100,
                     show_progress=False)
    summary = run_eval(cfg, model=tiny)
    res = summary["results"]["hhh"]
    assert res["n_test_per_seed"] == [5]
    assert summary["datasets"]["hhh"]["report"]["file_sha256"]  # the files read, hashed
    assert res["methods"]["longer"]["bias"]["positivity"]["n"] == 5


def test_cli_end_to_end_and_resume(toy_file, tmp_path, capsys, saved_tiny_model):
    folder = saved_tiny_model()
    out = tmp_path / "out"
    argv = ["eval", "--data", f"path:{toy_file}", "--model", str(folder), "--methods", "zero-shot,longer",
            "--seeds", "1", "--limit", "3", "--n-fewshot", "2", "--n-select", "2", "--bias", "length",
            "--max-field-tokens", "24", "--n-bootstrap", "100", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| zero-shot |" in printed and "| longer |" in printed and "2 unit(s) computed, 0 reused" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(folder) and summary["model_fingerprint"]["n_layers"] == 2
    assert main(argv) == 0
    assert "0 unit(s) computed, 2 reused" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------- shared prefixes

MASK_METHODS = ["arm", "mean-ablation", "zero-shot", "random-heads", "topk-heads"]
ACTIVATION_METHODS = ["probe", "savs", "steering"]
"""Activation baselines in the branch pass: a steering vector added at the last token, activations read there."""
BRANCH_METHODS = MASK_METHODS + ACTIVATION_METHODS


def test_mask_based_judges_declare_their_patch(tiny, toy_file, tmp_path):
    branch = {m for m, cls in baselines.JUDGES.items() if cls.in_branch_pass(JudgeConfig())}
    assert branch == set(BRANCH_METHODS)
    assert not baselines.JUDGES["steering"].in_branch_pass(JudgeConfig(steering=SteeringSettings(positions="all")))
    cfg = tiny_config(toy_file, tmp_path, seeds=1)
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path)
    assert baselines.make_judge("zero-shot", tiny).patch_for(plans[0].test[0]) == (None, None)
    assert baselines.make_judge("longer", tiny).patch_for(plans[0].test[0]) is None
    jcfg = cfg.judge_config(0)
    for method, k in (("random-heads", 5), ("topk-heads", 3)):
        counted = dataclasses.replace(jcfg, head=HeadSettings(count=k))
        judge = baselines.make_judge(method, tiny, counted).fit(plans[0].fewshot)
        means, mask = judge.patch_for(plans[0].test[0])
        assert int(mask.sum()) == k and means.shape == (2, 4, 16)
    prior = baselines.make_judge("random-heads", tiny, jcfg).head_count()
    assert prior == round(0.2689414 * 8)  # sigmoid(-1) of the 8 heads


def test_score_mask_judges_equals_each_judge_alone(tiny_any, toy_file, tmp_path):
    """Every method and seed over shared prefixes equals each judge's own one-forward-per-prompt scores."""
    from armlens.evaluation.branches import score_mask_judges

    cfg = tiny_config(toy_file, tmp_path, seeds=2, bias_kinds=["length"])
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path)
    requests = []
    for plan in plans:
        for method in BRANCH_METHODS + ["probe-hook_z", "savs-margin"]:
            jcfg = dataclasses.replace(cfg.judge_config(plan.seed), head=HeadSettings(count=3),
                                       savs=SAVsSettings(top_k=5), steering=SteeringSettings(coefs=(4.0,)))
            if method == "probe-hook_z":
                method, jcfg = "probe", dataclasses.replace(jcfg, probe=ProbeSettings(features="hook_z"))
            if method == "savs-margin":
                method, jcfg = "savs", dataclasses.replace(jcfg, savs=dataclasses.replace(jcfg.savs, score="margin"))
            judge = baselines.make_judge(method, tiny_any, jcfg).fit(plan.fewshot, plan.select)
            requests.append((judge, unit_items(plan)))
    wants = [judge.score_responses(items) for judge, items in requests]
    by_name = {judge.name: want for (judge, _), want in zip(requests, wants, strict=True)}  # the last plan's
    assert (by_name["steering"] - by_name["zero-shot"]).abs().max() > 1e-3  # the vector changes the scores
    for min_shared, part in ((1, None), (10**6, None), (1, 3)):  # a pair's prompts sharing their common leading
        # part, or each its own prefix; the prompts in one part, or in parts of 3 (a pair's prompts kept together)
        got = score_mask_judges(tiny_any, requests, min_shared_tokens=min_shared, part_prompts=part)
        for (judge, items), scores, want in zip(requests, got, wants, strict=True):
            assert scores.shape == want.shape and len(items) > 12  # test pairs and hacked rejected responses
            torch.testing.assert_close(scores, want, atol=1e-4, rtol=1e-3, msg=judge.name)


def _fitted_branch_requests(model, cfg, plan, **settings):
    requests = []
    for method in ("arm", "zero-shot", "probe", "savs", "steering"):
        jcfg = dataclasses.replace(cfg.judge_config(plan.seed), **{"savs": SAVsSettings(top_k=5),
                                                                    "steering": SteeringSettings(coefs=(4.0,)),
                                                                    **settings})
        requests.append((baselines.make_judge(method, model, jcfg).fit(plan.fewshot, plan.select), unit_items(plan)))
    return requests


def test_the_branch_pass_resumes_from_its_saved_parts(tiny, toy_file, tmp_path, monkeypatch, caplog):
    from armlens.evaluation import branches

    cfg = tiny_config(toy_file, tmp_path, seeds=1, bias_kinds=["length"])
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path)
    requests = _fitted_branch_requests(tiny, cfg, plans[0])
    folder = tmp_path / "branch-pass"
    calls = []
    original = branches.score_rows
    monkeypatch.setattr(branches, "score_rows", lambda *a, **k: calls.append(len(a[1])) or original(*a, **k))

    stats: dict[str, int] = {}
    first = branches.score_mask_judges(tiny, requests, checkpoint=folder, part_prompts=4, stats=stats)
    n_parts = stats["parts"]
    assert n_parts >= 3 and stats["parts_reused"] == 0 and len(calls) == n_parts
    assert sorted(p.name for p in folder.iterdir()) == [f"part-{k:04d}.json" for k in range(n_parts)]
    assert sum(calls) == stats["prompts"]  # every prompt in exactly one part

    calls.clear()  # every part saved: nothing is run again, and the scores are the same bit for bit
    again = branches.score_mask_judges(tiny, requests, checkpoint=folder, part_prompts=4, stats=stats)
    assert calls == [] and stats["parts_reused"] == n_parts
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)

    (folder / "part-0000.json").unlink()  # a part lost and one broken: those two are scored again
    (folder / "part-0001.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        again = branches.score_mask_judges(tiny, requests, checkpoint=folder, part_prompts=4, stats=stats)
    assert len(calls) == 2 and stats["parts_reused"] == n_parts - 2 and "part-0001.json not used" in caplog.text
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    calls.clear()  # another patch (a steering vector twice as strong) voids every part
    other = _fitted_branch_requests(tiny, cfg, plans[0], steering=SteeringSettings(coefs=(8.0,)))
    branches.score_mask_judges(tiny, other, checkpoint=shutil.copytree(folder, tmp_path / "steer"), part_prompts=4,
                               stats=stats)
    assert len(calls) == n_parts and stats["parts_reused"] == 0

    calls.clear()  # a probe fitted otherwise reads the same activations differently: no saved part is valid
    # for it either
    other = _fitted_branch_requests(tiny, cfg, plans[0], probe=ProbeSettings(c=0.01))
    branches.score_mask_judges(tiny, other, checkpoint=shutil.copytree(folder, tmp_path / "probe"), part_prompts=4,
                               stats=stats)
    assert len(calls) == n_parts and stats["parts_reused"] == 0

    calls.clear()  # a judge that reads activations but names no fitted state: no part is saved or read
    nameless = type("NamelessProbe", (type(requests[2][0]),), {"fit_state": ()})
    judge = nameless(tiny, requests[2][0].config).fit(plans[0].fewshot, plans[0].select)
    unsaved = tmp_path / "unsaved"
    with caplog.at_level("WARNING"):
        branches.score_mask_judges(tiny, [*requests[:2], (judge, requests[2][1])], checkpoint=unsaved,
                                   part_prompts=4)
    assert not unsaved.exists() and "names no fit_state" in caplog.text


def test_activation_judges_read_back_their_fit_files(tiny, toy_file, tmp_path, caplog):
    cfg = tiny_config(toy_file, tmp_path, seeds=1, bias_kinds=["length"])
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path)
    plan, items = plans[0], unit_items(plans[0])
    for method in ("probe", "savs", "steering"):
        jcfg = dataclasses.replace(cfg.judge_config(plan.seed), savs=SAVsSettings(top_k=5),
                                   steering=SteeringSettings(coefs=(0.0, 4.0)))
        path = tmp_path / f"{method}.safetensors"
        fitted = baselines.make_judge(method, tiny, jcfg).fit(plan.fewshot, plan.select, cache=path)
        assert path.is_file() and "fit_cache" not in fitted.fit_info
        loaded = baselines.make_judge(method, tiny, jcfg).fit(plan.fewshot, plan.select, cache=path)
        assert loaded.fit_info["fit_cache"] == path.name and loaded.state_digest() == fitted.state_digest()
        assert torch.equal(loaded.score_responses(items), fitted.score_responses(items)), method
        for k, v in fitted.fit_info.items():
            assert loaded.fit_info[k] == v, (method, k)
        with caplog.at_level("WARNING"):  # other pools or settings: fitted again, with the reason
            baselines.make_judge(method, tiny, jcfg).fit(plan.fewshot[:2], plan.select, cache=path)
            assert "fitted on other few-shot pairs" in caplog.text
            other = dataclasses.replace(jcfg, probe=ProbeSettings(c=0.5), savs=SAVsSettings(top_k=3),
                                        steering=SteeringSettings(coefs=(2.0,)))
            baselines.make_judge(method, tiny, other).fit(plan.fewshot, plan.select, cache=path)
            assert "fitted with other settings" in caplog.text
            assert baselines.make_judge("savs" if method != "savs" else "probe", tiny, jcfg).fit(
                plan.fewshot, plan.select, cache=path).fit_info.get("fit_cache") is None
        caplog.clear()
    probe = baselines.make_judge("probe", tiny, cfg.judge_config(0)).fit(plan.fewshot, plan.select)
    wider = baselines.make_judge("probe", tiny, dataclasses.replace(cfg.judge_config(0), probe=ProbeSettings(c=0.01)))
    assert probe.state_digest() != wider.fit(plan.fewshot, plan.select).state_digest()
    assert baselines.make_judge("zero-shot", tiny).state_digest() == ""
    assert baselines.make_judge("arm", tiny).state_digest() is None  # its state is in its patches


def test_a_unit_is_finished_with_its_items_in_either_form(tmp_path):
    """A unit written before per-item files were compressed (``items.jsonl``) and one written since
    (``items.jsonl.gz``) are both finished, with the same rows; one whose items are gone in both forms is not."""
    from armlens.evaluation.store import ITEMS, read_items, read_unit

    rows = [{"dataset": "d", "seed": 0, "method": "arm", "split": "test", "id": "p1", "correct": True},
            {"dataset": "d", "seed": 0, "method": "arm", "split": "bias-length", "id": "p1-h", "correct": False}]
    assert ITEMS == "items.jsonl.gz"
    for name in ("items.jsonl", "items.jsonl.gz"):
        unit = tmp_path / name
        aio.write_json(unit / "result.json", {"key": "k1", "test": {"accuracy": 1.0}})
        aio.write_jsonl(unit / name, rows)
        assert read_unit(unit, "k1") == {"key": "k1", "test": {"accuracy": 1.0}}, name
        assert read_items(unit) == rows, name
        assert read_unit(unit, "k2") is None  # another key: stale in either form
        (unit / name).unlink()
        assert read_unit(unit, "k1") is None, name


def test_an_eval_folder_resumes_with_compressed_or_plain_per_item_files(tiny, toy_file, tmp_path, monkeypatch):
    """A rerun reuses every unit whether its per-item files are compressed (as written now) or plain (a folder
    written before): nothing is fitted, the summary is the same, and the plain unit files are left as they are."""
    out = tmp_path / "out"
    cfg = tiny_config(toy_file, out, methods=["zero-shot", "longer"], seeds=2, limit=4, bias_kinds=["length"])
    first = run_eval(cfg, model=tiny)
    packed = sorted(out.glob("*/seed*/*/items.jsonl.gz"))
    assert len(packed) == 4 and not list(out.rglob("items.jsonl"))
    counter = FitCounter(monkeypatch)
    again = run_eval(cfg, model=tiny)
    assert counter.calls == [] and again["run"] == {"units": 4, "computed": 0, "reused": 4}
    assert again["results"] == first["results"]
    for gz in out.rglob("*.gz"):  # the layout of a folder written before: every per-item file plain
        gz.with_name(gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    plain = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/*/items.jsonl")}
    assert len(plain) == 4
    old = run_eval(cfg, model=tiny)
    assert counter.calls == [] and old["run"] == {"units": 4, "computed": 0, "reused": 4}
    assert old["results"] == first["results"]
    assert {p: p.stat().st_mtime_ns for p in plain} == plain and not list(out.glob("*/seed*/*/items.jsonl.gz"))
    assert (out / "items.jsonl.gz").is_file() and not (out / "items.jsonl").exists()  # the combined file, rewritten
    combined, per_unit = aio.read_jsonl(out / "items.jsonl"), [r for p in plain for r in aio.read_jsonl(p)]
    assert sorted(map(json.dumps, combined)) == sorted(map(json.dumps, per_unit)) and combined


def test_score_mask_judges_refuses_other_judges(tiny):
    from armlens.evaluation.branches import score_mask_judges

    with pytest.raises(ValueError, match="not a mask-based judge"):
        score_mask_judges(tiny, [(baselines.make_judge("longer", tiny), [])])
    with pytest.raises(RuntimeError, match="not fitted"):
        score_mask_judges(tiny, [(baselines.make_judge("arm", tiny), [])])


def test_runner_shared_path_equals_the_per_method_path(tiny, toy_file, tmp_path, caplog):
    """The runner's units (mask-based ones scored together over shared prefixes) hold the numbers the old
    per-method path (run_unit: fit, then one full forward per prompt) gives, for every seed and method."""
    cfg = tiny_config(toy_file, tmp_path / "out", methods=BRANCH_METHODS + ["longer"], seeds=2,
                      bias_kinds=["length", "length-real"])
    with caplog.at_level("INFO", logger="armlens.evaluation.jobs"):
        summary = run_eval(cfg, model=tiny)
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job done")]
    assert len(done) == 2  # the shared job, then `longer` (seed-free) over both seeds, each logged with what it holds
    assert f"(seeds 0,1; {2 * len(BRANCH_METHODS)} unit(s); shared scoring)" in done[0]
    assert done[1].endswith(f"path:{toy_file}: longer (seeds 0,1; 2 unit(s))")
    assert done[0].split(": ", 1)[1].startswith(f"path:{toy_file}: {','.join(BRANCH_METHODS)} ")
    items = aio.read_jsonl(tmp_path / "out" / "items.jsonl.gz")
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path / "ref")
    for plan in plans:
        for method in cfg.methods:
            result, ref = run_unit(tiny, plan, method, cfg.judge_config(plan.seed), cfg.n_bootstrap)
            mine = [r for r in items if r["seed"] == plan.seed and r["method"] == method]
            assert [(r["split"], r["id"]) for r in mine] == [(r["split"], r["id"]) for r in ref]
            for a, b in zip(mine, ref, strict=True):
                assert a["chosen_score"] == pytest.approx(b["chosen_score"], abs=1e-4, rel=1e-3)
                assert a["rejected_score"] == pytest.approx(b["rejected_score"], abs=1e-4, rel=1e-3)
            seed_entry = summary["results"][cfg.data[0]]["methods"][method]["per_seed"][plan.seed]
            assert seed_entry["accuracy"] == result["test"]["accuracy"]
    timings = json.loads((plans[0].folder.parent.parent.parent / "out" / dataset_slug(cfg.data[0]) / "seed0" / "arm" /
                          "result.json").read_text())["timings_s"]
    assert timings["units_sharing_scoring"] == 2 * len(BRANCH_METHODS)


def _comparable(summary: dict) -> dict:
    """A summary without what may differ between equal runs: timings, where units ran and the run's own settings."""
    drop = {"timings_s", "worker", "run", "config", "created", "elapsed_s"}
    if isinstance(summary, dict):
        return {k: _comparable(v) for k, v in summary.items() if k not in drop}
    if isinstance(summary, list):
        return [_comparable(v) for v in summary]
    return summary


def test_two_ray_workers_give_the_serial_summary(saved_tiny_model, toy_file, tmp_path, caplog):
    """``workers=2`` (two local Ray processes) writes the units, keys and summary of the run in one process."""
    pytest.importorskip("ray", reason='the distributed extra: pip install "armlens[distributed]"')
    folder = str(saved_tiny_model())
    kw = dict(model=folder, methods=["arm", "zero-shot", "few-shot-icl", "longer"], seeds=2,
              bias_kinds=["length", "length-real"])
    serial = run_eval(tiny_config(toy_file, tmp_path / "serial", **kw))
    with caplog.at_level("INFO", logger="armlens.evaluation.distributed"):
        parallel = run_eval(tiny_config(toy_file, tmp_path / "ray", workers=2, **kw))
    # the driver logs each job as it starts and ends (the workers' own logs stay in their processes)
    said = [r.getMessage() for r in caplog.records]
    started, done = ([m for m in said if m.startswith(w)] for w in ("job started", "job done"))
    assert len(started) == len(done) == 4  # the shared job, ICL per seed, `longer` over both seeds
    assert any(m.endswith("longer (seeds 0,1; 2 unit(s))") for m in done)
    files = sorted((tmp_path / "ray").glob("*/seed*/*/result.json"))
    results = [json.loads(f.read_text()) for f in files]
    assert len(results) == 8 and all(r["worker"]["pid"] != os.getpid() for r in results)
    assert len({r["worker"]["pid"] for r in results}) == 2  # both workers took jobs
    for f, r in zip(files, results, strict=True):  # the same unit keys: a serial rerun would reuse them
        assert r["key"] == json.loads((tmp_path / "serial" / f.relative_to(tmp_path / "ray")).read_text())["key"]
    rows = [aio.read_jsonl(tmp_path / run / "items.jsonl.gz") for run in ("serial", "ray")]
    assert len(rows[0]) == len(rows[1]) > 8 * 6
    for x, y in zip(*rows, strict=True):
        assert (x["seed"], x["method"], x["split"], x["id"]) == (y["seed"], y["method"], y["split"], y["id"])
        assert (x["chosen_score"], x["rejected_score"]) == pytest.approx((y["chosen_score"], y["rejected_score"]),
                                                                         abs=1e-6)
    a, b = _comparable(serial), _comparable(parallel)
    assert a.keys() == b.keys()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    # a rerun on workers reuses every unit, like a serial rerun
    again = run_eval(tiny_config(toy_file, tmp_path / "ray", workers=2, **kw))
    assert again["run"] == {"units": 8, "computed": 0, "reused": 8}


def test_icl_cached_demonstrations_equal_full_prompts(tiny_any, toy_file, tmp_path, monkeypatch):
    from armlens import scoring

    cfg = tiny_config(toy_file, tmp_path, seeds=1)
    plans, _ = plan_dataset(cfg, cfg.data[0], tmp_path)
    items = unit_items(plans[0])
    jcfg = dataclasses.replace(cfg.judge_config(0), template=dataclasses.replace(cfg.judge.template),
                               icl=ICLSettings(shots=3))
    full = baselines.make_judge("few-shot-icl", tiny_any, dataclasses.replace(jcfg, icl=ICLSettings(3, False)))
    want = full.fit(plans[0].fewshot).score_responses(items)
    shared_lengths: list[int] = []
    real = M.shared_prefix
    monkeypatch.setattr(M, "shared_prefix", lambda m, t: shared_lengths.append(t.shape[1]) or real(m, t))
    cached = baselines.make_judge("few-shot-icl", tiny_any, jcfg)
    got = cached.fit(plans[0].fewshot).score_responses(items)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    assert len(shared_lengths) == 1 and shared_lengths[0] > 3 * 40  # the demonstrations: one prefix for all queries
    assert scoring.MIN_SHARED_TOKENS < shared_lengths[0]


# ---------------------------------------------------------------------------------------------------- truncation


def test_fields_are_whole_by_default_and_cut_in_the_middle_on_request(tiny):
    from armlens.data.records import PreferencePair
    from armlens.prompts import CUT_MARKER, JudgeTemplate, count_cuts, cut_to_tokens, scalar_prompt

    assert JudgeTemplate().max_field_tokens is None and EvalConfig().judge.template.max_field_tokens is None
    text = "START " + " ".join(f"w{i}" for i in range(200)) + " THE END"
    assert cut_to_tokens(tiny, text, None) == text
    cut = cut_to_tokens(tiny, text, 40)
    assert cut.startswith("START") and cut.endswith("THE END") and CUT_MARKER in cut  # head and tail kept
    head, tail = cut.split(CUT_MARKER)
    assert len(M.encode(tiny, head)) == 20 and len(M.encode(tiny, tail)) == 20
    assert cut_to_tokens(tiny, text, 40, where="end").endswith("[...]")
    assert cut_to_tokens(tiny, "short", 40) == "short"
    with pytest.raises(ValueError, match=">= 1"):
        cut_to_tokens(tiny, text, 0)
    ex = Example("Q? " + text, text, None, "c")
    assert text in scalar_prompt(tiny, ex) and text not in scalar_prompt(tiny, ex, JudgeTemplate(max_field_tokens=40))
    pairs = [PreferencePair(id="a", source="s", subset="s", prompt="hi", chosen=text, rejected=text),
             PreferencePair(id="b", source="s", subset="s", prompt="hi", chosen="ok", rejected="no")]
    assert count_cuts(tiny, pairs, 40) == (1, 2) and count_cuts(tiny, pairs, None) == (0, 0)


def test_runner_records_cut_items(tiny, toy_file, tmp_path):
    cfg = tiny_config(toy_file, tmp_path / "cut", methods=["zero-shot", "longer"], max_field_tokens=8, seeds=2,
                      bias_kinds=[])
    summary = run_eval(cfg, model=tiny)
    cut = summary["results"][cfg.data[0]]["truncation"]
    # every toy prompt ("Tell me about ...") and chosen response is longer than 8 byte-level tokens
    assert cut["max_field_tokens"] == 8 and cut["items_cut"] == cut["n_items"] == 12 and cut["fields_cut"] >= 24
    assert "cut in their middle in 12 of 12 test pairs" in (tmp_path / "cut" / "results.md").read_text()
    whole = run_eval(with_field_cap(cfg, None, out=str(tmp_path / "whole")), model=tiny)
    assert whole["results"][cfg.data[0]]["truncation"]["items_cut"] == 0
    assert "Whole fields" in (tmp_path / "whole" / "results.md").read_text()


def test_prompts_beyond_the_context_stop_the_run_before_any_fit(toy_file, tmp_path, monkeypatch):
    small = T.tiny_model(n_ctx=64)
    counter = FitCounter(monkeypatch)
    with pytest.raises(ValueError, match=r"exceed the model's context of 64 tokens.*--max-field-tokens"):
        run_eval(tiny_config(toy_file, tmp_path / "ctx", max_field_tokens=None), model=small)
    assert counter.calls == []


def test_bias_pairs_keep_their_original_criterion():
    from armlens.data import build_bias_suite
    from armlens.data.records import PreferencePair
    from armlens.prompts import criterion_for

    pair = PreferencePair(id="x", source="llmbar", subset="llmbar-natural", prompt="Do it.", chosen="Done, here it is.",
                          rejected="No.")
    suite = build_bias_suite([pair], 0, kinds=["length"])
    assert suite["length"][0].subset == "bias-length"
    assert criterion_for(suite["length"][0]) == criterion_for(pair) != criterion_for("bias-length")


def test_summary_intervals_draw_a_prompts_pairs_together():
    """The summary's bootstrap units within a seed are prompts (pairs of one prompt drawn together), per seed."""
    from armlens.evaluation.summary import _seeded

    items = {(0, "a"): True, (0, "b"): False, (1, "a"): True, (1, "c"): True}
    prompt_of = {(0, "a"): "p1", (0, "b"): "p1", (1, "a"): "p1", (1, "c"): "p2"}
    values, prompts = _seeded(items, prompt_of)
    assert [v.tolist() for v in values] == [[1.0, 0.0], [1.0, 1.0]] and prompts == [["p1", "p1"], ["p1", "p2"]]


def test_summary_intervals_widen_when_pairs_share_prompts(tmp_path):
    """summarize_eval's pooled and ARM-minus-method intervals resample prompts: 4 pairs per prompt with one outcome
    per prompt give intervals about twice as wide as the same outcomes on one pair per prompt. (Five seeds: with two,
    the seed component's single degree of freedom widens both intervals alike and the ratio shrinks.)"""
    import numpy as np

    from armlens.data.records import PreferencePair
    from armlens.evaluation.planning import Plan
    from armlens.evaluation.summary import summarize_eval

    rng = np.random.default_rng(0)
    seeds = range(5)
    outcome = {(s, m): np.repeat(rng.random(50) < p, 4) for s in seeds for m, p in (("arm", 0.7), ("zero-shot", 0.5))}
    cfg = tiny_config(tmp_path / "none.jsonl", tmp_path / "out", methods=["arm", "zero-shot"], bias_kinds=[],
                      n_bootstrap=4000)

    def summary(per_prompt: int) -> dict:
        plans, results, items = [], [], []
        for s in seeds:
            test = [PreferencePair(id=f"{s}/{i}", prompt=f"q{s}-{i // per_prompt}", chosen="a", rejected=f"b{i}",
                                   source="toy", subset="toy") for i in range(200)]
            plans.append(Plan("toy", s, [], [], test, {}, {}, tmp_path))
            for m in ("arm", "zero-shot"):
                c = outcome[(s, m)]
                results.append({"dataset": "toy", "seed": s, "method": m, "bias": {},
                                "test": {"accuracy": float(c.mean()), "subsets": {}, "sections": {}, "ties": 0,
                                         "ci95": [0, 1], "n": 200}})
                items += [{"dataset": "toy", "method": m, "seed": s, "id": p.id, "split": "test",
                           "correct": bool(v)} for p, v in zip(test, c, strict=True)]
        out = summarize_eval(cfg, ["arm", "zero-shot"], plans, {"toy": {}}, results, items, "tiny")
        return out["results"]["toy"]["methods"]

    def width(entry: dict) -> float:
        return entry["ci95"][1] - entry["ci95"][0]

    shared, alone = summary(4), summary(1)
    assert shared["arm"]["n_prompts"] == 250 and alone["arm"]["n_prompts"] == 1000
    assert 1.6 < width(shared["arm"]) / width(alone["arm"]) < 2.4
    vs = [e["zero-shot"]["vs_arm"] for e in (shared, alone)]
    assert vs[0]["arm_minus_method"] == vs[1]["arm_minus_method"] and vs[0]["n"] == 1000
    assert 1.6 < width(vs[0]) / width(vs[1]) < 2.4


def test_figures_are_redrawn_from_an_eval_folder(tiny, toy_file, tmp_path):
    """`armlens figures` on an `armlens eval` folder: per dataset, every method's accuracy and the bias suite's hack
    rates, with the intervals of summary.json as error bars."""
    from armlens.cli import main as cli_main
    from armlens.plots import plot_hack_rates

    out = tmp_path / "out"
    summary = run_eval(tiny_config(toy_file, out), model=tiny)
    name = f"path:{toy_file}"
    fig = plot_hack_rates(summary, name)
    kinds = ("length", "format-real", "length-real")  # one panel each, in the summary's order
    res = summary["results"][name]
    assert fig.layout.title.text and fig.layout.xaxis2.title.text == "Hack rate (%)"
    # each panel names its bias kind with the pairs scored over all seeds, how many are distinct, and the seeds
    titles = [a.text for a in fig.layout.annotations]
    assert [t.split("</b>")[0].removeprefix("<b>") for t in titles] == list(kinds)
    for t, k in zip(titles, kinds, strict=True):
        b = res["methods"]["arm"]["bias"][k]
        assert 0 < b["n_pairs"] <= b["n"] and f"n={b['n']} ({b['n_pairs']} distinct), {len(res['seeds'])} seeds" in t
    # one row per method on the shared y axis, its hack rate on x, panel by panel
    longer = [t for t in fig.data if t.name == "longer"]
    e = res["methods"]["longer"]["bias"]
    assert [t.y[0] for t in longer] == ["longer"] * 3
    assert [t.x[0] for t in longer] == [100 * e[k]["hack_rate_mean"] for k in kinds]
    assert [t.xaxis for t in longer] == ["x", "x2", "x3"]
    arm = next(t for t in fig.data if t.name == "arm")
    lo, hi = res["methods"]["arm"]["bias"]["length"]["ci95"]
    assert arm.x[0] - arm.error_x.arrayminus[0] == pytest.approx(100 * lo)
    assert arm.x[0] + arm.error_x.array[0] == pytest.approx(100 * hi)
    # the ARM and the plain judge stand out from the grey baselines
    colour = {t.name: t.marker.color for t in fig.data}
    assert len({colour["arm"], colour["zero-shot"], colour["longer"]}) == 3 and colour["longer"] == colour["shorter"]
    figs = tmp_path / "figs"
    assert cli_main(["figures", "--results", str(out), "--out", str(figs), "--formats", "html"]) == 0
    key = dataset_slug(name).replace("-", "_")
    assert {p.stem for p in figs.glob("*.html")} == {f"eval_{key}", f"bias_{key}"}
    # the headline table across datasets, with the sizes every number rests on
    import pandas as pd

    table = pd.read_csv(figs / "eval.csv")
    methods = summary["results"][name]["methods"]
    assert list(table["method"]) == list(methods) and set(table["data"]) == {name}
    zero = table.set_index("method").loc["zero-shot"]
    assert zero["accuracy"] == pytest.approx(methods["zero-shot"]["accuracy_mean"])
    assert zero["arm_minus_method"] == pytest.approx(methods["zero-shot"]["vs_arm"]["arm_minus_method"])
    assert (zero["seeds"], zero["pairs_per_seed"]) == (2, 6) and pd.isna(table.set_index("method").loc["arm", "p_value"])
    md = (figs / "eval.md").read_text()
    lo, hi = methods["zero-shot"]["ci95"]
    assert f"| zero-shot | {100 * zero['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |" in md
    assert f"{name} (2 seeds x 6 pairs)" in md and "| arm | n/a |" in md
    bias = pd.read_csv(figs / "eval_bias.csv").set_index(["method", "kind"])
    e = methods["zero-shot"]["bias"]["length"]
    assert bias.loc[("zero-shot", "length"), "hack_rate"] == pytest.approx(e["hack_rate_mean"])
    assert bias.loc[("zero-shot", "length"), "arm_minus_method"] == pytest.approx(e["vs_arm"]["arm_minus_method"])
    arm_rate = methods["arm"]["bias"]["length"]["hack_rate_mean"]
    assert (f"| length | {100 * arm_rate:.1f} vs {100 * e['hack_rate_mean']:.1f}: "
            f"{100 * e['vs_arm']['arm_minus_method']:+.1f} [") in md
    arm_length = methods["arm"]["bias"]["length"]
    assert f"(n={arm_length['n']}, {arm_length['n_pairs']} distinct)" in md
    assert bias.loc[("arm", "length"), "n_pairs"] == arm_length["n_pairs"] < arm_length["n"]


def test_plans_follow_the_committed_partition(data_root, tmp_path):
    """test: few-shot and selection pairs from dev, scored pairs from test; dev: everything from dev; all: every
    pair; a test-only set draws its few-shot pairs from its own pairs and never scores them; dev on it is refused."""
    from armlens.data.partition import load_partition

    part = load_partition("hhh")
    base = dict(data=["hhh"], root=str(data_root), out=str(tmp_path / "out"), seeds=2, limit=20, n_fewshot=8,
                n_select=4, show_progress=False, bias_kinds=[])
    plans, data = plan_dataset(EvalConfig(**base, partition="test"), "hhh", tmp_path / "t")
    assert data["partition"]["side"] == "test" and data["partition"]["n_scored"] == len(part.test)
    for plan in plans:
        assert {p.id for p in plan.fewshot + plan.select} <= part.dev and {p.id for p in plan.test} <= part.test
        assert len(plan.test) == 20 and plan.split_record["partition"]["side"] == "test"
    # dev scores dev pairs too, so its pools must be whole prompt groups (no trim): HHH's dev dialogues are large
    plans, _ = plan_dataset(EvalConfig(**{**base, "n_select": 0}, partition="dev"), "hhh", tmp_path / "d")
    assert all({p.id for p in pl.fewshot + pl.select + pl.test} <= part.dev for pl in plans)
    plans, data = plan_dataset(EvalConfig(**base, partition="all"), "hhh", tmp_path / "a")
    assert data["partition"]["side"] == "all" and data["partition"]["n_choice"] == 221
    plans, _ = plan_dataset(EvalConfig(**{**base, "data": ["truthfulqa"]}, partition="test"), "truthfulqa", tmp_path / "q")
    assert all(not {p.id for p in pl.fewshot} & {p.id for p in pl.test} for pl in plans)
    with pytest.raises(ValueError, match="truthfulqa is test-only"):
        plan_dataset(EvalConfig(**{**base, "data": ["truthfulqa"]}, partition="dev"), "truthfulqa", tmp_path / "x")


def test_resummarize_rebuilds_the_summary_from_the_folder_alone(tiny, toy_file, tmp_path, monkeypatch):
    """`armlens eval --summary-only`: the same numbers from the units on file, with no model; a folder from before
    partitions is reported as using every pair; a missing unit is an error naming it."""
    from armlens.evaluation.runner import resummarize

    out = tmp_path / "out"
    summary = run_eval(tiny_config(toy_file, out), model=tiny)
    config = json.loads((out / "config.json").read_text())
    del config["partition"]  # as in a folder written before partitions existed
    (out / "config.json").write_text(json.dumps(config))
    (out / "summary.json").unlink()
    monkeypatch.setattr(M, "load_model", lambda *a, **k: pytest.fail("resummarize loaded a model"))
    again = resummarize(out)
    assert again["results"] == summary["results"]
    assert again["config"]["partition"] == "all"
    assert json.loads((out / "summary.json").read_text()) == json.loads(aio.to_json(again))  # the file is it
    shutil.rmtree(out / summary["datasets"][f"path:{toy_file}"]["folder"] / "seed1" / "zero-shot")
    with pytest.raises(FileNotFoundError, match="seed1/zero-shot: no result.json"):
        resummarize(out)


def test_an_interim_summary_reports_only_what_a_running_folder_has_finished(tiny, toy_file, tmp_path, monkeypatch):
    """`armlens eval --summary-only --interim DIR`: a folder still running (here: one seed of zero-shot missing)
    is reported without that method, into DIR, with `interim` naming what is missing; the folder is untouched and
    the numbers of the finished methods are those of the full summary."""
    from armlens.evaluation.runner import resummarize

    out = tmp_path / "out"
    summary = run_eval(tiny_config(toy_file, out), model=tiny)
    folder = out / summary["datasets"][f"path:{toy_file}"]["folder"]
    shutil.rmtree(folder / "seed1" / "zero-shot")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(M, "load_model", lambda *a, **k: pytest.fail("an interim summary loaded a model"))
    part = resummarize(out, into=tmp_path / "interim")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written into the running folder
    assert part["interim"]["methods_missing"] == ["zero-shot"] and part["interim"]["datasets_missing"] == []
    (name, res), = part["results"].items()
    assert "zero-shot" not in res["methods"] and set(res["methods"]) == set(summary["results"][name]["methods"]) - {
        "zero-shot"}
    for method, row in res["methods"].items():
        full = summary["results"][name]["methods"][method]
        assert (row["accuracy_mean"], row["per_seed"]) == (full["accuracy_mean"], full["per_seed"])
    assert "interim" in (tmp_path / "interim" / "results.md").read_text().splitlines()[0]
    shutil.rmtree(folder / "seed0" / "arm")  # no method finished on every seed: nothing to report
    for method in summary["results"][name]["methods"]:
        shutil.rmtree(folder / "seed0" / method, ignore_errors=True)
    with pytest.raises(FileNotFoundError, match="no dataset has finished"):
        resummarize(out, into=tmp_path / "interim2")


def test_seeds_that_score_the_same_pairs_count_them_once(tmp_path):
    """Five seeds scoring the same 120 pairs with the same outcomes carry one seed's information: the summary's
    interval is as wide as one seed's, not sqrt(5) narrower as when each seed's pairs were resampled apart."""
    import numpy as np

    from armlens.data.records import PreferencePair
    from armlens.evaluation.planning import Plan
    from armlens.evaluation.summary import summarize_eval

    rng = np.random.default_rng(1)
    outcome = {m: rng.random(120) < p for m, p in (("arm", 0.7), ("zero-shot", 0.5))}
    cfg = tiny_config(tmp_path / "none.jsonl", tmp_path / "out", methods=["arm", "zero-shot"], bias_kinds=[],
                      n_bootstrap=4000)
    test = [PreferencePair(id=f"p{i}", prompt=f"q{i}", chosen="a", rejected="b", source="toy", subset="toy")
            for i in range(120)]

    def summary(seeds: int) -> dict:
        plans, results, items = [], [], []
        for s in range(seeds):
            plans.append(Plan("toy", s, [], [], test, {}, {}, tmp_path))
            for m, c in outcome.items():
                results.append({"dataset": "toy", "seed": s, "method": m, "bias": {},
                                "test": {"accuracy": float(c.mean()), "subsets": {}, "sections": {}, "ties": 0,
                                         "ci95": [0, 1], "n": 120}})
                items += [{"dataset": "toy", "method": m, "seed": s, "id": p.id, "split": "test",
                           "correct": bool(v)} for p, v in zip(test, c, strict=True)]
        return summarize_eval(cfg, ["arm", "zero-shot"], plans, {"toy": {}}, results, items, "tiny")["results"]["toy"]

    def width(ci: list[float]) -> float:
        return ci[1] - ci[0]

    one, five = summary(1)["methods"], summary(5)["methods"]
    assert 0.9 < width(five["arm"]["ci95"]) / width(one["arm"]["ci95"]) < 1.1
    assert 0.9 < width(five["zero-shot"]["vs_arm"]["ci95"]) / width(one["zero-shot"]["vs_arm"]["ci95"]) < 1.1


def _make_legacy(cfg: EvalConfig, model_id: str) -> None:
    """Restamp every unit of ``cfg.out`` with the key the code wrote before keys recorded the criteria (a folder of
    release 2), as :func:`armlens.evaluation.keys.legacy_unit_key` recomputes it."""
    from armlens.evaluation.keys import legacy_unit_key

    for name in cfg.data:
        plans, _ = plan_dataset(cfg, name, Path(cfg.out))
        for plan in plans:
            for method in cfg.methods:
                kinds = cfg.bias_kinds_for(method)
                path = plan.with_bias_kinds(kinds).folder / method / "result.json"
                result = json.loads(path.read_text())
                result["key"] = legacy_unit_key(plan.with_bias_kinds(kinds), method, cfg.judge_config(plan.seed),
                                                model_id, kinds)
                path.write_text(json.dumps(result))


def test_adopt_takes_another_folders_units_only_when_they_are_the_same_computation(tiny, toy_file, tmp_path,
                                                                                     monkeypatch):
    source = tiny_config(toy_file, tmp_path / "a", methods=["zero-shot", "few-shot-icl"], seeds=2, limit=4,
                         bias_kinds=["length"])
    first = run_eval(source, model=tiny)
    slug = dataset_slug(f"path:{toy_file}")

    # same key: a resume of the other folder would accept it, so this run computes nothing
    counter = FitCounter(monkeypatch)
    copy = dataclasses.replace(source, out=str(tmp_path / "b"), adopt=str(tmp_path / "a"))
    second = run_eval(copy, model=tiny)
    assert counter.calls == [] and second["run"] == {"units": 4, "computed": 0, "reused": 4, "adopted": 4}
    assert second["results"] == first["results"]
    unit = json.loads((tmp_path / "b" / slug / "seed1" / "few-shot-icl" / "result.json").read_text())
    assert unit["adopted"] == {"from": f"../../../../a/{slug}/seed1/few-shot-icl", "key": unit["key"],
                               "rule": "same key"}
    assert aio.read_jsonl(tmp_path / "b" / slug / "seed1" / "few-shot-icl" / "items.jsonl.gz") == aio.read_jsonl(
        tmp_path / "a" / slug / "seed1" / "few-shot-icl" / "items.jsonl.gz")

    # a setting that changes the numbers: that method's units are computed, the others adopted
    counter = FitCounter(monkeypatch)
    other = dataclasses.replace(copy, out=str(tmp_path / "c"), judge=dataclasses.replace(
        source.judge, icl=ICLSettings(shots=1)))
    third = run_eval(other, model=tiny)
    assert counter.calls == ["few-shot-icl", "few-shot-icl"] and third["run"]["adopted"] == 2

    # a folder keyed before the criteria were: adopted where every pair keeps its criterion (toy-a/toy-b: the default)
    _make_legacy(source, M.model_id(tiny))
    counter = FitCounter(monkeypatch)
    fourth = run_eval(dataclasses.replace(copy, out=str(tmp_path / "d")), model=tiny)
    assert counter.calls == [] and fourth["run"]["adopted"] == 4
    assert fourth["results"] == first["results"]
    unit = json.loads((tmp_path / "d" / slug / "seed0" / "zero-shot" / "result.json").read_text())
    assert unit["adopted"]["rule"] == "criteria unchanged" and unit["key"] != unit["adopted"]["key"]

    with pytest.raises(ValueError, match="not an evaluation folder"):
        run_eval(dataclasses.replace(copy, out=str(tmp_path / "e"), adopt=str(tmp_path / "nowhere")), model=tiny)
    with pytest.raises(ValueError, match="that is --out itself"):
        run_eval(dataclasses.replace(copy, adopt=copy.out), model=tiny)


def test_adopt_refuses_units_whose_criteria_carried_the_gold_label(tiny, tmp_path, monkeypatch):
    rows = [{"id": f"x{i}", "subset": "xstest-should-respond" if i % 2 else "xstest-should-refuse",
             "prompt": f"How do I {t}?", "chosen": f"Here is how to {t}." if i % 2 else "I can't help with that.",
             "rejected": "I can't help with that." if i % 2 else f"Here is how to {t}."}
            for i, t in enumerate(["bake", "sail", "knit", "paint", "run", "swim", "draw", "sing"])]
    path = tmp_path / "xs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    oracle = JudgeConfig(routing="oracle")
    source = tiny_config(path, tmp_path / "a", methods=["zero-shot"], seeds=1, limit=4, n_fewshot=2, n_select=0,
                         bias_kinds=[], judge=oracle)
    run_eval(source, model=tiny)
    _make_legacy(source, M.model_id(tiny))  # as release 2 wrote XSTest: routed by the gold subset, criteria unkeyed

    counter = FitCounter(monkeypatch)
    label_free = dataclasses.replace(source, out=str(tmp_path / "b"), adopt=str(tmp_path / "a"), judge=JudgeConfig())
    assert run_eval(label_free, model=tiny)["run"] == {"units": 1, "computed": 1, "reused": 0}
    assert counter.calls == ["zero-shot"]
    # under the oracle routing (the labelled ablation) the prompts are the same, so the unit is that ablation's
    assert run_eval(dataclasses.replace(label_free, out=str(tmp_path / "c"), judge=oracle), model=tiny)["run"][
        "adopted"] == 1
