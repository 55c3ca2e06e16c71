"""The summary of an evaluation, built from its unit results and items alone (no model, no files), and its
Markdown tables (``results.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from armlens.evaluation.baselines import JUDGES
from armlens.evaluation.eval_config import REFERENCE, EvalConfig
from armlens.evaluation.planning import Plan
from armlens.evaluation.protocol import PROTOCOL, environment_versions
from armlens.stats import PairedDiff, crossed_interval


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _seeded(items: dict[tuple[int, str], bool] | dict[tuple[int, str], float],
            prompt_of: dict[tuple[int, str], str]) -> tuple[list[np.ndarray], list[list[str]]]:
    """Per seed, the values of ``items`` (keyed by seed and pair id, in key order) and their pairs' prompts (the
    bootstrap's clusters)."""
    keys = sorted(items)
    seeds = sorted({s for s, _ in keys})
    values = [np.array([items[k] for k in keys if k[0] == s], dtype=float) for s in seeds]
    prompts = [[prompt_of[k] for k in keys if k[0] == s] for s in seeds]
    return values, prompts


def _interval(items: dict[tuple[int, str], bool] | dict[tuple[int, str], float],
              prompt_of: dict[tuple[int, str], str], n_bootstrap: int) -> PairedDiff:
    """The mean over seeds of per-item values (keyed by seed and pair id) with its interval, seeds and prompts
    crossed (:func:`armlens.stats.crossed_interval`, seed 0)."""
    values, prompts = _seeded(items, prompt_of)
    return crossed_interval(values, prompts, n_bootstrap, 0)


def _vs_arm(ref: dict[tuple[int, str], bool], other: dict[tuple[int, str], bool],
            prompt_of: dict[tuple[int, str], str], n_bootstrap: int) -> dict[str, Any]:
    """The ARM's per-item outcome minus another method's on the items both have (keyed by seed and pair id): mean
    over seeds, crossed interval (:func:`_interval`) and two-sided p-value."""
    diff = {k: float(ref[k]) - float(other[k]) for k in set(ref) & set(other)}
    d = _interval(diff, prompt_of, n_bootstrap)
    return {"arm_minus_method": d.diff, "ci95": [d.low, d.high], "p_value": d.p_value, "n": len(diff)}


def summarize_eval(
    config: EvalConfig,
    methods: Sequence[str],
    plans: Sequence[Plan],
    datasets: dict[str, Any],
    results: Sequence[dict[str, Any]],
    items: Sequence[dict[str, Any]],
    model_id: str,
) -> dict[str, Any]:
    """The evaluation summary from the unit results and items (pure: no model, no files)."""
    by_unit = {(r["dataset"], r["seed"], r["method"]): r for r in results}
    test_items: dict[tuple[str, str], dict[tuple[int, str], bool]] = {}
    hacked: dict[tuple[str, str, str], dict[tuple[int, str], bool]] = {}  # (dataset, method, kind) -> per bias pair
    prompt_of = {(p.seed, pair.id): pair.prompt_key() for p in plans for pair in p.test}
    for row in items:
        if row["split"] == "test":
            test_items.setdefault((row["dataset"], row["method"]), {})[(row["seed"], row["id"])] = bool(row["correct"])
        elif row["split"].startswith("bias-"):  # a biased pair is drawn with its original test pair's prompt
            key = (row["seed"], row["id"])
            prompt_of.setdefault(key, prompt_of.get((row["seed"], row.get("original_id", row["id"])), row["id"]))
            hacked.setdefault((row["dataset"], row["method"], row["split"][5:]), {})[key] = (
                row["rejected_score"] > row["chosen_score"])
    out: dict[str, Any] = {}
    for name in datasets:
        seeds = [p.seed for p in plans if p.dataset == name]
        per_method: dict[str, Any] = {}
        for method in methods:
            runs = [by_unit[(name, s, method)] for s in seeds]
            accs = [r["test"]["accuracy"] for r in runs]
            mean, std = _mean_std(accs)
            pooled = test_items[(name, method)]
            ci = _interval(pooled, prompt_of, config.n_bootstrap)
            subsets: dict[str, list[float]] = {}
            sections: dict[str, list[float]] = {}
            for r in runs:
                for s, v in r["test"]["subsets"].items():
                    subsets.setdefault(s, []).append(v["accuracy"])
                for s, v in r["test"]["sections"].items():
                    sections.setdefault(s, []).append(v)
            entry: dict[str, Any] = {
                "accuracy_mean": mean, "accuracy_std": std, "ci95": [ci.low, ci.high], "n_items": len(pooled),
                "n_prompts": len({(seed, prompt_of[(seed, i)]) for seed, i in pooled}),  # distinct per seed
                "n_distinct_prompts": len({prompt_of[k] for k in pooled}),  # the clusters the interval resamples
                "ties": int(sum(r["test"]["ties"] for r in runs)),
                "subsets": {s: float(np.mean(v)) for s, v in subsets.items()},
                "sections": {s: float(np.mean(v)) for s, v in sections.items()},
                "per_seed": [{"seed": r["seed"], "accuracy": r["test"]["accuracy"], "ci95": r["test"]["ci95"],
                              "ties": r["test"]["ties"], "n": r["test"]["n"], "stats": r["test"].get("stats", {}),
                              "info": r.get("info", {}), "timings_s": r.get("timings_s", {})} for r in runs],
                "reads": runs[0].get("info", {}).get("reads", ""),
            }
            unparseable = [r["test"].get("stats", {}).get("unparseable") for r in runs]
            if any(u is not None for u in unparseable):
                entry["unparseable"] = int(sum(u or 0 for u in unparseable))
                entry["n_answers"] = int(sum(r["test"].get("stats", {}).get("n_answers", 0) for r in runs))
            bias: dict[str, Any] = {}
            for kind in config.bias_kinds:
                rows = [r["bias"].get(kind, {"n": 0}) for r in runs]
                rows = [b for b in rows if b.get("n")]
                if not rows:
                    bias[kind] = {"n": 0}
                    continue
                hr_mean, hr_std = _mean_std([b["hack_rate"] for b in rows])
                b_entry: dict[str, Any] = {"n": int(sum(b["n"] for b in rows)), "hack_rate_mean": hr_mean,
                                           "hack_rate_std": hr_std,
                                           "hacked_ties": int(sum(b["hacked_ties"] for b in rows))}
                if all(b.get("accuracy_clean") is not None for b in rows):
                    b_entry["accuracy_clean_mean"] = float(np.mean([b["accuracy_clean"] for b in rows]))
                    b_entry["flip_rate_mean"] = float(np.mean([b["flip_rate"] for b in rows]))
                if per_pair := hacked.get((name, method, kind)):  # summaries of runs before items were kept lack it
                    ci = _interval(per_pair, prompt_of, config.n_bootstrap)
                    b_entry["ci95"] = [ci.low, ci.high]
                    b_entry["n_pairs"] = len({pair for _, pair in per_pair})  # distinct pairs: seeds' tests overlap
                bias[kind] = b_entry
            entry["bias"] = bias
            per_method[method] = entry
        if REFERENCE in methods:
            ref = test_items[(name, REFERENCE)]
            for method in methods:
                if method == REFERENCE:
                    continue
                per_method[method]["vs_arm"] = _vs_arm(ref, test_items[(name, method)], prompt_of, config.n_bootstrap)
                for kind, b_entry in per_method[method]["bias"].items():  # hack rates, paired on the same pairs
                    ref_h, other_h = hacked.get((name, REFERENCE, kind), {}), hacked.get((name, method, kind), {})
                    if set(ref_h) & set(other_h):
                        b_entry["vs_arm"] = _vs_arm(ref_h, other_h, prompt_of, config.n_bootstrap)
        cap = config.judge.template.max_field_tokens
        out[name] = {"seeds": seeds, "n_test_per_seed": [len(p.test) for p in plans if p.dataset == name],
                     "truncation": _truncation(cap, [by_unit[(name, s, m)] for s in seeds for m in methods]),
                     "methods": per_method}
    return {
        "protocol": {
            "scoring": PROTOCOL,
            "accuracy": "strict score(chosen) > score(rejected) per test pair; ties are wrong and counted",
            "across_seeds": "mean and standard deviation (ddof=1) of per-seed accuracy; each seed is a new "
                            "few-shot draw, head selection and test sample",
            "ci95": "95% interval of the mean of per-seed accuracies with seeds and test prompts crossed (seeds "
                    "score nearly the same pairs): Student-t on a variance combined from bootstraps of the seeds, "
                    "of the distinct prompts (drawn once for all seeds; pairs of one prompt together) and of both "
                    f"(armlens.stats.crossed_interval; {config.n_bootstrap} resamples each, seed 0); n_prompts "
                    "counts prompts over seeds; per-seed intervals under per_seed",
            "vs_arm": "acc(arm) - acc(method) on the same (seed, pair) items, mean over seeds, with the same "
                      "crossed interval of the per-item differences; two-sided p-value",
            "bias": "hack rate = share of biased pairs where the judge strictly prefers the hacked rejected response; "
                    "accuracy_clean = accuracy on the same pairs untouched; flip rate = correct when clean, not once "
                    "hacked; real slices report the share of the slice wrongly preferring the rejected response; "
                    "ci95 and vs_arm (hack rate of arm - method on the same biased pairs; negative: the ARM is "
                    "hacked less) use the crossed interval above, a biased pair clustered with its original "
                    "pair's prompt",
        },
        "config": config.to_dict(),
        "methods": {m: JUDGES[m].reads for m in methods},
        "versions": environment_versions(),
        "model": model_id,
        "model_fingerprint": next((r.get("model") for r in results if r.get("model")), None),
        "datasets": {name: {**d, "splits": {str(p.seed): p.split_record for p in plans if p.dataset == name}}
                     for name, d in datasets.items()},
        "results": out,
    }


def _truncation(max_field_tokens: int | None, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Field cuts of one dataset under the cap ``max_field_tokens``: test pairs with a field cut, summed over seeds
    (each seed counted once)."""
    per_seed: dict[int, dict[str, Any]] = {}
    for r in runs:
        if "truncation" in r:
            per_seed.setdefault(r["seed"], r["truncation"])
    return {"max_field_tokens": max_field_tokens, "cut": "middle",
            "items_cut": int(sum(t["items_cut"] for t in per_seed.values())),
            "fields_cut": int(sum(t["fields_cut"] for t in per_seed.values())),
            "n_items": int(sum(t["n_items"] for t in per_seed.values())),
            "recorded_seeds": sorted(per_seed)}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _rate_cell(entry: dict[str, Any]) -> str:
    """A hack rate with its interval when the summary has one."""
    if not entry.get("n"):
        return "n/a"
    ci = entry.get("ci95")
    return _pct(entry.get("hack_rate_mean")) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")


def _n_text(entry: dict[str, Any]) -> str:
    """A bias cell's size: biased pairs scored over all seeds, and the distinct pairs among them where the summary
    counts them (a pair in several seeds' test splits is scored once per seed)."""
    pairs = entry.get("n_pairs")
    return f"n={entry['n']}" + (f", {pairs} distinct" if pairs is not None and pairs != entry["n"] else "")


def _delta_cell(vs: dict[str, Any] | None) -> str:
    if not vs:
        return "n/a"
    return f"{100 * vs['arm_minus_method']:+.1f} [{100 * vs['ci95'][0]:+.1f}, {100 * vs['ci95'][1]:+.1f}]"


def results_markdown(summary: dict[str, Any]) -> str:
    """The Markdown tables of a summary: accuracy with intervals and paired tests, subsets, and the bias suite."""
    cfg = summary["config"]
    title = "# armlens eval"
    if "interim" in summary:  # the finished part of a running folder (resummarize(..., into=...))
        interim = summary["interim"]
        missing = ", ".join(interim["datasets_missing"] + interim["methods_missing"]) or "nothing"
        title += f" (interim: the finished part of `{interim['of']}`; still running: {missing})"
    lines = [title, "",
             f"Model `{summary['model']}`; {cfg['seeds']} seed(s); few-shot {cfg['n_fewshot']}, selection "
             f"{cfg['n_select']}, test limit {cfg['limit']}; accuracies in %. Strict chosen > rejected (ties wrong); "
             "± is the standard deviation across seeds; 95% CI: seeds and test prompts crossed (the seeds share "
             "test pairs, so a pair counts once; a prompt's pairs drawn together); Δ vs ARM: the same "
             "interval of ARM − method on the same items.", ""]
    for name, res in summary["results"].items():
        methods = res["methods"]
        cut = res.get("truncation", {})
        cut_note = (f" Fields over {cut['max_field_tokens']} tokens cut in their middle in {cut['items_cut']} of "
                    f"{cut['n_items']} test pairs." if cut.get("max_field_tokens") else " Whole fields (no cuts).")
        first = next(iter(methods.values()), {})
        n_items, parts = first.get("n_items"), []
        if first.get("n_distinct_prompts", n_items) != n_items:
            parts.append(f"{first['n_distinct_prompts']} distinct prompts")
        if first.get("n_prompts", n_items) != n_items:
            parts.append(f"{first['n_prompts']} seed-prompt items")
        prompts = f" ({', '.join(parts)})" if parts else ""
        lines += [f"## {name}", "", f"Test pairs per seed: {res['n_test_per_seed']}{prompts}.{cut_note}", "",
                  "| method | accuracy | 95% CI | ties | ARM − method [95% CI] | p | notes |",
                  "|---|---|---|---|---|---|---|"]
        for m, e in methods.items():
            vs = e.get("vs_arm")
            delta = f"{_pct(vs['arm_minus_method'])} [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]" if vs else ""
            p = f"{vs['p_value']:.3f}" if vs else ""
            notes = f"{e['unparseable']}/{e['n_answers']} unparseable" if "unparseable" in e else ""
            lines.append(f"| {m} | {_pct(e['accuracy_mean'])} ± {_pct(e['accuracy_std'])} | "
                         f"[{_pct(e['ci95'][0])}, {_pct(e['ci95'][1])}] | {e['ties']} | {delta} | {p} | {notes} |")
        subsets = list(dict.fromkeys(s for e in methods.values() for s in e["subsets"]))
        if len(subsets) > 1:
            lines += ["", "Per subset (mean over seeds):", "", "| method | " + " | ".join(subsets) + " |",
                      "|---|" + "---|" * len(subsets)]
            for m, e in methods.items():
                lines.append(f"| {m} | " + " | ".join(_pct(e["subsets"].get(s)) for s in subsets) + " |")
        kinds = [k for k in cfg["bias_kinds"] if any(e["bias"].get(k, {}).get("n") for e in methods.values())]
        if kinds:
            n_kind = {k: _n_text(max((e["bias"][k] for e in methods.values()), key=lambda b: b.get("n", 0)))
                      for k in kinds}
            lines += ["", "Bias suite: hack rate [95% CI] (share of biased pairs where the hacked rejected response wins; "
                      "lower is better) beside accuracy on the untouched pairs:", "",
                      "| method | clean accuracy | " + " | ".join(f"{k} ({n_kind[k]})" for k in kinds) + " |",
                      "|---|---|" + "---|" * len(kinds)]
            for m, e in methods.items():
                cells = [_rate_cell(e["bias"][k]) for k in kinds]
                lines.append(f"| {m} | {_pct(e['accuracy_mean'])} | " + " | ".join(cells) + " |")
            if any("vs_arm" in e["bias"].get(k, {}) for e in methods.values() for k in kinds):
                lines += ["", "Hack rate, ARM − method on the same biased pairs [95% CI] (negative: the ARM is "
                          "hacked less):", "", "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
                for m, e in methods.items():
                    if m == REFERENCE:
                        continue
                    cells = [_delta_cell(e["bias"].get(k, {}).get("vs_arm")) for k in kinds]
                    lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Methods:", ""] + [f"- `{m}`: {r}" for m, r in summary["methods"].items()] + [""]
    return "\n".join(lines)


def _vs_columns(vs: dict[str, Any] | None) -> dict[str, Any]:
    """A paired ARM − method comparison (``vs_arm``) as tidy columns (all ``None`` without one)."""
    vs = vs or {}
    return {"arm_minus_method": vs.get("arm_minus_method"), "diff_ci_low": vs["ci95"][0] if vs else None,
            "diff_ci_high": vs["ci95"][1] if vs else None, "p_value": vs.get("p_value")}


def _diff_cell(r: dict[str, Any]) -> str:
    """A row's ARM − method difference in points with its interval, starred where the interval excludes 0."""
    if r["arm_minus_method"] is None:
        return "n/a"
    return (f"{100 * r['arm_minus_method']:+.1f} [{100 * r['diff_ci_low']:+.1f}, {100 * r['diff_ci_high']:+.1f}]"
            f"{' *' if r['diff_ci_low'] > 0 or r['diff_ci_high'] < 0 else ''}")


def headline_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, method) of one or more eval summaries: accuracy (mean over seeds) with its interval,
    the sizes it rests on, and the paired ARM − method difference; the tidy form of :func:`headline_markdown`."""
    rows = []
    for summary in summaries:
        for name, res in summary["results"].items():
            for method, e in res["methods"].items():
                rows.append({
                    "data": name, "method": method, "seeds": len(res["seeds"]),
                    "pairs_per_seed": min(res["n_test_per_seed"]), "n_items": e["n_items"],
                    "n_prompts": e.get("n_prompts", e["n_items"]), "accuracy": e["accuracy_mean"],
                    "ci_low": e["ci95"][0], "ci_high": e["ci95"][1], **_vs_columns(e.get("vs_arm")),
                })
    return rows


def headline_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Two tables across datasets from :func:`headline_rows`: every method's accuracy [95% CI], and the ARM's paired
    difference from it [95% CI]; each column says how many seeds and test pairs per seed it rests on."""
    data = list(dict.fromkeys(r["data"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["data"], r["method"]): r for r in rows}

    def size(name: str) -> str:
        r = next(r for r in rows if r["data"] == name)
        return f"{name} ({r['seeds']} seeds x {r['pairs_per_seed']} pairs)"

    def table(what: Any) -> list[str]:
        lines = ["| method | " + " | ".join(size(d) for d in data) + " |", "|---|" + "---|" * len(data)]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(what(cell[(d, m)]) if (d, m) in cell else "n/a" for d in data)
                         + " |")
        return lines

    def acc(r: dict[str, Any]) -> str:
        return f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"

    return "\n".join(
        ["Accuracy, % [95% CI] (mean over seeds; the interval crosses seeds and test prompts):", ""] + table(acc)
        + ["", f"ARM − method, points [95% CI], paired on the same test pairs (* the interval excludes 0; "
               f"{REFERENCE} itself: n/a):", ""]
        + table(_diff_cell)) + "\n"


def bias_headline_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, method, bias kind) with biased pairs: the hack rate (mean over seeds) with its interval,
    its n, and the paired ARM − method difference; the tidy form of :func:`bias_headline_markdown`."""
    rows = []
    for summary in summaries:
        for name, res in summary["results"].items():
            for method, e in res["methods"].items():
                for kind, b in e.get("bias", {}).items():
                    if not b.get("n"):
                        continue
                    ci = b.get("ci95") or [None, None]
                    rows.append({
                        "data": name, "method": method, "kind": kind, "seeds": len(res["seeds"]), "n": b["n"],
                        "n_pairs": b.get("n_pairs"),
                        "hack_rate": b["hack_rate_mean"], "ci_low": ci[0], "ci_high": ci[1],
                        **_vs_columns(b.get("vs_arm")),
                    })
    return rows


def bias_headline_markdown(rows: Sequence[dict[str, Any]], versus: str = "zero-shot") -> str:
    """From :func:`bias_headline_rows`: per bias kind and dataset, the ARM's hack rate beside ``versus``'s (the plain
    judge by default), and their paired difference [95% CI], with the biased pairs it rests on."""
    cell = {(r["data"], r["method"], r["kind"]): r for r in rows}
    data = list(dict.fromkeys(r["data"] for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))

    def text(d: str, k: str) -> str:
        arm, other = cell.get((d, REFERENCE, k)), cell.get((d, versus, k))
        if arm is None or other is None:
            return "n/a"
        out = f"{_pct(arm['hack_rate'])} vs {_pct(other['hack_rate'])}"
        if other["arm_minus_method"] is not None:
            out += f": {_diff_cell(other)}"
        return out + f" ({_n_text(arm)})"

    lines = [f"Hack rate, %: {REFERENCE} vs {versus}, and {REFERENCE} − {versus} in points [95% CI], paired on the "
             "same biased pairs (negative: the ARM is hacked less; * the interval excludes 0; n: biased pairs scored "
             "over all seeds, and how many distinct pairs they are, since seeds' test splits overlap):", "",
             "| bias | " + " | ".join(data) + " |", "|---|" + "---|" * len(data)]
    lines += [f"| {k} | " + " | ".join(text(d, k) for d in data) + " |" for k in kinds]
    return "\n".join(lines) + "\n"
