"""Tiny models for tests: a random Llama-style model built in memory (optionally grouped-query) with the offline
byte-level tokenizer of :mod:`armlens.testing.tokenizer`. Boots in well under a second, offline.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from armlens.model.loading import boot
from armlens.testing.tiny_vlm import tiny_vlm
from armlens.testing.tokenizer import tiny_tokenizer
from armlens.testing.weights import seeded_weights
from armlens.typing import Model


def tiny_model(family: str = "llama", *, device: str = "cpu", dtype: torch.dtype | None = None, **shape: Any) -> Model:
    """A random-initialised Llama-style ``TransformerBridge`` built in memory, for fast tests: :func:`tiny_hf_model`
    (same keyword arguments and defaults) booted as a bridge, named after its shape and seed.

    ``n_key_value_heads < n_heads`` gives the grouped-query variant. Boots in well under a second, offline.
    ``family="llava_onevision"`` or ``"idefics3"``: a tiny vision-language model with its processor
    (:func:`armlens.testing.tiny_vlm.tiny_vlm`). ``device`` and ``dtype`` (Llama family only) place the same seeded
    weights elsewhere, for the device tests (``tests/test_device.py``, ``scripts/gpu_check.sh``).
    """
    if family != "llama":
        return tiny_vlm(family, **shape)
    hf, tok = tiny_hf_model(**shape)
    if dtype is not None:
        hf = hf.to(dtype)
    with tempfile.TemporaryDirectory() as folder:
        from transformers import AutoTokenizer

        hf.config.save_pretrained(folder)
        tok.save_pretrained(folder)  # TransformerLens re-loads the tokenizer from its name_or_path: a folder
        tok = AutoTokenizer.from_pretrained(folder)
        return boot(hf, tok, folder, hf.name_or_path, device)


def tiny_hf_model(
    n_layers: int = 2,
    n_heads: int = 4,
    n_key_value_heads: int | None = None,
    d_head: int = 16,
    d_mlp: int = 64,
    n_ctx: int = 2048,
    seed: int = 0,
) -> tuple[Any, Any]:
    """The plain Hugging Face model and tokenizer behind :func:`tiny_model` (same seed, same weights), named
    ``tiny-llama-L{n_layers}H{n_heads}KV{n_key_value_heads}D{d_head}-seed{seed}``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=n_heads * d_head,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_key_value_heads or n_heads,
        head_dim=d_head,
        max_position_embeddings=n_ctx,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    hf = seeded_weights(LlamaForCausalLM(config), seed)
    hf.name_or_path = f"tiny-llama-L{n_layers}H{n_heads}KV{config.num_key_value_heads}D{d_head}-seed{seed}"
    return hf, tok
