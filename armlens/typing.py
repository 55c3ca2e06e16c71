"""Type aliases used across armlens: the model, and the shapes of head masks, head values and activations.

Each alias is defined here once; modules import them from here. Tensor aliases are jaxtyping annotations, checked at
run time under the test suite's ``--jaxtyping-packages=armlens,beartype.beartype``. Dimension names bind within one
call: ``n_layers`` / ``n_heads`` / ``d_head`` are the model's, ``k`` counts head masks (REINFORCE samples, seeds'
final sets, branches of one forward), ``batch`` counts prompts.

:data:`Model` is TransformerLens 4's ``TransformerBridge``. Importing ``transformer_lens`` takes seconds, so at run
time :data:`Model` is a stand-in class whose ``isinstance`` asks the bridge class only once ``transformer_lens`` has
been imported (which any existing bridge implies); static type checkers see ``TransformerBridge`` itself.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["HeadMask", "HeadValues", "Masks", "Means", "Model", "RowMasks", "RowMeans", "Z"]

HeadMask = Bool[Tensor, "n_layers n_heads"]
"""One set of heads: ``mask[l, h]`` is True where head ``h`` of layer ``l`` is patched."""
Masks = Bool[Tensor, "k n_layers n_heads"]
"""``k`` head sets: REINFORCE's sampled masks, one final set per seed, or one per branch of a forward."""
RowMasks = Bool[Tensor, "batch n_layers n_heads"]
"""One head set per prompt of a batch."""
HeadValues = Float[Tensor, "n_layers n_heads"]
"""One number per head (selection probability, single-head effect, selection frequency)."""
Means = Float[Tensor, "n_layers n_heads d_head"]
"""One hook_z vector per head: the values an ARM writes at the last token (Stage 1)."""
RowMeans = Float[Tensor, "rows n_layers n_heads d_head"]
"""One set of head values per row (branch) of a forward: every row patches its own values."""
Z = Float[Tensor, "batch n_layers n_heads d_head"]
"""hook_z of every head at the last token of each prompt of a batch."""

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge as Model
else:

    class _BridgeCheck(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            bridge = sys.modules.get("transformer_lens.model_bridge")
            return bridge is not None and isinstance(obj, bridge.TransformerBridge)

    class Model(metaclass=_BridgeCheck):
        """A TransformerLens ``TransformerBridge`` (what :func:`armlens.model.load_model` returns)."""
