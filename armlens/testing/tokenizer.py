"""The tiny test models' tokenizer: offline byte-level BPE with ChatML special tokens and single-token Yes/No."""

from __future__ import annotations

from typing import Any

from armlens.model.tokens import CHATML_TEMPLATE

_TINY_WORDS = ["Yes", "No", "ĠYes", "ĠNo"]


def tiny_tokenizer() -> Any:
    """An offline byte-level BPE tokenizer (~270 tokens) with ChatML special tokens and single-token Yes/No."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    merges = [("Y", "e"), ("Ye", "s"), ("N", "o"), ("Ġ", "Yes"), ("Ġ", "No")]
    for w in _TINY_WORDS:
        vocab[w] = len(vocab)
    vocab["Ye"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",  # same trap as SmolLM2: pad == <|im_end|>, which every chat prompt contains
        unk_token="<|endoftext|>",
        additional_special_tokens=specials,
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    tok.model_max_length = 2048
    return tok
