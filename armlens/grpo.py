"""GRPO with an armlens reward, through TRL's own ``GRPOTrainer`` (the optional ``rl`` extra: ``pip install
armlens[rl]``; trl is imported on first use).

:func:`run_grpo` trains a Hugging Face causal LM (the policy, its own copy of the weights: :func:`load_policy`) on
prompts with one reward function (:mod:`armlens.reward`), and logs per step, besides TRL's own metrics, the
completions' mean length, formatting rate and upbeat-phrase rate (:mod:`armlens.style`): they are passed to TRL as
extra reward functions of weight 0, so TRL computes and logs them (``rewards/{name}/mean``) without training on them.
Each step's log is appended to ``steps.jsonl`` in the output folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from armlens.reward import as_response, length_reward
from armlens.style import is_formatted, is_upbeat

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
    **grpo_args: Any,
) -> list[dict[str, Any]]:
    """``steps`` GRPO steps of ``policy`` with ``reward`` (a TRL reward function) on ``prompts`` (strings, or chat
    messages for conversational training), ``prompts_per_step`` prompts times ``num_generations`` completions per
    step. Returns TRL's log history (one entry per step, with ``rewards/{name}/mean`` for the reward and for the
    monitors); each entry is also appended to ``out/steps.jsonl``. ``conversational``: pass every prompt as chat
messages, so TRL applies the policy's chat template (``None``: when any prompt is already messages; a dataset
column cannot mix both). ``grpo_args`` go to ``GRPOConfig``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if conversational is None:
        conversational = any(not isinstance(p, str) for p in prompts)
    rows = [([{"role": "user", "content": p}] if isinstance(p, str) else [dict(m) for m in p]) if conversational
            else p for p in prompts]
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
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward, *MONITORS], args=config, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": rows}), callbacks=[StepLog()])
    trainer.train()
    return [h for h in trainer.state.log_history if any(k.startswith("rewards/") for k in h)]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
