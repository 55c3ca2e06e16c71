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

    rss_imports = _rss_mb()
    model = load_model()
    t_load = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    pairs = fit_pairs(root)
    t1 = time.perf_counter()
    # one process: ru_maxrss below is this process's peak, which a forked criterion's would escape
    rm = ActivationRM(model, seed=seed).fit(pairs, show_progress=False, processes=1)
    fit_s = time.perf_counter() - t1
    peak = peak_mb()
    device = {}
    if str(model.cfg.device).startswith("cuda"):  # on a GPU the plan's weights, pool and branches are device memory
        import torch

        device = {"device": torch.cuda.get_device_name(), "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    return {**device, "fit_s": fit_s, "load_s": t_load, "n_pairs": len(pairs), "heads": len(rm.heads),
            "timings_s": rm.fit_info["timings_s"], "peak_rss_mb": peak,
            "rss_after_imports_mb": rss_imports, "rss_after_load_mb": rss_loaded,
            **planned_peak(model, rm, peak)}


def planned_peak(model: Any, rm: Any, peak_rss_mb: float) -> dict[str, Any]:
    """What :func:`armlens.memory.memory_plan` predicted for this fit, given its largest prefix pool (prompts and
    mean prefix length read off the fit), beside the measured peak."""
    from armlens.memory import ModelShape, kv_bytes_per_token, memory_plan

    pools = [f.info.get("prefix_pool", {"prompts": 0, "bytes": 0}) for f in rm.fits.values()]
    biggest = max(pools, key=lambda p: p["bytes"])
    shape = ModelShape.from_model(model)
    per_token = kv_bytes_per_token(shape)
    prompts = max(1, biggest["prompts"])
    tokens = max(2, round(biggest["bytes"] / per_token / prompts) + 1)
    plan = memory_plan(shape, rm.config, prompt_tokens=tokens, pool_prompts=biggest["prompts"])
    predicted = plan.peak_bytes / 2**20
    return {"plan": {k: v for k, v in plan.to_dict().items() if k != "notes"}, "predicted_peak_mb": predicted,
            "predicted_over_measured": predicted / peak_rss_mb}


def peak_mb() -> float:
    """This process's peak resident memory: Linux's ``VmHWM``, which starts afresh at ``exec``. Not ``ru_maxrss``:
    on Linux that survives ``fork`` + ``exec``, so a child started from a parent holding a loaded model reports the
    parent's peak (measured: a 13 MB child of an 800 MB parent reports 814 MB), which is why the bench's fit row once
    read 2,987 MiB against 1,668 MiB for the same fit run alone. Elsewhere ``ru_maxrss`` is all there is."""
    return _status_mb("VmHWM")


def _rss_mb() -> float:
    """Resident memory now (Linux; the peak so far elsewhere)."""
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    """``field`` of ``/proc/self/status`` in MB (Linux); elsewhere the peak so far (``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    root, seed = sys.argv[1:] if argv is None else argv
    print(json.dumps(default_fit(root or None, int(seed))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
