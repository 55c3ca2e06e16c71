"""``ActivationRM.patched()`` and ``PatchHandle`` (``rm.patch()``): a patch acts inside its block or until
``remove()``, never after; it removes only its own hooks (another hook on the same hook point stays); blocks and
handles nest, and an inner one ending leaves the outer patch in force."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M
from armlens.patching import PatchHandle, mask_labels
from armlens.rm import ActivationRM, CriterionARM

TEXTS = ["<|im_start|>user\nIs water wet?<|im_end|>\n<|im_start|>assistant\n", "Short one."]


def last_logits(model):
    tokens, attn = M.tokenize(model, TEXTS)
    return M.run_last_logits(model, tokens, attn)


def _patch(model, seed, heads):
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=gen) * 3
    mask = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return means, mask


@pytest.fixture()
def rm(tiny_any):
    """A two-criterion ARM on the tiny model: "a" patches two heads of layer 0 and one of the last layer, "b" other
    heads (also on the last layer, so the two share hook points) with other means."""
    last = tiny_any.cfg.n_layers - 1
    rm = ActivationRM(tiny_any)
    rm.fits = {"a": CriterionARM("a", *_patch(tiny_any, 1, [(0, 0), (0, 2), (last, 1)])),
               "b": CriterionARM("b", *_patch(tiny_any, 2, [(last, 3), (1, 0)]))}
    return rm


def hook_counts(model):
    """How many forward hooks each hook_z point holds."""
    return [len(model.hook_dict[M.hook_z_name(layer)]._forward_hooks) for layer in range(model.cfg.n_layers)]


def expected(model, *criteria_fits):
    """Last-token logits with the given fits' heads patched, one after the other (a later fit wins on a shared
    head), through the hooks passed to one forward: the reference the blocks must match."""
    from armlens.patching import patch_hooks

    hooks = [h for fit in criteria_fits for h in patch_hooks(model, fit.means, fit.mask)]
    tokens, attn = M.tokenize(model, TEXTS)
    return M.run_last_logits(model, tokens, attn, hooks)


def test_patched_acts_inside_the_block_only(rm):
    model = rm.model
    plain = last_logits(model)
    with rm.patched("a") as inside:
        assert inside is model
        patched = last_logits(model)
    torch.testing.assert_close(patched, expected(model, rm.fits["a"]))
    assert (patched - plain).abs().max() > 1e-3  # the patch changes the answer
    torch.testing.assert_close(last_logits(model), plain, rtol=0, atol=0)
    assert hook_counts(model) == [0] * model.cfg.n_layers


def test_patched_removes_its_hooks_after_an_error(rm):
    model = rm.model
    plain = last_logits(model)
    with pytest.raises(RuntimeError, match="boom"), rm.patched("a"):
        assert sum(hook_counts(model)) == 2  # two layers hold heads of "a"
        raise RuntimeError("boom")
    assert hook_counts(model) == [0] * model.cfg.n_layers
    torch.testing.assert_close(last_logits(model), plain, rtol=0, atol=0)


def test_other_hooks_on_the_same_points_are_kept(rm):
    model = rm.model
    last = model.cfg.n_layers - 1
    calls: list[int] = []

    def spy(layer):
        def record(z, hook):
            calls.append(layer)
            return z
        return record

    remove_spy = M.add_hooks(model, [(M.hook_z_name(0), spy(0)), (M.hook_z_name(last), spy(last))])
    try:
        with rm.patched("a"):
            assert hook_counts(model)[0] == 2 and hook_counts(model)[last] == 2
        handle = rm.patch("b")
        handle.remove()
        assert hook_counts(model)[0] == 1 and hook_counts(model)[last] == 1
        calls.clear()
        last_logits(model)
        assert calls == [0, last]  # the spies still runs after both patches ended
    finally:
        remove_spy()
    assert hook_counts(model) == [0] * model.cfg.n_layers


def test_nested_blocks_the_inner_one_ending_leaves_the_outer(rm):
    model = rm.model
    only_a = expected(model, rm.fits["a"])
    with rm.patched("a"):
        with rm.patched("b"):
            torch.testing.assert_close(last_logits(model), expected(model, rm.fits["a"], rm.fits["b"]))
        torch.testing.assert_close(last_logits(model), only_a)
    assert hook_counts(model) == [0] * model.cfg.n_layers


def test_patch_handle_stays_until_removed_and_removes_once(rm):
    model = rm.model
    plain = last_logits(model)
    handle = rm.patch("b")
    assert isinstance(handle, PatchHandle) and handle.heads == mask_labels(rm.fits["b"].mask)
    first, second = last_logits(model), last_logits(model)  # several calls under one patch
    torch.testing.assert_close(first, expected(model, rm.fits["b"]))
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    handle.remove()
    handle.remove()  # a second remove is a no-op, not an error
    torch.testing.assert_close(last_logits(model), plain, rtol=0, atol=0)
    assert hook_counts(model) == [0] * model.cfg.n_layers


def test_patch_handles_removed_out_of_order(rm):
    """Two handles, the first removed first: the second patch stays in force on its own."""
    model = rm.model
    a, b = rm.patch("a"), rm.patch("b")
    a.remove()
    torch.testing.assert_close(last_logits(model), expected(model, rm.fits["b"]))
    b.remove()
    assert hook_counts(model) == [0] * model.cfg.n_layers


def test_patch_handle_as_a_block_inside_patched(rm):
    model = rm.model
    with rm.patched("a"):
        with rm.patch("b") as handle:
            assert isinstance(handle, PatchHandle)
            torch.testing.assert_close(last_logits(model), expected(model, rm.fits["a"], rm.fits["b"]))
        torch.testing.assert_close(last_logits(model), expected(model, rm.fits["a"]))
    assert hook_counts(model) == [0] * model.cfg.n_layers
