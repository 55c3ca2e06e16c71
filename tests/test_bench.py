"""``armlens bench``'s child program (a real module run with ``python -m``), on a tiny model."""

from __future__ import annotations

import json

from armlens import _bench_child, bench, rm
from armlens import model as M
from armlens.data import PreferencePair
from armlens.selection import ReinforceConfig


def test_bench_child_reports_a_fit(tiny, monkeypatch, capsys):
    pairs = [PreferencePair(id=f"toy/{i}", source="toy", subset="toy", prompt=f"Say something about {i}.",
                            chosen=f"{i} is a number.", rejected="No.") for i in range(3)]
    quick = rm.ARMConfig(reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    seen = {}
    real = rm.ActivationRM

    def make_rm(model, seed):  # the default ARM, with a few REINFORCE steps
        seen["seed"] = seed
        seen["rm"] = real(model, quick, seed=seed)
        return seen["rm"]

    monkeypatch.setattr(M, "load_model", lambda: tiny)
    monkeypatch.setattr(bench, "fit_pairs", lambda root: pairs if root == "ROOT" else [])
    monkeypatch.setattr(rm, "ActivationRM", make_rm)
    assert _bench_child.main(["ROOT", "3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert seen["seed"] == 3
    assert out["heads"] == len(seen["rm"].heads) == int(seen["rm"].mask.sum())  # the fitted ARM's own head count
    assert out["n_pairs"] == 3 and out["fit_s"] > 0 and out["peak_rss_mb"] > 0
    assert {"extraction", "steps", "final_choice"} <= set(out["timings_s"])
    assert out["rss_after_load_mb"] > 0 and out["predicted_peak_mb"] > 0  # the memory plan beside the measurement
    assert out["plan"]["pool_prompts"] >= 1 and out["plan"]["prompt_tokens"] >= 2
    assert "predicted peak" in bench.format_table({"model": "m", "threads": 1, "prompt_tokens": 1, "rows": [],
                                                   "default_fit": out})


def test_fit_row_is_the_median_of_fresh_runs(monkeypatch):
    runs = iter([{"fit_s": 3.0, "peak_rss_mb": 900.0, "heads": 5, "predicted_peak_mb": 1000.0},
                 {"fit_s": 1.0, "peak_rss_mb": 1100.0, "heads": 5, "predicted_peak_mb": 1000.0},
                 {"fit_s": 2.0, "peak_rss_mb": 1000.0, "heads": 5, "predicted_peak_mb": 1000.0}])
    monkeypatch.setattr(bench, "run_default_fit_child", lambda root, seed: next(runs))
    out = bench.run_default_fit_children(None, 0, 3)
    assert (out["fit_s"], out["fit_s_min"], out["fit_s_max"]) == (2.0, 1.0, 3.0)
    assert (out["peak_rss_mb"], out["peak_rss_mb_min"], out["peak_rss_mb_max"]) == (1000.0, 900.0, 1100.0)
    assert out["predicted_over_measured"] == 1.0 and out["n_runs"] == 3 and len(out["runs"]) == 3


def test_a_child_reports_its_own_peak_not_its_parents():
    """ru_maxrss survives fork + exec on Linux: a child of a parent holding 300 MB would report them. The child's
    peak_mb does not."""
    import subprocess
    import sys

    held = bytearray(300 * 2**20)
    held[:: 4096] = b"\x01" * len(held[:: 4096])  # touch every page
    code = "from armlens._bench_child import peak_mb; print(peak_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1])
    assert child < 250, child  # the child itself: an interpreter with armlens' light imports
    del held
