"""What one ``armlens eval`` run is: :class:`EvalConfig` (data, methods, seeds, sizes; every method setting lives in
its :class:`~armlens.evaluation.judge.JudgeConfig`), and the reference method the others are compared with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from armlens import config as C
from armlens import rules as R
from armlens.data import BIAS_KINDS
from armlens.data.bias import TRANSFORM_KINDS
from armlens.data.partition import PartitionChoice
from armlens.errors import BadInputError
from armlens.evaluation.baselines import METHODS, parse_methods
from armlens.evaluation.judge import JudgeConfig

REFERENCE = "arm"
"""The method every other one is compared with (paired bootstrap)."""

_BIAS_KINDS = R.Rule(R.list_of(str, none_word=True), "KIND,...|none", R.show_list)
_BIAS_METHODS = R.Rule(R.list_or_all(str), "METHOD,...|all|none", lambda x: "all" if x is None else R.show_list(x))


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which data, methods, seeds and sizes; every method setting (the judge's words and field cap,
    the ARM's config with its defaults, the ICL judge's demonstrations) lives in ``judge``, defined once there."""

    data: list[str] = field(default_factory=lambda: ["hhh"])
    """Datasets: registry names (``armlens data list``) or ``path:FILE``."""
    out: str = "runs/eval"
    """Output folder (per-unit files, ``summary.json``, ``results.md``); reused to resume."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Methods (``armlens.evaluation.baselines.METHODS``); ``arm`` is the reference of the paired tests."""
    seeds: int = 3
    """Number of seeds (``first_seed``, ``first_seed + 1``, ...): each a new few-shot draw and head selection."""
    first_seed: Annotated[int, R.INDEX] = 0
    """The first seed."""
    root: str | None = None
    """Data root for the offline loaders (default: ``armlens.data.data_root``)."""
    subsets: list[str] | None = None
    """Keep only these subsets of every dataset (``None``: all)."""
    partition: PartitionChoice = "test"
    """The committed dev/test partition side (``armlens.data.partition``): ``test`` scores test pairs with few-shot
    and selection pairs from dev (claims); ``dev`` takes everything from dev (choices); ``all`` ignores the partition.
    Datasets without one (a file, a Hub set) use every pair; test-only sets (TruthfulQA, HH-RLHF) draw their few-shot
    pairs from their own pairs. Recorded per dataset in ``summary.json``."""
    limit: Annotated[int | None, R.COUNT_OR_ALL] = 40
    """Test pairs per dataset and seed, a seeded sample of the test pool (``None``: the whole pool)."""
    n_fewshot: int = 8
    """Pairs in the few-shot pool (ARM means, ICL demonstrations, probe/steering/SAVs training)."""
    n_select: Annotated[int, R.INDEX] = 8
    """Pairs in the head-selection pool (ARM REINFORCE, SAVs head ranking, steering layer choice, probe training)."""
    stratify: bool = True
    """Fill the few-shot and selection pools per subset, proportionally (each criterion's ARM needs its own pairs)."""
    bias_kinds: Annotated[list[str], _BIAS_KINDS] = field(default_factory=lambda: list(BIAS_KINDS))
    """Bias-suite kinds (``armlens.data.BIAS_KINDS``) built from each seed's test pairs; empty: no bias suite."""
    bias_methods: Annotated[list[str] | None, _BIAS_METHODS] = None
    """Methods that also score the bias suite's hacked responses (``length``, ``format``, ``positivity``: a scoring
    pass of their own, 1.5x the test pairs' prompts); ``None``: every method. The real slices (``length-real``,
    ``format-real``) are test pairs, whose scores every method has, so every method reports them."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for intervals and paired tests."""
    model: str | None = None
    """Model name, folder, ``.gguf`` file or Hub id (``None``: the embedded SmolLM2-135M-Instruct)."""
    device: str | None = None
    """``cpu``, ``cuda``, ... (``None``: cuda when available)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Model parameter dtype: float32, bfloat16 or float16."""
    device_map: str | None = None
    """Spread the layers over devices through accelerate: auto, balanced, sequential, or a JSON {module: device}
    map (instead of ``device``; ``docs/scaling.md``)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """Every other method setting (judge words, score reading, voting, probe, steering, SAVs, the ARM's config)."""
    workers: int = 1
    """Processes that fit and score units in parallel, through Ray (``pip install armlens[distributed]``;
    ``docs/scaling.md``), each loading ``model`` once; 1: all in this process. The results are the same either way."""
    ray_address: str | None = None
    """With ``workers`` > 1: an existing Ray cluster to join (``auto``, ``ray://HOST:10001``); ``None``: a local one
    of ``workers`` CPUs, shut down at the end."""
    worker_gpus: Annotated[float, R.NON_NEGATIVE] = 0.0
    """With ``workers`` > 1: GPUs each worker reserves (0.25: four workers share one GPU)."""
    adopt: str | None = None
    """Another evaluation folder whose finished units are taken instead of computed where they are the same
    computation (same key, or written before keys recorded the criteria and every pair's criterion unchanged:
    ``armlens.evaluation.adopt``); each adopted unit says so in its ``result.json``."""
    show_progress: bool = True
    """tqdm progress bars."""

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def judge_config(self, seed: int) -> JudgeConfig:
        """The judge settings of one seed."""
        return dataclasses.replace(self.judge, seed=seed, show_progress=self.show_progress)

    def validate(self) -> list[str]:
        """Checks that need no data or model; returns the parsed method names."""
        from armlens.model import check_device

        if not self.data:
            raise BadInputError("no datasets given (--data NAME[,NAME...])")
        check_device(self.device, visible=self.ray_address is None and self.workers == 1)
        methods = parse_methods(self.methods)
        if self.seeds < 1:
            raise BadInputError(f"seeds must be >= 1, got {self.seeds}")
        if self.workers < 1:
            raise BadInputError(f"workers must be >= 1, got {self.workers}")
        if self.worker_gpus < 0:
            raise BadInputError(f"worker_gpus must be >= 0, got {self.worker_gpus}")
        if self.limit is not None and self.limit < 1:
            raise BadInputError(f"limit must be a positive number of test pairs, got {self.limit}")
        unknown = [k for k in self.bias_kinds if k not in BIAS_KINDS]
        if unknown:
            raise BadInputError(f"unknown bias kind(s) {unknown}; choose from {', '.join(BIAS_KINDS)}")
        if self.bias_methods is not None:
            outside = [m for m in parse_methods(self.bias_methods) if m not in methods] if self.bias_methods else []
            if outside:
                raise BadInputError(f"--bias-methods names {', '.join(outside)}, not among --methods")
        if REFERENCE in methods and self.n_fewshot < 1:
            raise BadInputError("the ARM needs few-shot pairs (n_fewshot >= 1)")
        return methods

    def bias_kinds_for(self, method: str) -> list[str]:
        """The bias kinds ``method`` reports: all of ``bias_kinds``, or only the real slices for a method outside
        ``bias_methods``."""
        if self.bias_methods is None or method in self.bias_methods:
            return list(self.bias_kinds)
        return [k for k in self.bias_kinds if k not in TRANSFORM_KINDS]

    def to_dict(self) -> dict[str, Any]:
        return C.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        return C.from_dict(cls, d)
