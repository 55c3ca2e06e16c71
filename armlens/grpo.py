"""GRPO with an armlens reward, through TRL's own ``GRPOTrainer`` (the optional ``rl`` extra: ``pip install
armlens[rl]``; trl is imported on first use).

:func:`run_grpo` trains a Hugging Face causal LM (the policy, its own copy of the weights: :func:`load_policy`) on
prompts with one reward function (:mod:`armlens.reward`), and logs per step, besides TRL's own metrics, the
completions' mean length, formatting rate and upbeat-phrase rate (:mod:`armlens.style`): they are passed to TRL as
extra reward functions of weight 0, so TRL computes and logs them (``rewards/{name}/mean``) without training on them.
Each step's log is appended to ``steps.jsonl`` in the output folder.

Per-step logs show what the policy did on its own training prompts. Whether optimising against a reward changed the
policy's style is measured after training, on held-apart prompts: :func:`sample_policy` draws completions from the
initial and the trained policies with the same seeds, and :func:`compare_policies` reports each feature's change
with paired bootstrap intervals over prompts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from armlens.errors import BadInputError
from armlens.reward import as_response, length_reward
from armlens.stats import paired_bootstrap
from armlens.style import FEATURES, is_formatted, is_upbeat, style_features

logger = logging.getLogger(__name__)


def formatted_rate(completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 for a completion with list/markdown formatting, else 0.0 (logged, weight 0)."""
    return [float(is_formatted(as_response(c))) for c in completions]


def upbeat_rate(completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 for a completion with an upbeat or sycophantic phrase, else 0.0 (logged, weight 0)."""
    return [float(is_upbeat(as_response(c))) for c in completions]


def completion_length(completions: Sequence[Any], **_: Any) -> list[float]:
    """The completion's length in characters (logged, weight 0)."""
    return length_reward(completions)


completion_length.__name__ = "length"
formatted_rate.__name__ = "formatted"
upbeat_rate.__name__ = "upbeat"
MONITORS = (completion_length, formatted_rate, upbeat_rate)
"""Features logged per step as weight-0 reward functions."""


def load_policy(name: str | None = None) -> tuple[Any, Any]:
    """A trainable Hugging Face model and its tokenizer (``None``: the embedded default), separate from any bridge the
    reward's judge runs on."""
    import torch

    from armlens.model.sources import DEFAULT_MODEL, load_hf

    hf, tok, _ = load_hf(name or DEFAULT_MODEL, torch.float32, True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return hf, tok


def run_grpo(
    policy: Any,
    tokenizer: Any,
    reward: Any,
    prompts: Sequence[Any],
    out: str | Path,
    *,
    steps: int = 30,
    num_generations: int = 4,
    prompts_per_step: int = 2,
    max_completion_length: int = 48,
    learning_rate: float = 1e-5,
    temperature: float = 1.0,
    beta: float = 0.0,
    seed: int = 0,
    conversational: bool | None = None,
    columns: dict[str, Sequence[Any]] | None = None,
    **grpo_args: Any,
) -> list[dict[str, Any]]:
    """``steps`` GRPO steps of ``policy`` with ``reward`` (a TRL reward function) on ``prompts`` (strings, or chat
    messages for conversational training), ``prompts_per_step`` prompts times ``num_generations`` completions per
    step; ``columns``: extra dataset columns, one value per prompt, passed to the reward (``criterion`` routes each
    prompt to its criterion). Returns TRL's log history (one entry per step, with ``rewards/{name}/mean`` for the
    reward and for the monitors); each entry is also appended to ``out/steps.jsonl``. ``conversational``: pass every prompt as chat
messages, so TRL applies the policy's chat template (``None``: when any prompt is already messages; a dataset
column cannot mix both). ``grpo_args`` go to ``GRPOConfig``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if conversational is None:
        conversational = any(not isinstance(p, str) for p in prompts)
    rows = [_messages(p) if conversational else p for p in prompts]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "steps.jsonl"
    log_path.unlink(missing_ok=True)

    class StepLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and any(k.startswith("rewards/") for k in logs):
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    config = GRPOConfig(
        output_dir=str(out / "trainer"), max_steps=steps, per_device_train_batch_size=prompts_per_step * num_generations,
        num_generations=num_generations, max_completion_length=max_completion_length, learning_rate=learning_rate,
        temperature=temperature, beta=beta, seed=seed, logging_steps=1, save_strategy="no", report_to="none",
        reward_weights=[1.0] + [0.0] * len(MONITORS), use_cpu=not _cuda(), bf16=False, fp16=False,
        disable_tqdm=True, **grpo_args,
    )
    dataset = Dataset.from_dict({"prompt": rows, **_columns(columns, len(rows))})
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward, *MONITORS], args=config, processing_class=tokenizer,
                          train_dataset=dataset, callbacks=[StepLog()])
    trainer.train()
    return [h for h in trainer.state.log_history if any(k.startswith("rewards/") for k in h)]


def _columns(columns: dict[str, Sequence[Any]] | None, n: int) -> dict[str, list[Any]]:
    out = {k: list(v) for k, v in (columns or {}).items()}
    if "prompt" in out:
        raise BadInputError("the prompt column is the prompts themselves")
    for k, v in out.items():
        if len(v) != n:
            raise BadInputError(f"column {k!r} needs one value per prompt ({n}), not {len(v)}")
    return out


def _messages(prompt: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def sample_policy(policy: Any, tokenizer: Any, prompts: Sequence[Any], *, n: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int = 0) -> list[list[str]]:
    """``n`` completions per prompt from ``policy``, each prompt in the tokenizer's chat template (as GRPO's
    conversational training sees it), sampled at ``temperature`` with no top-k or top-p cut. Prompt ``i`` is
    sampled under seed ``seed + i``, so two policies are compared on the same random draws."""
    import torch

    device = next(policy.parameters()).device
    out: list[list[str]] = []
    was_training = policy.training
    policy.eval()
    try:
        for i, prompt in enumerate(prompts):
            text = tokenizer.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            torch.manual_seed(seed + i)
            with torch.no_grad():
                gen = policy.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                      temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                      num_return_sequences=n, pad_token_id=tokenizer.pad_token_id)
            out.append(tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True))
    finally:
        policy.train(was_training)
    return out


def compare_policies(samples: dict[str, list[list[str]]], scores: dict[str, dict[str, list[list[float]]]] | None = None,
                     *, base: str = "initial", bootstrap: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Per policy (``samples``: name -> completions per prompt, all on the same prompts), each style feature's and
    each reward's mean per prompt, and its paired difference from ``base`` and from every other trained policy,
    with bootstrap intervals over prompts. ``scores``: reward name -> policy name -> scores per prompt."""
    if base not in samples:
        raise BadInputError(f"the base policy {base!r} is not among the samples {list(samples)}")
    n_prompts = {len(v) for v in samples.values()}
    if len(n_prompts) != 1 or not n_prompts.pop():
        raise BadInputError("every policy needs samples on the same, non-empty list of prompts")
    per_prompt: dict[str, dict[str, np.ndarray]] = {}
    for name, groups in samples.items():
        feats = {f: np.array([np.mean([style_features(c)[f] for c in g]) for g in groups], dtype=float)
                 for f in FEATURES}
        for reward, by_policy in (scores or {}).items():
            if name in by_policy:
                feats[f"reward:{reward}"] = np.array([np.mean(s) for s in by_policy[name]], dtype=float)
        per_prompt[name] = feats

    def diff(a: str, b: str) -> dict[str, Any]:
        out = {}
        for k in per_prompt[a]:
            if k in per_prompt[b]:
                d = paired_bootstrap(per_prompt[a][k], per_prompt[b][k], n=bootstrap, seed=seed)
                out[k] = {"diff": d.diff, "ci95": [d.low, d.high], "p": d.p_value}
        return out

    names = list(samples)
    trained = [n for n in names if n != base]
    return {
        "n_prompts": len(samples[base]), "n_per_prompt": len(samples[base][0]), "base": base,
        "means": {n: {k: float(v.mean()) for k, v in per_prompt[n].items()} for n in names},
        "vs_base": {n: diff(n, base) for n in trained},
        "between": {f"{a} - {b}": diff(a, b) for i, a in enumerate(trained) for b in trained[i + 1:]},
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
