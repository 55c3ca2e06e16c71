"""The child process of ``armlens bench``: one default ``ActivationRM.fit``, timed, with its own peak memory.

:func:`armlens.bench.run_default_fit_child` runs ``python -m armlens._bench_child ROOT SEED`` (``ROOT`` empty for
the default data root) so that the peak resident memory measured is the fit's alone, not the parent's. The child
loads the default model, fits on :func:`armlens.bench.fit_pairs` with the default configuration and prints one JSON
line: fit and load times (imports included in the load), the per-phase profile, the head count and the peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def default_fit(root: str | None, seed: int) -> dict[str, Any]:
    """Load the default model and fit a default ARM on the bench pairs; the figures ``armlens bench`` reports."""
    t0 = time.perf_counter()
    from armlens.bench import fit_pairs
    from armlens.model import load_model
    from armlens.rm import ActivationRM

    model = load_model()
    t_load = time.perf_counter() - t0
    pairs = fit_pairs(root)
    t1 = time.perf_counter()
    rm = ActivationRM(model, seed=seed).fit(pairs, show_progress=False)
    return {"fit_s": time.perf_counter() - t1, "load_s": t_load, "n_pairs": len(pairs), "heads": len(rm.heads),
            "timings_s": rm.fit_info["timings_s"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    root, seed = sys.argv[1:] if argv is None else argv
    print(json.dumps(default_fit(root or None, int(seed))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
