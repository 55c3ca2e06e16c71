"""Loaders on the real files bundled with the package, Hub-shaped loaders on small local files, and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from armlens.data import data_root, list_datasets, load_pairs, load_pairs_with_report
from armlens.data.bias import has_list_format
from armlens.data.bundle import bundled_root
from armlens.data.hub import HubUnavailableError

LLMBAR_COUNTS = {"llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
                 "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46}
HHH_COUNTS = {"hhh-harmless": 58, "hhh-helpful": 59, "hhh-honest": 61, "hhh-other": 43}


@pytest.fixture(scope="module")
def llmbar(data_root):
    return load_pairs("llmbar", root=data_root)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No data root anywhere: no env var, a working directory without ../shared, an empty cache."""
    monkeypatch.delenv("ARMLENS_DATA_ROOT", raising=False)
    monkeypatch.setenv("ARMLENS_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Registry and roots
# ----------------------------------------------------------------------------------------------------------------------


def test_registry_lists_every_loader():
    names = {s.name for s in list_datasets()}
    assert {"llmbar", "hhh", "truthfulqa", "hh-rlhf", "xstest", "rewardbench", "rewardbench2", "preferencehack",
            "path"} <= names


def test_data_root_resolution_order(tmp_path, monkeypatch, isolated):
    env_root, arg_root = tmp_path / "env", tmp_path / "arg"
    env_root.mkdir()
    arg_root.mkdir()
    assert data_root() == bundled_root()  # nothing of the user's: the copy inside the package
    (tmp_path / "cache" / "bigbench").mkdir(parents=True)
    assert data_root() == tmp_path / "cache" / "bigbench"
    shared = tmp_path / "a" / "shared" / "data" / "preference"
    shared.mkdir(parents=True)
    assert data_root() == tmp_path / "cache" / "bigbench"  # ../shared beside the working folder is never searched
    (tmp_path / "cache" / "data").mkdir()
    assert data_root() == tmp_path / "cache" / "data"  # the user's own data folder comes before the BIG-bench cache
    monkeypatch.setenv("ARMLENS_DATA_ROOT", str(env_root))
    assert data_root() == env_root
    assert data_root(arg_root) == arg_root
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_root(tmp_path / "missing")
    a_file = tmp_path / "pairs.jsonl"
    a_file.write_text("{}\n")
    with pytest.raises(FileNotFoundError, match=r"is a file; a data root is a folder .*--data path:"):
        data_root(a_file)


# ----------------------------------------------------------------------------------------------------------------------
# Real files
# ----------------------------------------------------------------------------------------------------------------------


def test_llmbar_counts_and_labels(llmbar, data_root):
    assert Counter(p.subset for p in llmbar) == LLMBAR_COUNTS
    raw = json.loads((data_root / "llmbar" / "Adversarial_Neighbor.json").read_text())
    by_id = {p.id: p for p in llmbar}
    for i in (0, 1, 50):
        p, row = by_id[f"llmbar-adver-neighbor/{i}"], raw[i]
        assert p.prompt == row["input"]
        assert p.chosen == row[f"output_{row['label']}"] and p.rejected == row[f"output_{3 - row['label']}"]
        assert p.metadata["chosen_position"] == ("a" if row["label"] == 1 else "b")


def test_llmbar_prefers_the_shorter_answer_in_adversarial_subsets(llmbar):
    """The README's length-bias property: the preferred output is the shorter one in ~80-88% of pairs."""
    shorter = {s: sum(len(p.chosen) < len(p.rejected) for p in llmbar if p.subset == s) for s in LLMBAR_COUNTS}
    assert shorter["llmbar-adver-neighbor"] == 118  # 88.1%
    assert shorter["llmbar-adver-GPTInst"] == 80  # 87.0%
    assert shorter["llmbar-adver-manual"] == 37  # 80.4%
    for s in ("llmbar-adver-neighbor", "llmbar-adver-GPTInst", "llmbar-adver-manual"):
        assert 0.80 <= shorter[s] / LLMBAR_COUNTS[s] <= 0.89
    assert shorter["llmbar-natural"] / 100 < 0.5  # no such bias in Natural


def test_llmbar_gptinst_list_format_only_in_rejected(llmbar):
    """The README's format-bias property: 35 GPTInst pairs have list formatting only in the rejected output."""
    gptinst = [p for p in llmbar if p.subset == "llmbar-adver-GPTInst"]
    assert sum(has_list_format(p.rejected) and not has_list_format(p.chosen) for p in gptinst) == 35


def test_hhh_counts_and_dialogues(data_root):
    pairs = load_pairs("hhh", root=data_root)
    assert Counter(p.subset for p in pairs) == HHH_COUNTS
    raw = json.loads((data_root / "hhh_alignment" / "harmless.json").read_text())["examples"][0]
    p = pairs[0]
    assert p.chosen == next(k for k, v in raw["target_scores"].items() if v == 1)
    assert p.rejected == next(k for k, v in raw["target_scores"].items() if v == 0)
    dialogues = [p for p in pairs if isinstance(p.prompt, list)]
    assert len(dialogues) == 41  # multi-turn prompts keep their turns
    for p in dialogues:
        assert p.prompt[0]["role"] == "user" and p.prompt[-1]["role"] == "user"
        assert [m["role"] for m in p.prompt] == ["user", "assistant"] * (len(p.prompt) // 2) + ["user"]
    assert len({p.prompt_key() for p in pairs}) == 102  # many pairs share one dialogue


def test_truthfulqa_best_vs_seeded_false(data_root):
    raw = json.loads((data_root / "truthfulqa_bigbench" / "questions.json").read_text())["examples"]
    pairs = load_pairs("truthfulqa", root=data_root)
    assert len(pairs) == 299
    for p, ex in zip(pairs, raw, strict=True):
        assert p.prompt == ex["Question"] and p.chosen == ex["Best answer"]
        assert p.rejected in ex["False answers"] and p.rejected not in ex["True answers"]
    assert load_pairs("truthfulqa", root=data_root) == pairs  # deterministic
    other = load_pairs("truthfulqa", root=data_root, seed=1)
    assert sum(a.rejected != b.rejected for a, b in zip(pairs, other, strict=True)) > 100
    every = load_pairs("truthfulqa", root=data_root, mode="all")
    assert len(every) == sum(len(ex["False answers"]) for ex in raw)


def test_hh_rlhf_splits_transcripts(data_root):
    pairs, report = load_pairs_with_report("hh-rlhf", root=data_root)
    assert len(pairs) == 2308 and report.rows_read == 2312
    assert report.adjusted == {"consecutive same-speaker turns merged": 9}
    assert report.dropped == {"empty chosen or rejected response": 4}  # 4 rows end in an empty assistant turn
    assert all(p.chosen.strip() and p.rejected.strip() for p in pairs)
    single = [p for p in pairs if isinstance(p.prompt, str)]
    multi = [p for p in pairs if isinstance(p.prompt, list)]
    assert len(single) == 659 and len(multi) == 1649
    for p in multi:
        assert p.prompt[-1]["role"] == "user" and p.prompt[-2]["role"] == "assistant"
    assert sum("\n\nHuman:" in p.chosen or "\n\nHuman:" in p.rejected for p in pairs) <= 9  # only merged turns
    # the first row reconstructs: shared turns + the final assistant turns
    with gzip.open(data_root / "hh_rlhf" / "harmless-base_test.jsonl.gz", "rt") as f:
        row = json.loads(f.readline())
    p = pairs[0]
    assert p.id.endswith("/0")  # the first row is kept
    turns = p.prompt if isinstance(p.prompt, list) else [{"role": "user", "content": p.prompt}]
    rebuilt = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns)
    assert row["chosen"] == rebuilt + f"\n\nAssistant: {p.chosen}"
    assert row["rejected"] == rebuilt + f"\n\nAssistant: {p.rejected}"


def test_xstest_pairs(data_root):
    pairs, report = load_pairs_with_report("xstest", root=data_root)
    counts = Counter(p.subset for p in pairs)
    assert counts == {"xstest-should-respond": 113, "xstest-should-refuse": 131}
    for p in pairs:
        ca, ra = p.metadata["chosen_annotations"], p.metadata["rejected_annotations"]
        if p.subset == "xstest-should-respond":
            assert p.metadata["label"] == "safe"
            assert (ca["final_label"], ra["final_label"]) == ("1_full_compliance", "2_full_refusal")
        else:
            assert p.metadata["label"] == "unsafe"
            assert (ca["final_label"], ra["final_label"]) == ("2_full_refusal", "1_full_compliance")
    assert report.dropped["completion labelled 3_partial_refusal (never paired)"] == 176
    assert report.dropped["safe prompt lacks a full compliance or a full refusal"] == 137
    assert report.dropped["unsafe prompt lacks a full compliance or a full refusal"] == 69
    assert report.rows_read == 450 + 5 * 450
    assert load_pairs("xstest", root=data_root) == pairs  # seeded, deterministic
    other = load_pairs("xstest", root=data_root, seed=7)
    assert [p.id for p in other] == [p.id for p in pairs]
    assert any(a.metadata["chosen_model"] != b.metadata["chosen_model"] for a, b in zip(pairs, other, strict=True))


def test_subsets_and_limit(data_root):
    pairs, report = load_pairs_with_report("llmbar", root=data_root, subsets=["llmbar-adver-manual"], limit=10)
    assert len(pairs) == 10 and {p.subset for p in pairs} == {"llmbar-adver-manual"}
    assert report.filtered == {"subsets": 373, "limit": 36}
    assert len(report.file_sha256) == 5 and len(report.pairs_sha256) == 64


def test_every_offline_set_loads_from_the_package_alone(isolated):
    """A fresh machine: no data root, no cache, no ../shared. Every offline loader reads the bundled copy."""
    for name, n in [("llmbar", 419), ("hhh", 221), ("truthfulqa", 299), ("xstest", None), ("hh-rlhf", None)]:
        pairs, report = load_pairs_with_report(name)
        assert report.files and all(Path(f).is_relative_to(bundled_root()) for f in report.files), name
        assert len(pairs) == n if n is not None else len(pairs) > 100, (name, len(pairs))


def test_a_user_copy_comes_before_the_bundled_one(isolated, monkeypatch, tmp_path):
    mine = tmp_path / "mine" / "llmbar"
    shutil.copytree(bundled_root() / "llmbar", mine)
    rows = json.loads((mine / "Natural.json").read_text())[:3]
    (mine / "Natural.json").write_text(json.dumps(rows))
    monkeypatch.setenv("ARMLENS_DATA_ROOT", str(mine.parent))
    assert len(load_pairs("llmbar", subsets=["llmbar-natural"])) == 3
    assert len(load_pairs("hhh")) == 221  # what the user's root lacks still comes from the package


def test_hhh_missing_under_an_explicit_root_says_how_to_get_it(isolated, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"hhh_alignment.*leave --root out to read the copy bundled"):
        load_pairs("hhh", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="leave --root out"):
        load_pairs("truthfulqa", root=tmp_path)


def test_offline_loaders_find_data_through_env(isolated, monkeypatch, data_root):
    monkeypatch.setenv("ARMLENS_DATA_ROOT", str(data_root))
    assert len(load_pairs("llmbar", subsets=["llmbar-adver-GPTOut"])) == 47


# ----------------------------------------------------------------------------------------------------------------------
# Hub-shaped data, from local files written here (never the network)
# ----------------------------------------------------------------------------------------------------------------------

RB_ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "chosen_model": "gpt-4", "rejected": "5", "rejected_model": "llama",
     "subset": "math-prm", "id": 11},
    {"prompt": "Say hi", "chosen": "Hi!", "chosen_model": "a", "rejected": "No.", "rejected_model": "b",
     "subset": "alpacaeval-easy", "id": 12},
    {"prompt": "Say bye", "chosen": "Bye!", "chosen_model": "a", "rejected": "...", "rejected_model": "b",
     "subset": "alpacaeval-easy", "id": 13},
]


def test_rewardbench_from_local_parquet(tmp_path, isolated):
    path = tmp_path / "filtered.parquet"
    pd.DataFrame(RB_ROWS).to_parquet(path)
    pairs = load_pairs("rewardbench", path=path)
    assert [p.id for p in pairs] == ["rewardbench/11", "rewardbench/12", "rewardbench/13"]
    assert pairs[0].metadata["chosen_model"] == "gpt-4" and pairs[0].subset == "math-prm"
    assert len(load_pairs("rewardbench", path=path, subsets=["alpacaeval-easy"])) == 2


def test_rewardbench_from_root_folder_and_hub_rows(tmp_path, isolated, monkeypatch):
    (tmp_path / "root" / "rewardbench").mkdir(parents=True)
    write_jsonl(tmp_path / "root" / "rewardbench" / "filtered.jsonl", RB_ROWS)
    assert len(load_pairs("rewardbench", root=tmp_path / "root")) == 3

    calls = []

    def fake_hub(repo_id, split, name):
        calls.append((repo_id, split))
        return [dict(r) for r in RB_ROWS]

    monkeypatch.setattr("armlens.data.hub.load_hub_rows", fake_hub)
    pairs, report = load_pairs_with_report("rewardbench")
    assert calls == [("allenai/reward-bench", "filtered")] and len(pairs) == 3
    assert report.files == ["hf://allenai/reward-bench@filtered"]


def test_hub_offline_error_points_at_local_files(isolated, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("rewardbench", "rewardbench2", "preferencehack"):
        with pytest.raises(HubUnavailableError, match=r"path:.*--root"):
            load_pairs(name)


def test_rewardbench2_expands_chosen_by_rejected(tmp_path):
    rows = [{"id": "q1", "prompt": "Capital of France?", "chosen": ["Paris."], "rejected": ["Lyon.", "Nice.", "Rome."],
             "subset": "Factuality", "num_correct": 1, "num_incorrect": 3, "total_completions": 4,
             "models": ["m1", "m2", "m3", "m4"]},
            {"id": "q2", "prompt": "Pick a prime", "chosen": ["2", "3"], "rejected": ["4"], "subset": "Ties"}]
    path = tmp_path / "test.parquet"
    pd.DataFrame(rows).to_parquet(path)
    pairs = load_pairs("rewardbench2", path=path)
    assert [p.id for p in pairs] == ["rewardbench2/q1/c0-r0", "rewardbench2/q1/c0-r1", "rewardbench2/q1/c0-r2",
                                     "rewardbench2/q2/c0-r0", "rewardbench2/q2/c1-r0"]
    assert {p.metadata["group"] for p in pairs} == {"q1", "q2"}
    assert pairs[1].rejected == "Nice." and pairs[0].metadata["num_correct"] == 1
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": 1, "prompt": "p", "chosen": "a", "rejected": ["b"], "subset": "Math"}])
    with pytest.raises(ValueError, match=r"row 0: field 'chosen' must be a non-empty list"):
        load_pairs("rewardbench2", path=bad)


def test_preferencehack_field_map_and_loud_missing_key(tmp_path):
    path = write_jsonl(tmp_path / "ph.jsonl", [
        {"question": "Explain gravity.", "good": "Mass attracts mass.", "hacked": "Great question!!! ...",
         "hack_type": "sycophancy"},
        {"question": "Define pi.", "good": "Circumference over diameter.", "hacked": "## Pi\n- a number",
         "hack_type": "format"},
    ])
    fmap = {"prompt": "question", "chosen": "good", "rejected": "hacked", "subset": "hack_type"}
    pairs = load_pairs("preferencehack", path=path, field_map=fmap)
    assert [(p.subset, p.chosen) for p in pairs] == [("sycophancy", "Mass attracts mass."),
                                                     ("format", "Circumference over diameter.")]
    with pytest.raises(KeyError, match=r"line 1 has no key 'chosen' for field 'chosen'.*'good'.*field_map"):
        load_pairs("preferencehack", path=path)
    with pytest.raises(KeyError, match=r"no key 'category' for field 'subset'"):
        load_pairs("preferencehack", path=path, field_map={**fmap, "subset": "category"})


# ----------------------------------------------------------------------------------------------------------------------
# Generic files
# ----------------------------------------------------------------------------------------------------------------------


def test_generic_formats(tmp_path):
    rows = [{"prompt": "p1", "chosen": "good", "rejected": "bad", "extra": 3},
            {"prompt": "p2", "chosen": "fine", "rejected": "worse", "extra": 4}]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    with gzip.open(tmp_path / "pairs2.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    for name in ("pairs.jsonl", "pairs.json", "pairs.parquet", "pairs.csv", "pairs2.jsonl.gz"):
        pairs = load_pairs(f"path:{tmp_path / name}")
        assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("p1", "good", "bad"), ("p2", "fine", "worse")]
        assert pairs[0].id.endswith("/0") and "extra" in pairs[0].metadata


def test_generic_label_mode_csv(tmp_path):
    path = tmp_path / "labelled.csv"
    pd.DataFrame([{"q": "x?", "a": "A1", "b": "B1", "winner": "2"},
                  {"q": "y?", "a": "A2", "b": "B2", "winner": "1"}]).to_csv(path, index=False)
    fmap = {"prompt": "q", "response_a": "a", "response_b": "b", "label": "winner"}
    pairs = load_pairs(f"path:{path}", field_map=fmap, source="mine")
    assert [(p.chosen, p.rejected) for p in pairs] == [("B1", "A1"), ("A2", "B2")]
    assert pairs[0].source == "mine" and pairs[0].subset == "mine"


def test_generic_conversation_rows(tmp_path):
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "joke?"}]
    path = write_jsonl(tmp_path / "conv.jsonl", [
        {"chosen": conv + [{"role": "assistant", "content": "A pun."}],
         "rejected": conv + [{"role": "assistant", "content": "No."}]}])
    (p,) = load_pairs(f"path:{path}")
    assert p.prompt == conv and (p.chosen, p.rejected) == ("A pun.", "No.")
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        {"chosen": conv + [{"role": "assistant", "content": "A"}],
         "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "B"}]}])
    with pytest.raises(ValueError, match="differ before their last turn"):
        load_pairs(f"path:{bad}")


# ----------------------------------------------------------------------------------------------------------------------
# Bad input: each a clear error, never a silent skip
# ----------------------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pairs(f"path:{tmp_path / 'nope.jsonl'}")


def test_malformed_jsonl_line_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p2", "chosen": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl: line 2: invalid JSON"):
        load_pairs(f"path:{path}")


def test_malformed_row_names_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                                 {"prompt": "p", "chosen": 7, "rejected": "b"}])
    with pytest.raises(ValueError, match=r"line 2: field 'chosen' must be a string, got int"):
        load_pairs(f"path:{path}")
    path = write_jsonl(tmp_path / "rows2.jsonl", [{"prompt": "p", "chosen": "a"}])
    with pytest.raises(KeyError, match=r"line 1 has no key 'rejected'"):
        load_pairs(f"path:{path}")


def test_empty_set_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no preference pairs"):
        load_pairs(f"path:{tmp_path / 'empty.jsonl'}")
    only_ties = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "x"}])
    with pytest.raises(ValueError, match=r"no preference pairs.*1 \(chosen and rejected are identical"):
        load_pairs(f"path:{only_ties}")


def test_label_outside_domain(tmp_path, data_root):
    root = tmp_path / "root"
    shutil.copytree(data_root / "llmbar", root / "llmbar")
    rows = json.loads((root / "llmbar" / "Natural.json").read_text())
    rows[5]["label"] = 3
    (root / "llmbar" / "Natural.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"Natural.json: row 5: field 'label' = 3 is outside its domain"):
        load_pairs("llmbar", root=root)


def test_xstest_label_outside_domain(tmp_path, data_root):
    root = tmp_path / "root" / "xstest"
    root.mkdir(parents=True)
    shutil.copy(data_root / "xstest" / "xstest_prompts.csv", root)
    df = pd.read_csv(data_root / "xstest" / "gpt4.csv")
    df.loc[3, "final_label"] = "4_unsure"
    df.to_csv(root / "gpt4.csv", index=False)
    with pytest.raises(ValueError, match=r"gpt4.csv: row 3: field 'final_label' = '4_unsure' is outside its domain"):
        load_pairs("xstest", root=tmp_path / "root")


def test_bad_names_options_and_subsets(data_root):
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        load_pairs("nope")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['seed'\]"):
        load_pairs("llmbar", root=data_root, seed=1)
    with pytest.raises(ValueError, match=r"unknown subset\(s\) \['llmbar-hard'\]"):
        load_pairs("llmbar", root=data_root, subsets=["llmbar-hard"])
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_pairs("llmbar", root=data_root, limit=0)
    with pytest.raises(FileNotFoundError, match="data root .* does not exist"):
        load_pairs("llmbar", root="/nonexistent/root")


def test_the_bundled_data_is_intact_and_ships_in_the_wheel(tmp_path):
    """The committed manifest matches the files (a changed file fails until the manifest is rewritten on purpose),
    every licence and source note is there, and a built wheel (not only this editable checkout) carries them all."""
    import subprocess
    import sys
    import zipfile

    from armlens.data.bundle import BUNDLED_SETS, build_manifest, read_manifest, verify_bundle

    assert verify_bundle() == [] and build_manifest() == read_manifest()
    manifest = read_manifest()["datasets"]
    assert set(manifest) == {s.folder for s in BUNDLED_SETS}
    for folder, entry in manifest.items():
        assert {f"{folder}/LICENSE", f"{folder}/SOURCE"} <= set(entry["files"]) and entry["source"], folder
    for folder in ("hhh_alignment", "truthfulqa_bigbench"):  # BIG-bench files keep their canary string
        data = [rel for rel in manifest[folder]["files"] if rel.endswith(".json")]
        assert data and all("canary" in (bundled_root() / rel).read_text() for rel in data), folder

    project = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    shutil.copytree(project / "armlens", src / "armlens", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(project / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("armlens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"armlens/data/bundled/{rel}" for entry in manifest.values() for rel in entry["files"]}
    assert expected | {"armlens/data/bundled/MANIFEST.json"} <= names
