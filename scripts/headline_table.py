"""Print the held-out headline table (markdown) from committed eval summaries: the README's rows, or every method.

    .venv/bin/python scripts/headline_table.py experiments/eval-test/summary.json \
        experiments/eval-test-hh-rlhf/summary.json            # the README's table
    .venv/bin/python scripts/headline_table.py --all ...      # every method and paired difference (docs/results.md)

Columns: the datasets in the order the summaries list them. Cells: accuracy % [95% interval crossing seeds and
test prompts] (mean over seeds), and ARM - method in points with its paired interval, starred when it excludes 0.
``tests/test_readme_numbers.py`` checks the README's table cell by cell against the same summaries.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

README_ROWS = [("arm", "arm"), ("mean-ablation", "mean-ablation (no label)"), ("zero-shot", "zero-shot"),
               ("few-shot-icl", "few-shot-icl (4 demos)"), ("probe", "probe (logistic, residual stream)"),
               ("steering", "steering (CAA)"), ("savs", "savs (20 voting heads)"),
               ("shorter", "shorter (length only)")]
README_DIFFS = ["zero-shot", "mean-ablation", "few-shot-icl", "probe", "shorter"]


def results(paths: list[Path]) -> dict:
    merged: dict = {}
    for path in paths:
        merged |= json.loads(path.read_text())["results"]
    return merged


def accuracy_cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['accuracy_mean']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def diff_cell(v: dict) -> str:
    lo, hi = v["ci95"]
    star = " *" if lo > 0 or hi < 0 else ""
    return f"{100 * v['arm_minus_method']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{star}"


def table(res: dict, rows: list[tuple[str, str]], diffs: list[str]) -> str:
    names = list(res)
    head = ["method"]
    for n in names:
        arm = res[n]["methods"]["arm"]
        seeds = len(arm["per_seed"])
        head.append(f"{n} ({seeds} seeds x {arm['n_items'] // seeds} pairs, {arm['n_distinct_prompts']} prompts)")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += [f"| {label} | " + " | ".join(accuracy_cell(res[n]["methods"][key]) for n in names) + " |"
            for key, label in rows]
    out += [f"| arm - {m} | " + " | ".join(diff_cell(res[n]["methods"][m]["vs_arm"]) for n in names) + " |"
            for m in diffs]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--all", action="store_true", help="every method of the summaries, every paired difference")
    args = parser.parse_args()
    res = results(args.summaries)
    if args.all:
        methods = list(next(iter(res.values()))["methods"])
        print(table(res, [(m, m) for m in methods], [m for m in methods if m != "arm"]))
    else:
        print(table(res, README_ROWS, README_DIFFS))


if __name__ == "__main__":
    main()
