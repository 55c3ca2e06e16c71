"""``armlens ablate`` (the stage-ablation grid, resumable) and ``armlens figures`` (every figure from saved results).

``armlens figures`` reads result files only: it never loads a model or runs a forward pass.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from armlens import rules as R
from armlens.analysis.grid import AXES, DEFAULT_GRID, ESTIMATORS, READINGS, SWEEP_GRID, AblationConfig
from armlens.cli import Command
from armlens.cli.common import ModelFlags
from armlens.errors import BadInputError, BadOutputError, NotFoundError

logger = logging.getLogger(__name__)

_GRID = R.Rule(R.list_of(lambda axis: R.choice(axis, (*AXES, "sweep"))), "{" + ",".join((*AXES, "sweep")) + "},...",
             lambda axes: ",".join(axes))


def _choices(allowed: Sequence[str]) -> R.Rule:
    """A comma-separated list of some of ``allowed`` (checked as the flag is read, before anything runs)."""
    return R.Rule(R.list_of(lambda item: R.choice(item, tuple(allowed))), "{" + ",".join(allowed) + "},...", ",".join)


@dataclass(frozen=True)
class AblateOptions(ModelFlags, AblationConfig):
    """Run the stage-ablation grid and save tidy results per cell and seed. Every cell is the reference ARM
    (--arm, ARMConfig's defaults) with one setting changed, fitted through ActivationRM, or another head set / score
    reading on the reference fit. Finished cells and fits are read back on a rerun. The options are AblationConfig's
    fields."""

    seeds: int = field(default_factory=lambda: len(AblationConfig().seeds))  # type: ignore[assignment]
    """Number of seeds, 0..N-1: each draws its own split (few-shot and test pairs), REINFORCE runs and random heads."""
    grid: Annotated[list[str], _GRID] = field(default_factory=lambda: list(DEFAULT_GRID))
    """Axes to run, comma-separated, or 'sweep' (the axes of the defaults sweep, docs/defaults.md)."""
    estimators: Annotated[list[str], _choices(ESTIMATORS)] = field(  # type: ignore[assignment]
        default_factory=lambda: list(ESTIMATORS))
    """``estimator`` axis settings."""
    readings: Annotated[list[str], _choices(READINGS)] = field(  # type: ignore[assignment]
        default_factory=lambda: list(READINGS))
    """``reading`` axis settings."""
    out: str = field(kw_only=True)
    """Results folder (created; reruns resume it)."""
    root: str | None = field(default=None, kw_only=True)
    """Data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)."""
    threads: int | None = field(default=None, kw_only=True)
    """Torch CPU threads (default: torch's choice)."""
    quiet: bool = field(default=False, kw_only=True)
    """No progress bars."""

    def config(self) -> AblationConfig:
        """The :class:`AblationConfig` these options describe (``--grid sweep``: the sweep's axes)."""
        grid = list(SWEEP_GRID) if "sweep" in self.grid else list(self.grid)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(AblationConfig)}
        return AblationConfig(**{**fields, "seeds": list(range(self.seeds)), "grid": grid})


ABLATE_ALIASES = {"--max-field-tokens": "arm.template.max_field_tokens"}
ABLATE_HIDDEN = ("arm.seed", "arm.reinforce.seed", "arm.reinforce.checkpoints")
"""Each run's seed is the ARM's; the steps axis sets the checkpoints."""


@dataclass
class FiguresOptions:
    """Write every analysis figure (PNG + interactive HTML) from `armlens ablate` or `armlens eval` results folders
    (no model, no forward passes)."""

    results: list[str]
    """Results folder(s) written by `armlens ablate` or `armlens eval`, comma-separated. With several (the defaults
    sweep, one per dataset), each folder's figures are prefixed with its name, and the sweep figure and table pool
    them. An eval folder gives per dataset `eval_<data>` (every method's accuracy) and `bias_<data>` (the bias
    suite's hack rates); the eval folders together give eval.md (every method's accuracy and the ARM's paired
    difference from it, across datasets, then the ARM's hack rates against the zero-shot judge's), eval.csv and
    eval_bias.csv."""
    out: str = "figures"
    """Output folder."""
    formats: list[Literal["png", "html"]] = field(default_factory=lambda: ["png", "html"])
    """png and/or html, comma-separated (PNG needs Chromium)."""
    seed: Annotated[int | None, R.INDEX_OR_NONE] = None
    """Seed shown in single-seed figures (default: the lowest)."""
    before: list[str] | None = None
    """Folders of an earlier sweep round, comma-separated (one per dataset, as --results): also write rounds.md and
    rounds.csv, the reference ARM of --results against theirs on the same test pairs and seeds, per dataset and
    pooled (armlens.analysis.sweep.compare_rounds)."""
    before_cell: str | None = None
    """With --before: compare this cell of the earlier round, AXIS/SETTING as in its cells/ folder (e.g. steps/300),
    instead of its reference ARM."""
    cell: str | None = None
    """With --before: compare this cell of --results, AXIS/SETTING (e.g. lr/1), instead of its reference ARM."""


def run_ablate(args: AblateOptions) -> int:
    import torch

    from armlens.analysis.results import summarize
    from armlens.analysis.runs import run_ablations
    from armlens.cli.common import on_interrupt, output_dir, resume_note
    from armlens.data import load_pairs
    from armlens.data.partition import sides
    from armlens.io import ResultsLock

    config = args.config()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = output_dir(args.out, "run.json")
    _check_same_run(out, config)
    pairs, _, side = sides(load_pairs(config.data, root=args.root, subsets=config.subsets), config.data,
                           config.partition)
    print(f"{config.data}: {len(pairs)} pairs ({side['side']}{'; ' + side['note'] if 'note' in side else ''})")
    foreign = None
    if "controls" in config.grid:  # the foreign control's means are read on another dataset's (dev) prompts
        from armlens.analysis.grid import foreign_dataset

        name = foreign_dataset(config)
        foreign, _, _ = sides(load_pairs(name, root=args.root), name, "dev" if config.partition == "dev" else "all")
        print(f"controls: foreign means read on {name} ({len(foreign)} pairs to draw from)")
    on_interrupt(resume_note(out, "cells/*/*/seed*.json", "cell(s)"))
    with ResultsLock(out, "armlens ablate"):
        model = args.load(config.model)
        t0 = time.perf_counter()
        cells = run_ablations(model, pairs, config, out, show_progress=not args.quiet, foreign_pairs=foreign,
                              on_seed=lambda s, t: print(f"seed {s} done in {t:.0f} s", flush=True))
    summary = summarize(cells)
    print(f"{len(cells)} cells in {args.out} ({time.perf_counter() - t0:.0f} s this run)")
    cols = ["axis", "series", "setting", "n_seeds", "accuracy", "std", "ci_low", "ci_high", "ties", "n_heads"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _check_same_run(out: Path, config: Any) -> None:
    """Before the model loads: an ``out`` holding a run with other settings is refused (run_ablations checks the
    model and the data again once they are loaded)."""
    from armlens.analysis.runs import saved_fingerprint
    from armlens.io import read_json, settings_diff

    run_file = out / "run.json"
    if run_file.is_file():
        diff = settings_diff(saved_fingerprint(read_json(run_file)), config.fingerprint())
        if diff:
            raise BadOutputError(f"{out} holds results of a different run ({', '.join(diff)} differ); "
                                 "use another --out folder or delete it")


# ---------------------------------------------------------------------------------------------------- figures


def build_figures(results: Any, seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every figure the saved results allow: ``(figures, html_overrides)`` keyed by file name (no extension)."""
    import torch

    from armlens import plots
    from armlens.analysis.grid import AXES
    from armlens.analysis.heads import (
        expected_random_jaccard,
        jaccard_matrix,
        mean_pairwise_jaccard,
        rank_agreement,
        selection_frequency,
        trajectory_steps,
    )
    from armlens.analysis.results import summarize, zero_shot_reference

    figs: dict[str, Any] = {}
    html: dict[str, Any] = {}
    data = results.run.get("data", {})
    data_name = data.get("name", "") + (f" ({', '.join(data['subsets'])})" if data.get("subsets") else "")
    cfg = results.run.get("config", {})
    ref = results.selections("reference")
    if ref:
        seeds = sorted(ref)
        if seed is not None and seed not in ref:
            raise BadInputError(f"--seed {seed}: the results hold seed(s) {', '.join(map(str, seeds))}")
        s0 = seeds[0] if seed is None else seed
        probs = {s: r.probs for s, r in ref.items() if r.probs is not None}
        masks = {s: r.mask for s, r in ref.items()}
        rcfg = cfg.get("arm", {}).get("reinforce", {})
        sizes = (f"{cfg.get('n_fewshot', '?')} few-shot pairs, {rcfg.get('steps', '?')} steps x "
                 f"{rcfg.get('k_masks', '?')} masks")
        if probs:
            figs["heads_selection_probability"] = plots.plot_selection_probability(
                probs, masks, subtitle=f"{data_name}; {sizes}; crosses: heads in the final mask (best of 10 samples)")
        traj = ref[s0].prob_trajectory
        if traj is not None:
            steps = trajectory_steps(traj.shape[0], 6)
            figs["heads_trajectory"] = plots.plot_trajectory(traj, steps, seed=s0, subtitle=f"{data_name}; {sizes}")
            html["heads_trajectory"] = plots.plot_trajectory_slider(traj, seed=s0, subtitle=f"{data_name}; {sizes}")

        def curves(name: str, runs: dict[int, Any], subtitle: str) -> None:
            """One training-curve figure over seeds, when every seed's run has its curves."""
            if runs and all(r.losses for r in runs.values()):
                figs[name] = plots.plot_training_curves(
                    {s: r.losses for s, r in runs.items()}, {s: r.expected_heads for s, r in runs.items()},
                    entropy={s: r.entropy for s, r in runs.items()},
                    val_losses={s: r.val_losses for s, r in runs.items()}, subtitle=subtitle)

        curves("heads_training_curves", ref, f"{data_name}; {sizes}")
        longest = max(cfg.get("steps") or [0]) if "steps" in (cfg.get("grid") or []) else 0
        curves("heads_training_curves_long", results.selections(f"steps{longest}"),
               f"{data_name}; the steps axis's run to {longest} steps x {rcfg.get('k_masks', '?')} masks "
               "(its choice after each step count is that step count's cell)")
        if "lr" in (cfg.get("grid") or []):
            for lr in sorted(set(cfg.get("learning_rates") or [])):
                curves(f"heads_training_curves_lr{lr:g}", results.selections(f"lr{lr:g}"),
                       f"{data_name}; the lr axis's run at learning rate {lr:g}, {rcfg.get('steps', '?')} steps x "
                       f"{rcfg.get('k_masks', '?')} masks")
        stack = torch.stack([masks[s] for s in seeds])
        n_total = stack.shape[1] * stack.shape[2]
        mean_k = float(stack.float().sum((1, 2)).mean())
        sub = (f"{data_name}; mean head-set size {mean_k:.1f} of {n_total}"
               + (f"; mean Jaccard between seeds {mean_pairwise_jaccard(stack):.2f} (random sets of that size: "
                  f"{expected_random_jaccard(mean_k, mean_k, n_total):.2f})" if len(seeds) > 1 else ""))
        figs["heads_stability"] = plots.plot_stability(selection_frequency(stack), len(seeds), subtitle=sub)
        effects = {s: a.effects for s, a in results.seeds.items() if a.effects is not None and s in probs}
        if effects:
            eff = torch.stack([effects[s] for s in sorted(effects)]).mean(0)
            pr = torch.stack([probs[s] for s in sorted(effects)]).mean(0)
            majority = torch.stack([masks[s] for s in sorted(effects)]).float().mean(0) > 0.5
            n = len(effects)
            sub = (f"{data_name}; mean over {n} seed{'s' if n > 1 else ''} ({cfg.get('attribution_examples', '?')} "
                   "few-shot examples each); crosses: heads chosen in a majority of seeds; Δ margin = change of "
                   "logit(Yes)-logit(No) towards the gold answer with only that head patched")
            figs["heads_attribution"] = plots.plot_attribution(
                eff, pr, majority, rho=rank_agreement(eff, pr), subtitle=sub,
                mask_name=f"head in REINFORCE's final mask in a majority of {n} seeds" if n > 1
                else "head in REINFORCE's final mask")
        att = results.seeds[s0].attention if s0 in results.seeds else None
        if att is not None:
            extra = att.extra or {}
            sub = (f"seed {s0}; {att.note}; head chosen as the highest-probability selected head "
                   f"(P(select) {extra.get('prob', float('nan')):.2f})")
            figs["heads_attention"] = plots.plot_attention(att.tokens, att.weights, head=att.label,
                                                           patched_weights=att.patched_weights, subtitle=sub)
    crit = results.criteria()
    common = sorted(set.intersection(*(set(v) for v in crit.values()))) if crit else []
    if len(crit) >= 2 and common:
        sets = {c: [v[seed_].mask for seed_ in common] for c, v in crit.items()}
        matrix = jaccard_matrix(sets)
        all_masks = [m for v in sets.values() for m in v]
        k = sum(float(m.sum()) for m in all_masks) / len(all_masks)
        n_total = all_masks[0].numel()
        n_runs = min(len(v) for v in sets.values())
        figs["heads_criteria_jaccard"] = plots.plot_jaccard(
            matrix, chance=expected_random_jaccard(k, k, n_total),
            subtitle=f"{n_runs} seed(s) per criterion (the reference ARM's per-criterion fits), "
                     f"mean head-set size {k:.1f}; every cell averages pairs of different seeds (same-seed runs share "
                     "REINFORCE's random draws); diagonal: one criterion across seeds")
    if not results.cells.empty:
        summary = summarize(results.cells)
        zs = zero_shot_reference(results.cells)
        for axis in AXES:
            if (summary["axis"] == axis).any():
                figs[f"ablation_{axis}"] = plots.plot_ablation(summary, results.cells, axis=axis, zero_shot=zs,
                                                               data_name=data_name)
        if summary["axis"].isin(["selection", "reading", "estimator", "scoring"]).any():
            figs["ablation_overview"] = plots.plot_ablation_overview(summary, zero_shot=zs, data_name=data_name)
    return figs, html


CONVERGENCE_NOTE = (
    "Read off the saved training curves (`armlens.analysis.results.convergence_table`). A policy that has settled "
    "has fallen little in the last quarter of its steps (a steady fall gives 0.25), leaves few heads undecided (final "
    "P(select) between 0.1 and 0.9), stops improving its held-apart validation loss, and picks head sets that agree "
    "across seeds above the Jaccard index of random sets of the same size.")


def _cell_arg(flag: str, value: str | None) -> tuple[str, str] | None:
    """AXIS/SETTING as (axis, setting)."""
    if value is None:
        return None
    axis, sep, setting = value.partition("/")
    if not sep or not axis or not setting:
        raise BadInputError(f"{flag} {value!r}: expected AXIS/SETTING, e.g. steps/300")
    return axis, setting


def is_eval_folder(folder: Path) -> bool:
    """An `armlens eval` results folder: its summary.json, and no ablation run file."""
    return (folder / "summary.json").is_file() and not (folder / "run.json").is_file()


def eval_figures(folder: Path) -> dict[str, Any]:
    """Per dataset of an `armlens eval` folder: every method's accuracy and, with a bias suite, its hack rates."""
    from armlens.evaluation.planning import dataset_slug
    from armlens.io import read_json
    from armlens.plots import plot_hack_rates, plot_method_accuracy

    summary = read_json(folder / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("results"), dict):
        raise BadInputError(f"{folder / 'summary.json'} is not an `armlens eval` summary (no 'results')")
    figs = {}
    for name, res in summary["results"].items():
        key = dataset_slug(name).replace("-", "_")
        figs[f"eval_{key}"] = plot_method_accuracy(summary, name)
        if any(b.get("n") for e in res["methods"].values() for b in e.get("bias", {}).values()):
            figs[f"bias_{key}"] = plot_hack_rates(summary, name)
    return figs


def run_figures(args: FiguresOptions) -> int:
    import pandas as pd

    from armlens.analysis.results import (
        convergence_markdown,
        convergence_summary,
        convergence_table,
        load_results,
    )
    from armlens.analysis.sweep import (
        compare_rounds,
        decisions_markdown,
        rounds_markdown,
        sweep_decisions,
        sweep_markdown,
        sweep_table,
    )
    from armlens.cli.common import output_dir
    from armlens.io import atomic_write, atomic_write_with, read_json
    from armlens.plots import plot_sweep, write_figures

    formats = list(dict.fromkeys(args.formats))
    folders = [Path(r) for r in dict.fromkeys(args.results)]
    earlier = [Path(r) for r in dict.fromkeys(args.before or [])]
    before_cell, after_cell = _cell_arg("--before-cell", args.before_cell), _cell_arg("--cell", args.cell)
    if (before_cell or after_cell) and not earlier:
        raise BadInputError("--before-cell and --cell compare two rounds: pass the earlier round with --before")
    for flag, results_dir in [("--results", f) for f in folders] + [("--before", f) for f in earlier]:
        if not results_dir.is_dir():
            raise NotFoundError(f"{flag} {results_dir} " + ("is a file, not a results folder"
                                                                if results_dir.exists() else "does not exist"))
    out = output_dir(args.out)
    figs: dict[str, Any] = {}
    html: dict[str, Any] = {}
    curves = []
    evals = [f for f in folders if is_eval_folder(f)]
    for results_dir in evals:
        figs |= {(f"{results_dir.name}_{k}" if k in figs else k): v for k, v in eval_figures(results_dir).items()}
    if evals:  # every eval folder's datasets side by side: the README's headline table
        from armlens.evaluation.summary import (
            bias_headline_markdown,
            bias_headline_rows,
            headline_markdown,
            headline_rows,
        )

        summaries = [read_json(f / "summary.json") for f in evals]
        rows, bias_rows = headline_rows(summaries), bias_headline_rows(summaries)
        atomic_write_with(out / "eval.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
        atomic_write_with(out / "eval_bias.csv", lambda tmp: pd.DataFrame(bias_rows).to_csv(tmp, index=False))
        atomic_write(out / "eval.md", "## The ARM against every method, per dataset\n\n" + headline_markdown(rows)
                     + ("\n## Reward hacking: the ARM against the plain judge\n\n" + bias_headline_markdown(bias_rows)
                        if bias_rows else ""))
    given, folders = folders, [f for f in folders if f not in evals]
    for results_dir in folders:
        results = load_results(results_dir)
        f, h = build_figures(results, seed=args.seed)
        prefix = f"{results_dir.name}_" if len(folders) > 1 else ""
        figs |= {prefix + k: v for k, v in f.items()}
        html |= {prefix + k: v for k, v in h.items()}
        curves.append(convergence_table(results, results.run.get("data", {}).get("name") or results_dir.name))
    curves = [c for c in curves if not c.empty]
    if curves:
        conv = convergence_summary(pd.concat(curves, ignore_index=True))
        atomic_write_with(out / "convergence.csv", lambda tmp: conv.to_csv(tmp, index=False))
        atomic_write(out / "convergence.md", "## Has REINFORCE converged? (means over seeds)\n\n"
                     + convergence_markdown(conv) + "\n\n" + CONVERGENCE_NOTE + "\n")
    table = sweep_table(folders) if folders else None
    if table is not None and table["diff"].notna().any():
        figs["sweep"] = plot_sweep(table)
        atomic_write_with(out / "sweep.csv", lambda tmp: table.to_csv(tmp, index=False))
        pooled = "all" if (table["data"] == "all").any() else str(table["data"].iloc[0])
        decisions = sweep_decisions(folders)
        atomic_write(out / "sweep.md", "## What the decision rule chooses\n\n" + decisions_markdown(decisions)
                     + f"\n\n## Every setting against the default ({pooled})\n\n" + sweep_markdown(table, pooled)
                     + "\n")
    if folders:  # the frontier, head counts and head studies, where the folders hold them
        from armlens.analysis.head_outputs import head_outputs

        figs |= head_outputs(folders, out)
    if earlier:
        rounds = compare_rounds(earlier, folders, before_cell=before_cell, after_cell=after_cell)
        if before_cell or after_cell:
            stem = "rounds-" + "-vs-".join("_".join(c) if c else "reference" for c in (after_cell, before_cell))
            title = f"{rounds['after'].iloc[0]} against {rounds['before'].iloc[0]}"
        else:
            stem, title = "rounds", "The reference ARM against the earlier round's"
        atomic_write_with(out / f"{stem}.csv", lambda tmp: rounds.to_csv(tmp, index=False))
        atomic_write(out / f"{stem}.md", f"## {title}\n\n" + rounds_markdown(rounds) + "\n")
    if not figs:
        raise BadInputError(f"{', '.join(map(str, given))} hold(s) no results to draw (run `armlens ablate --out DIR` "
                            "or `armlens eval --out DIR` first)")
    written = write_figures(figs, out, formats=formats, html_figures=html)
    for path in written:
        print(path)
    return 0


COMMANDS = {
    "ablate": Command(AblateOptions, run_ablate, aliases=ABLATE_ALIASES, hidden=ABLATE_HIDDEN),
    "figures": Command(FiguresOptions, run_figures),
}
