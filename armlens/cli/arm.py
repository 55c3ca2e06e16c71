"""``armlens fit`` and ``armlens score``: fit an ARM on a seeded few-shot draw, score a dataset with a saved ARM."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from armlens.cli.options import count_or_all, count_or_zero, index, positive


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset name (see `armlens data list`) or path:FILE")
    p.add_argument("--root", default=None, help="data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets to keep")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit an Activation Reward Model on a seeded few-shot draw and save it")
    _common(p)
    p.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--n-fewshot", type=positive, default=16, help="few-shot pairs drawn from the data, stratified by "
                   "subset (each gives a Yes and a No example; default 16)")
    p.add_argument("--select", type=count_or_zero, default=0,
                   help="extra head-selection pairs (default 0: none, select on the few-shot pairs)")
    p.add_argument("--steps", type=positive, default=None, help="REINFORCE steps (default: ARMConfig's)")
    p.add_argument("--seed", type=index, default=0, help="seed of the draw, extraction and REINFORCE (default 0)")
    p.add_argument("--reading", choices=["icl", "answered", "mean_ablation"], default=None,
                   help="Stage 1 reading (default: ARMConfig's; mean_ablation is a baseline, not an ARM)")
    p.add_argument("--criteria", choices=["per_criterion", "pooled"], default=None,
                   help="one ARM per criterion (default) or one pooled over all")
    p.add_argument("--estimator", choices=["mean", "wpca", "class_diff", "median", "trimmed_mean"], default=None)
    p.add_argument("--score", choices=["prob", "normalized", "logit_diff"], default=None, help="score reading")
    p.add_argument("--out", required=True, help="output file (FILE.arm; checked before the model loads)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run_fit)

    s = sub.add_parser("score", help="score a dataset's pairs with a saved ARM (pairs used to fit it are left out)")
    _common(s)
    s.add_argument("--rm", required=True, help="saved ARM (FILE.arm)")
    s.add_argument("--model", default=None, help="model the ARM was fitted on (default: the embedded default)")
    s.add_argument("--limit", type=count_or_all, default=None, help="score at most this many pairs (default: all)")
    s.add_argument("--out", required=True, help="output folder (items.jsonl, summary.json)")
    s.add_argument("--force", action="store_true",
                   help="load the ARM even if the model differs from the one it was fitted on (a warning is printed)")
    s.add_argument("--overwrite", action="store_true", help="replace scores in --out written with other settings")
    s.set_defaults(func=run_score)


def _load(args: argparse.Namespace) -> list:
    from armlens.data import load_pairs

    subsets = args.subsets.split(",") if args.subsets else None
    return load_pairs(args.data, root=args.root, subsets=subsets)


def run_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from armlens.cli.common import on_interrupt, output_file, save_or_fallback
    from armlens.data import split_pairs
    from armlens.io import write_json
    from armlens.model import load_model
    from armlens.rm import ActivationRM, ARMConfig

    out = output_file(args.out, overwrite=args.overwrite)
    output_file(Path(str(out) + ".split.json"), overwrite=args.overwrite)
    pairs = _load(args)
    split = split_pairs(pairs, seed=args.seed, n_fewshot=args.n_fewshot, n_select=args.select, n_test=0,
                        stratify=True)
    on_interrupt(args, "nothing was saved (a fit is not resumable); rerun the same command to start again")
    model = load_model(args.model)
    base = ARMConfig()
    given = {k: getattr(args, k) for k in ("reading", "criteria", "estimator", "score") if getattr(args, k) is not None}
    steps = args.steps if args.steps is not None else base.reinforce.steps
    config = dataclasses.replace(base, seed=args.seed, reinforce=dataclasses.replace(base.reinforce, steps=steps),
                                 **given)
    rm = ActivationRM(model, config).fit(split.fewshot, split.select or None, show_progress=not args.quiet)

    def save(path: Path) -> Path:
        saved = rm.save(path)
        write_json(Path(str(saved) + ".split.json"), split.to_dict())
        return saved

    path, error = save_or_fallback(save, out, "armlens-fit")
    print(repr(rm))
    print(f"saved {path} ({len(rm.heads)} heads; few-shot pairs {len(split.fewshot)}, seed {args.seed})")
    if error is not None:
        print(f"armlens fit: error: could not save to {out} ({error}); the fit was saved to {path} instead",
              file=sys.stderr)
        return 1
    return 0


def _score_settings(args: argparse.Namespace) -> dict:
    """The settings that decide a score run's numbers (compared with an earlier run in the same --out)."""
    return {"rm": str(Path(args.rm).resolve()), "data": args.data, "root": args.root, "subsets": args.subsets,
            "limit": args.limit, "model": args.model}


def _check_score_out(args: argparse.Namespace) -> Path:
    from armlens.cli.common import output_dir
    from armlens.io import read_json, settings_diff

    out = output_dir(args.out, "summary.json")
    old = out / "summary.json"
    if old.is_file() and not args.overwrite:
        prev = (read_json(old).get("config") or {}).get("cli")
        diff = settings_diff(prev or {}, _score_settings(args))
        if diff:
            raise ValueError(f"{out} holds scores made with other settings ({', '.join(diff)} differ); "
                             "use another --out or pass --overwrite")
    return out


def run_score(args: argparse.Namespace) -> int:
    from armlens.cli.common import on_interrupt
    from armlens.evaluation.protocol import absent_sections, write_results
    from armlens.io import ResultsLock
    from armlens.model import load_model
    from armlens.rm import ActivationRM

    if not Path(args.rm).is_file():
        raise FileNotFoundError(f"no saved ARM at {args.rm}" + (" (it is a folder)" if Path(args.rm).is_dir() else ""))
    out = _check_score_out(args)
    all_pairs = _load(args)
    on_interrupt(args, f"nothing was written to {out}; rerun the same command")
    with ResultsLock(out, "armlens score"):
        model = load_model(args.model)
        rm = ActivationRM.load(args.rm, model, force=args.force)
        seen = set(rm.fit_info.get("few_shot_ids", [])) | set(rm.fit_info.get("select_ids", []))
        pairs = [p for p in all_pairs if p.id not in seen]
        if args.limit is not None:
            pairs = pairs[: args.limit]
        if not pairs:
            raise ValueError("no pairs left to score once the ARM's own few-shot pairs are left out")
        chosen, rejected = rm.score_pairs(pairs, show_progress=not args.quiet)
        paths = write_results(
            out, pairs, chosen.numpy(), rejected.numpy(), seed=rm.config.seed,
            config={"rm": str(args.rm), "heads": rm.heads, **rm.config.to_dict(), "cli": _score_settings(args)},
            data={"name": args.data, "root": args.root, "left_out_as_seen": len(seen)},
        )
    summary = json.loads(Path(paths["summary"]).read_text())
    lo, hi = summary["accuracy_ci95"]
    print(f"{args.data}: accuracy {summary['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {summary['n']} pairs, "
          f"{summary['ties']} ties; {len(seen)} fitting pairs left out")
    for name, sub in summary["subsets"].items():
        print(f"  {name:<28} {sub['accuracy']:.3f}  (n={sub['n']})")
    for name, value in summary["sections"].items():
        print(f"  section {name:<20} {value:.3f}")
    absent = absent_sections(summary["sections"])
    if len(absent) < 4:
        print(f"  RewardBench sections absent (no subset scored): {', '.join(absent) or 'none'}; overall "
              + ("not computed" if absent else f"{summary['rewardbench_overall']:.3f}"))
    print(f"wrote {paths['items']} and {paths['summary']}")
    return 0
