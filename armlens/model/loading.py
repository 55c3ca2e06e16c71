"""Loading a causal LM as a TransformerLens ``TransformerBridge``, and the name it was loaded under.

:func:`load_model` turns a name into weights (:mod:`armlens.model.sources`) and boots them as a bridge
(:func:`boot`, also used for the tiny test models): left padding, eval mode, the model id recorded on the bridge.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from armlens.model.sources import DEFAULT_MODEL, load_hf
from armlens.typing import Model


def boot(hf_model: Any, tokenizer: Any, folder: str, model_id: str, device: str | None) -> Model:
    from transformer_lens.model_bridge import TransformerBridge

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the bridge must never reach for the Hub once weights are in memory
    try:
        bridge = TransformerBridge.boot_transformers(folder, hf_model=hf_model, tokenizer=tokenizer, device=device)
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    bridge.tokenizer.padding_side = "left"
    bridge.eval()
    bridge.armlens_model_id = model_id
    return bridge


def load_model(
    name: str | None = None,
    *,
    device: str | None = None,
    dtype: torch.dtype | str = torch.float32,
    use_cache: bool = True,
) -> Model:
    """Load a causal LM as a TransformerLens ``TransformerBridge``.

    Args:
        name: ``None`` (or ``"smollm2-135m-instruct"``) for the embedded default; a local Hugging Face folder; a local
            ``.gguf`` file; or a Hub id ``"org/name"`` (needs network access). A vision-language model (a config
            with ``vision_config``: LLaVA-OneVision, Idefics3, ...) is loaded with its processor
            (``model.armlens_processor``), so judge prompts can carry images.
        device: ``"cpu"`` (default when no GPU), ``"cuda"``, ...; ``None`` lets the bridge choose.
        dtype: parameter dtype (``torch.float32`` default; ``"bfloat16"`` on GPUs halves memory).
        use_cache: keep / reuse a de-quantised copy of GGUF models in :func:`cache_dir`.
    """
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (try float32, bfloat16, float16)")
        dtype = getattr(torch, dtype)
    name = name or DEFAULT_MODEL
    from armlens.model.multimodal import is_vlm_source, load_vlm_hf

    processor = None
    if name != DEFAULT_MODEL and is_vlm_source(name):  # a vision-language model: its processor comes along
        hf, tok, folder, processor = load_vlm_hf(name, dtype)
    else:
        hf, tok, folder = load_hf(name, dtype, use_cache)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    bridge = boot(hf, tok, folder, name, device)
    if processor is not None:
        bridge.armlens_processor = processor
    return bridge


def model_id(model: Model) -> str:
    return getattr(model, "armlens_model_id", None) or getattr(model.cfg, "model_name", "unknown")
