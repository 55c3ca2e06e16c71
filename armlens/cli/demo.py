"""``armlens demo``: fit an ARM on HHH and compare it with the zero-shot and in-context judges (a few minutes)."""

from __future__ import annotations

import argparse

from armlens.cli.options import index, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: ARM vs zero-shot and few-shot judges on HHH, with intervals")
    p.add_argument("--out", default="results/demo", help="output folder (default results/demo); reused to resume")
    p.add_argument("--root", default=None, help="data root holding hhh_alignment/ (default: found or fetched)")
    p.add_argument("--seed", type=index, default=0, help="seed of the few-shot draw, REINFORCE and test sample")
    p.add_argument("--limit", type=positive, default=120, help="test pairs scored (default 120)")
    p.add_argument("--n-fewshot", type=positive, default=16,
                   help="few-shot pairs the ARMs are fitted on, drawn per criterion (default 16: 4 per HHH criterion)")
    p.add_argument("--steps", type=positive, default=None, help="REINFORCE steps (default: ARMConfig's)")
    p.add_argument("--change-settings", action="store_true",
                   help="reuse an --out folder that holds a demo run with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from armlens.cli.common import on_interrupt, resume_note
    from armlens.demo import run_demo
    from armlens.evaluation.runner import results_markdown

    on_interrupt(args, resume_note(args.out, "*/seed*/*/result.json", "method(s)"))
    summary = run_demo(args.out, root=args.root, seed=args.seed, limit=args.limit, n_fewshot=args.n_fewshot,
                       steps=args.steps, show_progress=not args.quiet, log=lambda s: print(s, flush=True),
                       allow_changed_settings=args.change_settings)
    print(results_markdown(summary))
    for path in summary.get("figure", []):
        print(f"wrote {path}")
    return 0
