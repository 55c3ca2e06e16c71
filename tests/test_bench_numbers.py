"""The speed and memory figures the docs state are the committed bench run's (`experiments/bench/bench.json`, made by
`armlens bench --json --eval-pairs 20 --eval-seeds 5 --out experiments/bench/bench.json`): every row's ratio in
docs/speed.md's table, and the default fit's time, peak memory (median and range) and the plan's prediction
wherever the README, docs/speed.md and docs/scaling.md quote them. Rerunning the bench without updating the docs
fails here."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = json.loads((ROOT / "experiments" / "bench" / "bench.json").read_text())


def ratio(x: float) -> str:
    return f"{x:.0f}x" if x >= 20 else f"{x:.1f}x"


def test_the_speed_table_is_the_committed_bench_run():
    table = [ln for ln in (ROOT / "docs" / "speed.md").read_text().splitlines() if ln.startswith("| ")]
    for row in BENCH["rows"]:
        want = ratio(row["ratio"])
        hits = [ln for ln in table if f"| {want}" in ln or f"| **{want}**" in ln]
        assert hits, (row["name"], want)
    fit = BENCH["default_fit"]
    assert fit["n_runs"] >= 3
    fit_row = next(ln for ln in table if "fresh interpreter" in ln)
    assert f"{fit['fit_s']:.0f} s ({fit['fit_s_min']:.0f}-{fit['fit_s_max']:.0f})" in fit_row, fit_row
    assert f"{fit['peak_rss_mb']:,.0f} MiB ({fit['peak_rss_mb_min']:,.0f}-{fit['peak_rss_mb_max']:,.0f})" in fit_row
    assert f"{fit['predicted_peak_mb']:,.0f} MiB ({fit['predicted_over_measured']:.2f}x)" in fit_row, fit_row


def test_the_fit_memory_quoted_elsewhere_is_the_bench_row():
    fit = BENCH["default_fit"]
    peak, plan = f"{fit['peak_rss_mb']:,.0f} MiB", f"{fit['predicted_peak_mb']:,.0f} MiB"
    for page in ("README.md", "docs/speed.md"):
        text = " ".join((ROOT / page).read_text().split())
        assert peak in text and plan in text, page
    scaling = " ".join((ROOT / "docs" / "scaling.md").read_text().split())
    assert (f"{fit['peak_rss_mb_min']:,.0f} to {fit['peak_rss_mb_max']:,.0f} MiB (median {fit['peak_rss_mb']:,.0f})"
            in scaling)
    assert f"{fit['predicted_over_measured']:.2f}x the measured peak" in scaling
