"""Stage 2: which heads to patch. REINFORCE over Bernoulli head masks, and the alternatives it is compared with.

Context
-------
Patching every head makes every score tie; patching random heads falls to chance; the heads must be chosen. The
reference (MTV) learns an independent Bernoulli per head, ``p = clamp(sigmoid(theta), 1e-3, 1 - 1e-3)``, ``theta``
initialised to -1. Each step draws one training example (zero-shot judge prompt + gold answer), samples K masks,
runs the model once per mask with the masked heads' last-token hook_z overwritten by the means, and takes
``loss_k = CE(last-token logits, gold answer token)``. With the advantage ``(loss_k - mean) / (std + 1e-3)`` it
minimises ``sum_k advantage_k * log pi(mask_k)`` with Adam (lr 0.1). The final head set is the best of 10 masks
sampled from the learned probabilities, judged by mean loss on up to 50 training examples.

The fast path
-------------
Only the last position changes under any mask, so each example's prefix (all tokens but the last) is run once and
its key/value cache is shared by the K masks, which then cost a single batched one-token forward
(:func:`mask_losses`). :func:`mask_losses_reference` is the reference-style loop (one full forward per mask, batch
1), kept for the exactness tests and ``armlens bench``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens import rules as R
from armlens.errors import BadInputError
from armlens.patching import patch_branch_hooks, patch_hooks
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.scoring import answer_loss, score_from_logits
from armlens.typing import HeadMask, Masks, Means, Model

logger = logging.getLogger(__name__)

SelectorName = Literal["reinforce", "all", "none", "random", "topk_prob", "topk_attribution", "soft"]


Objective = Literal["answer", "pairwise"]


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE head selection. The policy and optimiser follow the reference (MTV); steps, prior, sparsity and the
    objective are options whose defaults come from the sweep in ``docs/defaults.md``."""

    steps: int = 100
    """Optimisation steps (MTV used 600; its reward-scoring variant 200). The sweep's choice: the cheapest count not
    significantly worse than the best (docs/defaults.md)."""
    k_masks: int = 32
    """Masks sampled per step."""
    lr: Annotated[float, R.POSITIVE_FLOAT] = 1.0
    """Adam learning rate on the logits theta (the reference's: 0.1). The sweep's choice (round C, docs/defaults.md):
    at 1.0 the policy settles within the default steps on every development dataset, at no loss of accuracy; at 0.1
    it is still moving at 300 steps."""
    init_logit: float = -1.0
    """Prior: initial theta for every head (sigmoid(-1) = 0.27 of the heads expected at the start)."""
    sparsity: Annotated[float, R.NON_NEGATIVE] = 0.0
    """Penalty per selected head added to every mask's loss (nats; 0: none), in training and in the final choice."""
    objective: Objective = "pairwise"
    """``pairwise`` (the sweep's choice): one (chosen, rejected) pair per step under the same K masks, loss =
    -log sigmoid(log P_c(Yes) - log P_r(Yes)), the paper's "ability to distinguish preferences". ``answer``: one
    example per step, loss = CE of its gold answer (the reference's)."""
    final: Literal["sampled", "likely"] = "sampled"
    """The final choice: ``sampled`` (the reference: the best of ``n_final_samples`` masks drawn from the learned
    probabilities, judged on training examples) or ``likely`` (the policy's most likely mask, every head with
    P(select) > 0.5; the mask the validation curve scores)."""
    n_final_samples: int = 10
    """Masks sampled from the learned probabilities for the final choice."""
    n_final_eval: int = 50
    """Training examples (pairs for ``pairwise``) the final candidates are judged on, at most."""
    val_every: Annotated[int, R.INDEX] = 25
    """Steps between validation readings (0: none); validation needs held-apart examples (``val`` argument)."""
    checkpoints: tuple[int, ...] = ()
    """Steps after which the final choice is also made and recorded (free step-count ablation: the policy after S of
    N steps is the policy of an S-step run with the same seed, and each choice draws from its own seeded stream)."""
    prefix_cache_mb: Annotated[float, R.NON_NEGATIVE] = 1500.0
    """Memory for the training prompts' prefix key/value caches (LRU; ~46 KB per token on the default model)."""
    mask_chunk: int = 64
    """Masks evaluated per batched one-token forward (bounds memory of the widened cache)."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed for example draws and mask sampling."""

    def __post_init__(self) -> None:
        bad = R.bad_fields(self, counts=("steps", "k_masks", "n_final_samples", "n_final_eval", "mask_chunk"),
                           positive=("lr",), non_negative=("sparsity", "prefix_cache_mb"))
        if bad:
            raise BadInputError(f"ReinforceConfig: {', '.join(bad)}: steps, k_masks, n_final_samples, n_final_eval and "
                                "mask_chunk must be integers >= 1, lr a finite number > 0, sparsity and "
                                "prefix_cache_mb finite numbers >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelectionResult:
    """A chosen head set and, for REINFORCE, the history that produced it (kept for analysis)."""

    mask: HeadMask
    """The selected heads ``[n_layers, n_heads]``."""
    method: str
    """Selector name."""
    probs: Float[Tensor, "n_layers n_heads"] | None = None
    """Final selection probabilities (REINFORCE) or the scores ranked (top-k selectors)."""
    prob_trajectory: Float[Tensor, "steps n_layers n_heads"] | None = None
    """Selection probabilities after each step."""
    losses: list[float] = field(default_factory=list)
    """Mean loss over the K masks of each step (training loss)."""
    expected_heads: list[float] = field(default_factory=list)
    """Expected number of selected heads (sum of probabilities) after each step."""
    entropy: list[float] = field(default_factory=list)
    """Policy entropy (nats, summed over heads) after each step: it falls as the policy converges."""
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean loss of the policy's most likely mask, p > 0.5, on the held-apart validation examples)."""
    final_candidate_losses: list[float] = field(default_factory=list)
    """Mean training loss of each final candidate mask (the lowest was kept)."""
    checkpoint_masks: dict[int, HeadMask] = field(default_factory=dict)
    """Final choice made after each of ``config.checkpoints`` steps."""
    timings: dict[str, float] = field(default_factory=dict)
    """Wall seconds per phase (``steps``, ``final_choice``), for profiles."""

    @property
    def n_heads(self) -> int:
        return int(self.mask.sum())


# ---------------------------------------------------------------------------------------------------- policy


def policy_probs(theta: Float[Tensor, "n_layers n_heads"]) -> Float[Tensor, "n_layers n_heads"]:
    return torch.sigmoid(theta).clamp(1e-3, 1 - 1e-3)


def log_prob(masks: Masks, probs: Float[Tensor, "n_layers n_heads"]) -> Float[Tensor, " k"]:
    """log pi(mask) under independent Bernoullis."""
    m = masks.float()
    return (m * probs.log() + (1 - m) * (1 - probs).log()).sum((-2, -1))


def policy_entropy(probs: Float[Tensor, "n_layers n_heads"]) -> float:
    """Entropy of the independent-Bernoulli policy, summed over heads (nats)."""
    return float(-(probs * probs.log() + (1 - probs) * (1 - probs).log()).sum())


def reinforce_loss(losses: Float[Tensor, " k"], masks: Masks, probs: Float[Tensor, "n_layers n_heads"]) -> Tensor:
    """``sum_k advantage_k * log pi(mask_k)``, advantage = normalised loss (lower loss -> pushed up)."""
    adv = (losses - losses.mean()) / (losses.std(unbiased=False) + 1e-3)
    return (adv.detach() * log_prob(masks, probs)).sum()


# ---------------------------------------------------------------------------------------------------- losses per mask


def mask_logits(
    model: Model, cache: M.PrefixCache, means: Means, masks: Masks, chunk: int = 64
) -> Float[Tensor, "batch k d_vocab"]:
    """Last-token logits of every prompt in ``cache`` under every mask (fast path: one-token forwards)."""
    out = []
    for start in range(0, masks.shape[0], chunk):
        part = masks[start : start + chunk]
        out.append(M.run_cached_branches(model, cache, part.shape[0], patch_branch_hooks(model, means, part)))
    return torch.cat(out, dim=1)


def mask_losses(
    model: Model, cache: M.PrefixCache, means: Means, masks: Masks, gold_ids: Int[Tensor, " batch"], chunk: int = 64
) -> Float[Tensor, "batch k"]:
    """CE loss of each prompt's gold answer under each mask, over a shared prefix cache."""
    logits = mask_logits(model, cache, means, masks, chunk)
    b, k, v = logits.shape
    return answer_loss(logits.reshape(b * k, v), gold_ids.repeat_interleave(k)).view(b, k)


def mask_losses_reference(
    model: Model, text: str, means: Means, masks: Masks, gold_id: int
) -> Float[Tensor, " k"]:
    """Reference-style loop: one full forward per mask, batch 1 (slow; for tests and benchmarks)."""
    tokens, attn = M.tokenize(model, [text])
    out = []
    for mask in masks:
        hooks = patch_hooks(model, means, mask) if bool(mask.any()) else []
        logits = M.run_last_logits(model, tokens, attn, hooks)
        out.append(answer_loss(logits, torch.tensor([gold_id]))[0])
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------- REINFORCE


def check_pairwise_examples(examples: Sequence[Example]) -> None:
    """Raise a clear error unless ``examples`` are (chosen: Yes, rejected: No) siblings of one prompt, in that order:
    what the ``pairwise`` objective trains on."""
    ok = len(examples) % 2 == 0 and all(
        examples[i].label and not examples[i + 1].label and examples[i].prompt == examples[i + 1].prompt
        for i in range(0, len(examples), 2))
    if not ok:
        raise BadInputError("the pairwise objective (the default) needs examples as (chosen: Yes, rejected: No) "
                            "siblings of one prompt, in that order (armlens.prompts.examples_from_pairs gives them so; "
                            "fit on PreferencePairs); for unpaired labelled examples set "
                            "ReinforceConfig(objective='answer')")


class TrainingUnits:
    """A head selector's labelled training examples as the units it learns from: an example (``answer``) or a
    (chosen, rejected) pair of consecutive examples (``pairwise``), each with its judge prompt and gold answer id.
    REINFORCE (:class:`MaskObjective`) and the soft head weights (:class:`armlens.soft.WeightObjective`) share it;
    ``who`` names the selector in its errors."""

    def __init__(self, model: Model, examples: Sequence[Example], objective: Objective, *, template: JudgeTemplate,
                 who: str):
        if not examples:
            raise BadInputError(f"{who} needs at least one labelled training example")
        if any(e.label is None for e in examples):
            raise BadInputError(f"{who}: every training example must be labelled")
        if objective not in ("answer", "pairwise"):
            raise BadInputError(f"unknown {who} objective {objective!r}; choose 'answer' or 'pairwise'")
        if objective == "pairwise":
            check_pairwise_examples(examples)
        self.model, self.objective = model, objective
        self.ids = AnswerIds.of(model, template)
        self.texts = [scalar_prompt(model, e, template) for e in examples]
        self.gold = torch.tensor([self.ids.yes if e.label else self.ids.no for e in examples])
        self.n_units = len(examples) // 2 if objective == "pairwise" else len(examples)


class MaskObjective(TrainingUnits):
    """Loss of each of K head masks on one training *unit*: an example (``answer``: CE of its gold answer) or a
    (chosen, rejected) pair (``pairwise``: -log sigmoid of the Yes log-probability gap), plus the sparsity penalty.
    Every unit's prompts run through the prefix pool, so a mask costs one single-token branch."""

    def __init__(self, model: Model, examples: Sequence[Example], objective: Objective, *, template: JudgeTemplate,
                 pool: M.PrefixPool, chunk: int = 64, sparsity: float = 0.0):
        super().__init__(model, examples, objective, template=template, who="REINFORCE")
        self.pool, self.chunk, self.sparsity = pool, chunk, sparsity

    def losses(self, unit: int, means: Means, masks: Masks) -> Float[Tensor, " k"]:
        """Loss of every mask on one unit (penalty included)."""
        if self.objective == "answer":
            raw = mask_losses(self.model, self.pool[self.texts[unit]], means, masks, self.gold[unit : unit + 1],
                              self.chunk)[0]
        else:
            logp = [mask_logits(self.model, self.pool[self.texts[2 * unit + j]], means, masks, self.chunk)[0]
                    .log_softmax(-1)[:, self.ids.yes] for j in (0, 1)]
            raw = -torch.nn.functional.logsigmoid(logp[0] - logp[1])
        return raw.cpu() + self.sparsity * masks.sum((-2, -1)).float()

    def mean_losses(self, units: Sequence[int], means: Means, masks: Masks) -> Float[Tensor, " k"]:
        """Mean loss of every mask over ``units``."""
        total = torch.zeros(masks.shape[0])
        for u in units:
            total += self.losses(u, means, masks).cpu()
        return total / max(1, len(units))


def likely_mask(probs: Float[Tensor, "n_layers n_heads"]) -> HeadMask:
    """The policy's most likely mask: every head with P(select) > 0.5."""
    return probs > 0.5


def final_choice(
    objective: MaskObjective, means: Means, probs: Float[Tensor, "n_layers n_heads"], config: ReinforceConfig,
    step: int, *, show_progress: bool = False,
) -> tuple[HeadMask, list[float]]:
    """Best of ``n_final_samples`` masks drawn from ``probs``, by mean loss on up to ``n_final_eval`` units.

    Draws from its own stream seeded by (seed, step), so the choice after S steps of a longer run equals the choice
    of an S-step run with the same seed. With ``config.final == "likely"``: the heads with ``probs > 0.5``."""
    if config.final == "likely":
        return likely_mask(probs), []
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    candidates = torch.bernoulli(probs.expand(config.n_final_samples, -1, -1), generator=gen).bool()
    units = torch.randperm(objective.n_units, generator=gen)[: config.n_final_eval].tolist()
    it = tqdm(units, desc="choosing final mask", disable=not show_progress, leave=False)
    mean_losses = objective.mean_losses(list(it), means, candidates)
    return candidates[int(mean_losses.argmin())].clone(), mean_losses.tolist()


def start_head_logits(model: Model, init_logit: float, lr: float, method: str,
                      ) -> tuple[Float[Tensor, "n_layers n_heads"], torch.optim.Adam, SelectionResult]:
    """What a loop that learns one logit per head starts from (REINFORCE's policy, the soft weights): the logits at
    ``init_logit`` (with grad), their Adam optimiser at ``lr``, and the empty :class:`SelectionResult` it fills."""
    cfg = model.cfg
    theta = torch.full((cfg.n_layers, cfg.n_heads), float(init_logit), requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    return theta, opt, SelectionResult(mask=torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool), method=method)


def val_due(done: int, every: int, steps: int) -> bool:
    """Whether a head-learning loop scores its held-apart examples after step ``done`` (every ``every`` steps,
    and after the last)."""
    return done % every == 0 or done == steps


def reinforce(
    model: Model,
    means: Means,
    examples: Sequence[Example],
    config: ReinforceConfig = ReinforceConfig(),
    *,
    template: JudgeTemplate = JudgeTemplate(),
    show_progress: bool = True,
    callback: Callable[[int, Float[Tensor, "n_layers n_heads"], float], None] | None = None,
    pool: M.PrefixPool | None = None,
    val: Sequence[Example] = (),
) -> SelectionResult:
    """Learn which heads to patch with REINFORCE; returns the best of ``n_final_samples`` sampled masks.

    ``val``: held-apart labelled examples (same layout as ``examples``) on which the policy's most likely mask is
    scored every ``config.val_every`` steps: the validation curve beside the training loss."""
    pool = pool if pool is not None else M.PrefixPool(model, config.prefix_cache_mb)
    obj = MaskObjective(model, examples, config.objective, template=template, pool=pool, chunk=config.mask_chunk,
                        sparsity=config.sparsity)
    val_obj = (MaskObjective(model, val, config.objective, template=template, pool=pool, chunk=config.mask_chunk,
                             sparsity=config.sparsity) if val and config.val_every > 0 else None)
    gen = torch.Generator().manual_seed(config.seed)
    theta, opt, result = start_head_logits(model, config.init_logit, config.lr, "reinforce")
    trajectory = []
    t0 = time.perf_counter()
    bar = tqdm(range(config.steps), desc="REINFORCE", disable=not show_progress, leave=False)
    for step in bar:
        i = int(torch.randint(obj.n_units, (1,), generator=gen))
        probs = policy_probs(theta)
        masks = torch.bernoulli(probs.detach().expand(config.k_masks, -1, -1), generator=gen).bool()
        losses = obj.losses(i, means, masks)
        opt.zero_grad()
        reinforce_loss(losses, masks, probs).backward()
        opt.step()
        new_probs = policy_probs(theta).detach()
        trajectory.append(new_probs.clone())
        result.losses.append(float(losses.mean()))
        result.expected_heads.append(float(new_probs.sum()))
        result.entropy.append(policy_entropy(new_probs))
        done = step + 1
        if val_obj is not None and val_due(done, config.val_every, config.steps):
            likely = likely_mask(new_probs)[None]
            result.val_losses.append((done, float(val_obj.mean_losses(range(val_obj.n_units), means, likely)[0])))
        if done in config.checkpoints and done != config.steps:
            result.checkpoint_masks[done] = final_choice(obj, means, new_probs, config, done)[0]
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", heads=f"{result.expected_heads[-1]:.1f}")
        if callback is not None:
            callback(step, new_probs, result.losses[-1])
    result.timings["steps"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs = policy_probs(theta).detach()
    result.probs = probs
    result.prob_trajectory = torch.stack(trajectory) if trajectory else probs.unsqueeze(0)
    result.mask, result.final_candidate_losses = final_choice(obj, means, probs, config, config.steps,
                                                              show_progress=show_progress)
    if config.steps in config.checkpoints:
        result.checkpoint_masks[config.steps] = result.mask
    result.timings["final_choice"] = time.perf_counter() - t0
    result.timings["prefix_pool_misses"] = float(pool.misses)
    return result


# ---------------------------------------------------------------------------------------------------- attribution


def single_head_effects(
    model: Model,
    means: Means,
    examples: Sequence[Example],
    *,
    template: JudgeTemplate = JudgeTemplate(),
    chunk: int = 64,
    show_progress: bool = True,
    pool: M.PrefixPool | None = None,
) -> Float[Tensor, "n_layers n_heads"]:
    """Patching effect of each head alone on the judge's Yes-No logit margin, signed towards the gold answer.

    ``effect[l, h] = mean over examples of s_i * (margin with only L{l}H{h} patched - unpatched margin)``, with
    ``s_i = +1`` for Yes-labelled and -1 for No-labelled examples (unlabelled: +1): positive = the head's mean moves
    the judge towards the right answer. Fast path: one prefix per example, all heads as one-hot masks.
    """
    if not examples:
        raise BadInputError("no examples for the patching sweep")
    ids = AnswerIds.of(model, template)
    cfg = model.cfg
    n = cfg.n_layers * cfg.n_heads
    masks = torch.eye(n, dtype=torch.bool).view(n, cfg.n_layers, cfg.n_heads)
    masks = torch.cat([torch.zeros(1, cfg.n_layers, cfg.n_heads, dtype=torch.bool), masks])
    total = torch.zeros(n)
    for ex in tqdm(examples, desc="single-head sweep", disable=not show_progress, leave=False):
        text = scalar_prompt(model, ex, template)
        cache = pool.get(text) if pool is not None else M.prefix_cache(model, *M.tokenize(model, [text]))
        logits = mask_logits(model, cache, means, masks, chunk)[0]
        margin = score_from_logits(logits, ids.yes, ids.no, "logit_diff")
        sign = -1.0 if ex.label is False else 1.0
        total += sign * (margin[1:] - margin[0]).cpu()
    return (total / len(examples)).view(cfg.n_layers, cfg.n_heads)


# ---------------------------------------------------------------------------------------------------- selectors


def top_k_mask(scores: Float[Tensor, "n_layers n_heads"], k: int) -> HeadMask:
    """The ``k`` heads with the highest scores."""
    flat = scores.flatten()
    if not 0 <= k <= flat.numel():
        raise BadInputError(f"top-k needs 0 <= k <= {flat.numel()}, got {k}")
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k).indices] = True
    return mask.view_as(scores)


def random_mask(n_layers: int, n_heads: int, k: int, seed: int = 0) -> HeadMask:
    """``k`` heads drawn uniformly without replacement."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n_layers * n_heads, dtype=torch.bool)
    mask[torch.randperm(n_layers * n_heads, generator=gen)[:k]] = True
    return mask.view(n_layers, n_heads)


def select_heads(
    model: Model,
    means: Means,
    examples: Sequence[Example],
    method: SelectorName = "reinforce",
    *,
    k: int | None = None,
    config: ReinforceConfig = ReinforceConfig(),
    template: JudgeTemplate = JudgeTemplate(),
    reinforce_result: SelectionResult | None = None,
    show_progress: bool = True,
    pool: M.PrefixPool | None = None,
    val: Sequence[Example] = (),
) -> SelectionResult:
    """Choose heads by ``method``: reinforce, all, none, random (k), topk_prob (k, from REINFORCE's probabilities)
    or topk_attribution (k, by single-head patching effect)."""
    cfg = model.cfg
    shape = (cfg.n_layers, cfg.n_heads)
    if method == "reinforce":
        return reinforce(model, means, examples, config, template=template, show_progress=show_progress, pool=pool,
                         val=val)
    if method == "all":
        return SelectionResult(mask=torch.ones(shape, dtype=torch.bool), method=method)
    if method == "none":
        return SelectionResult(mask=torch.zeros(shape, dtype=torch.bool), method=method)
    if method == "soft":
        raise BadInputError("the soft selector learns a weight per head, not a head set: armlens.soft.fit_soft_weights "
                            "(an ARM: ARMConfig(selector='soft'))")
    if k is None:
        raise BadInputError(f"selector {method!r} needs k (the number of heads)")
    if method == "random":
        return SelectionResult(mask=random_mask(*shape, k, seed=config.seed), method=method)
    if method == "topk_prob":
        base = reinforce_result or reinforce(
            model, means, examples, config, template=template, show_progress=show_progress, pool=pool
        )
        assert base.probs is not None
        return SelectionResult(mask=top_k_mask(base.probs, k), method=method, probs=base.probs,
                               prob_trajectory=base.prob_trajectory, losses=base.losses,
                               expected_heads=base.expected_heads)
    if method == "topk_attribution":
        effects = single_head_effects(model, means, examples, template=template, show_progress=show_progress, pool=pool)
        return SelectionResult(mask=top_k_mask(effects, k), method=method, probs=effects)
    raise BadInputError(f"unknown selector {method!r}; choose reinforce, all, none, random, topk_prob, topk_attribution")
