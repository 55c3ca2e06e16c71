"""``armlens demo``: the main job, end to end on the embedded default model, with no flags.

1. Read HHH (the BIG-bench ``hhh_alignment`` task) from the first data root that holds it (``--root``,
   ``ARMLENS_DATA_ROOT``, ``~/.cache/armlens/data``, the BIG-bench cache), else from the copy bundled with armlens
   (:mod:`armlens.data.bundle`): nothing is downloaded.
2. Draw a seeded few-shot set (stratified: every HHH criterion gets its pairs) and fit the ARM with the defaults of
   ``ARMConfig``: one per criterion, Stage 1 means of the ``answered`` reading and REINFORCE head selection on the
   fast path.
3. Score the remaining pairs (a seeded sample) with the ARM, the zero-shot judge (the same judge unpatched) and the
   few-shot in-context judge, under the RewardBench protocol with bootstrap intervals and paired tests.
4. Print the table and write ``summary.json``, ``results.md`` and a figure under ``--out``.

Sized for a 2-core CPU: a few minutes. The full-size comparison (more seeds, datasets and baselines) is
``armlens eval``.
"""

from __future__ import annotations

import logging
from typing import Any

from armlens.typing import Model

logger = logging.getLogger(__name__)


def ensure_hhh(root: str | None = None) -> None:
    """Check that HHH loads from ``root`` (default: the data roots, then the bundled copy) before any model loads; a
    ``--root`` without ``hhh_alignment/`` is a FileNotFoundError naming what is missing."""
    from armlens.data import load_pairs

    load_pairs("hhh", root=root, limit=1)


def run_demo(
    out: str = "results/demo",
    *,
    root: str | None = None,
    seed: int = 0,
    limit: int = 100,
    n_fewshot: int = 16,
    steps: int | None = None,
    max_field_tokens: int | None = None,
    show_progress: bool = True,
    figure: bool = True,
    log: Any = logger.info,
    model: Model | None = None,
    allow_changed_settings: bool = False,
) -> dict[str, Any]:
    """Run the demo; returns the evaluation summary. ``model``: a loaded bridge (default: the embedded model).
    ``max_field_tokens``: cap judge fields (cut in their middle) for models whose context is shorter than HHH's
    longest judge prompt (~2,700 tokens); the default keeps whole fields.

    ``out`` is checked first (:func:`armlens.evaluation.runner.check_out`): a folder holding a demo with other
    settings is refused unless ``allow_changed_settings``.
    """
    from armlens import config as C
    from armlens.evaluation.baselines import JudgeConfig
    from armlens.evaluation.runner import EvalConfig, check_out, run_eval

    judge = C.replace_path(JudgeConfig(), "template.max_field_tokens", max_field_tokens)  # None: whole fields
    if steps is not None:
        judge = C.replace_path(judge, "arm.reinforce.steps", steps)
    config = EvalConfig(
        data=["hhh"], out=out, methods=["arm", "zero-shot", "few-shot-icl"], seeds=1, first_seed=seed, root=root,
        limit=limit, n_fewshot=n_fewshot, n_select=0, bias_kinds=[], judge=judge, show_progress=show_progress,
    )
    check_out(config, allow_changed_settings)
    ensure_hhh(root)
    summary = run_eval(config, model=model, allow_changed_settings=allow_changed_settings)
    if figure:
        from armlens.plots import find_browser, plot_method_accuracy, write_figures

        fig = plot_method_accuracy(summary, "hhh")
        formats = ("png", "html") if find_browser() else ("html",)
        if "png" not in formats:
            log("no Chrome-family browser found: writing the figure as HTML only (install chromium for PNG)")
        summary["figure"] = [str(p) for p in write_figures({"demo_accuracy": fig}, out, formats=formats)]
    return summary
