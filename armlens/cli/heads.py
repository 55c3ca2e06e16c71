"""``armlens heads``: which heads an ARM needs and what they do, on the seeds of an ``armlens ablate`` folder.

Per seed and criterion of the folder's reference ARM: a minimal head set (pruned on half of the seed's scored prompts,
reported on the other half beside the full set, random sets of its size and the zero-shot judge), every single head
alone on the zero-shot judge, and the full set's direct logit attribution (:mod:`armlens.analysis.head_study`). The
reference fits are read from the folder's ``seeds/seed*/arms/`` (or refitted with the same seed). Resumable;
``armlens figures --results FOLDER`` draws what it writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from armlens import rules as R
from armlens.analysis.head_study import StudyConfig
from armlens.cli import Command
from armlens.cli.common import ModelFlags

_SEEDS = R.Rule(R.list_of(R.index), "INT,...", lambda x: "the folder's" if x is None else ",".join(map(str, x)))


@dataclass(frozen=True)
class HeadsOptions(ModelFlags):
    """Which heads an ARM needs and what they do, on the seeds of an `armlens ablate` folder: a minimal head set
    (pruned on half of each seed's scored prompts, reported on the other half), each single head alone, and the
    direct logit attribution of the fitted set. Written to RESULTS/heads/ (resumable)."""

    results: str
    """An `armlens ablate` results folder (its run.json says the data, partition and reference ARM)."""
    study: StudyConfig = field(default_factory=StudyConfig)
    """The study's settings (``--margin``, ``--n-random``, ``--no-singles``; the rest as ``--study.*``)."""
    bias: bool = True
    """Also find where the judge's length and format preference lives: each head mean-ablated alone on the bias
    suite's hacked pairs, then the top-ranked sets (armlens.analysis.bias_heads; --no-bias to skip)."""
    seeds: Annotated[list[int] | None, _SEEDS] = None
    """Seeds to study (default: the folder's)."""
    root: str | None = field(default=None, kw_only=True)
    """Data root folder (default: $ARMLENS_DATA_ROOT, the user's data, then the bundled copy)."""
    threads: int | None = field(default=None, kw_only=True)
    """Torch CPU threads (default: torch's choice)."""


def run_heads(args: HeadsOptions) -> int:
    from pathlib import Path

    import torch

    from armlens.analysis.grid import AblationConfig
    from armlens.analysis.head_study import run_head_study
    from armlens.data import load_pairs
    from armlens.data.partition import sides
    from armlens.errors import BadInputError
    from armlens.io import ResultsLock, read_json

    folder = Path(args.results)
    study = args.study
    if not 0 <= study.margin < 1 or study.n_random < 0:
        raise BadInputError(f"--margin must be in [0, 1) and --n-random >= 0, got {study.margin:g} and {study.n_random}")
    if not (folder / "run.json").is_file():
        raise BadInputError(f"--results {folder} holds no run.json: not an `armlens ablate` folder")
    run = read_json(folder / "run.json")
    config = AblationConfig.from_dict({"partition": "all", **run["config"]})
    seeds = args.seeds if args.seeds is not None else config.seeds
    unknown = sorted(set(seeds) - set(config.seeds))
    if unknown:
        raise BadInputError(f"--seeds {unknown}: the folder's seeds are {config.seeds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs, _, _ = sides(load_pairs(config.data, root=args.root, subsets=config.subsets), config.data, config.partition)
    t0 = time.perf_counter()
    with ResultsLock(folder, "armlens heads"):
        model = args.load(config.model)
        paths = run_head_study(model, pairs, config, folder, study, seeds=seeds)
        if args.bias:
            from armlens.analysis.bias_heads import run_bias_study

            paths += run_bias_study(model, pairs, config, folder, seeds=seeds)
    print(f"{len(paths)} head-study file(s) in {folder}/heads and bias-heads ({time.perf_counter() - t0:.0f} s this run)")
    return 0


HEADS_ALIASES = {"--margin": "study.margin", "--n-random": "study.n_random", "--no-singles": "study.singles"}
"""The study's flags by their short names (each also has its full form, ``--study.margin``)."""

COMMANDS = {"heads": Command(HeadsOptions, run_heads, aliases=HEADS_ALIASES)}
