"""``armlens eval``: the ARM against the judges people use, per dataset and seed, resumable."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from armlens.cli import Command
from armlens.evaluation.runner import EvalConfig


@dataclass(frozen=True)
class EvalOptions(EvalConfig):
    """For each dataset and seed: split the pairs (few-shot / selection / test), fit every method on the same draw,
    score the test pairs and the bias suite. Writes per-item JSONL, summary.json and results.md under --out;
    rerunning with the same --out skips finished work. The options are EvalConfig's fields; every method setting is
    under --judge (JudgeConfig), the ARM's under --judge.arm (ARMConfig)."""

    change_settings: bool = False
    """Reuse an --out folder whose config.json holds other settings (only matching units are kept)."""
    summary_only: bool = False
    """Only rebuild summary.json and results.md of the finished --out folder from its files and config.json (no
    model; nothing computed; the other options are not used): re-reports committed results with today's intervals."""
    interim: str | None = None
    """With --summary-only: report a folder that is still running instead, into this other folder (the datasets on
    which every seed has finished the methods finished so far; ``interim`` in its summary.json names what is not)."""
    quiet: bool = False
    """No progress bars."""

    def config(self) -> EvalConfig:
        """The :class:`EvalConfig` these options describe."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(EvalConfig)}
        return EvalConfig(**{**fields, "show_progress": not self.quiet})


EVAL_ALIASES = {
    "--bias": "bias_kinds", "--steps": "judge.arm.reinforce.steps", "--n-trials": "judge.arm.n_trials",
    "--arm-reading": "judge.arm.reading", "--estimator": "judge.arm.estimator", "--score": "judge.score",
    "--max-field-tokens": "judge.template.max_field_tokens", "--batch-size": "judge.batch_size",
    "--icl-demos": "judge.icl.shots", "--voting-n": "judge.voting.n", "--voting-temperature": "judge.voting.temperature",
    "--probe-features": "judge.probe.features", "--probe-layer": "judge.probe.layer",
    "--steering-layers": "judge.steering.layers", "--steering-coefs": "judge.steering.coefs",
    "--savs-top-k": "judge.savs.top_k",
}
"""The short flags of ``eval`` (each also has its full form, e.g. ``--judge.arm.reinforce.steps``)."""
EVAL_HIDDEN = ("show_progress", "judge.seed", "judge.show_progress", "judge.arm.seed", "judge.arm.reinforce.seed",
               "judge.arm.reinforce.checkpoints", "judge.arm.template", "judge.arm.criterion", "judge.arm.routing",
               "judge.arm.score", "judge.arm.batch_size")
"""Set by the run: seeds per unit, progress from --quiet; the ARM's words, criterion, score reading and batch size
are the judge's (armlens.evaluation.judge.ARM_SHARED)."""


def run(args: EvalOptions) -> int:
    from pathlib import Path

    from armlens.cli.common import on_interrupt, resume_note
    from armlens.errors import BadInputError
    from armlens.evaluation.runner import check_out, results_markdown, run_eval

    if args.interim is not None and not args.summary_only:
        raise BadInputError("--interim goes with --summary-only (it reports a running folder, computing nothing)")
    if args.summary_only:
        from armlens.evaluation.runner import resummarize
        from armlens.io import ResultsLock

        if args.interim is not None:  # the running job holds --out's lock; this reads it and writes elsewhere
            if Path(args.interim).resolve() == Path(args.out).resolve():
                raise BadInputError("--interim must be another folder than --out (whose run writes its own summary)")
            with ResultsLock(Path(args.interim), "armlens eval --summary-only --interim"):
                summary = resummarize(args.out, into=args.interim)
        else:
            with ResultsLock(Path(args.out), "armlens eval --summary-only"):
                summary = resummarize(args.out)
        print(results_markdown(summary))
        print(f"rebuilt {Path(args.interim or args.out) / 'summary.json'} and results.md from the units on file")
        return 0
    config = args.config()
    config.validate()
    check_out(config, args.change_settings)  # before any data or model is loaded
    on_interrupt(resume_note(config.out, "*/seed*/*/result.json", "unit(s)"))
    t0 = time.perf_counter()
    summary = run_eval(config, allow_changed_settings=args.change_settings)
    print(results_markdown(summary))
    run_info = summary.get("run", {})
    print(f"{run_info.get('computed', 0)} unit(s) computed, {run_info.get('reused', 0)} reused, "
          f"{time.perf_counter() - t0:.1f} s; results in {Path(config.out) / 'results.md'} and summary.json")
    return 0


COMMANDS = {"eval": Command(EvalOptions, run, aliases=EVAL_ALIASES, hidden=EVAL_HIDDEN)}
