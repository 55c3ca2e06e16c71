"""``armlens demo``: fit an ARM on HHH and compare it with the zero-shot and in-context judges (a few minutes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from armlens import rules as R
from armlens.cli import Command
from armlens.selection import ReinforceConfig


@dataclass
class DemoOptions:
    """The main job: fit an ARM on HHH and compare it with the zero-shot and in-context judges, with intervals (a few
    minutes on the default model); resumable."""

    out: str = "results/demo"
    """Output folder; reused to resume."""
    root: str | None = None
    """Data root holding hhh_alignment/ (default: $ARMLENS_DATA_ROOT, ~/.cache/armlens/data, the BIG-bench cache, then
    the copy bundled with armlens)."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed of the few-shot draw, REINFORCE and the test sample."""
    limit: int = 100
    """Test pairs scored."""
    n_fewshot: int = 16
    """Few-shot pairs the ARMs are fitted on, drawn per criterion (16: 4 per HHH criterion)."""
    steps: int = ReinforceConfig.steps
    """REINFORCE steps (the default is ReinforceConfig's)."""
    change_settings: bool = False
    """Reuse an --out folder that holds a demo run with other settings."""
    quiet: bool = False
    """No progress bars."""


def run(args: DemoOptions) -> int:
    from armlens.cli.common import on_interrupt, resume_note
    from armlens.demo import run_demo
    from armlens.evaluation.runner import results_markdown

    on_interrupt(resume_note(args.out, "*/seed*/*/result.json", "method(s)"))
    summary = run_demo(args.out, root=args.root, seed=args.seed, limit=args.limit, n_fewshot=args.n_fewshot,
                       steps=args.steps, show_progress=not args.quiet, log=lambda s: print(s, flush=True),
                       allow_changed_settings=args.change_settings)
    print(results_markdown(summary))
    for path in summary.get("figure", []):
        print(f"wrote {path}")
    return 0


COMMANDS = {"demo": Command(DemoOptions, run)}
