"""The README's held-out table is the committed summaries, cell for cell: every accuracy, interval, paired difference
and its star, and each column's seed, pair and prompt counts. LLMBar, HHH, XSTest and TruthfulQA come from the interim
summary of `experiments/eval-test`, HH-RLHF (its own run, `experiments/eval-test-hh-rlhf`) from that folder's
summary. A README that drifts from the result files (or a summary rebuilt with other numbers) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from armlens.io import read_json

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "experiments" / "eval-test-interim" / "summary.json"
HH_RLHF = ROOT / "experiments" / "eval-test-hh-rlhf" / "summary.json"


def summaries() -> dict[str, dict]:
    """Each dataset's results, from the summary that holds it (the interim summary first)."""
    out: dict[str, dict] = {}
    for path in (HH_RLHF, SUMMARY):
        if path.is_file():
            out |= read_json(path)["results"]
    return out


def held_out_table() -> tuple[list[str], list[list[str]]]:
    """(column headers, rows) of the first table after the README's "Held-out claims" paragraph."""
    text = (ROOT / "README.md").read_text()
    lines = text[text.index("**Held-out claims"):].splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    table = []
    for ln in lines[first:]:
        if not ln.startswith("|"):
            break
        table.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return table[0], table[2:]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def signed(x: float) -> str:
    return f"{100 * x:+.1f}"


@pytest.mark.skipif(not SUMMARY.is_file(), reason="no interim summary committed")
def test_the_readme_held_out_table_is_the_interim_summary():
    results = summaries()
    header, rows = held_out_table()
    datasets = [h.split(" ")[0] for h in header[1:]]
    interim = list(read_json(SUMMARY)["results"])
    assert datasets[:len(interim)] == interim, (datasets, interim)  # every landed dataset, in the summary's order
    assert set(datasets) <= set(results), (datasets, list(results))
    for col, name in zip(header[1:], datasets, strict=True):
        res = results[name]["methods"]
        arm = res["arm"]
        seeds = len(arm["per_seed"])
        per_seed = arm["n_items"] // seeds
        assert col == f"{name} ({seeds} seeds x {per_seed} pairs, {arm['n_distinct_prompts']} prompts)", col
    checked = 0
    for row in rows:
        label = row[0]
        m = re.fullmatch(r"arm - (\S+)", label)
        for cell, name in zip(row[1:], datasets, strict=True):
            res = results[name]["methods"]
            if m:
                vs = res[m.group(1)]["vs_arm"]
                lo, hi = vs["ci95"]
                star = " *" if lo > 0 or hi < 0 else ""
                want = f"{signed(vs['arm_minus_method'])} [{signed(lo)}, {signed(hi)}]{star}"
            else:
                r = res[label.split(" ")[0]]
                want = f"{pct(r['accuracy_mean'])} [{pct(r['ci95'][0])}, {pct(r['ci95'][1])}]"
            assert cell == want, (label, name, cell, want)
            checked += 1
    assert checked >= 2 * 9, f"only {checked} cells checked: the table was not found whole"
