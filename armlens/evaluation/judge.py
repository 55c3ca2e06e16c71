"""The one interface every judge has (:class:`Judge`: ``fit(few_shot, select)`` then ``score_pairs(pairs)``) and
the settings they share (:class:`JudgeConfig`).

A pair is correct iff ``score(chosen) > score(rejected)``, strictly (a tie is wrong). Every judge is pointwise: a
response's score does not depend on the other response of its pair. The judges themselves are in
:mod:`armlens.evaluation.output_judges`, :mod:`armlens.evaluation.activation_judges` and
:mod:`armlens.evaluation.arm_judges`; :mod:`armlens.evaluation.baselines` lists them by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from armlens import config as C
from armlens import model as M
from armlens import rules as R
from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError, ModelMismatchError, NotFittedError
from armlens.io import read_tensors, to_json, write_tensors
from armlens.patching import HeadMask, Means
from armlens.prompts import (
    CRITERIA,
    ORACLE_CRITERIA,
    Example,
    JudgeTemplate,
    Routing,
    criterion_for,
    examples_from_pairs,
    scalar_prompt,
)
from armlens.rm import ARMConfig
from armlens.scoring import ScoreKind
from armlens.typing import Model

logger = logging.getLogger(__name__)

PairScores = tuple[Float[Tensor, " n_pairs"], Float[Tensor, " n_pairs"]]

ARM_SHARED: tuple[str, ...] = ("template", "criterion", "routing", "score", "batch_size", "seed")
"""The :class:`~armlens.rm.ARMConfig` fields a :class:`JudgeConfig` sets for its ARM from its own (every method
reads a prompt, a criterion and the answer logits the same way): the judge's are the one source of them."""


@dataclass(frozen=True)
class ICLSettings:
    """few-shot-icl: the demonstrations in its prompt (``JudgeConfig.icl``)."""

    shots: int = 4
    """Demonstrations in the prompt (class-balanced; at most the few-shot examples available)."""
    cache_demos: bool = True
    """Run the demonstrations once as a cached prefix shared by every query (same scores within float tolerance;
    ``False``: one full forward per prompt, in ``batch_size`` batches)."""


@dataclass(frozen=True)
class GenSettings:
    """generative / voting: the decoding of an answer (``JudgeConfig.gen``)."""

    max_new_tokens: int = 6
    """Tokens decoded at most per answer (decoding stops early at a Yes/No token or EOS)."""


@dataclass(frozen=True)
class VotingSettings:
    """voting: the sampled judgements (``JudgeConfig.voting``)."""

    n: int = 5
    """Sampled judgements per prompt."""
    temperature: Annotated[float, R.NON_NEGATIVE] = 0.7
    """Sampling temperature."""


@dataclass(frozen=True)
class ProbeSettings:
    """probe: the features and the logistic regression (``JudgeConfig.probe``)."""

    features: Literal["resid", "hook_z"] = "resid"
    """``resid`` (``blocks.{L}.hook_resid_post`` at the last token) or ``hook_z`` (all heads, concatenated)."""
    layer: Annotated[int | None, R.INDEX_OR_NONE] = None
    """Residual-stream layer (``None``: the middle layer, ``n_layers // 2``)."""
    c: float = 1.0
    """Inverse L2 regularisation strength of the logistic regression."""


@dataclass(frozen=True)
class SteeringSettings:
    """steering: where and how strongly the mean-difference vector is added (``JudgeConfig.steering``)."""

    layers: Annotated[tuple[int, ...] | None, R.INDICES_OR_NONE] = None
    """Candidate layers (``None``: the middle layer only); several are chosen between on the selection set."""
    coefs: tuple[float, ...] = (1.0,)
    """Candidate multipliers of the mean-difference vector (0 gives the zero-shot judge)."""
    positions: Literal["last", "all"] = "last"
    """Add the vector at the last (read) position only, or at every position."""


@dataclass(frozen=True)
class SAVsSettings:
    """savs: the voting heads (``JudgeConfig.savs``)."""

    top_k: int = 20
    """Voting heads (at most all heads)."""
    score: Literal["vote", "margin"] = "vote"
    """Share of Yes votes (the SAVs rule) or the mean cosine margin of the voting heads."""


@dataclass(frozen=True)
class HeadSettings:
    """random-heads / topk-heads: the heads patched (``JudgeConfig.head``)."""

    count: int | None = None
    """Heads patched (``None``: REINFORCE's prior expected count, ``sigmoid(arm.reinforce.init_logit) * n_layers *
    n_heads``, rounded)."""


@dataclass(frozen=True)
class JudgeConfig:
    """Settings shared by every judge, then each method's own in a section per method (``icl``, ``gen``, ``voting``,
    ``probe``, ``steering``, ``savs``, ``head``). Recorded with every result, the sections flat (``icl_shots``, ...:
    :attr:`flat_sections`)."""

    template: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge's words and field truncation (every prompt-based method uses the same)."""
    criterion: str | None = None
    """Criterion text for every pair; ``None``: per dataset/section (``armlens.prompts.CRITERIA``)."""
    routing: Routing = "label-free"
    """With ``criterion=None``: ``label-free`` criteria (the default), or ``oracle`` routing by a subset name that
    carries the gold label (XSTest's should-respond / should-refuse): an ablation, never a headline."""
    score: ScoreKind = "prob"
    """Reading of the answer logits for the token-probability judges (ARM included): prob, normalized, logit_diff."""
    batch_size: int = 1
    """Prompts per forward pass (1 on CPUs: see ``ARMConfig.batch_size``; raise it on a GPU)."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed of every random choice (demonstration draw, sampling, probe, ARM)."""
    show_progress: bool = False
    """tqdm bars while fitting and scoring."""
    arm: ARMConfig = field(default_factory=ARMConfig)
    """The ARM's own settings. Its template, criterion, routing, score, batch size and seed (:data:`ARM_SHARED`) are
    the fields above (:meth:`arm_config`): leave them at ``ARMConfig()``'s defaults here; another value is refused."""
    icl: ICLSettings = field(default_factory=ICLSettings)
    """few-shot-icl's settings."""
    gen: GenSettings = field(default_factory=GenSettings)
    """The decoding of the generative and voting judges."""
    voting: VotingSettings = field(default_factory=VotingSettings)
    """voting's settings (its decoding is ``gen``'s)."""
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    """probe's settings."""
    steering: SteeringSettings = field(default_factory=SteeringSettings)
    """steering's settings."""
    savs: SAVsSettings = field(default_factory=SAVsSettings)
    """savs' settings."""
    head: HeadSettings = field(default_factory=HeadSettings)
    """The settings of random-heads and topk-heads."""

    flat_sections: ClassVar[tuple[str, ...]] = ("icl", "gen", "voting", "probe", "steering", "savs", "head")
    """The per-method sections, written flat by :meth:`to_dict` (``icl.shots`` as ``icl_shots``, ...: the layout
    every ``config.json`` and unit key has had) and read back in either form by :meth:`from_dict`
    (:func:`armlens.config.flat_sections`)."""

    def __post_init__(self) -> None:
        # A shared field set on ``arm`` would be replaced by the judge's without a word: refuse it. Only a value other
        # than ARMConfig()'s counts as set (config.json files hold the defaults there, and per-seed judges change
        # ``seed`` alone).
        default = ARMConfig()
        clash = [f"arm.{k}={getattr(self.arm, k)!r} (the judge's {k} is {getattr(self, k)!r})" for k in ARM_SHARED
                 if getattr(self.arm, k) != getattr(default, k) and getattr(self.arm, k) != getattr(self, k)]
        if clash:
            raise BadInputError(f"JudgeConfig sets {', '.join(clash)}: the ARM takes these from the judge's own "
                                f"fields; set them there (--judge.X, not --judge.arm.X)")

    def arm_config(self) -> ARMConfig:
        """The :class:`~armlens.rm.ARMConfig` the ARM methods fit: ``arm`` with its shared fields (:data:`ARM_SHARED`:
        template, criterion, routing, score, batch size, seed) set to this config's, so the ARM reads its prompts and
        answer logits exactly as the other judges do."""
        return dataclasses.replace(self.arm, **{k: getattr(self, k) for k in ARM_SHARED})

    def to_dict(self) -> dict[str, Any]:
        return C.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeConfig:
        return C.from_dict(cls, d)


class Judge:
    """A pairwise judge: ``fit`` on labelled pairs (a no-op for zero-shot methods), then ``score_pairs``.

    ``info()`` returns what ``fit`` chose (heads, layer, demonstrations, ...); ``last_stats`` holds counters of the
    latest ``score_pairs`` call (e.g. unparseable answers), both JSON-serialisable.
    """

    name: ClassVar[str] = "judge"
    reads: ClassVar[str] = ""
    """One line: what the method reads (shown in reports)."""
    trains: ClassVar[bool] = False
    """Whether ``fit`` uses the labelled pairs."""
    settings: ClassVar[tuple[str, ...]] = ()
    """The :class:`JudgeConfig` settings that can change this method's scores (cached results are keyed by them): a
    shared field (``"seed"``) or one field of a method's section (``"icl.shots"``). Fields, not whole sections, so that
    a setting added to a section later (at its old behaviour) changes no key, and one that cannot change the scores
    (``icl.cache_demos``) is left out."""
    mask_based: ClassVar[bool] = False
    """Whether the method is the zero-shot judge with a patch of last-token hook_z (:meth:`patch_for`), so that it
    can be scored as a branch over a prefix shared with every other such method (:meth:`in_branch_pass` also admits
    judges that add a vector at the last token, :meth:`resid_for`, or read activations there, :meth:`branch_reads`)."""
    fit_suffix: ClassVar[str] = ".safetensors"
    """The suffix of this judge's fit cache file (:meth:`fit`)."""
    fit_state: ClassVar[tuple[str, ...]] = ()
    """The attributes that hold what :meth:`_fit` learned (tensors, numbers, strings): what the fit cache of a judge
    without its own :meth:`_save_fit` keeps, and what :meth:`state_digest` hashes."""

    @classmethod
    def key_settings(cls, config: JudgeConfig) -> dict[str, Any]:
        """The values of :attr:`settings` in ``config``, JSON-ready, each under the key ``config.json`` has it
        (``icl.shots`` as ``icl_shots``: the keys of the results written before the sections stay the same)."""
        d = config.to_dict()
        keys = [C.serial_key(JudgeConfig, path) for path in cls.settings]
        out = {k: d[k] for k in keys}
        if "criterion" in keys and d["criterion"] is None:  # per-pair criteria: their routing and texts
            table = ORACLE_CRITERIA if d["routing"] == "oracle" else CRITERIA
            out["criteria"] = {"routing": d["routing"], "texts": dict(table)}
        return out

    def __init__(self, model: Model | None, config: JudgeConfig | None = None):
        self.model = model
        self.config = config or JudgeConfig()
        self.fitted = not self.trains
        self.fit_info: dict[str, Any] = {}
        self.last_stats: dict[str, Any] = {}
        self.memo_folder: Path | None = None
        """A seed-free judge that keeps what it computed per model (``generative``, ``implicit``) also keeps it in
        this folder, read back after a stop (:func:`armlens.evaluation.output_judges.per_model_memo`); the evaluation
        runner sets it for its seed-free jobs."""

    def fit(self, few_shot: Sequence[PreferencePair], select: Sequence[PreferencePair] | None = None, *,
            cache: str | Path | None = None) -> Judge:
        """Learn from ``few_shot`` (and ``select``, default: ``few_shot``). Returns ``self``.

        ``cache``: a file for what the fit learned (:meth:`_save_fit`: the ARM's, minutes each, and the
        :attr:`fit_state` of the judges that have one): read instead of fitting when it exists and loads on this model
        from these pools, written after a fit otherwise, so that a resumed run scores with the very judge it started
        with, not a refit that may differ in the last bits. The caller names it after everything the fit depends on
        (:func:`armlens.evaluation.keys.fit_key`); an unreadable file is refitted over, with a warning.
        """
        if self.trains:
            if not few_shot:
                raise BadInputError(f"{self.name}: fit() needs at least one few-shot pair")
            few, sel = list(few_shot), list(select) if select else list(few_shot)
            path = None if cache is None else Path(cache)
            if path is not None and path.is_file() and self._load_fit_file(path, few, sel):
                self.fit_info["fit_cache"] = path.name
            else:
                self._fit(few, sel)
                if path is not None:
                    self._save_fit(path, few, sel)
            self.fit_info["few_shot_hash"] = pairs_hash(few)
        self.fitted = True
        return self

    def _load_fit_file(self, path: Path, few_shot: list[PreferencePair], select: list[PreferencePair]) -> bool:
        try:
            return self._load_fit(path, few_shot, select)
        except (OSError, ValueError, KeyError) as e:
            logger.warning("%s: cached fit %s not used (%s); fitting again", self.name, path, e)
            return False

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        raise NotImplementedError

    def _save_fit(self, path: Path, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        """Write what :meth:`_fit` learned to ``path`` (atomically): its :attr:`fit_state` in a safetensors file,
        with the model, settings and pools it was fitted on; judges without one write nothing."""
        if not self.fit_state:
            return
        tensors, values = self._state()
        write_tensors(path, tensors, {
            "method": self.name, "model": M.model_fingerprint(self.model), "settings": self._settings_json(),
            "few_shot_hash": pairs_hash(few_shot), "select_hash": pairs_hash(select), "values": values,
            "fit_info": self.fit_info})

    def _load_fit(self, path: Path, few_shot: list[PreferencePair], select: list[PreferencePair]) -> bool:
        """Restore a fit written by :meth:`_save_fit` from these pools; False where this judge keeps no fit files,
        a ValueError where the file was fitted otherwise (another model, settings or pools)."""
        if not self.fit_state:
            return False
        tensors, meta = read_tensors(path, "fit file")
        if meta.get("method") != self.name:
            raise BadInputError(f"it holds a {meta.get('method')!r} fit, not {self.name!r}")
        shape, other = M.fingerprint_differences(meta["model"], M.model_fingerprint(self.model))
        if shape or other:
            raise ModelMismatchError(f"it was fitted on another model ({'; '.join(shape + other)} differ)")
        if meta["settings"] != self._settings_json():
            raise BadInputError("it was fitted with other settings")
        for name, pairs in (("few_shot", few_shot), ("select", select)):
            if meta.get(f"{name}_hash") != pairs_hash(pairs):
                raise BadInputError(f"it was fitted on other {name.replace('_', '-')} pairs")
        missing = [n for n in self.fit_state if n not in tensors and n not in meta["values"]]
        if missing:
            raise BadInputError(f"it lacks {', '.join(missing)}")
        for name in self.fit_state:
            setattr(self, name, tensors[name] if name in tensors else meta["values"][name])
        self.fit_info.update(meta.get("fit_info", {}))
        return True

    def _settings_json(self) -> Any:
        return json.loads(to_json(self.key_settings(self.config), None))

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The :attr:`fit_state` split into tensors and JSON values."""
        tensors, values = {}, {}
        for name in self.fit_state:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                tensors[name] = value.detach().contiguous().cpu()
            else:
                values[name] = value
        return tensors, values

    def state_digest(self) -> str | None:
        """A hash of what the fit learned (:attr:`fit_state`), ``""`` for a judge that learns nothing, ``None`` for
        one that learns but names no state: the branch pass keys its saved parts by it
        (:func:`armlens.evaluation.branches.score_mask_judges`)."""
        if not self.trains:
            return ""
        if not self.fit_state:
            return None
        tensors, values = self._state()
        h = hashlib.blake2b(to_json(values, None).encode(), digest_size=16)
        for name in sorted(tensors):
            t = tensors[name]
            h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def score_pairs(self, pairs: Sequence[PreferencePair]) -> PairScores:
        """Scores of (chosen, rejected) for each pair: float tensors of shape ``[n_pairs]``."""
        if not pairs:
            raise BadInputError(f"{self.name}: score_pairs() got no pairs")
        scores = self.score_responses([(p, r) for p in pairs for r in (p.chosen, p.rejected)])
        return scores[0::2].contiguous(), scores[1::2].contiguous()

    def score_responses(self, items: Sequence[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        """Score of each ``(pair, response)``: the response judged in the pair's context (prompt, criterion).

        Every method here is pointwise (a response's score does not depend on the other response of its pair), so
        a pair whose rejected response changed needs only that response re-scored (the bias suite relies on it).
        """
        if not items:
            raise BadInputError(f"{self.name}: nothing to score")
        if not self.fitted:
            raise NotFittedError(f"the {self.name} judge is not fitted: call fit() first")
        self.last_stats = {}
        return self._score(list(items))

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        raise NotImplementedError

    @classmethod
    def seed_free(cls, config: JudgeConfig) -> bool:
        """Whether this method's scores depend on nothing a seed changes (it learns nothing and reads no seed), so
        that the units of every seed may be run by one process, one after the other, sharing what it keeps."""
        return not cls.trains and "seed" not in cls.settings

    @classmethod
    def in_branch_pass(cls, config: JudgeConfig) -> bool:
        """Whether this method, with ``config``, is scored in the shared branch pass
        (:func:`armlens.evaluation.branches.score_mask_judges`)."""
        return cls.mask_based

    def patch_for(self, pair: PreferencePair) -> tuple[Means | None, HeadMask | None] | None:
        """For a mask-based judge, the ``(means, mask)`` written into last-token hook_z of ``pair``'s zero-shot judge
        prompts (``(None, None)``: unpatched); ``None`` for every other judge."""
        return None

    def resid_for(self, pair: PreferencePair) -> tuple[int, Tensor] | None:
        """For a branch-pass judge that steers: ``(layer, vector)`` added to the last token's
        ``blocks.{layer}.hook_resid_post``; ``None``: nothing added."""
        return None

    def weights_for(self, pair: PreferencePair) -> Tensor | None:
        """For a mask-based judge with soft head weights (an ARM fitted with ``selector="soft"``): the weight of each
        head of :meth:`patch_for`'s mask, which then gets ``z + w (means - z)``; ``None``: the plain overwrite."""
        return None

    def branch_reads(self) -> list[str]:
        """For a branch-pass judge that reads activations: the hooks read at the unpatched last token."""
        return []

    def score_reads(self, reads: dict[str, Tensor]) -> Float[Tensor, " n"]:
        """Scores from :meth:`branch_reads`' activations, ``{hook: [n, ...]}`` in the order of the items asked."""
        raise NotImplementedError(f"{self.name} reads no activations in the branch pass")

    def info(self) -> dict[str, Any]:
        return {"method": self.name, "reads": self.reads, **self.fit_info}

    # helpers shared by the prompt-based judges

    def _criterion(self, pair: PreferencePair) -> str:
        return self.config.criterion if self.config.criterion is not None else criterion_for(pair, self.config.routing)

    def _queries(self, items: Sequence[tuple[PreferencePair, str]]) -> list[Example]:
        """Unlabelled scalar questions, one per ``(pair, response)``."""
        return [Example(p.prompt, r, None, self._criterion(p), tuple(p.images)) for p, r in items]

    def _examples(self, pairs: Sequence[PreferencePair]) -> list[Example]:
        """Labelled scalar examples (chosen: Yes, rejected: No), interleaved."""
        return examples_from_pairs(pairs, self.config.criterion, self.config.routing)

    def _prompts(self, examples: Sequence[Example]) -> list[str]:
        return [scalar_prompt(self.model, e, self.config.template) for e in examples]
