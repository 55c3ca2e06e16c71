"""Full forward passes: last-token logits, all positions' logits, and last-token hook_z read in the same pass.

Every full forward in armlens goes through here (the prefix-cache runs are in :mod:`armlens.model.prefix`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from armlens.model.hooks import Hook, last_z_readers
from armlens.model.multimodal import image_hooks
from armlens.typing import Model


def _forward(model: Model, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"],
             fwd_hooks: Sequence[Hook]) -> Tensor:
    """One full forward with hooks (images, if any, written in by their own hooks); the model's raw logits."""
    tokens, images = image_hooks(model, tokens)
    with torch.inference_mode():
        return model.run_with_hooks(tokens, fwd_hooks=images + list(fwd_hooks), attention_mask=attention_mask)


def run_last_logits(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    fwd_hooks: Sequence[Hook] = (),
) -> Float[Tensor, "batch d_vocab"]:
    """Full forward pass with hooks; logits at the last position (the last real token under left padding)."""
    return _forward(model, tokens, attention_mask, fwd_hooks)[:, -1, :].float()


def run_with_hooks(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    fwd_hooks: Sequence[Hook] = (),
) -> Float[Tensor, "batch pos d_vocab"]:
    """Full forward pass with hooks, all positions' logits (for generation and likelihood baselines)."""
    return _forward(model, tokens, attention_mask, fwd_hooks).float()


def capture_hook_z_and_logits(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    fwd_hooks: Sequence[Hook] = (),
    logits_from_end: int = 1,
) -> tuple[Float[Tensor, "batch n_layers n_heads d_head"], Float[Tensor, "batch d_vocab"]]:
    """hook_z of every layer at the last position (read inside the hooks: no cache of other positions is kept),
    and the logits at position ``-logits_from_end`` (default the last), from one forward pass. ``fwd_hooks`` run
    before the reads (e.g. a patch)."""
    out, readers = last_z_readers(model.cfg.n_layers)
    if logits_from_end == 1:
        logits = run_last_logits(model, tokens, attention_mask, list(fwd_hooks) + readers)
    else:
        logits = run_with_hooks(model, tokens, attention_mask, list(fwd_hooks) + readers)[:, -logits_from_end]
    return torch.stack(out, dim=1), logits  # type: ignore[arg-type]
