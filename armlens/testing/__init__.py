"""Tiny random models for tests, built in memory and offline; nothing in armlens outside this package imports it
(the import-linter contract in pyproject.toml keeps it so).

- :func:`tiny_model`: a random Llama-style ``TransformerBridge`` (optionally grouped-query), or with
  ``family="llava_onevision" | "idefics3"`` a tiny vision-language model with its processor
- :func:`tiny_hf_model`: the plain Hugging Face model and tokenizer behind it (same seed, same weights)
- :func:`tiny_tokenizer`: the offline byte-level tokenizer, single-token Yes/No, SmolLM2's pad trap
- :func:`tiny_vlm`, :func:`tiny_vlm_parts`: the vision-language models and their Hugging Face parts
"""

from armlens.testing.tiny import tiny_hf_model, tiny_model
from armlens.testing.tiny_vlm import FAMILIES, VLM_CHAT_TEMPLATE, tiny_vlm, tiny_vlm_parts
from armlens.testing.tokenizer import tiny_tokenizer

__all__ = ["FAMILIES", "VLM_CHAT_TEMPLATE", "tiny_hf_model", "tiny_model", "tiny_tokenizer", "tiny_vlm", "tiny_vlm_parts"]
