"""Tiny vision-language models for tests: random LLaVA-OneVision (SigLIP tower, Qwen2 backbone) and Idefics3 (SigLIP
tower, pixel-shuffle connector, Llama backbone) built in memory, with processors built in code (PIL image
processors, the tiny byte-level tokenizer plus the families' image tokens). Offline, a second or two each.

Images are 32 x 32 pixels per tile (8 x 8 patches): LLaVA-OneVision's any-resolution tiling gives other images
other token counts (16 to 81 image tokens for the grid below); Idefics3 splits an image into tiles up to 64 pixels a
side, 4 tokens each, plus a global view.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from armlens.errors import BadInputError
from armlens.model.loading import boot
from armlens.model.sources import image_only_processor
from armlens.testing.tokenizer import tiny_tokenizer
from armlens.testing.weights import seeded_weights
from armlens.typing import Model

FAMILIES = ("llava_onevision", "idefics3")
"""The vision-language families :func:`tiny_vlm` builds (Qwen2.5-VL: see docs/multimodal.md; it needs torchvision)."""

VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with image parts (``{"type": "image"}`` renders as the ``<image>`` placeholder)."""

_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def tiny_vlm_parts(family: str = "llava_onevision", n_layers: int = 2, n_heads: int = 4, n_key_value_heads: int | None
                   = None, d_head: int = 16, seed: int = 0) -> tuple[Any, Any, Any]:
    """The Hugging Face model, tokenizer and processor behind :func:`tiny_vlm`."""
    from transformers import SiglipVisionConfig

    tok = tiny_tokenizer()
    extra = ["<image>"]
    if family == "idefics3":
        extra += ["<fake_token_around_image>", "<end_of_utterance>", "<global-img>"]
        extra += [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra]})
    tok.chat_template = VLM_CHAT_TEMPLATE
    image_id = tok.convert_tokens_to_ids("<image>")
    text = {"vocab_size": len(tok), "hidden_size": n_heads * d_head, "intermediate_size": 64,
            "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
            "num_key_value_heads": n_key_value_heads or n_heads, "head_dim": d_head, "max_position_embeddings": 4096,
            "tie_word_embeddings": False, "pad_token_id": tok.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    if family == "llava_onevision":
        from transformers import (
            LlavaOnevisionConfig,
            LlavaOnevisionForConditionalGeneration,
            LlavaOnevisionProcessor,
            Qwen2Config,
        )
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        config = LlavaOnevisionConfig(
            vision_config=SiglipVisionConfig(**vision), text_config=Qwen2Config(**text), image_token_id=image_id,
            image_grid_pinpoints=_PINPOINTS, vision_feature_layer=-1, vision_feature_select_strategy="full",
            tie_word_embeddings=False)
        config.architectures = ["LlavaOnevisionForConditionalGeneration"]
        with torch.random.fork_rng():  # parameters seeded_weights leaves alone (image_newline, ...) seeded too
            torch.manual_seed(seed)
            hf = LlavaOnevisionForConditionalGeneration(config)
        image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32},
                                                          image_grid_pinpoints=_PINPOINTS)
        make = image_only_processor(LlavaOnevisionProcessor)
        kwargs: dict[str, Any] = {"num_image_tokens": 16, "vision_feature_select_strategy": "full"}
    elif family == "idefics3":
        from transformers import (
            Idefics3Config,
            Idefics3ForConditionalGeneration,
            Idefics3Processor,
            LlamaConfig,
        )
        from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        config = Idefics3Config(vision_config=Idefics3VisionConfig(**vision), text_config=LlamaConfig(**text),
                                image_token_id=image_id, scale_factor=2, tie_word_embeddings=False)
        config.architectures = ["Idefics3ForConditionalGeneration"]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            hf = Idefics3ForConditionalGeneration(config)
        image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
        make = image_only_processor(Idefics3Processor)
        kwargs = {"image_seq_len": 4}
    else:
        raise BadInputError(f"unknown tiny vision-language family {family!r}; choose from {', '.join(FAMILIES)}")
    hf = seeded_weights(hf, seed)
    hf.name_or_path = (f"tiny-{family}-L{n_layers}H{n_heads}KV{n_key_value_heads or n_heads}D{d_head}-seed{seed}")
    return hf, tok, (make, image_processor, kwargs)


def tiny_vlm(family: str = "llava_onevision", **shape: Any) -> Model:
    """A random-initialised vision-language ``TransformerBridge`` with its processor (``model.armlens_processor``),
    built in memory for fast tests. ``family``: ``llava_onevision`` or ``idefics3``; the shape keywords size the
    language backbone (as :func:`armlens.testing.tiny_model`)."""
    from transformers import AutoTokenizer

    hf, tok, (make, image_processor, kwargs) = tiny_vlm_parts(family, **shape)
    with tempfile.TemporaryDirectory() as folder:
        hf.config.save_pretrained(folder)
        tok.save_pretrained(folder)  # TransformerLens re-loads the tokenizer from its name_or_path: a folder
        tok = AutoTokenizer.from_pretrained(folder)
        bridge = boot(hf, tok, folder, hf.name_or_path, "cpu")
    bridge.armlens_processor = make(image_processor=image_processor, tokenizer=bridge.tokenizer,
                                    chat_template=VLM_CHAT_TEMPLATE, **kwargs)
    return bridge
