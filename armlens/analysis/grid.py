"""The ablation grid: which cells a run computes. Every cell is *the reference ARM with one setting changed*.

Context
-------
An ARM is a pipeline (Stage 1 reading, Stage 1b estimator, Stage 2 head selection, Stage 3 score reading), and its
reference is ``AblationConfig.arm``, an :class:`armlens.rm.ARMConfig` (by default ``ARMConfig()``, the defaults every
command uses). Each *axis* varies one thing and holds the rest at the reference:

- ARM axes (a new ARM is fitted through :class:`armlens.rm.ActivationRM` with one config field changed, so its heads
  are always selected for the means it patches): ``reading`` (icl-lines, icl-turns, answered, mean_ablation),
  ``estimator``, ``demos`` (answered demonstrations per class), ``trials`` (icl prompts averaged), ``prior``
  (REINFORCE's initial logit), ``lr`` (REINFORCE's learning rate), ``objective`` (answer / pairwise), ``criteria`` (per criterion / pooled), ``shots``
  (few-shot pairs per criterion), ``flip`` (a share of the few-shot labels swapped), ``steps`` (REINFORCE steps:
  one run to the longest, the final choice made at every step count, which equals an S-step run's).
- Head-set axes on the reference fit (its means, other heads): ``selection`` (REINFORCE, random of the same count,
  top-k by REINFORCE probability or by single-head attribution, all, none = the zero-shot judge) and ``heads``
  (top-k and random series over k).
- ``sparsity``: REINFORCE with a penalty per selected head (``reinforce.sparsity``), one fit per value: fewer heads,
  chosen by the policy itself (the frontier's penalised series beside ``heads``' top-k and random ones).
- ``soft``: soft head weights (``selector="soft"``, :mod:`armlens.soft`: ``z + w (mu - z)``, ``w`` learned with an L1
  penalty ``soft.l1``), one fit per L1 strength: the frontier's continuous series.
- ``scoring``: the reference ARM and the zero-shot judge read as prob / normalized / logit_diff / generative.
- ``controls``: the reference fit's heads with other values written into them: ``zeros``, ``shuffled`` (each
  selected head gets another selected head's mean, per criterion, a seeded derangement) or ``foreign`` (means read
  with the reference's Stage 1 settings on another dataset's few-shot prompts, :attr:`AblationConfig.foreign_data`).
  Do the patched values matter, or only which heads are overwritten? ``means`` is the reference itself.

A cell is a frozen record: the ARM config overrides (dotted paths), which few-shot pairs, the head rule and the score
reading. :func:`plan_cells` lists the cells of a config; :mod:`armlens.analysis.runs` computes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from armlens import config as C
from armlens import rules as R
from armlens.errors import BadInputError
from armlens.rm import ARMConfig

AXES: tuple[str, ...] = ("selection", "reading", "estimator", "demos", "trials", "steps", "prior", "lr", "objective",
                         "criteria", "shots", "flip", "heads", "sparsity", "soft", "scoring", "controls")
"""Every ablation axis, in report order."""
DEFAULT_GRID: tuple[str, ...] = ("selection", "reading", "estimator", "scoring", "heads", "controls")
"""Axes run when none are named."""
SWEEP_GRID: tuple[str, ...] = ("selection", "reading", "demos", "trials", "steps", "prior", "objective", "criteria")
"""Axes of the defaults sweep (``docs/defaults.md``)."""
SELECTIONS: tuple[str, ...] = ("reinforce", "likely", "random", "topk_prob", "topk_attribution", "all", "none")
ESTIMATORS: tuple[str, ...] = ("mean", "wpca", "wpca_confidence", "class_diff", "median", "trimmed_mean")
READINGS: tuple[str, ...] = ("icl-lines", "icl-turns", "answered", "mean_ablation")
SCORE_READINGS: tuple[str, ...] = ("prob", "normalized", "logit_diff", "generative")
HEAD_SERIES: tuple[str, ...] = ("topk_prob", "topk_attribution", "random")
HEAD_RULES: tuple[str, ...] = ("fit", "likely", "random", "topk_prob", "topk_attribution", "all", "none")
CONTROLS: tuple[str, ...] = ("means", "zeros", "shuffled", "foreign")
"""The ``controls`` axis: what the reference fit's selected heads are given (``means``: the reference)."""
SETTING_ORDER: tuple[str, ...] = (*SELECTIONS, *READINGS, *ESTIMATORS, "answer", "pairwise", "per_criterion",
                                  "pooled", *SCORE_READINGS, *CONTROLS)
"""Display order of the categorical settings."""

READING_OVERRIDES: dict[str, dict[str, Any]] = {
    "icl-lines": {"reading": "icl", "icl_layout": "lines"},
    "icl-turns": {"reading": "icl", "icl_layout": "turns"},
    "answered": {"reading": "answered"},
    "mean_ablation": {"reading": "mean_ablation"},
}
_ESTIMATOR_OVERRIDES: dict[str, dict[str, Any]] = {
    **{e: {"estimator": e} for e in ESTIMATORS if e != "wpca_confidence"},
    "wpca_confidence": {"estimator": "wpca", "wpca_weighting": "confidence"},
}


@dataclass(frozen=True)
class AblationConfig:
    """Sizes and settings of an ablation run. Saved in ``run.json``; a resumed run must match it."""

    data: str = "hhh"
    """Dataset name (``armlens.data.load_pairs``), recorded."""
    subsets: list[str] | None = None
    """Subsets loaded (``None``: all), recorded."""
    partition: Literal["dev", "all"] = "dev"
    """The committed partition side (``armlens.data.partition``): ``dev`` (few-shot and scored pairs all from dev:
    ablations and sweeps are choices and explorations, never claims) or ``all`` (every pair, as before partitions
    existed). Datasets without a committed partition use every pair; test-only sets (TruthfulQA, HH-RLHF) refuse
    ``dev``."""
    foreign_data: str | None = None
    """``controls`` axis, ``foreign``: the dataset whose few-shot prompts (its dev side where it has one, drawn per
    seed) give the means written into the reference's heads (``None``: :func:`foreign_dataset`'s choice)."""
    model: str | None = None
    """Model name as loaded (``None``: the embedded default), recorded."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: each draws its own split (few-shot and test pairs), REINFORCE runs and random heads."""
    grid: list[str] = field(default_factory=lambda: list(DEFAULT_GRID))
    """Axes to run (see :data:`AXES`)."""
    arm: ARMConfig = field(default_factory=ARMConfig)
    """The reference ARM every cell changes one setting of (its seed is each run's seed)."""
    n_fewshot: int = 16
    """Few-shot pairs per seed, drawn per subset in proportion (each gives a Yes and a No example)."""
    limit: Annotated[int | None, R.COUNT_OR_ALL] = 120
    """Test pairs per seed (``None``: every pair outside the few-shot pool)."""
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))
    """``estimator`` axis settings."""
    readings: list[str] = field(default_factory=lambda: list(READINGS))
    """``reading`` axis settings."""
    demos: list[int] = field(default_factory=lambda: [1, 2, 4])
    """``demos`` axis: answered demonstrations per class in each icl extraction prompt."""
    trials: list[int] = field(default_factory=lambda: [8, 32, 100])
    """``trials`` axis: icl extraction prompts averaged."""
    steps: list[int] = field(default_factory=lambda: [50, 100, 200, 300, 600])
    """``steps`` axis: REINFORCE step counts (one run to the longest)."""
    priors: list[float] = field(default_factory=lambda: [-1.0, -2.0, -3.0])
    """``prior`` axis: REINFORCE's initial logit per head."""
    learning_rates: Annotated[list[float], R.POSITIVE_FLOATS] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    """``lr`` axis: REINFORCE's learning rate (does the policy settle within the steps it is given?)."""
    fewshot_per_criterion: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    """``shots`` axis: few-shot pairs per criterion the ARM is fitted on (the first N of each criterion's draw, at most
    what it holds)."""
    heads: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    """``heads`` axis: k for the top-k and random series (capped at the model's head count)."""
    flips: Annotated[list[float], R.FRACTIONS] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    sparsities: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1])
    """``sparsity`` axis: REINFORCE's penalty per selected head (in the loss's nats; 0 is the reference), fitted anew
    at each value: the accuracy-sparsity frontier's penalised series (issue 38)."""
    soft_l1s: list[float] = field(default_factory=lambda: [0.0, 0.003, 0.01, 0.03, 0.1])
    """``soft`` axis: L1 strengths of soft head weights (``arm.soft.l1``, nats per unit of weight), one fit each: the
    frontier's continuous series (issue 38, item d)."""
    """``flip`` axis: share of few-shot pairs whose chosen and rejected are swapped."""
    attribution_examples: int = 8
    """Few-shot examples the single-head attribution sweep averages over, per criterion."""
    gen_max_new_tokens: int = 4
    """Generative reading: tokens decoded at most."""
    row_chunk: int = 64
    """Rows evaluated per forward over a test prompt's prefix cache (as side-by-side branches of the last token)."""
    bootstrap: int = 1000
    """Bootstrap resamples for each cell's interval over test pairs."""

    def __post_init__(self) -> None:
        for lr in self.learning_rates:  # the lr axis's settings pass ReinforceConfig's own check before any work
            replace(self.arm.reinforce, lr=lr)
        for s in self.sparsities:  # so do the sparsity axis's
            replace(self.arm.reinforce, sparsity=s)
        for s in self.soft_l1s:  # and the soft axis's
            replace(self.arm.soft, l1=s)

    def to_dict(self) -> dict[str, Any]:
        return C.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationConfig:
        d = dict(d)
        if "shots" in d:  # run.json before the field was named for what it counts
            d.setdefault("fewshot_per_criterion", d.pop("shots"))
        return C.from_dict(cls, d)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide every cell's value (a resumed run must agree on them; the axis lists and the
        speed settings may grow or change)."""
        keep = ("data", "subsets", "partition", "model", "arm", "n_fewshot", "limit", "attribution_examples",
                "gen_max_new_tokens", "foreign_data")
        return {k: v for k, v in self.to_dict().items() if k in keep}


def foreign_dataset(config: AblationConfig) -> str:
    """The dataset the ``foreign`` control reads its means on: ``config.foreign_data``, else HHH (LLMBar for a run on
    HHH): a bundled set with a dev side and other prompts and criteria."""
    if config.foreign_data is not None:
        return config.foreign_data
    return "llmbar" if config.data == "hhh" else "hhh"


@dataclass(frozen=True)
class Cell:
    """One point of the grid: an axis, a series on it, a setting, and exactly what it changes."""

    axis: str
    """Which stage is varied."""
    series: str
    """Line / group within the axis (``ARM``, ``zero-shot``, ``topk_prob``, ...)."""
    setting: str
    """The varied setting, as shown."""
    x: float | None = None
    """Numeric position (shots, heads, flipped %, steps ...); ``None`` on categorical axes."""
    reading: str = "prob"
    """Score reading (``prob``, ``normalized``, ``logit_diff``, ``generative``)."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """ARM config changes, as (dotted path, value): the fitted ARM is the reference with these applied."""
    pairs: str = "all"
    """Few-shot pairs the ARM is fitted on: ``all``, ``shots:N`` (first N per criterion) or ``flip:SHARE``."""
    heads: str = "fit"
    """Head rule: ``fit`` (the ARM's own selection), ``random`` / ``topk_prob`` / ``topk_attribution`` (k heads,
    k = ``k`` or the fit's count), ``all``, ``none`` (the zero-shot judge)."""
    k: int | None = None
    """Head count for the top-k and random rules (``None``: the fit's own count, per criterion)."""
    step: int | None = None
    """Take the fit's final choice after this many REINFORCE steps (``steps`` axis)."""
    values: Literal["fit", "zeros", "shuffled", "foreign"] = "fit"
    """What is written into the heads: ``fit`` (the fit's means), ``zeros``, ``shuffled`` (each selected head
    another selected head's mean) or ``foreign`` (means read on another dataset's prompts): ``controls`` axis."""

    @property
    def key(self) -> str:
        return slug(self.setting if self.series == "ARM" else f"{self.series}-{self.setting}")

    def arm_config(self, base: ARMConfig) -> ARMConfig:
        """The config of the ARM this cell fits."""
        cfg = base
        for path, value in self.overrides:
            cfg = C.replace_path(cfg, path, value)
        return cfg


def slug(text: str) -> str:
    """A file-name-safe version of a setting name."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "_"


def _arm(axis: str, setting: str, overrides: dict[str, Any], **kw: Any) -> Cell:
    return Cell(axis, "ARM", setting, overrides=tuple(sorted(overrides.items())), **kw)


def plan_cells(config: AblationConfig, n_layers: int, n_heads: int) -> list[Cell]:
    """The cells of ``config.grid`` for a model of this shape."""
    unknown = [a for a in config.grid if a not in AXES]
    if unknown:
        raise BadInputError(f"unknown ablation axis/axes {unknown}; choose from {', '.join(AXES)}")
    for name, values, allowed in (("estimator", config.estimators, ESTIMATORS), ("reading", config.readings, READINGS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise BadInputError(f"unknown {name}(s) {bad}; choose from {', '.join(allowed)}")
    grid = set(config.grid)
    cells: list[Cell] = []
    if "selection" in grid:
        cells += [Cell("selection", "ARM", s, heads="fit" if s == "reinforce" else s) for s in SELECTIONS]
    if "reading" in grid:
        cells += [_arm("reading", r, READING_OVERRIDES[r]) for r in config.readings]
    if "estimator" in grid:
        cells += [_arm("estimator", e, _ESTIMATOR_OVERRIDES[e]) for e in config.estimators]
    if "demos" in grid:
        cells += [_arm("demos", str(n), {"demos_per_class": n}, x=float(n)) for n in sorted(set(config.demos))]
    if "trials" in grid:
        cells += [_arm("trials", str(n), {"n_trials": n}, x=float(n)) for n in sorted(set(config.trials))]
    if "steps" in grid:
        longest, marks = max(config.steps), tuple(sorted(set(config.steps)))
        cells += [_arm("steps", str(s), {"reinforce.steps": longest, "reinforce.checkpoints": marks}, x=float(s),
                       step=s) for s in marks]
    if "prior" in grid:
        cells += [_arm("prior", f"{p:g}", {"reinforce.init_logit": float(p)}, x=float(p))
                  for p in sorted(set(config.priors))]
    if "lr" in grid:
        cells += [_arm("lr", f"{lr:g}", {"reinforce.lr": float(lr)}, x=float(lr))
                  for lr in sorted(set(config.learning_rates))]
    if "objective" in grid:
        cells += [_arm("objective", o, {"reinforce.objective": o}) for o in ("answer", "pairwise")]
    if "criteria" in grid:
        cells += [_arm("criteria", c, {"criteria": c}) for c in ("per_criterion", "pooled")]
    if "shots" in grid:
        cells += [Cell("shots", "ARM", str(n), x=float(n), pairs=f"shots:{n}")
                  for n in sorted(set(config.fewshot_per_criterion))]
    if "flip" in grid:
        cells += [Cell("flip", "ARM", f"{f:g}", x=100.0 * f, pairs="all" if f == 0 else f"flip:{f:g}")
                  for f in sorted(set(config.flips))]
    if "sparsity" in grid:
        cells += [_arm("sparsity", f"{s:g}", {"reinforce.sparsity": float(s)}, x=float(s))
                  for s in sorted(set(config.sparsities))]
    if "soft" in grid:
        cells += [_arm("soft", f"{s:g}", {"selector": "soft", "soft.l1": float(s)}, x=float(s))
                  for s in sorted(set(config.soft_l1s))]
    if "heads" in grid:
        ks = sorted({k for k in config.heads if 1 <= k <= n_layers * n_heads})
        cells += [Cell("heads", s, str(k), x=float(k), heads=s, k=k) for s in HEAD_SERIES for k in ks]
    if "controls" in grid:
        cells += [Cell("controls", "ARM", c, values="fit" if c == "means" else c) for c in CONTROLS]
    if "scoring" in grid:
        cells += [Cell("scoring", series, r, reading=r, heads="fit" if series == "ARM" else "none")
                  for series in ("ARM", "zero-shot") for r in SCORE_READINGS]
    return cells


LATER_FIELDS: dict[tuple[str, ...], Any] = {("reinforce", "final"): "sampled"}
"""ARM settings added after fits were cached, with the value that behaves as before: :func:`fit_key` leaves them out
at that value, so the fits saved before they existed stay valid."""


def fit_key(cell: Cell, base: ARMConfig) -> str:
    """Which fitted ARM a cell needs: cells with the same config and few-shot pairs share one fit."""
    import hashlib
    import json

    arm = cell.arm_config(base).to_dict()
    for (*parents, name), value in LATER_FIELDS.items():
        holder = arm
        for key in parents:
            holder = holder[key]
        if holder.get(name) == value:
            del holder[name]
    blob = json.dumps({"arm": arm, "pairs": cell.pairs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cells_needing_fits(cells: Sequence[Cell]) -> list[Cell]:
    """Cells whose ARM is not the zero-shot judge (every rule but ``none`` needs the fit's means or counts)."""
    return [c for c in cells if c.heads != "none"]
