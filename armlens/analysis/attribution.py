"""What a patched head does to the answer: direct logit attribution of an ARM's patch (issue 38, item 3).

An ARM overwrites head ``h``'s hook_z at the last token, ``z_h -> mu_h``, so the head writes
``delta_h = (mu_h - z_h) @ W_O[h]`` more into the residual stream there. Its *direct* effect on the judge's
Yes-minus-No logit is that vector read through the final norm and the unembedding:

    effect_h = delta_h . (g * (W_U[:, Yes] - W_U[:, No])) / s_direct

with ``g`` the final norm's gain and ``s_direct`` its divisor for the residual ``r_clean + sum_h delta_h`` (a norm is
not linear: dividing every head's write by one scale is its linearisation). The sum over patched heads plus the
*norm term* ``r_clean . (g * u) * (1 / s_direct - 1 / s_clean)`` is exactly the change of the Yes-No logit in a run where only
the direct path changes: every other head's hook_z and every MLP output at the last token pinned to their clean
values (:func:`direct_path_diff`; the test checks the equality). What the patch does through later layers (MLPs and
heads reading the changed residual) is the rest of the measured change, ``indirect``.

Per pair, a head *pushes the score* by its effect on a response's prompt, and *separates the pair* by its effect on the
chosen response's prompt minus the rejected one's (the part that decides which response wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from armlens import model as M
from armlens.patching import HeadMask, Means, patch_hooks
from armlens.prompts import AnswerIds
from armlens.scoring import score_rows


@dataclass
class DirectAttribution:
    """Direct logit attribution of one patch on a batch of prompts (float32; Yes-minus-No logits)."""

    effects: Float[Tensor, "batch n_layers n_heads"]
    """Each patched head's direct effect on the Yes-No logit (0 for heads not patched)."""
    norm_term: Float[Tensor, " batch"]
    """The final norm's change of scale acting on the clean residual (the linearisation's remainder)."""
    clean: Float[Tensor, " batch"]
    """Yes-No logit of the unpatched judge."""
    patched: Float[Tensor, " batch"]
    """Yes-No logit of the patched judge (the full run, every path)."""

    @property
    def direct(self) -> Float[Tensor, " batch"]:
        """The change through the direct path: the heads' effects plus the norm term."""
        return self.effects.sum((1, 2)) + self.norm_term

    @property
    def indirect(self) -> Float[Tensor, " batch"]:
        """The rest of the measured change: what the patch does through later layers."""
        return self.patched - self.clean - self.direct

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("effects", "norm_term", "clean", "patched")}


def _reader(store: dict[str, Tensor], key: str) -> Any:
    def grab(x: Tensor, hook: Any) -> None:
        store[key] = x[:, -1].detach().float().clone()

    return grab


def direct_logit_attribution(model: Any, texts: Sequence[str], means: Means, mask: HeadMask, answer_ids: AnswerIds,
                             *, batch_size: int = 8, pool: M.PrefixPool | None = None) -> DirectAttribution:
    """Direct logit attribution of writing ``means`` into ``mask``'s heads at the last token of each text (two
    forwards per batch: the clean judge and the patched one). With a ``pool``, each text's prefix comes from it and
    only the last token runs, twice, as branches over it (the same numbers within float tolerance; a study that
    scores the same texts under other head sets runs each prefix once)."""
    if pool is not None:
        return _attribute(model, *_pooled_runs(model, texts, means, mask, answer_ids, pool), means, mask, answer_ids)
    parts: list[DirectAttribution] = []
    for start in range(0, len(texts), batch_size):
        tokens, attn = M.tokenize(model, list(texts[start:start + batch_size]))
        z, readers = M.last_z_readers(model.cfg.n_layers)
        store: dict[str, Tensor] = {}
        resid = M.final_resid_name(model)
        clean_logits = M.run_last_logits(model, tokens, attn, readers + [(resid, _reader(store, "clean"))])
        patched_logits = M.run_last_logits(model, tokens, attn,
                                           patch_hooks(model, means, mask) + [(resid, _reader(store, "patched"))])
        parts.append(_attribute(model, torch.stack(z, dim=1), store["clean"],  # type: ignore[arg-type]
                                _diff(clean_logits, answer_ids), _diff(patched_logits, answer_ids), means, mask,
                                answer_ids))
    return DirectAttribution(*(torch.cat([getattr(p, k) for p in parts])
                               for k in ("effects", "norm_term", "clean", "patched")))


def _pooled_runs(model: Any, texts: Sequence[str], means: Means, mask: HeadMask, answer_ids: AnswerIds,
                 pool: M.PrefixPool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clean last-token hook_z and final residual, and the clean and patched Yes-No logits, as one-token branches
    over each text's pooled prefix."""
    names = [M.hook_z_name(layer) for layer in range(model.cfg.n_layers)]
    resid = M.final_resid_name(model)
    rows = means[None].float()
    clean = score_rows(model, texts, rows, torch.zeros((1, *mask.shape), dtype=torch.bool), answer_ids=answer_ids,
                       capture=[*names, resid], capture_row=0, pool=pool)
    patched = score_rows(model, texts, rows, mask[None], answer_ids=answer_ids, pool=pool)
    z = torch.stack([clean.captured[n] for n in names], dim=1)
    return z, clean.captured[resid], (clean.yes - clean.no)[:, 0], (patched.yes - patched.no)[:, 0]


def _attribute(model: Any, z_clean: Float[Tensor, "batch n_layers n_heads d_head"],
               resid_clean: Float[Tensor, "batch d_model"], clean: Float[Tensor, " batch"],
               patched: Float[Tensor, " batch"], means: Means, mask: HeadMask, answer_ids: AnswerIds,
               ) -> DirectAttribution:
    """Each patched head's direct effect from the clean run's last-token hook_z and final residual (see the module
    docstring), beside the measured clean and patched Yes-No logits."""
    w_o = M.output_projection(model)
    norm = M.final_norm(model)
    u = norm.gain * M.unembed_difference(model, answer_ids.yes, answer_ids.no)
    keep = mask.to(torch.float32)[..., None]
    delta = torch.einsum("blhd,lhdm->blhm", (means.float()[None] - z_clean) * keep[None], w_o)
    s_clean = norm.scale(resid_clean)
    s_direct = norm.scale(resid_clean + delta.sum((1, 2)))  # the residual when only the direct path changes
    effects = torch.einsum("blhm,m->blh", norm.prepare(delta), u) / s_direct[:, None, None]
    norm_term = (norm.prepare(resid_clean) @ u) * (1.0 / s_direct - 1.0 / s_clean)
    return DirectAttribution(effects, norm_term, clean, patched)


def direct_path_diff(model: Any, texts: Sequence[str], means: Means, mask: HeadMask,
                     answer_ids: AnswerIds) -> Float[Tensor, " batch"]:
    """The Yes-No logit when only the patch's direct path changes: ``mask``'s heads write ``means`` at the last token,
    and every other head's hook_z and every MLP output there are pinned to their clean values. Minus the clean
    logit it equals :attr:`DirectAttribution.direct` (up to float error)."""
    n_layers = model.cfg.n_layers
    tokens, attn = M.tokenize(model, list(texts))
    z, readers = M.last_z_readers(n_layers)
    mlp: dict[str, Tensor] = {}
    M.run_last_logits(model, tokens, attn, readers + [(M.mlp_out_name(i), _reader(mlp, str(i)))
                                                      for i in range(n_layers)])
    target = torch.stack(z, dim=1)  # type: ignore[arg-type]
    target = torch.where(mask[None, ..., None], means.float()[None], target)

    def pin_z(x: Tensor, hook: Any, layer: int) -> Tensor:
        x = x.clone()
        x[:, -1] = target[:, layer].to(x.dtype)
        return x

    def pin_mlp(x: Tensor, hook: Any, layer: int) -> Tensor:
        x = x.clone()
        x[:, -1] = mlp[str(layer)].to(x.dtype)
        return x

    import functools

    pins = [(M.hook_z_name(i), functools.partial(pin_z, layer=i)) for i in range(n_layers)]
    pins += [(M.mlp_out_name(i), functools.partial(pin_mlp, layer=i)) for i in range(n_layers)]
    return _diff(M.run_last_logits(model, tokens, attn, pins), answer_ids)


def _diff(logits: Float[Tensor, "batch d_vocab"], ids: AnswerIds) -> Float[Tensor, " batch"]:
    return (logits[:, ids.yes] - logits[:, ids.no]).float()


def pair_separation(chosen: DirectAttribution, rejected: DirectAttribution) -> Float[Tensor, "pair n_layers n_heads"]:
    """Per pair, each head's direct effect on the chosen response's prompt minus the rejected one's: positive where
    the head pushes the pair towards the right answer."""
    return chosen.effects - rejected.effects


def mean_effects(attr: DirectAttribution | Sequence[DirectAttribution]) -> Float[Tensor, "n_layers n_heads"]:
    """Each head's direct effect averaged over prompts."""
    items = [attr] if isinstance(attr, DirectAttribution) else list(attr)
    return torch.cat([a.effects for a in items]).mean(0)
