"""``armlens bench``: the fast path against the reference-style loop, in one run on this machine."""

from __future__ import annotations

import argparse
import json

from armlens.cli.options import count_or_zero, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the last-token fast path against one full forward per head mask")
    p.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--root", default=None, help="preference data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)")
    p.add_argument("--k-masks", type=positive, default=32, help="masks per REINFORCE step (default 32)")
    p.add_argument("--score-pairs", type=positive, default=8, help="pairs for the scoring-throughput row (default 8)")
    p.add_argument("--eval-pairs", type=count_or_zero, default=5,
                   help="pairs for the eval rows (3 methods x --eval-seeds seeds, and the ICL judge; 0 skips them)")
    p.add_argument("--eval-seeds", type=positive, default=5, help="seeds in the eval row (default 5)")
    p.add_argument("--no-fit", action="store_true", help="skip the default-fit time and memory row (~3 min)")
    p.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print JSON (the same figures, ratio last in each row)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from armlens.bench import format_table, run_bench
    from armlens.data.roots import candidate_roots
    from armlens.model import load_model

    if args.out:
        from armlens.cli.common import output_file

        output_file(args.out)  # before the model loads
    candidate_roots(args.root)  # a --root that is not a folder fails here, not after the model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.json else (lambda s: print(f"... {s}", flush=True))
    result = run_bench(load_model(args.model), root=args.root, k_masks=args.k_masks,
                       n_score_pairs=args.score_pairs, n_eval_pairs=args.eval_pairs, eval_seeds=args.eval_seeds,
                       fit=not args.no_fit, log=log)
    if args.out:
        from armlens.io import write_json

        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
