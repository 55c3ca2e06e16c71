"""The weights the direct logit attribution reads: each head's output projection, the final norm and the
unembedding, and the hook names of the paths it pins (the only place armlens reads parameters off the bridge).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from armlens.errors import SetupError
from armlens.model.hooks import act_name
from armlens.typing import Model


def output_projection(model: Model) -> Float[Tensor, "n_layers n_heads d_head d_model"]:
    """``W_O`` of every head (query heads, also under grouped-query attention), float32: head ``h`` of layer ``l``
    writes ``z[l, h] @ W_O[l, h]`` into the residual stream (plus the layer's shared bias, if any)."""
    return model.W_O.detach().float()


def unembed_difference(model: Model, a: int, b: int) -> Float[Tensor, " d_model"]:
    """``W_U[:, a] - W_U[:, b]``: the logit difference between two tokens is this direction dotted with the final
    norm's output (the unembedding bias cancels)."""
    w = model.W_U.detach().float()
    return w[:, a] - w[:, b]


@dataclass(frozen=True)
class FinalNorm:
    """The final norm: ``gain * (x - mean(x) if centred) / sqrt(mean(...^2) + eps)`` (+ a bias that cancels in a
    logit difference)."""

    gain: Float[Tensor, " d_model"]
    eps: float
    centred: bool

    def prepare(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """``x`` centred where the norm centres (LayerNorm), as is (RMSNorm)."""
        return x - x.mean(-1, keepdim=True) if self.centred else x

    def scale(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "..."]:
        """The norm's divisor for residual vectors ``resid``."""
        x = self.prepare(resid.float())
        return torch.sqrt((x * x).mean(-1) + self.eps)


def final_norm(model: Model) -> FinalNorm:
    """The model's final norm as a :class:`FinalNorm` (RMSNorm or LayerNorm)."""
    cfg = model.cfg
    kind = str(getattr(cfg, "normalization_type", "RMS") or "RMS")
    if kind not in ("RMS", "RMSPre", "LN", "LNPre"):
        raise SetupError(f"direct logit attribution through a {kind!r} final norm")
    params = dict(model.ln_final.named_parameters())
    weight = next((p for n, p in params.items() if n.endswith("weight")), None)
    gain = weight.detach().float() if weight is not None else torch.ones(cfg.d_model)
    if kind.startswith("RMS") and getattr(cfg, "final_rms", True) and _adds_one(model):
        gain = gain + 1.0
    return FinalNorm(gain=gain, eps=float(getattr(cfg, "eps", 1e-5)), centred=kind.startswith("LN"))


def _adds_one(model: Model) -> bool:
    """Gemma's RMSNorm multiplies by ``1 + weight``."""
    return "gemma" in type(getattr(model.ln_final, "original_component", model.ln_final)).__name__.lower()


def final_resid_name(model: Model) -> str:
    """The residual stream the final norm reads: the last block's ``hook_resid_post``."""
    return act_name("resid_post", model.cfg.n_layers - 1)


def mlp_out_name(layer: int) -> str:
    """``blocks.{layer}.hook_mlp_out``: what a block's MLP writes into the residual stream."""
    return act_name("mlp_out", layer)
