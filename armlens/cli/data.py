"""``armlens data``: list the datasets and where each is read from, print a dataset's statistics, fetch BIG-bench tasks.

Examples::

    armlens data list
    armlens data stats llmbar --root ~/data/preference
    armlens data stats xstest --json
    armlens data stats path:my_pairs.jsonl --field-map prompt=question --field-map chosen=good --field-map rejected=bad
    armlens data stats rewardbench --path filtered.parquet
    armlens data fetch bigbench --sdist bigbench-1.0.0.tar.gz --task logical_deduction
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from armlens import rules as R
from armlens.cli import Command
from armlens.errors import NotFoundError


@dataclass
class ListOptions:
    """List the registered datasets: name, where each is read from (the data root holding its files: the package's
    bundled copy, --root, $ARMLENS_DATA_ROOT, the user's data folder or the BIG-bench cache; or the Hub / a local
    file), description and subsets; and check the bundled files against their manifest."""

    root: str | None = None
    """Data root folder to report on (default: $ARMLENS_DATA_ROOT, ~/.cache/armlens/data, the BIG-bench cache, then
    the copy bundled with armlens)."""

    json: bool = False
    """Print JSON instead of a table."""


@dataclass
class StatsOptions:
    """Pairs per subset, prompts, multi-turn pairs, response lengths and the share of pairs whose chosen response is
    the shorter, with the loader's report (pairs dropped and why)."""

    name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]
    """Registered dataset name (see `armlens data list`) or path:FILE."""
    root: str | None = None
    """Data root folder (default: $ARMLENS_DATA_ROOT, ~/.cache/armlens/data, the BIG-bench cache, then the copy
    bundled with armlens); a single file is path:FILE."""
    subset: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Keep only this subset (default: all)."""
    limit: Annotated[int | None, R.COUNT_OR_ALL] = None
    """Keep the first N pairs ('all': every pair)."""
    seed: Annotated[int | None, R.INDEX_OR_NONE] = None
    """Seed of the loader's choices (xstest, truthfulqa; default: the loader's)."""
    path: str | None = None
    """Local file for a Hub dataset (rewardbench, rewardbench2, preferencehack; default: download)."""
    repo_id: str | None = None
    """Hub dataset id (rewardbench*, preferencehack; default: the loader's)."""
    field_map: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Column of a pair field, FIELD=KEY, e.g. prompt=question (path:FILE, preferencehack; default: the loader's)."""
    json: bool = False
    """Print JSON (stats and load report) instead of a table."""


@dataclass
class FetchOptions:
    """Fetch BIG-bench task files from the bigbench 1.0.0 sdist (pinned SHA-256), downloaded from PyPI or a local
    copy: HHH and TruthfulQA, checked against the copies armlens bundles, and any other task (--task)."""

    what: Annotated[Literal["bigbench"], tyro.conf.Positional, tyro.conf.arg(metavar="{bigbench}")]
    """What to fetch."""
    cache: str | None = None
    """Destination (default: $ARMLENS_CACHE/bigbench, i.e. ~/.cache/armlens/bigbench)."""
    sdist: str | None = None
    """Use this local bigbench-1.0.0.tar.gz instead of downloading (default: download)."""
    keep_sdist: bool = False
    """Keep the downloaded 358 MB archive."""
    force: bool = False
    """Fetch again even if the cache is complete."""
    task: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Also extract this BIG-bench task's files, to <cache>/tasks/<task>/ (repeatable; e.g. logical_deduction)."""


def source_of(spec, root: str | None) -> tuple[str, str | None]:
    """Where ``spec``'s data is read from: (label, folder) for a dataset under a data root (label ``missing`` and
    no folder when no root holds its files); (``hub``, None) and (``file``, None) for the others."""
    from armlens.data.roots import root_label, where_from

    if spec.origin != "local":
        return spec.origin, None
    found = where_from(spec.files, root)
    return (root_label(found), str(found)) if found is not None else ("missing", None)


def run_list(args: ListOptions) -> int:
    from armlens.data import list_datasets
    from armlens.data.bundle import bundled_root, verify_bundle
    from armlens.data.roots import candidate_roots

    candidate_roots(args.root)  # a --root that is not a folder fails here, with its reason
    specs = list_datasets()
    sources = {s.name: source_of(s, args.root) for s in specs}
    problems = verify_bundle()
    if args.json:
        print(json.dumps({"datasets": [{"name": s.name, "origin": s.origin, "from": sources[s.name][0],
                                        "folder": sources[s.name][1], "description": s.description,
                                        "subsets": list(s.subsets), "files": list(s.files), "options": s.options()}
                                       for s in specs],
                          "bundled": {"root": str(bundled_root()), "problems": problems}}, indent=2))
        return 1 if problems else 0
    width = max(len(s.name) for s in specs)
    cell = max(len(label) for label, _ in sources.values())
    for s in specs:
        print(f"{s.name:<{width}}  {sources[s.name][0]:<{cell}}  {s.description}")
        if s.subsets:
            print(f"{'':<{width}}  {'':<{cell}}  subsets: {', '.join(s.subsets)}")
    print(f"(from: the data root each set is read from; 'package' is the copy bundled with armlens in "
          f"{bundled_root()})")
    for label, folder in sorted({v for v in sources.values() if v[1] is not None and v[0] != "package"}):
        print(f"  {label}: {folder}")
    if problems:
        print("the bundled data differs from its manifest (reinstall armlens):\n  " + "\n  ".join(problems))
        return 1
    print("bundled files: all match their SHA-256 in MANIFEST.json")
    return 0


def run_stats(args: StatsOptions) -> int:
    from armlens.data import dataset_stats, load_pairs_with_report

    options = {"seed": args.seed, "path": args.path, "repo_id": args.repo_id, "field_map": args.field_map or None}
    options = {k: v for k, v in options.items() if v is not None}
    pairs, report = load_pairs_with_report(args.name, root=args.root, subsets=args.subset or None, limit=args.limit,
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


def run_fetch(args: FetchOptions) -> int:
    from armlens.cli.common import on_interrupt, output_dir
    from armlens.data.fetch import fetch_bigbench

    if args.cache is not None:
        output_dir(args.cache, option="--cache")
    if args.sdist is not None and not Path(args.sdist).is_file():
        raise NotFoundError(f"--sdist {args.sdist} " + ("is a folder, not the .tar.gz file"
                                                           if Path(args.sdist).is_dir() else "does not exist"))
    on_interrupt("rerun the same command to fetch again (finished files are checked and kept)")
    result = fetch_bigbench(cache=args.cache, sdist=args.sdist, keep_sdist=args.keep_sdist, force=args.force,
                            tasks=args.task)
    print(f"BIG-bench {'files already present' if result.method == 'cached' else 'files fetched'} "
          f"({result.method}) in {result.dest}")
    for rel, sha in sorted(result.files.items()):
        print(f"  {sha}  {rel}")
    print(f"sdist sha256 {result.sdist_sha256}; the hhh and truthfulqa loaders now read these files before the "
          f"bundled copy (or pass --root {result.dest})")
    return 0


COMMANDS = {
    "data list": Command(ListOptions, run_list),
    "data stats": Command(StatsOptions, run_stats),
    "data fetch": Command(FetchOptions, run_fetch),
}
