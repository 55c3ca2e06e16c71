"""Stage 2, continuous: a learned weight per head instead of a binary head set (soft head selection).

Context
-------
REINFORCE (:mod:`armlens.selection`) chooses a *set* of heads: each selected head's last-token hook_z is overwritten by
its few-shot mean ``mu``. The continuous alternative (soft head selection for task vectors, arXiv 2507.20906) gives
every head a weight ``w`` in [0, 1] and writes ``z + w (mu - z)``: ``w = 1`` is the plain overwrite, ``w = 0`` leaves
the head alone, and anything between mixes the two. The weights are learned by gradient descent on the same training
units REINFORCE uses (a (chosen, rejected) pair's ``-log sigmoid(log P_c(Yes) - log P_r(Yes))``, or an example's
cross-entropy of its gold answer), with an L1 penalty ``l1 * sum(w)`` that buys sparsity: the larger ``l1``, the fewer
heads keep a large weight. Sweeping ``l1`` gives a continuous accuracy-sparsity curve beside REINFORCE's sets
(:mod:`armlens.analysis.frontier`).

Intuition
---------
``w = sigmoid(theta)``, one free logit per head. The patch is differentiable in ``w`` (``torch.lerp``), the model's
weights are never touched, and only the last token changes, so the gradient needs only the last token's forward and
backward pass over each training prompt's cached prefix (:func:`armlens.model.run_cached_branches` with
``differentiable=True``): a training step costs one single-token forward and backward per prompt, where a REINFORCE
step costs one single-token forward of K branches per prompt. Measured on SmolLM2-135M on 2 busy CPU cores (LLMBar
prompts of ~300 tokens): a pair's forward and backward took 2 to 7 s against 1.3 s for its forward alone, and a
REINFORCE step (one pair, 32 masks) 3.7 s; the prefix's keys and values are copied and, on grouped-query models,
repeated per query head in every run, which dominates at this size.

After training, weights below ``min_weight`` are set to exactly 0 (their heads are not written); the fitted ARM
scores with ``z + w (mu - z)`` at the remaining heads everywhere it scores (the branch pass included). Two readings of
"how many heads": the heads with ``w > 0.5`` and the L1 budget spent, ``sum(w)`` (:func:`effective_heads`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens import rules as R
from armlens.errors import BadInputError
from armlens.patching import row_patch_hooks
from armlens.prompts import Example, JudgeTemplate
from armlens.scoring import answer_loss
from armlens.selection import Objective, SelectionResult, TrainingUnits, start_head_logits, val_due
from armlens.typing import HeadValues, Means, Model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoftConfig:
    """Soft head weights (``ARMConfig.selector = "soft"``): one weight per head in [0, 1], learned by Adam on
    ``sigmoid`` logits with an L1 penalty. Used only by the ``soft`` selector."""

    l1: float = 0.01
    """L1 strength: ``l1 * sum(w)`` is added to the loss (nats per unit of weight: a head at ``w = 1`` costs what one
    selected head costs under ``ReinforceConfig.sparsity`` of the same value). 0: no penalty."""
    steps: int = 100
    """Gradient steps."""
    lr: Annotated[float, R.POSITIVE_FLOAT] = 0.1
    """Adam learning rate on the logits ``theta`` (``w = sigmoid(theta)``)."""
    init_logit: float = -1.0
    """Initial ``theta`` of every head (sigmoid(-1) = 0.27: REINFORCE's prior, as a weight)."""
    batch_units: int = 1
    """Training units (pairs for ``pairwise``, examples for ``answer``) per step, drawn without replacement (1:
    REINFORCE's draw per step; a step then costs about what a REINFORCE step costs)."""
    objective: Objective = "pairwise"
    """``pairwise``: one (chosen, rejected) pair per unit, loss = -log sigmoid(log P_c(Yes) - log P_r(Yes));
    ``answer``: one example per unit, loss = CE of its gold answer (REINFORCE's objectives)."""
    min_weight: float = 0.01
    """Weights below this are set to exactly 0 after training: those heads are not written."""
    val_every: Annotated[int, R.INDEX] = 25
    """Steps between validation readings (0: none); validation needs held-apart examples (``val`` argument)."""

    def __post_init__(self) -> None:
        bad = R.bad_fields(self, counts=("steps", "batch_units"), indices=("val_every",), non_negative=("l1",),
                           positive=("lr",), fractions=("min_weight",), finite=("init_logit",))
        if self.objective not in ("answer", "pairwise"):
            bad.append(f"objective={self.objective!r}")
        if bad:
            raise BadInputError(f"SoftConfig: {', '.join(bad)}: steps and batch_units must be integers >= 1, "
                                "val_every an integer >= 0, l1 a finite number >= 0, lr one > 0, min_weight in [0, 1), "
                                "objective 'answer' or 'pairwise'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_heads(weights: HeadValues) -> dict[str, float]:
    """Two readings of how many heads soft weights use: ``heads_over_half`` (heads with ``w > 0.5``) and
    ``weight_sum`` (``sum(w)``, the L1 budget spent; a hard set of k heads spends k)."""
    w = weights.detach().float()
    return {"heads_over_half": float((w > 0.5).sum()), "weight_sum": float(w.sum())}


class WeightObjective(TrainingUnits):
    """The loss of soft weights on one training unit, differentiable in the weights: each of the unit's prompts runs
    its last token once over its cached prefix (:class:`armlens.model.PrefixPool`) with every head at
    ``z + w (mu - z)``."""

    def __init__(self, model: Model, examples: Sequence[Example], objective: Objective, *, template: JudgeTemplate,
                 pool: M.PrefixPool):
        super().__init__(model, examples, objective, template=template, who="soft-weight fitting")
        self.pool = pool

    def _logits(self, text: str, means: Means, weights: Tensor, grad: bool) -> Float[Tensor, " d_vocab"]:
        cfg = self.model.cfg
        every = torch.ones(1, cfg.n_layers, cfg.n_heads, dtype=torch.bool)
        hooks = row_patch_hooks(self.model, means[None], every, weights[None])
        return M.run_cached_branches(self.model, self.pool[text], 1, hooks, differentiable=grad)[0, 0]

    def loss(self, unit: int, means: Means, weights: HeadValues, *, grad: bool = True) -> Tensor:
        """The unit's loss under ``weights`` (a scalar; with ``grad``, it carries the graph back to ``weights``)."""
        if self.objective == "answer":
            logits = self._logits(self.texts[unit], means, weights, grad)
            return answer_loss(logits[None], self.gold[unit : unit + 1])[0]
        logp = [self._logits(self.texts[2 * unit + j], means, weights, grad).log_softmax(-1)[self.ids.yes]
                for j in (0, 1)]
        return -torch.nn.functional.logsigmoid(logp[0] - logp[1])

    def mean_loss(self, units: Sequence[int], means: Means, weights: HeadValues) -> float:
        """Mean loss over ``units`` (no graph)."""
        w = weights.detach()
        return sum(float(self.loss(u, means, w, grad=False)) for u in units) / max(1, len(units))


def fit_soft_weights(
    model: Model,
    means: Means,
    examples: Sequence[Example],
    config: SoftConfig = SoftConfig(),
    *,
    template: JudgeTemplate = JudgeTemplate(),
    show_progress: bool = True,
    pool: M.PrefixPool | None = None,
    val: Sequence[Example] = (),
    seed: int = 0,
) -> SelectionResult:
    """Learn one weight per head (see the module docstring); ``seed`` draws the training units of each step
    (an ARM passes its own seed). Returns a :class:`SelectionResult` with
    ``method="soft"``, ``probs`` = the final weights (those below ``min_weight`` at 0), ``mask`` = the heads with a
    weight above 0, ``prob_trajectory`` = the weights after each step, ``losses`` = each step's mean unit loss
    (penalty excluded), ``expected_heads`` = ``sum(w)`` after each step and ``val_losses`` on ``val``."""
    pool = pool if pool is not None else M.PrefixPool(model)
    obj = WeightObjective(model, examples, config.objective, template=template, pool=pool)
    val_obj = (WeightObjective(model, val, config.objective, template=template, pool=pool)
               if val and config.val_every > 0 else None)
    means = means.detach().float()
    gen = torch.Generator().manual_seed(seed)
    theta, opt, result = start_head_logits(model, config.init_logit, config.lr, "soft")
    trajectory = []
    t0 = time.perf_counter()
    bar = tqdm(range(config.steps), desc="soft head weights", disable=not show_progress, leave=False)
    for step in bar:
        units = torch.randperm(obj.n_units, generator=gen)[: config.batch_units].tolist()
        total = torch.zeros_like(theta)
        task = 0.0
        for u in units:  # one unit's graph alive at a time
            loss = obj.loss(u, means, torch.sigmoid(theta)) / len(units)
            total += torch.autograd.grad(loss, theta)[0]
            task += float(loss.detach())
        penalty = config.l1 * torch.sigmoid(theta).sum()
        total += torch.autograd.grad(penalty, theta)[0]
        opt.zero_grad()
        theta.grad = total
        opt.step()
        w = torch.sigmoid(theta).detach()
        trajectory.append(w.clone())
        result.losses.append(task)
        result.expected_heads.append(float(w.sum()))
        done = step + 1
        if val_obj is not None and val_due(done, config.val_every, config.steps):
            result.val_losses.append((done, val_obj.mean_loss(range(val_obj.n_units), means, w)))
        bar.set_postfix(loss=f"{task:.3f}", weight=f"{result.expected_heads[-1]:.1f}")
    result.timings["steps"] = time.perf_counter() - t0
    weights = torch.sigmoid(theta).detach()
    weights = torch.where(weights < config.min_weight, 0.0, weights)
    result.probs = weights
    result.prob_trajectory = torch.stack(trajectory) if trajectory else weights.unsqueeze(0)
    result.mask = weights > 0
    result.timings["prefix_pool_misses"] = float(pool.misses)
    logger.debug("soft head weights: %s", effective_heads(weights))
    return result
