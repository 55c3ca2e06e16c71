"""``armlens bench``: the fast path against the reference-style loop, in one run on this machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from armlens import rules as R
from armlens.cli import Command
from armlens.cli.common import ModelFlags
from armlens.selection import ReinforceConfig


@dataclass(frozen=True)
class BenchOptions(ModelFlags):
    """Time the last-token fast path against the reference-style loop (one full forward per head mask), the scoring
    throughput, the eval rows and a default fit, in one run on this machine."""

    model: str | None = None
    """Model name, folder, .gguf file or Hub id (default: the embedded SmolLM2-135M-Instruct)."""
    root: str | None = None
    """Preference data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)."""
    k_masks: int = ReinforceConfig.k_masks
    """Masks per REINFORCE step (the default is ReinforceConfig's)."""
    score_pairs: int = 8
    """Pairs for the scoring-throughput row."""
    eval_pairs: Annotated[int, R.INDEX] = 5
    """Pairs for the eval rows (3 methods x --eval-seeds seeds, and the ICL judge; 0 skips them)."""
    eval_seeds: int = 5
    """Seeds in the eval row."""
    fit: bool = True
    """Time the default fit and its memory (about 2 min per run on 2 cores; --no-fit skips it)."""
    fit_runs: int = 3
    """Default fits, each in a fresh interpreter: the row reports their median, min and max."""
    threads: int | None = None
    """Torch threads (default: torch's choice)."""
    json: bool = False
    """Print JSON (the same figures, ratio last in each row)."""
    out: str | None = None
    """Also write the JSON to this file."""


def run(args: BenchOptions) -> int:
    import torch

    from armlens.bench import format_table, run_bench
    from armlens.data.roots import candidate_roots

    if args.out:
        from armlens.cli.common import output_file

        output_file(args.out)  # before the model loads
    candidate_roots(args.root)  # a --root that is not a folder fails here, not after the model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.json else (lambda s: print(f"... {s}", flush=True))
    result = run_bench(args.load(args.model), root=args.root, k_masks=args.k_masks,
                       n_score_pairs=args.score_pairs, n_eval_pairs=args.eval_pairs, eval_seeds=args.eval_seeds,
                       fit=args.fit, fit_runs=args.fit_runs, log=log)
    if args.out:
        from armlens.io import write_json

        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


COMMANDS = {"bench": Command(BenchOptions, run)}
