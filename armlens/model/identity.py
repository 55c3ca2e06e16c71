"""Facts about a loaded model: its shape (:class:`ModelInfo`), and the fingerprint a saved ARM records to refuse
loading on another model (:func:`model_fingerprint`, :func:`fingerprint_differences`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from armlens.model.loading import model_id
from armlens.model.tokens import encode
from armlens.typing import Model


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
