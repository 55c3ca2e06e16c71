"""Hook names and attaching hooks: the TransformerLens hook points armlens reads and writes, a context manager and a
``remove()`` handle (hooks never outlive a call), and the readers of last-token hook_z.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import Tensor

from armlens.typing import Model

Hook = tuple[str, Callable[..., Any]]
"""A TransformerLens forward hook: ``(hook_name, fn(activation, hook) -> activation | None)``."""


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


def last_z_readers(n_layers: int) -> tuple[list[Tensor | None], list[Hook]]:
    """Hooks that store every layer's hook_z at the last position into the returned list (read, not cached)."""
    out: list[Tensor | None] = [None] * n_layers

    def grab(z: Tensor, hook: Any, layer: int) -> None:
        out[layer] = z[:, -1].detach().float().clone()

    return out, [(hook_z_name(layer), functools.partial(grab, layer=layer)) for layer in range(n_layers)]
