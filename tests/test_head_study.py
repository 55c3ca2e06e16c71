"""The head study on an ablation folder: its numbers agree with the folder's own cells, and it resumes."""

from __future__ import annotations

import math

import pytest
import torch
from test_analysis import tiny_config, toy_pairs

from armlens.analysis import grid as G
from armlens.analysis import runs as A
from armlens.analysis.head_study import StudyConfig, halves, load_studies, run_head_study
from armlens.io import read_json, write_json


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    """One tiny ablation folder (the selection axis, one seed) both studies read."""
    out = tmp_path_factory.mktemp("study")
    cfg = tiny_config(grid=["selection"], seeds=[0], limit=6)
    A.run_ablations(tiny, toy_pairs(), cfg, out, show_progress=False)
    return out, cfg, toy_pairs()


def test_head_study_agrees_with_the_cells(tiny, folder):
    tmp_path, cfg, pairs = folder
    paths = run_head_study(tiny, pairs, cfg, tmp_path, StudyConfig(margin=0.1, grid=4, n_random=2))
    assert paths and all(p.is_file() for p in paths)
    cells = {s: read_json(A.cell_file(tmp_path, G.Cell("selection", "ARM", s, heads="fit" if s == "reinforce" else s),
                                      0)) for s in ("reinforce", "none")}
    split = read_json(tmp_path / "seeds" / "seed0" / "split.json.gz")
    position = {pid: i for i, pid in enumerate(split["test_used"])}
    (rec,) = load_studies(tmp_path)
    half = rec["report_half"]
    assert set(half["pair_ids"]).isdisjoint(rec["prune_half"]["pair_ids"])
    assert sorted(half["pair_ids"] + rec["prune_half"]["pair_ids"]) == sorted(split["test_used"])
    for row, cell in (("full", "reinforce"), ("zero-shot", "none")):  # the same scores as the ablation's cells
        want = [cells[cell]["correct"][position[pid]] for pid in half["pair_ids"]]
        assert half["correct"][row] == want, row
        assert half["accuracy"][row] == sum(want) / len(want)
    assert rec["full_heads"] == cells["reinforce"]["heads"]
    assert set(rec["minimal"]["heads"]) <= set(rec["full_heads"])
    assert all(len(h) == rec["minimal"]["n_heads"] for h in half["random_heads"])
    n_layers, n_heads = tiny.cfg.n_layers, tiny.cfg.n_heads
    assert torch.tensor(rec["singles"]["accuracy"]).shape == (n_layers, n_heads)
    assert rec["singles"]["zero_shot_accuracy"] == cells["none"]["accuracy"]
    effect = torch.tensor(rec["attribution"]["effect"])
    chosen = {(int(h[1:].split("H")[0]), int(h.split("H")[1])) for h in rec["full_heads"]}
    assert all((effect[layer, head] != 0) == ((layer, head) in chosen) for layer in range(n_layers)
               for head in range(n_heads))
    a = rec["attribution"]
    assert abs(a["direct"] + a["indirect"] - a["change"]) < 1e-4
    # resumable: a second run reads the file back
    before = paths[0].stat().st_mtime_ns
    run_head_study(tiny, pairs, cfg, tmp_path, StudyConfig(margin=0.1, grid=4, n_random=2))
    assert paths[0].stat().st_mtime_ns == before


def test_halves_split_by_prompt():
    pairs = toy_pairs(12)
    a, b = halves(pairs, 0)
    assert sorted(a + b) == list(range(12)) and a and b
    assert {pairs[i].prompt_key() for i in a}.isdisjoint({pairs[i].prompt_key() for i in b})
    assert halves(pairs, 0) == (a, b) and halves(pairs, 1) != (a, b)


def _record(seed, minimal, full, correct, prompts, criterion="c"):
    n_layers, n_heads = 3, 4
    sep = torch.zeros(n_layers, n_heads)
    sep[1, 2] = 1.0 + seed
    return {"seed": seed, "criterion": criterion, "full_heads": full, "minimal": {"heads": minimal},
            "report_half": {"prompts": prompts, "correct": correct},
            "attribution": {"separation": sep.tolist(), "effect": sep.tolist(), "change": 1.0, "direct": 0.5,
                            "indirect": 0.5, "change_separation": 0.2, "direct_separation": 0.1},
            "singles": {"accuracy": (torch.full((n_layers, n_heads), 0.5) + sep / 10).tolist(),
                        "zero_shot_accuracy": 0.5}}


def test_head_report_tables():
    from armlens.analysis.head_report import accuracy_table, direct_share, stability_table, top_heads_table

    prompts = [f"p{i}" for i in range(6)]
    recs = [_record(s, ["L0H1", "L2H3"], ["L0H1", "L2H3", "L1H0"],
                    {"full": [1, 1, 1, 0, 1, 1], "minimal": [1, 1, 0, 0, 1, 1], "random0": [0, 1, 0, 0, 1, 0],
                     "random1": [0, 0, 0, 0, 1, 0], "zero-shot": [0, 0, 1, 0, 0, 1]}, prompts) for s in range(3)]
    acc = accuracy_table(recs, n_boot=200).set_index("set")
    assert acc.loc["full", "accuracy"] == 5 / 6 and acc.loc["minimal", "accuracy"] == 4 / 6
    assert acc.loc["random", "accuracy"] == (1 / 6 + 2 / 6) / 2 * 1.0 and acc.loc["zero-shot", "accuracy"] == 2 / 6
    assert abs(acc.loc["minimal - full", "accuracy"] + 1 / 6) < 1e-12
    assert acc.loc["full", "n_pairs"] == 18 and acc.loc["full", "n_seeds"] == 3
    assert acc.loc["minimal", "low"] <= 4 / 6 <= acc.loc["minimal", "high"]
    stab = stability_table(recs, (3, 4), n_random=50).iloc[0]
    assert stab["minimal_heads_mean"] == 2 and stab["full_heads_max"] == 3
    assert stab["minimal_jaccard"] == 1.0 and stab["minimal_jaccard_random"] < 0.2  # same sets every seed: not chance
    assert stab["minimal_layer_jaccard"] == 1.0 and stab["minimal_layer_jaccard_random"] < 1.0
    top = top_heads_table(recs, k=1)
    assert top.loc[top.rank_by == "separation", "head"].tolist() == ["L1H2"]
    assert top.loc[top.rank_by == "separation", "separation"].item() == 2.0
    assert top.loc[top.rank_by == "single", "head"].tolist() == ["L1H2"]
    assert direct_share(recs)["direct"] == 0.5


def test_bias_head_study_on_a_tiny_folder(tiny, folder):
    from armlens.analysis.bias_heads import BiasStudyConfig, run_bias_study
    from armlens.data.bias import build_bias_suite
    from armlens.prompts import AnswerIds, examples_from_pairs, scalar_prompt
    from armlens.scoring import score_texts

    tmp_path, cfg, pairs = folder
    (path,) = run_bias_study(tiny, pairs, cfg, tmp_path, BiasStudyConfig(kinds=("length",), ks=(1, 3, 8)))
    rec = read_json(path)["kinds"]["length"]
    split = read_json(tmp_path / "seeds" / "seed0" / "split.json.gz")
    by_id = {p.id: p for p in pairs}
    hacked = build_bias_suite([by_id[i] for i in split["test_used"]], 0, kinds=["length"])["length"]
    assert rec["pair_ids"] == [p.id for p in hacked] and rec["n_pairs"] == 6
    texts = [scalar_prompt(tiny, e, cfg.arm.template) for p in hacked for e in examples_from_pairs([p])]
    plain = score_texts(tiny, texts, answer_ids=AnswerIds.of(tiny, cfg.arm.template))
    assert rec["zero_shot_hack_rate"] == float((plain[1::2] > plain[0::2]).double().mean())
    first = rec["ranked_heads"][0]
    layer, head = int(first[1:].split("H")[0]), int(first.split("H")[1])
    assert rec["top_k"][0]["k"] == 1 and rec["top_k"][0]["heads"] == [first]
    assert rec["top_k"][0]["hack_rate"] == rec["hack_rate"][layer][head]  # the set of one is the single head
    assert rec["top_k"][-1]["k"] == 8 and len(rec["top_k"][-1]["heads"]) == 8
    if rec["bias_heads"] is not None:
        ov = rec["overlap"]
        assert ov["k"] == len(rec["bias_heads"]) and 0 <= ov["in_arm"] <= ov["k"]
    # Cross-fitted: each pair scored under the set ranked on the other half, checked here with plain forwards.
    from armlens.analysis.bias_heads import ablation_means
    from armlens.analysis.head_study import halves
    from armlens.analysis.runs import SeedRun
    from armlens.patching import parse_heads

    held = rec["held_apart"]
    run = SeedRun(tiny, cfg, pairs, 0, tmp_path, show_progress=False)
    a, _ = halves(run.test, 0)
    half_a = {run.test[i].prompt_key() for i in a}
    assert held["pair_halves"] == ["a" if p.prompt_key() in half_a else "b" for p in hacked]
    assert held["zero_shot_hacked"] == [int(plain[2 * j + 1] > plain[2 * j]) for j in range(len(hacked))]
    means = ablation_means(run)
    ids = AnswerIds.of(tiny, cfg.arm.template)
    checked = 0
    for top in held["top_k"]:
        if not top["hacked"]:
            continue
        for j, half in enumerate(held["pair_halves"]):
            heads = top["heads"]["b" if half == "a" else "a"]
            assert len(heads) == top["k"]
            mask = parse_heads(heads, tiny.cfg.n_layers, tiny.cfg.n_heads)
            got = score_texts(tiny, texts[2 * j: 2 * j + 2], means=means, mask=mask, answer_ids=ids)
            assert top["hacked"][j] == int(got[1] > got[0]) or abs(float(got[1] - got[0])) < 1e-5
            checked += 1
    assert checked > 0
    floor = read_json(path)["kinds"]["length"]["random_k"]
    assert [f["k"] for f in floor] == [1, 3, 8] and all(len(f["heads"]) == 3 for f in floor)
    for f in floor:
        flags = []
        for heads in f["heads"]:
            assert len(heads) == f["k"]
            mask = parse_heads(heads, tiny.cfg.n_layers, tiny.cfg.n_heads)
            got = score_texts(tiny, texts, means=means, mask=mask, answer_ids=ids)
            flags.append((got[1::2] > got[0::2]).double())
        want = torch.stack(flags).mean(0)
        close = [abs(float(a - b)) < 1e-9 for a, b in zip(f["hacked"], want.tolist(), strict=True)]
        assert sum(close) >= len(close) - 1, (f["hacked"], want)  # a near-tie may flip between the two passes
    whole = read_json(path)  # a file written before the floor gets it added, the same
    del whole["kinds"]["length"]["random_k"]
    write_json(path, whole, indent=None)
    run_bias_study(tiny, pairs, cfg, tmp_path, BiasStudyConfig(kinds=("length",), ks=(1, 3, 8)))
    assert read_json(path)["kinds"]["length"]["random_k"] == floor
    att = read_json(path)["attention"]
    assert att["n_prompts"]["clean"] == 2 * len(run.test) and att["n_prompts"]["length"] == len(hacked)
    share = torch.tensor(att["share"]["length"])
    assert share.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads, len(att["segments"]))
    assert share.sum(-1) == pytest.approx(torch.ones(share.shape[:2]), abs=1e-4)
    from armlens.analysis.heads import segment_attention

    want = segment_attention(tiny, texts[1::2], cfg.arm.template, n_end=att["n_end"]).mean(0)
    assert share == pytest.approx(want, abs=1e-5)


def test_head_outputs_write_what_the_studies_hold(tiny, folder, tmp_path):
    from armlens.analysis.bias_heads import BiasStudyConfig, run_bias_study
    from armlens.analysis.head_outputs import head_outputs

    out, cfg, pairs = folder
    run_head_study(tiny, pairs, cfg, out, StudyConfig(margin=0.1, grid=4, n_random=2))  # on file: read back
    run_bias_study(tiny, pairs, cfg, out, BiasStudyConfig(kinds=("length",), ks=(1, 3, 8)))
    figs = head_outputs([out], tmp_path)
    assert {"toy_minimal_sets", "toy_head_dla", "toy_bias_heads_length"} <= set(figs)
    text = (tmp_path / "heads.md").read_text()
    for section in ("## Heads a default fit patches", "## toy: a minimal head set", "### Stability across seeds",
                    "## toy: where the zero-shot judge's bias lives", "| minimal - full |",
                    "### toy, length: bias heads ranked on one half, ablated on the other", "| reduction | 3 |", "| reduction beyond random | 8 |",
                    "### toy: where the heads attend from the read position", "| length | all heads | hacked |"):
        assert section in text, section
    (rec,) = load_studies(out)
    acc = rec["report_half"]["accuracy"]["full"]
    assert f"| full | {100 * acc:.1f} (" in text  # one seed: the table's estimate is that seed's accuracy


def test_bias_overlap_table_counts_the_arm_and_the_seeds_agreement():
    from armlens.analysis.head_report import bias_overlap_table
    from armlens.analysis.heads import expected_random_jaccard

    def rec(top, arm):
        return {"kinds": {"length": {"top_k": [{"k": 2, "heads": top}]}}, "arm_heads": arm, "n_heads_model": 10}

    records = [rec(["L0H0", "L0H1"], ["L0H0", "L1H1"]), rec(["L0H0", "L0H2"], ["L0H2"]),
               rec(["L0H3", "L0H4"], [])]
    row = bias_overlap_table(records, k=2).iloc[0]
    assert row["n_seeds"] == 3 and row["in_arm"] == 2 and row["chance"] == pytest.approx(2 * (2 + 1 + 0) / 10)
    # Jaccard of the three pairs of seeds' lists: 1/3, 0, 0
    assert row["seed_jaccard"] == pytest.approx(1 / 9)
    assert row["seed_jaccard_random"] == pytest.approx(expected_random_jaccard(2, 2, 10))
    assert math.isnan(bias_overlap_table(records[:1], k=2).iloc[0]["seed_jaccard"])
