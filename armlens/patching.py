"""Capture and overwrite ``blocks.{l}.attn.hook_z`` at the last token: where heads are patched.

Context
-------
``hook_z`` is each head's output before the output projection W_O, shape ``[batch, pos, n_heads, d_head]`` (per
*query* head, also on grouped-query models). An ARM stores one mean vector per head, ``means[l, h]``, and at scoring
time overwrites ``hook_z[l][:, -1, h]`` with it for the heads in a boolean mask. Batches are left-padded, so
position -1 is every row's last real token.

Intuition
---------
Overwriting a head's output at the read position replaces what that head "says" about the current prompt with what
it said, on average, while the model judged labelled examples. Heads that carry the task's "format and criterion"
signal are exactly those whose average helps; REINFORCE (``armlens.selection``) finds them.

Soft weights
------------
Every patch here optionally takes ``weights`` (one number in [0, 1] per head): a selected head then gets
``z + w (mu - z)`` (``torch.lerp(z, mu, w)``) instead of ``mu``. ``w = 1`` is the plain overwrite and ``w = 0`` leaves
the head alone, both exactly (``lerp`` returns its end points bit for bit); :mod:`armlens.soft` learns the weights by
gradient descent, through these same hooks.

Everything here builds hook functions (small pure functions bound with ``functools.partial``, as in TransformerLens'
``patching.py``) and hands them to :mod:`armlens.model`, which runs them; hooks never outlive a call unless the caller
holds the explicit handle from :func:`patch`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from armlens import model as M
from armlens.errors import BadInputError
from armlens.typing import HeadMask, HeadValues, Means, Model, RowMasks, RowMeans


def head_label(layer: int, head: int) -> str:
    """``L{layer}H{head}``, the TransformerLens demos' head label."""
    return f"L{layer}H{head}"


def parse_heads(spec: str | list[str] | list[tuple[int, int]], n_layers: int, n_heads: int) -> HeadMask:
    """A head mask from ``"L3H1,L10H4"``, ``["L3H1"]`` or ``[(3, 1)]``; bad labels are a clear error."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for item in items:
        if isinstance(item, tuple):
            layer, head = item
        else:
            s = item.strip().upper()
            if not s:
                continue
            try:
                layer_s, head_s = s[1:].split("H")
                if not s.startswith("L"):
                    raise ValueError
                layer, head = int(layer_s), int(head_s)
            except ValueError:
                raise BadInputError(f"bad head label {item!r}; expected L{{layer}}H{{head}}, e.g. L3H1") from None
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise BadInputError(f"head L{layer}H{head} is outside the model's {n_layers} layers x {n_heads} heads")
        mask[layer, head] = True
    return mask


def mask_labels(mask: HeadMask) -> list[str]:
    return [head_label(int(layer), int(head)) for layer, head in mask.nonzero().tolist()]


def single_head_masks(n_layers: int, n_heads: int) -> Bool[Tensor, "rows n_layers n_heads"]:
    """``1 + n_layers * n_heads`` masks: row 0 holds no head, row ``1 + j`` only the head of flat index ``j``
    (``layer * n_heads + head``), e.g. to score every head alone beside the unpatched judge in one branch pass."""
    n = n_layers * n_heads
    masks = torch.zeros((n + 1, n), dtype=torch.bool)
    masks[torch.arange(1, n + 1), torch.arange(n)] = True
    return masks.view(n + 1, n_layers, n_heads)


def _check(model: Model, means: Means, mask: Tensor) -> None:
    cfg = model.cfg
    want = (cfg.n_layers, cfg.n_heads, cfg.d_head)
    if tuple(means.shape) != want:
        raise BadInputError(f"means have shape {tuple(means.shape)}, the model needs {want} [n_layers, n_heads, d_head]")
    if tuple(mask.shape[-2:]) != want[:2] or mask.dtype != torch.bool:
        raise BadInputError(f"head mask must be bool [..., {want[0]}, {want[1]}], got {mask.dtype} {tuple(mask.shape)}")


def patch_z_hook(
    z: Float[Tensor, "batch pos head_index d_head"],
    hook: Any,
    *,
    means: Float[Tensor, "head_index d_head"],
    mask: Bool[Tensor, " head_index"] | Bool[Tensor, "batch head_index"],
    pos: int = -1,
    weights: Float[Tensor, " head_index"] | None = None,
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Overwrite ``z[:, pos, h]`` with ``means[h]`` where ``mask`` (one mask, or one per batch row) is True; with
    ``weights``, write ``z + weights[h] (means[h] - z)`` there instead."""
    z = z.clone()
    sel = mask if mask.ndim == 2 else mask.unsqueeze(0).expand(z.shape[0], -1)
    new = means.to(z.dtype) if weights is None else torch.lerp(
        z[:, pos], means.to(z.dtype)[None], weights.to(z.dtype)[None, :, None])
    z[:, pos] = torch.where(sel.unsqueeze(-1), new, z[:, pos])
    return z


def patch_hooks(model: Model, means: Means, mask: HeadMask | RowMasks, pos: int = -1, *,
                weights: HeadValues | None = None) -> list[M.Hook]:
    """One hook per layer that has any selected head; ``mask`` may carry one mask per batch row. ``weights``: soft
    weights per head (see the module docstring)."""
    _check(model, means, mask)
    device = model.cfg.device
    means = means.to(device)
    mask = mask.to(device)
    weights = _check_weights(means, weights)
    per_layer = mask.any(0) if mask.ndim == 3 else mask
    out = []
    for layer in range(model.cfg.n_layers):
        if not bool(per_layer[layer].any()):
            continue
        layer_mask = mask[:, layer] if mask.ndim == 3 else mask[layer]
        fn = functools.partial(patch_z_hook, means=means[layer], mask=layer_mask, pos=pos,
                               weights=None if weights is None else weights[layer])
        out.append((M.hook_z_name(layer), fn))
    return out


def _check_weights(means: Tensor, weights: Tensor | None) -> Tensor | None:
    """``weights`` on the means' device, checked: one number per head (per row: ``[rows, n_layers, n_heads]``)."""
    if weights is None:
        return None
    lead = means.shape[:-1]
    if tuple(weights.shape) != tuple(lead) or not weights.is_floating_point():
        raise BadInputError(f"soft weights must be float [{', '.join(map(str, lead))}] (one per head), got "
                            f"{weights.dtype} {tuple(weights.shape)}")
    return weights.to(means.device)


def patch_branch_hooks(model: Model, means: Means, masks: Bool[Tensor, "branch n_layers n_heads"]) -> list[M.Hook]:
    """Hooks for :func:`armlens.model.run_cached_branches`: branch i carries head mask ``masks[i]``, every branch the
    same ``means`` (the row form with the means broadcast over branches, no copy)."""
    _check(model, means, masks)
    return row_patch_hooks(model, means.expand(masks.shape[0], *means.shape), masks)


def patch_rows_hook(
    z: Float[Tensor, "batch branch head_index d_head"],
    hook: Any,
    *,
    means: Float[Tensor, "branch head_index d_head"],
    mask: Bool[Tensor, "branch head_index"],
    weights: Float[Tensor, "branch head_index"] | None = None,
) -> Float[Tensor, "batch branch head_index d_head"]:
    """Branch ``r`` (a copy of the last token, :func:`armlens.model.run_cached_branches`) gets ``means[r, h]`` at the
    heads of ``mask[r]``: every branch its own means and heads. With ``weights``: ``z + weights[r, h] (means[r, h] -
    z)`` there (differentiable in ``weights``)."""
    if weights is None:
        return torch.where(mask[None, :, :, None], means.to(z.dtype)[None], z)
    mixed = torch.lerp(z, means.to(z.dtype)[None], weights.to(z.dtype)[None, :, :, None])
    return torch.where(mask[None, :, :, None], mixed, z)


def row_patch_hooks(model: Model, means: RowMeans, masks: RowMasks,
                    weights: Float[Tensor, "rows n_layers n_heads"] | None = None) -> list[M.Hook]:
    """Hooks for :func:`armlens.model.run_cached_branches` where branch ``r`` carries its own patch
    ``(means[r], masks[r])``; one hook per layer in which any row patches a head (an empty row: the plain judge).
    ``weights``: soft weights per row and head (a row of ones where a row is a plain overwrite)."""
    if means.ndim != 4 or masks.ndim != 3 or means.shape[0] != masks.shape[0] or means.shape[0] < 1:
        raise BadInputError(f"row patches need means [rows, n_layers, n_heads, d_head] and masks [rows, n_layers, "
                            f"n_heads] with the same rows, got {tuple(means.shape)} and {tuple(masks.shape)}")
    _check(model, means[0], masks)
    device = model.cfg.device
    means, masks = means.to(device), masks.to(device)
    weights = _check_weights(means, weights)
    return [
        (M.hook_z_name(layer), functools.partial(patch_rows_hook, means=means[:, layer], mask=masks[:, layer],
                                                 weights=None if weights is None else weights[:, layer]))
        for layer in range(model.cfg.n_layers)
        if bool(masks[:, layer].any())
    ]


@contextlib.contextmanager
def patched(model: Model, means: Means, mask: HeadMask | RowMasks, *,
            weights: HeadValues | None = None) -> Iterator[Model]:
    """``with patched(model, means, mask): model(...)``: the heads are patched inside, never after."""
    with M.hooks(model, patch_hooks(model, means, mask, weights=weights)):
        yield model


class PatchHandle:
    """An explicit patch that stays on the model until :meth:`remove` (steering-vectors' handle style)."""

    def __init__(self, model: Model, means: Means, mask: HeadMask | RowMasks, *, weights: HeadValues | None = None):
        self.heads = mask_labels(mask) if mask.ndim == 2 else None
        self._remove = M.add_hooks(model, patch_hooks(model, means, mask, weights=weights))

    def remove(self) -> None:
        self._remove()

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def patch(model: Model, means: Means, mask: HeadMask | RowMasks, *, weights: HeadValues | None = None) -> PatchHandle:
    """Patch until ``handle.remove()``. Prefer :func:`patched` unless the patch must span several calls."""
    return PatchHandle(model, means, mask, weights=weights)


def capture_last_z(
    model: Model, texts: list[str], mask: HeadMask | None = None, means: Means | None = None
) -> tuple[Float[Tensor, "batch n_layers n_heads d_head"], Float[Tensor, "batch d_vocab"]]:
    """hook_z of every head at each text's last token, and the last-token logits, in one forward pass.

    With ``mask``/``means`` the given heads are patched during the pass (to read activations under a patch).
    """
    tokens, attn = M.tokenize(model, texts)
    extra = patch_hooks(model, means, mask) if mask is not None and means is not None else []
    return M.capture_hook_z_and_logits(model, tokens, attn, extra)

