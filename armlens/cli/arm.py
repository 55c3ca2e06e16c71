"""``armlens fit`` and ``armlens score``: fit an ARM on a seeded few-shot draw, score a dataset with a saved ARM."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset name (see `armlens data list`) or path:FILE")
    p.add_argument("--root", default=None, help="data root (default: ARMLENS_DATA_ROOT or ../shared/data/preference)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets to keep")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit an Activation Reward Model on a seeded few-shot draw and save it")
    _common(p)
    p.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--n-fewshot", type=int, default=16, help="few-shot pairs drawn from the data, stratified by subset "
                   "(each gives a Yes and a No example; default 16)")
    p.add_argument("--select", type=int, default=0, help="extra head-selection pairs (default 0: select on the few-shot pairs)")
    p.add_argument("--steps", type=int, default=None, help="REINFORCE steps (default: ARMConfig's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw, extraction and REINFORCE (default 0)")
    p.add_argument("--reading", choices=["icl", "answered", "mean_ablation"], default=None,
                   help="Stage 1 reading (default: ARMConfig's; mean_ablation is a baseline, not an ARM)")
    p.add_argument("--criteria", choices=["per_criterion", "pooled"], default=None,
                   help="one ARM per criterion (default) or one pooled over all")
    p.add_argument("--estimator", choices=["mean", "wpca", "class_diff", "median", "trimmed_mean"], default=None)
    p.add_argument("--score", choices=["prob", "normalized", "logit_diff"], default=None, help="score reading")
    p.add_argument("--out", required=True, help="output file (FILE.arm)")
    p.set_defaults(func=run_fit)

    s = sub.add_parser("score", help="score a dataset's pairs with a saved ARM (pairs used to fit it are left out)")
    _common(s)
    s.add_argument("--rm", required=True, help="saved ARM (FILE.arm)")
    s.add_argument("--model", default=None, help="model the ARM was fitted on (default: the embedded default)")
    s.add_argument("--limit", type=int, default=None, help="score at most this many pairs")
    s.add_argument("--out", required=True, help="output folder (scores.jsonl, summary.json)")
    s.set_defaults(func=run_score)


def _load(args: argparse.Namespace) -> list:
    from armlens.data import load_pairs

    subsets = args.subsets.split(",") if args.subsets else None
    return load_pairs(args.data, root=args.root, subsets=subsets)


def run_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from armlens.data import split_pairs
    from armlens.evaluation.protocol import write_json_atomic
    from armlens.model import load_model
    from armlens.rm import ActivationRM, ARMConfig

    pairs = _load(args)
    split = split_pairs(pairs, seed=args.seed, n_fewshot=args.n_fewshot, n_select=args.select, n_test=0,
                        stratify=True)
    model = load_model(args.model)
    base = ARMConfig()
    given = {k: getattr(args, k) for k in ("reading", "criteria", "estimator", "score") if getattr(args, k) is not None}
    steps = args.steps if args.steps is not None else base.reinforce.steps
    config = dataclasses.replace(base, seed=args.seed, reinforce=dataclasses.replace(base.reinforce, steps=steps),
                                 **given)
    rm = ActivationRM(model, config).fit(split.fewshot, split.select or None, show_progress=not args.quiet)
    path = rm.save(args.out)
    write_json_atomic(Path(str(path) + ".split.json"), split.to_dict())
    print(repr(rm))
    print(f"saved {path} ({len(rm.heads)} heads; few-shot pairs {len(split.fewshot)}, seed {args.seed})")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from armlens.evaluation.protocol import write_results
    from armlens.model import load_model
    from armlens.rm import ActivationRM

    model = load_model(args.model)
    rm = ActivationRM.load(args.rm, model)
    seen = set(rm.fit_info.get("few_shot_ids", [])) | set(rm.fit_info.get("select_ids", []))
    pairs = [p for p in _load(args) if p.id not in seen]
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        raise ValueError("no pairs left to score once the ARM's own few-shot pairs are left out")
    chosen, rejected = rm.score_pairs(pairs, show_progress=not args.quiet)
    paths = write_results(
        args.out, pairs, chosen.numpy(), rejected.numpy(), seed=rm.config.seed,
        config={"rm": str(args.rm), "heads": rm.heads, **rm.config.to_dict()},
        data={"name": args.data, "root": args.root, "left_out_as_seen": len(seen)},
    )
    summary = json.loads(Path(paths["summary"]).read_text())
    lo, hi = summary["accuracy_ci95"]
    print(f"{args.data}: accuracy {summary['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {summary['n']} pairs, "
          f"{summary['ties']} ties; {len(seen)} fitting pairs left out")
    for name, sub in summary["subsets"].items():
        print(f"  {name:<28} {sub['accuracy']:.3f}  (n={sub['n']})")
    print(f"wrote {paths['items']} and {paths['summary']}")
    return 0
