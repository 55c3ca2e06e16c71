"""``armlens info``: a model's shape and which judge answer words are single tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass

from armlens.cli import Command


@dataclass
class InfoOptions:
    """Print a model's layers, heads, d_head, key/value heads, context length and which judge answer words are single
    tokens."""

    model: str | None = None
    """Model name, local folder, .gguf file or Hub id (default: the embedded SmolLM2-135M-Instruct)."""
    device: str | None = None
    """cpu, cuda, ... (default: cuda when available)."""
    json: bool = False
    """Print JSON instead of a table."""


def run(args: InfoOptions) -> int:
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
