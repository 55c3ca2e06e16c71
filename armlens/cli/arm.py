"""``armlens fit`` and ``armlens score``: fit an ARM on a seeded few-shot draw, score a dataset with a saved ARM."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from armlens import rules as R
from armlens.cli import Command
from armlens.cli.common import ModelFlags
from armlens.errors import BadInputError, BadOutputError
from armlens.rm import ARMConfig


@dataclass(frozen=True)
class FitOptions(ModelFlags):
    """Fit an Activation Reward Model on a seeded few-shot draw of a dataset and save it (FILE.arm, with the draw's
    pair ids in FILE.arm.split.json)."""

    data: str
    """Dataset name (see `armlens data list`) or path:FILE."""
    out: str
    """Output file (FILE.arm; checked before the model loads)."""
    root: str | None = None
    """Data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)."""
    subsets: list[str] | None = None
    """Subsets to keep, comma-separated (default: all)."""
    model: str | None = None
    """Model name, folder, .gguf file or Hub id (default: the embedded SmolLM2-135M-Instruct)."""
    n_fewshot: int = 16
    """Few-shot pairs drawn from the data, stratified by subset (each gives a Yes and a No example)."""
    select: Annotated[int, R.INDEX] = 0
    """Extra head-selection pairs (0: none, REINFORCE selects on the few-shot pairs)."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed of the draw, the extraction and REINFORCE (it is the ARM's seed)."""
    arm: ARMConfig = field(default_factory=ARMConfig)
    """The ARM's settings."""
    overwrite: bool = False
    """Replace an existing --out file."""
    quiet: bool = False
    """No progress bars."""


ARM_ALIASES = {"--steps": "arm.reinforce.steps", "--k-masks": "arm.reinforce.k_masks", "--reading": "arm.reading",
               "--n-trials": "arm.n_trials", "--criteria": "arm.criteria", "--estimator": "arm.estimator",
               "--score": "arm.score", "--max-field-tokens": "arm.template.max_field_tokens"}
"""Short flags of ``fit`` for the ARM settings people change (every other one is ``--arm.FIELD``)."""
ARM_HIDDEN = ("arm.seed", "arm.reinforce.seed", "arm.reinforce.checkpoints")
"""Set by the command: the ARM's seeds are ``--seed``; checkpoints are the ablation's."""


@dataclass(frozen=True)
class ScoreOptions(ModelFlags):
    """Score a dataset's pairs with a saved ARM (the pairs used to fit it are left out); RewardBench protocol."""

    rm: str
    """Saved ARM (FILE.arm)."""
    data: str
    """Dataset name (see `armlens data list`) or path:FILE."""
    out: str
    """Output folder (items.jsonl.gz, summary.json)."""
    root: str | None = None
    """Data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)."""
    subsets: list[str] | None = None
    """Subsets to keep, comma-separated (default: all)."""
    model: str | None = None
    """Model the ARM was fitted on (default: the embedded default)."""
    limit: Annotated[int | None, R.COUNT_OR_ALL] = None
    """Score at most this many pairs ('all': every pair)."""
    criterion: str | None = None
    """Score every pair with this one fit of the ARM: its name (hhh-helpful, llmbar, ..., pooled) or its exact
    criterion text; each pair's question keeps its own criterion (default: each pair goes to its criterion's fit)."""
    force: bool = False
    """Load the ARM even if the model differs from the one it was fitted on (a warning is printed)."""
    overwrite: bool = False
    """Replace scores in --out written with other settings."""
    quiet: bool = False
    """No progress bars."""


def _load(args: FitOptions | ScoreOptions) -> list:
    from armlens.data import load_pairs

    return load_pairs(args.data, root=args.root, subsets=args.subsets)


def run_fit(args: FitOptions) -> int:
    import dataclasses

    from armlens.cli.common import on_interrupt, output_file, save_or_fallback
    from armlens.data import split_pairs
    from armlens.io import write_json
    from armlens.prompts import check_context
    from armlens.rm import ActivationRM

    out = output_file(args.out, overwrite=args.overwrite)
    output_file(Path(str(out) + ".split.json"), overwrite=args.overwrite)
    pairs = _load(args)
    split = split_pairs(pairs, seed=args.seed, n_fewshot=args.n_fewshot, n_select=args.select, n_test=0,
                        stratify=True)
    on_interrupt("nothing was saved (a fit is not resumable); rerun the same command to start again")
    model = args.load(args.model)
    config = dataclasses.replace(args.arm, seed=args.seed)
    check_context(model, split.fewshot + split.select, config.template, f"{args.data} (few-shot pairs)",
                  "cut long fields in their middle with --max-field-tokens N, or leave those pairs out (--subsets)",
                  criterion=config.criterion, routing=config.routing)
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


def _score_settings(args: ScoreOptions) -> dict:
    """The settings that decide a score run's numbers (compared with an earlier run in the same --out)."""
    return {"rm": str(Path(args.rm).resolve()), "data": args.data, "root": args.root,
            "subsets": ",".join(args.subsets) if args.subsets else None,
            "limit": args.limit, "model": args.model, **({"criterion": args.criterion} if args.criterion else {})}


def _score_run(folder: Path) -> dict | None:
    """The settings of the `armlens score` run whose results ``folder`` holds (None: it holds none; an `eval`
    folder's summary.json is not a score run's)."""
    from armlens.io import read_json

    if not (folder / "summary.json").is_file() or (folder / "config.json").exists():
        return None
    cli = (read_json(folder / "summary.json").get("config") or {}).get("cli")
    return cli if isinstance(cli, dict) else None


def _check_score_out(args: ScoreOptions) -> Path:
    from armlens.io import check_output_dir, settings_diff

    out = check_output_dir(args.out, resumable=lambda p: _score_run(p) is not None, what="--out",
                           hint="it holds no `armlens score` results, so --overwrite does not apply; choose another "
                                "folder")
    prev = _score_run(out) if out.is_dir() else None
    if prev is not None and not args.overwrite:
        diff = settings_diff(prev, _score_settings(args))
        if diff:
            raise BadOutputError(f"{out} holds scores made with other settings ({', '.join(diff)} differ); "
                                 "use another --out or pass --overwrite")
    return out


def run_score(args: ScoreOptions) -> int:
    from armlens.cli.common import on_interrupt
    from armlens.evaluation.protocol import absent_sections, summarize, write_results
    from armlens.io import ResultsLock
    from armlens.prompts import check_context
    from armlens.rm import POOLED, ActivationRM

    out = _check_score_out(args)
    _, meta = ActivationRM.read(args.rm)  # a missing, unreadable or corrupt file is refused before the model loads
    if args.criterion is not None:  # so is a --criterion that names none of its fits
        keys = [rec["criterion"] for rec in meta.get("fits") or [{"criterion": POOLED}]]
        ActivationRM.choose_fit(args.criterion, keys, meta["config"].get("routing", "label-free"))
    all_pairs = _load(args)
    on_interrupt(f"nothing was written to {out}; rerun the same command")
    with ResultsLock(out, "armlens score"):
        model = args.load(args.model)
        rm = ActivationRM.load(args.rm, model, force=args.force)
        seen = set(rm.fit_info.get("few_shot_ids", [])) | set(rm.fit_info.get("select_ids", []))
        pairs = [p for p in all_pairs if p.id not in seen]
        if args.limit is not None:
            pairs = pairs[: args.limit]
        if not pairs:
            raise BadInputError("no pairs left to score once the ARM's own few-shot pairs are left out")
        check_context(model, pairs, rm.config.template, args.data,
                      f"the ARM cuts fields at {rm.config.template.max_field_tokens} tokens; fit it with a lower "
                      "--max-field-tokens N, or leave those pairs out (--subsets, --limit)"
                      if rm.config.template.max_field_tokens else
                      "the ARM keeps fields whole: fit it with --max-field-tokens N, or leave those pairs out "
                      "(--subsets, --limit)", criterion=rm.config.criterion, routing=rm.config.routing)
        chosen, rejected = rm.score_pairs(pairs, show_progress=not args.quiet, fit=args.criterion)
        key = None if args.criterion is None else rm.fit_key(args.criterion)
        summary = summarize(
            pairs, chosen.numpy(), rejected.numpy(), seed=rm.config.seed,
            config={"rm": str(args.rm), "heads": rm.heads if key is None else rm.fits[key].heads,
                    **({} if key is None else {"fit": key}), **rm.config.to_dict(), "cli": _score_settings(args),
                    "forced": rm.forced},
            data={"name": args.data, "root": args.root, "left_out_as_seen": len(seen)},
        )
        paths = write_results(out, pairs, chosen.numpy(), rejected.numpy(), summary)
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


COMMANDS = {
    "fit": Command(FitOptions, run_fit, aliases=ARM_ALIASES, hidden=ARM_HIDDEN),
    "score": Command(ScoreOptions, run_score),
}
