"""The tiny test models' seeded random weights, shared by the Llama-style and the vision-language models."""

from __future__ import annotations

from typing import Any

import torch


def seeded_weights(hf: Any, seed: int) -> Any:
    """``hf`` in eval mode with every matrix (parameters of 2 or more dimensions) drawn from N(0, 0.2²) by a generator
    seeded with ``seed``: the same weights for the same seed, whatever the global RNG's state, with a std large enough
    for non-trivial attention. Vectors (norms, biases) keep the values the model was built with."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return hf.eval()
