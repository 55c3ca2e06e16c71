"""``armlens info``: a model's shape and which judge answer words are single tokens; with ``--memory``, the memory
plan of a default fit (:mod:`armlens.memory`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from armlens.cli import Command

Shape = Literal["smollm2-135m-instruct", "qwen2-7b", "qwen2.5-7b", "llama-3.1-8b"]


@dataclass
class InfoOptions:
    """Print a model's layers, heads, d_head, key/value heads, context length and which judge answer words are single
    tokens; with --memory, what a default fit needs in memory (weights, prefix pool, K branches, predicted peak)."""

    model: str | None = None
    """Model name, local folder, .gguf file or Hub id (default: the embedded SmolLM2-135M-Instruct)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""
    json: bool = False
    """Print JSON instead of a table."""
    memory: bool = False
    """Print the memory plan of a default fit instead (read from the model's config alone when it is a local folder
    or a --shape; no weights are loaded then)."""
    shape: Shape | None = None
    """--memory: plan for a published model shape without its weights (qwen2-7b is the paper's setting)."""
    dtype: str = "float32"
    """--memory: the dtype the weights and caches are held in (float32, bfloat16, float16)."""
    prompt_tokens: int = 300
    """--memory: typical judge-prompt length in tokens (the bench's REINFORCE prompt has about 300)."""
    processes: int = 1
    """--memory: criteria fitted side by side in forked processes (a CPU fit of several criteria uses one per torch
    thread by default, at most one per criterion)."""


def model_shape(args: InfoOptions):
    """The shape to plan for: a preset, a local folder's config (no weights), or the loaded model."""
    from armlens.memory import SHAPES, ModelShape

    if args.shape is not None:
        return SHAPES[args.shape]
    if args.model and (Path(args.model).expanduser() / "config.json").is_file():
        from transformers import AutoConfig

        return ModelShape.from_hf_config(AutoConfig.from_pretrained(Path(args.model).expanduser(),
                                                                    local_files_only=True), args.model)
    from armlens.model import load_model

    return ModelShape.from_model(load_model(args.model, device=args.device))


def run_memory(args: InfoOptions) -> int:
    from armlens.memory import dtype_bytes, format_plan, memory_plan

    dtype_bytes(args.dtype)  # an unknown dtype fails before anything loads
    plan = memory_plan(model_shape(args), dtype=args.dtype, prompt_tokens=args.prompt_tokens,
                       processes=args.processes)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_plan(plan))
    return 0


def run(args: InfoOptions) -> int:
    if args.memory:
        return run_memory(args)
    from armlens.model import load_model, model_info

    info = model_info(load_model(args.model, device=args.device))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    rows = [
        ("model", info.model_id),
        ("layers", info.n_layers),
        ("heads per layer", info.n_heads),
        ("d_head", info.d_head),
        ("key/value heads", info.n_key_value_heads),
        ("d_model", info.d_model),
        ("context length", info.n_ctx),
        ("vocabulary", info.d_vocab),
    ]
    for word, ids in info.answer_tokens.items():
        status = "single token" if len(ids) == 1 else f"{len(ids)} tokens (unusable as a judge answer)"
        rows.append((f"answer {word!r}", f"ids {ids}: {status}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


COMMANDS = {"info": Command(InfoOptions, run)}
