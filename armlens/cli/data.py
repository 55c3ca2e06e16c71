"""``armlens data``: list the datasets, print a dataset's statistics, fetch BIG-bench's HHH and TruthfulQA.

Examples::

    armlens data list
    armlens data stats llmbar --root ~/data/preference
    armlens data stats xstest --json
    armlens data stats path:my_pairs.jsonl --field-map prompt=question --field-map chosen=good --field-map rejected=bad
    armlens data stats rewardbench --path filtered.parquet
    armlens data fetch bigbench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from armlens.cli.options import count_or_all, index


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list, inspect and fetch preference datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

    def show_help(args: argparse.Namespace) -> int:
        p.print_help()
        return 0

    p.set_defaults(func=show_help)

    lp = dsub.add_parser("list", help="list the registered datasets")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=run_list)

    sp = dsub.add_parser("stats", help="pairs per subset, response lengths, share of pairs with the shorter chosen")
    sp.add_argument("name", help="registered dataset name (see `armlens data list`) or path:FILE")
    sp.add_argument("--root", default=None, help="data root folder (default: $ARMLENS_DATA_ROOT, ~/.cache/armlens/data, "
                                                 "or the BIG-bench cache); a single file is --data path:FILE")
    sp.add_argument("--subset", action="append", default=None, help="keep only this subset (repeatable)")
    sp.add_argument("--limit", type=count_or_all, default=None, help="keep the first N pairs (default: all)")
    sp.add_argument("--seed", type=index, default=None, help="seed of the loader's choices (xstest, truthfulqa)")
    sp.add_argument("--path", default=None, help="local file for a Hub dataset (rewardbench, rewardbench2, "
                                                 "preferencehack)")
    sp.add_argument("--repo-id", default=None, help="Hub dataset id (rewardbench*, preferencehack)")
    sp.add_argument("--field-map", action="append", default=None, metavar="FIELD=KEY",
                    help="column of a pair field, e.g. prompt=question (path:FILE, preferencehack; repeatable)")
    sp.add_argument("--json", action="store_true", help="print JSON (stats and load report) instead of a table")
    sp.set_defaults(func=run_stats)

    fp = dsub.add_parser("fetch", help="download data that is not on the Hub (bigbench: HHH and TruthfulQA)")
    fp.add_argument("what", choices=["bigbench"], help="what to fetch")
    fp.add_argument("--cache", default=None, help="destination (default $ARMLENS_CACHE/bigbench, "
                                                  "i.e. ~/.cache/armlens/bigbench)")
    fp.add_argument("--sdist", default=None, help="use this local bigbench-1.0.0.tar.gz instead of downloading")
    fp.add_argument("--keep-sdist", action="store_true", help="keep the downloaded 358 MB archive")
    fp.add_argument("--force", action="store_true", help="fetch again even if the cache is complete")
    fp.set_defaults(func=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    from armlens.data import list_datasets

    specs = list_datasets()
    if args.json:
        print(json.dumps([{"name": s.name, "origin": s.origin, "description": s.description,
                           "subsets": list(s.subsets), "files": list(s.files), "options": s.options()}
                          for s in specs], indent=2))
        return 0
    width = max(len(s.name) for s in specs)
    for s in specs:
        print(f"{s.name:<{width}}  {s.origin:<5}  {s.description}")
        if s.subsets:
            print(f"{'':<{width}}         subsets: {', '.join(s.subsets)}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from armlens.data import dataset_stats, load_pairs_with_report

    options = {"seed": args.seed, "path": args.path, "repo_id": args.repo_id, "field_map": args.field_map}
    options = {k: v for k, v in options.items() if v is not None}
    pairs, report = load_pairs_with_report(args.name, root=args.root, subsets=args.subset, limit=args.limit,
                                           **options)
    stats = dataset_stats(pairs)
    if args.json:
        print(json.dumps({"stats": stats, "report": report.to_dict()}, indent=2))
        return 0
    header = ("subset", "pairs", "prompts", "multi", "chosen chars", "rejected chars", "chosen shorter")
    rows = [(name, s["n"], s["prompts"], s["multi_turn"],
             f"{s['chosen_chars']['mean']:.0f} / {s['chosen_chars']['median']:.0f}",
             f"{s['rejected_chars']['mean']:.0f} / {s['rejected_chars']['median']:.0f}",
             f"{100 * s['chosen_shorter']:.1f}%")
            for name, s in [*stats["subsets"].items(), ("total", stats["total"])]]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [str(v) for v in r]
        print("  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]))
    print("(chars: mean / median; chosen shorter: share of pairs whose chosen response has fewer characters)")
    print(report.summary())
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from armlens.cli.common import on_interrupt, output_dir
    from armlens.data.fetch import fetch_bigbench

    if args.cache is not None:
        output_dir(args.cache, option="--cache")
    if args.sdist is not None and not Path(args.sdist).is_file():
        raise FileNotFoundError(f"--sdist {args.sdist} " + ("is a folder, not the .tar.gz file"
                                                           if Path(args.sdist).is_dir() else "does not exist"))
    on_interrupt(args, "rerun the same command to fetch again (finished files are checked and kept)")
    result = fetch_bigbench(cache=args.cache, sdist=args.sdist, keep_sdist=args.keep_sdist, force=args.force)
    print(f"BIG-bench {'files already present' if result.method == 'cached' else 'files fetched'} "
          f"({result.method}) in {result.dest}")
    for rel, sha in sorted(result.files.items()):
        print(f"  {sha}  {rel}")
    print(f"sdist sha256 {result.sdist_sha256}; the hhh and truthfulqa loaders now find these files "
          f"(or pass --root {result.dest})")
    return 0
