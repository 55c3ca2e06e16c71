"""Tokenising: answer-word ids, the chat template, left-padded batches and length-bucketed batch order.

Conventions (checked by tests): batches are *left*-padded with the tokenizer's own attention mask, so the last real
token of every row sits at position -1; chat-templated prompts are tokenised without an extra BOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from armlens.errors import BadInputError
from armlens.model.loading import model_id
from armlens.model.multimodal import encode_images, images_of
from armlens.typing import Model

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, the template family SmolLM2 uses: the tiny tokenizer's template, and the one used for tokenizers
without a chat template."""


def encode(model: Model, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens."""
    return list(model.tokenizer.encode(text, add_special_tokens=False))


def token_spans(model: Model, text: str) -> list[tuple[int, int]]:
    """Character span ``(start, end)`` of each token of ``text`` as :func:`tokenize` encodes it (no BOS added), from
    the tokenizer's offsets; a clear error for tokenizers without offsets (slow tokenizers) or with images."""
    if images_of(text):
        raise BadInputError("token_spans() reads text-only prompts; this one holds images")
    try:
        enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError) as err:
        raise BadInputError(f"the tokenizer of {model_id(model)} gives no character offsets ({err}); "
                            "use a fast tokenizer") from err
    if list(enc["input_ids"]) != encode(model, text):
        raise BadInputError("the tokenizer's offsets call encodes the text differently from encode()")
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def single_token_id(model: Model, word: str) -> int:
    """Id of ``word`` (e.g. ``"Yes"``), which must be exactly one token; else a clear error."""
    ids = encode(model, word)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise BadInputError(
            f"The judge answer word {word!r} is not a single token for {model_id(model)} "
            f"(it splits into {pieces}); choose answer words that are single tokens (see `armlens info`)."
        )
    return ids[0]


def apply_chat_template(model: Model, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Render chat messages with the model's own chat template (:data:`CHATML_TEMPLATE` for tokenizers without
    one, e.g. base models)."""
    tok = model.tokenizer
    template = None if getattr(tok, "chat_template", None) else CHATML_TEMPLATE
    return tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


def tokenize(
    model: Model, texts: Sequence[str], *, max_length: int | None = None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-padded token ids and the tokenizer's own attention mask (never derived from the pad id).

    Texts are expected to be fully rendered (chat template applied), so no BOS is added. A text longer than the
    context (or ``max_length``) is an error naming its index and length, never a silent truncation.
    """
    if len(texts) == 0:
        raise BadInputError("tokenize() got an empty list of texts")
    limit = max_length or model.cfg.n_ctx
    if any(images_of(t) for t in texts):  # the processor expands each image; its positions become image slots
        enc = _left_pad(model, [encode_images(model, t) if images_of(t) else encode(model, t) for t in texts])
    else:
        enc = model.tokenizer(
            list(texts), add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
        )
    lengths = enc["attention_mask"].sum(-1)
    too_long = [(i, int(n)) for i, n in enumerate(lengths) if n > limit]
    if too_long:
        i, n = too_long[0]
        raise BadInputError(
            f"prompt {i} is {n} tokens long, more than the model's context of {limit} tokens "
            f"({len(too_long)} prompt(s) too long); shorten or filter the inputs, or cut long fields with "
            "--max-field-tokens N"
        )
    if (lengths == 0).any():
        raise BadInputError(f"prompt {int((lengths == 0).nonzero()[0])} is empty after tokenisation")
    device = model.cfg.device
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _left_pad(model: Model, rows: list[list[int]]) -> dict[str, Tensor]:
    n = max(len(r) for r in rows)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (n - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask}


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts`` in batches of at most ``batch_size``, shortest texts first: texts of similar length share
    a batch, so left padding stays short. Every index appears exactly once; equal lengths keep their order."""
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
