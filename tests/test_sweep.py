"""The defaults sweep's reading: paired differences to the default setting, pooled over seeds and datasets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from armlens import io as aio
from armlens.analysis.grid import AblationConfig
from armlens.analysis.sweep import POOLED_DATA, reference_setting, sweep_markdown, sweep_table
from armlens.rm import ARMConfig
from armlens.selection import ReinforceConfig
from armlens.stats import clustered_bootstrap, interval_of

BASE = ARMConfig(reading="icl", icl_layout="lines", reinforce=ReinforceConfig(objective="answer", steps=300))
"""The reference ARM of these planted folders (round 1's), pinned so the tests do not move with the defaults."""


def test_clustered_bootstrap_keeps_seed_variance():
    rng = np.random.default_rng(0)
    same = [rng.random(300) < 0.6 for _ in range(3)]
    apart = [rng.random(300) < p for p in (0.4, 0.6, 0.8)]
    sd_same = clustered_bootstrap(same, 2000, 0).std()
    sd_apart = clustered_bootstrap(apart, 2000, 0).std()
    item_sd = np.concatenate(apart).std() / math.sqrt(900)  # an item bootstrap over all 900 items
    assert sd_apart > 3 * item_sd  # seeds that disagree widen the interval ...
    assert sd_same == pytest.approx(np.concatenate(same).std() / math.sqrt(900), rel=0.35)  # ... agreeing ones do not
    np.testing.assert_array_equal(clustered_bootstrap(apart, 500, 7), clustered_bootstrap(apart, 500, 7))
    zero = interval_of(clustered_bootstrap([np.zeros(5), np.zeros(9)], 200, 0), 0.0)
    assert (zero.diff, zero.low, zero.high, zero.p_value) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        clustered_bootstrap([np.ones(3), np.array([])])
    with pytest.raises(ValueError, match="NaN"):
        clustered_bootstrap([np.array([1.0, math.nan])])


def _item_bootstrap_before_clusters(groups, n, seed):
    """clustered_bootstrap as it was before cluster labels (each item resampled alone), kept to pin its numbers."""
    arrays = [np.asarray(g, dtype=float).ravel() for g in groups]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(arrays), size=(n, len(arrays)))
    means = np.empty(pick.shape)
    for g, a in enumerate(arrays):
        where = pick == g
        means[where] = a[rng.integers(0, a.size, size=(int(where.sum()), a.size))].mean(axis=1)
    return means.mean(axis=1)


def test_clustered_bootstrap_resamples_prompts_together():
    rng = np.random.default_rng(1)
    seeds = [rng.random(120) < p for p in (0.5, 0.6, 0.7)]
    # distinct labels (or none) are the item bootstrap, bit for bit, so folders without prompt labels keep their numbers
    before = _item_bootstrap_before_clusters(seeds, 800, 3)
    np.testing.assert_array_equal(clustered_bootstrap(seeds, 800, 3), before)
    np.testing.assert_array_equal(clustered_bootstrap(seeds, 800, 3, clusters=[range(120)] * 3), before)
    np.testing.assert_array_equal(clustered_bootstrap(seeds, 800, 3, clusters=[None, range(120), None]), before)
    # 50 prompts with 4 pairs each that share the prompt's outcome: the information of 50 items, not 200
    prompt_outcome = rng.random(50) < 0.6
    values = np.repeat(prompt_outcome, 4)
    labels = np.repeat(np.arange(50), 4)
    shuffled = rng.permutation(200)  # cluster members need not be adjacent
    by_pair = clustered_bootstrap([values[shuffled]], 4000, 0).std()
    by_prompt = clustered_bootstrap([values[shuffled]], 4000, 0, clusters=[labels[shuffled]]).std()
    expected = prompt_outcome.std() / math.sqrt(50)
    assert by_prompt == pytest.approx(expected, rel=0.1) and by_pair == pytest.approx(expected / 2, rel=0.1)
    # unequal cluster sizes: a resample's statistic is the mean over its drawn items
    one = clustered_bootstrap([np.array([1.0, 0.0, 0.0])], 2000, 0, clusters=[["a", "b", "b"]])
    assert set(np.round(one, 6)) <= {0.0, 1.0, round(1 / 3, 6)}
    with pytest.raises(ValueError, match="2 items but 3 cluster labels"):
        clustered_bootstrap([np.ones(2)], clusters=[["a", "b", "c"]])
    with pytest.raises(ValueError, match="1 cluster label lists for 2 groups"):
        clustered_bootstrap([np.ones(2), np.ones(2)], clusters=[None])


def test_reference_setting_is_the_default():
    arm = ARMConfig()
    assert reference_setting("reading", BASE) == "icl-lines"
    assert reference_setting("reading", ARMConfig(reading="icl", icl_layout="turns")) == "icl-turns"
    assert reference_setting("reading", ARMConfig(reading="answered")) == "answered"
    assert reference_setting("objective", BASE) == "answer" and reference_setting("steps", BASE) == "300"
    assert reference_setting("steps", arm) == str(arm.reinforce.steps)
    assert reference_setting("prior", ARMConfig(reinforce=ReinforceConfig(init_logit=-2.0))) == "-2"
    assert reference_setting("lr", ARMConfig(reinforce=ReinforceConfig(lr=0.3))) == "0.3"
    assert reference_setting("criteria", arm) == arm.criteria
    assert reference_setting("heads", arm) is None


def _folder(tmp_path, data, correct_by_setting, seeds=(0, 1, 2), arm=BASE):
    out = tmp_path / data
    (out / "cells").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"config": AblationConfig(data=data, arm=arm).to_dict()}))
    for (axis, setting), per_seed in correct_by_setting.items():
        d = out / "cells" / axis / setting
        d.mkdir(parents=True)
        for s in seeds:
            c = per_seed[s]
            (d / f"seed{s}.json").write_text(json.dumps({
                "axis": axis, "series": "ARM", "setting": setting, "x": None, "reading": "prob", "seed": s,
                "accuracy": float(np.mean(c)), "ci_low": 0, "ci_high": 1, "ties": 0, "n_pairs": len(c),
                "n_heads": 5.0, "correct": list(map(int, c)), "test_sha256": f"t{s}"}))
    return out


def test_sweep_table_pairs_each_setting_with_the_default(tmp_path):
    rng = np.random.default_rng(1)
    base = {s: (rng.random(100) < 0.6).astype(int) for s in range(3)}
    better = {s: np.maximum(base[s], (rng.random(100) < 0.3).astype(int)) for s in range(3)}  # never worse
    same = {s: base[s].copy() for s in range(3)}
    a = _folder(tmp_path, "one", {("reading", "icl-lines"): base, ("reading", "answered"): better,
                                  ("reading", "icl-turns"): same})
    b = _folder(tmp_path, "two", {("reading", "icl-lines"): base, ("reading", "answered"): better})
    t = sweep_table([a, b], n_boot=500)
    row = t[(t["data"] == "one") & (t["setting"] == "answered")].iloc[0]
    want = np.mean([better[s].mean() - base[s].mean() for s in range(3)])
    assert row["diff"] == pytest.approx(want) and row["diff_low"] >= 0 and row["diff"] > 0
    assert row["n_pairs"] == 300 and row["n_seeds"] == 3 and not row["reference"]
    ref = t[(t["data"] == "one") & (t["setting"] == "icl-lines")].iloc[0]
    assert ref["reference"] and ref["diff"] == 0 and math.isnan(ref["p_value"])
    tie = t[(t["data"] == "one") & (t["setting"] == "icl-turns")].iloc[0]
    assert tie["diff"] == 0 and tie["p_value"] == 1
    pooled = t[t["data"] == POOLED_DATA]
    assert set(pooled["setting"]) == {"icl-lines", "answered"}  # icl-turns ran on one dataset only
    assert pooled[pooled["setting"] == "answered"].iloc[0]["n_pairs"] == 600
    assert list(t["data"].drop_duplicates()) == ["one", "two", POOLED_DATA]
    md = sweep_markdown(t)
    assert "| reading | answered |" in md and "| reference |" in md and "600 pairs, 3 seeds" in md


def test_sweep_table_resamples_the_prompts_its_splits_record(tmp_path):
    """Pairs that share a prompt (4 per prompt, the same outcome within it) are one unit of evidence: with the
    prompts in the seed's split.json the intervals are about twice as wide as resampling pairs (one seed, so no
    seed-to-seed spread dilutes the ratio), and n_prompts says how many prompts they rest on. A split that holds
    other test pairs is not used."""
    rng = np.random.default_rng(4)
    base = {0: np.repeat(rng.random(100) < 0.5, 4).astype(int)}
    better = {0: np.maximum(base[0], np.repeat(rng.random(100) < 0.3, 4)).astype(int)}
    cells = {("reading", "icl-lines"): base, ("reading", "answered"): better}
    by_pair = sweep_table([_folder(tmp_path / "a", "one", cells, seeds=(0,))], n_boot=4000)
    folder = _folder(tmp_path / "b", "one", cells, seeds=(0,))
    (folder / "seeds" / "seed0").mkdir(parents=True)
    split = folder / "seeds" / "seed0" / "split.json"
    split.write_text(json.dumps({"test_used": [f"p{i}" for i in range(400)], "test_used_sha256": "t0",
                                 "test_used_prompts": [f"prompt{i // 4}" for i in range(400)]}))
    by_prompt = sweep_table([folder], n_boot=4000)

    def width(t, setting, lo, hi):
        r = t[t["setting"] == setting].iloc[0]
        return r[hi] - r[lo]

    for setting, lo, hi in (("icl-lines", "acc_low", "acc_high"), ("answered", "diff_low", "diff_high")):
        assert 1.7 < width(by_prompt, setting, lo, hi) / width(by_pair, setting, lo, hi) < 2.3
    row = by_prompt[by_prompt["setting"] == "answered"].iloc[0]
    assert row["n_prompts"] == 100 and row["n_pairs"] == 400 and math.isnan(by_pair["n_prompts"].iloc[0])
    assert row["diff"] == by_pair[by_pair["setting"] == "answered"].iloc[0]["diff"]  # the estimate is unchanged
    assert "400 pairs (100 prompts), 1 seed |" in sweep_markdown(by_prompt, "one")
    split.write_text(json.dumps({**json.loads(split.read_text()), "test_used_sha256": "other pairs"}))
    assert math.isnan(sweep_table([folder], n_boot=200)["n_prompts"].iloc[0])


def test_sweep_table_is_the_same_once_cells_and_splits_are_compressed(tmp_path):
    """A folder whose per-pair files are gzip-compressed (as written now, or by scripts/compress_results.py) gives
    the table its plain files gave, prompts (from the compressed split) included."""
    rng = np.random.default_rng(5)
    base = {s: (rng.random(40) < 0.5).astype(int) for s in range(3)}
    better = {s: np.maximum(base[s], (rng.random(40) < 0.3).astype(int)) for s in range(3)}
    folder = _folder(tmp_path, "one", {("reading", "icl-lines"): base, ("reading", "answered"): better})
    for s in range(3):
        (folder / "seeds" / f"seed{s}").mkdir(parents=True)
        (folder / "seeds" / f"seed{s}" / "split.json").write_text(json.dumps({
            "test_used": [f"p{i}" for i in range(40)], "test_used_sha256": f"t{s}",
            "test_used_prompts": [f"prompt{i // 2}" for i in range(40)]}))
    plain = sweep_table([folder], n_boot=300)
    assert plain["n_prompts"].tolist() == [60.0, 60.0]
    files = [*folder.glob("cells/*/*/seed*.json"), *folder.glob("seeds/*/split.json")]
    assert len(files) == 9
    for f in files:
        aio.write_text_maybe_gz(f.with_name(f.name + ".gz"), f.read_text())  # and the plain file goes
    assert not list(folder.glob("cells/*/*/seed*.json")) and not list(folder.glob("seeds/*/split.json"))
    assert sweep_table([folder], n_boot=300).to_csv() == plain.to_csv()


def test_sweep_table_refuses_unpaired_cells(tmp_path):
    a = _folder(tmp_path, "one", {("reading", "icl-lines"): {s: np.ones(4, int) for s in range(3)},
                                  ("reading", "answered"): {s: np.ones(4, int) for s in range(3)}})
    f = a / "cells" / "reading" / "answered" / "seed1.json"
    rec = json.loads(f.read_text())
    f.write_text(json.dumps({**rec, "test_sha256": "other"}))
    with pytest.raises(ValueError, match="different test pairs in seed 1"):
        sweep_table([a])


def test_plot_sweep_draws_every_compared_setting(tmp_path):
    from armlens.plots import plot_sweep

    rng = np.random.default_rng(2)
    cells = {("reading", s): {k: (rng.random(50) < 0.6).astype(int) for k in range(3)}
             for s in ("icl-lines", "answered")}
    t = sweep_table([_folder(tmp_path, "one", cells), _folder(tmp_path, "two", cells)], n_boot=200)
    fig = plot_sweep(t)
    points = {(tr.name, x) for tr in fig.data for x in tr.x}
    assert ("one", "answered") in points and ("pooled (equal weight per dataset)", "icl (one turn) (reference)") in points
    pooled = next(tr for tr in fig.data if tr.name.startswith("pooled") and "answered" in tr.x)
    want = 100 * t[(t["data"] == POOLED_DATA) & (t["setting"] == "answered")].iloc[0]["diff"]
    assert pooled.y[list(pooled.x).index("answered")] == pytest.approx(want)
    with pytest.raises(ValueError, match="no setting"):
        plot_sweep(t.iloc[0:0])


def test_plot_sweep_wraps_its_panels_and_leaves_out_all_heads(tmp_path):
    from armlens.plots import plot_sweep

    rng = np.random.default_rng(3)
    settings = {"selection": ("reinforce", "all"), "reading": ("icl-lines", "answered"), "steps": ("300", "600"),
                "objective": ("answer", "pairwise"), "prior": ("-1", "-2"), "trials": ("32", "8")}
    cells = {(a, s): {k: (rng.random(40) < 0.6).astype(int) for k in range(3)}
             for a, pair in settings.items() for s in pair}
    t = sweep_table([_folder(tmp_path, "one", cells)], n_boot=100)
    assert "all" in set(t["setting"])  # in the table
    fig = plot_sweep(t, per_row=4)
    drawn = {x for tr in fig.data for x in tr.x}
    assert not any(x.startswith("all") or x.startswith("every") for x in drawn) and "pairwise" in drawn
    assert {tr.yaxis for tr in fig.data} >= {"y", "y5"}  # six panels, four a row: a second row
    assert "in the table only" in fig.layout.title.text


def _draws(rng, p, n=200, seeds=3):
    return {s: (rng.random(n) < p).astype(int) for s in range(seeds)}


def _lift(rng, base, p):
    """base with a fraction p of its wrong pairs made right (never worse: a clear paired gain)."""
    return {s: np.maximum(c, (rng.random(c.size) < p).astype(int)) for s, c in base.items()}


def test_sweep_decisions_apply_the_rule(tmp_path):
    from armlens.analysis.sweep import decisions_markdown, sweep_decisions

    rng = np.random.default_rng(3)
    folders = []
    for name in ("one", "two"):
        base = _draws(rng, 0.55)
        cells = {
            ("reading", "icl-lines"): base,
            ("reading", "mean_ablation"): _lift(rng, base, 0.6),  # the largest gain, but a baseline: never chosen
            ("reading", "answered"): _lift(rng, base, 0.3),  # a clear gain on both datasets: chosen
            ("reading", "icl-turns"): base,
            ("objective", "answer"): base,
            # a big gain on one dataset, a loss on the other: reported, not chosen
            ("objective", "pairwise"): _lift(rng, base, 0.8) if name == "one"
            else {s: c * (rng.random(c.size) < 0.7) for s, c in base.items()},
            ("criteria", "per_criterion"): base,
            # a clear gain on one dataset, a loss within noise on the other, so the pooled interval reaches 0:
            # not chosen, but the gain is named in the note
            ("criteria", "pooled"): _lift(rng, base, 0.1) if name == "one"
            else {s: np.where(rng.random(c.size) < 0.2, 1 - c, c) * (rng.random(c.size) < 0.95)
                  for s, c in base.items()},
            ("steps", str(BASE.reinforce.steps)): base,
            ("steps", "50"): {s: c * (rng.random(c.size) < 0.5) for s, c in base.items()},  # clearly worse
            ("steps", "100"): base,  # as good as the best within noise: the cheapest acceptable
            # the best, by a little and with noise both ways: not significantly better than 100
            ("steps", "600"): {s: np.where(rng.random(c.size) < 0.08, 1 - c, c) for s, c in _lift(rng, base, 0.08).items()},
        }
        folders.append(_folder(tmp_path, name, cells))
    d = sweep_decisions(folders, n_boot=500).set_index("axis")
    assert d.loc["reading", "choice"] == "answered" and d.loc["reading", "changed"]
    assert d.loc["reading", "diff_low"] > 0 and d.loc["reading", "compared"] == "answered - icl-lines"
    assert d.loc["objective", "choice"] == "answer" and not d.loc["objective", "changed"]
    assert "pairwise is above the default pooled, +" in d.loc["objective", "note"]
    assert "but below it on two (-" in d.loc["objective", "note"]
    # the baseline beats the ARM here: never chosen, never hidden
    assert "mean_ablation is above the default pooled" in d.loc["reading", "note"]
    assert "not an ARM setting, never chosen" in d.loc["reading", "note"]
    assert d.loc["criteria", "choice"] == "per_criterion" and not d.loc["criteria", "changed"]
    assert d.loc["criteria", "note"].startswith("pooled is above the default on one (+")
    assert d.loc["steps", "choice"] == "100" and d.loc["steps", "diff_high"] >= 0
    assert d.loc["steps", "compared"] == "100 - 600" and "best 600" in d.loc["steps", "note"]
    assert not d["provisional"].any() and set(d["n_data"]) == {2}
    md = decisions_markdown(d.reset_index())
    assert "| reading | `reading / icl_layout` | icl-lines | **answered** |" in md
    # one seed only: every decision is marked provisional
    one = sweep_decisions([_folder(tmp_path / "x", "one", {k: {0: v[0]} for k, v in cells.items()}, seeds=(0,))],
                          n_boot=200)
    assert one["provisional"].all() and "provisional" in decisions_markdown(one)


def test_sweep_decisions_name_where_the_cheap_choice_loses(tmp_path):
    """A cost axis takes the cheapest setting not significantly worse than the best pooled; where that setting is
    significantly worse on one dataset, the note says so with its interval."""
    from armlens.analysis.sweep import sweep_decisions

    rng = np.random.default_rng(5)
    folders = []
    for name in ("one", "two"):
        base = _draws(rng, 0.55)
        # a clear loss on one dataset, a gain as large on the other: not significantly worse pooled
        cheap = {s: c * (rng.random(c.size) < 0.9) for s, c in base.items()} if name == "one" else _lift(rng, base, 0.12)
        folders.append(_folder(tmp_path, name, {("steps", str(BASE.reinforce.steps)): base, ("steps", "50"): cheap}))
    d = sweep_decisions(folders, n_boot=500).set_index("axis")
    assert d.loc["steps", "choice"] == "50"
    assert "50 is below 300 on one (-" in d.loc["steps", "note"]


def test_compare_rounds_pairs_the_two_reference_arms(tmp_path):
    """Round 2's reference ARM (the defaults round 1 chose) against round 1's, on the same test pairs and seeds."""
    from armlens.analysis.sweep import compare_rounds

    rng = np.random.default_rng(7)
    chosen = ARMConfig(reading="answered", reinforce=ReinforceConfig(objective="pairwise", steps=100))
    before, after, want = [], [], []
    for name, gain in (("one", 0.3), ("two", 0.0)):
        base = _draws(rng, 0.5)
        better = _lift(rng, base, gain)
        before.append(_folder(tmp_path / "r1", name, {("selection", "reinforce"): base, ("reading", "answered"): better}))
        # in round 2 the reference is the answered reading; its selection/reinforce cell is the same fit
        after.append(_folder(tmp_path / "r2", name, {("reading", "answered"): better, ("reading", "icl-lines"): base},
                             arm=chosen))
        want.append(np.mean([better[s].mean() - base[s].mean() for s in range(3)]))
    t = compare_rounds(before, after, n_boot=500).set_index("data")
    assert list(t.index) == ["one", "two", POOLED_DATA]
    assert t.loc["one", "diff"] == pytest.approx(want[0]) and t.loc["one", "diff_low"] > 0
    assert t.loc["two", "diff"] == 0 and t.loc["two", "n_pairs"] == 600
    assert t.loc[POOLED_DATA, "diff"] == pytest.approx(np.mean(want))
    assert t.loc["one", "acc_after"] > t.loc["one", "acc_before"]
    # cells of the two rounds scored on other test pairs are refused
    f = after[0] / "cells" / "reading" / "answered" / "seed2.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "test_sha256": "other"}))
    with pytest.raises(ValueError, match="different test pairs in seed 2"):
        compare_rounds(before, after, n_boot=50)
