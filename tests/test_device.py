"""The fast path and an ARM on the device the suite is pointed at (``ARMLENS_TEST_DEVICE``, ``ARMLENS_TEST_DTYPE``;
``cpu`` / ``float32`` by default, ``scripts/gpu_check.sh`` sets ``cuda`` and runs float32 and bfloat16).

Each test compares the device model with itself computed two ways (branches over a cached prefix against one full
forward per mask) and with the float32 CPU model of the same seeded weights, within ``conftest.TOLERANCE``.
"""

from __future__ import annotations

import pytest
import torch

from armlens import model as M
from armlens import testing as T
from armlens.prompts import AnswerIds
from armlens.rm import ActivationRM, ARMConfig
from armlens.selection import ReinforceConfig, mask_losses, mask_losses_reference

PROMPT = "<|im_start|>user\nIs the sky blue? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
SHAPE = {"n_layers": 3, "n_heads": 4, "n_key_value_heads": 2, "d_head": 16, "seed": 7}


@pytest.fixture(scope="module")
def pair(device_setting):
    """The same seeded grouped-query tiny model on the test device (in the test dtype) and on the CPU in float32."""
    device, dtype, tol = device_setting
    dev = T.tiny_model(device=device, dtype=dtype, **SHAPE)
    assert str(dev.cfg.device).startswith(device.split(":")[0])
    assert {(p.device.type, p.dtype) for p in dev.parameters()} == {(device.split(":")[0], dtype)}
    return dev, T.tiny_model(**SHAPE), tol


def _patch(model, n_masks=6, seed=0):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g)
    masks = torch.bernoulli(torch.full((n_masks, cfg.n_layers, cfg.n_heads), 0.4), generator=g).bool()
    return means, masks


def test_device_forward_matches_cpu(pair):
    dev, cpu, tol = pair
    probs = [M.run_last_logits(m, *M.tokenize(m, [PROMPT])).softmax(-1).cpu() for m in (dev, cpu)]
    assert (probs[0] - probs[1]).abs().max() <= tol


def test_device_branches_match_full_forwards(pair):
    """The fast path's invariant on the device: K branches over a cached prefix = one full forward per mask."""
    dev, cpu, tol = pair
    means, masks = _patch(dev)
    gold = AnswerIds.of(dev).yes
    fast = mask_losses(dev, M.PrefixPool(dev).get(PROMPT), means, masks, torch.tensor([gold]))[0].cpu()
    ref = mask_losses_reference(dev, PROMPT, means, masks, gold).cpu()
    cpu_ref = mask_losses_reference(cpu, PROMPT, means, masks, gold)
    scale = max(1.0, float(cpu_ref.abs().max()))
    assert (fast - ref).abs().max() / scale <= tol and (fast - cpu_ref).abs().max() / scale <= tol


def test_device_arm_fits_and_scores_like_cpu(pair):
    dev, cpu, tol = pair
    means, masks = _patch(dev, n_masks=1, seed=1)
    scores = [ActivationRM.from_patch(m, means, masks[0]).score(PROMPT, ["Yes, it is.", "No."]) for m in (dev, cpu)]
    assert max(abs(a - b) for a, b in zip(*scores, strict=True)) <= tol
    examples = [("Is water wet?", "Yes.", True), ("Is fire cold?", "Yes, freezing.", False),
                ("Name a colour.", "Blue.", True), ("Name a colour.", "Seven.", False)]
    from armlens.prompts import Example

    quick = ARMConfig(criterion="The answer is correct.", val_pairs=0,
                      reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2,
                                                objective="answer"))  # unpaired examples
    rm = ActivationRM(dev, quick).fit([Example(p, r, y, quick.criterion) for p, r, y in examples],
                                      show_progress=False)
    s = rm.score("Is ice cold?", "Yes.")
    on_cpu = ActivationRM.from_patch(cpu, rm.means.cpu(), rm.mask.cpu(), rm.config)  # the fit, scored on the CPU
    assert abs(s - on_cpu.score("Is ice cold?", "Yes.")) <= tol


@pytest.mark.slow
def test_default_model_fast_path_on_the_device(device_setting):
    """The embedded default model on the device: branches = full forwards, and close to the CPU float32 model."""
    device, dtype, tol = device_setting
    dev = M.load_model(device=device, dtype=dtype)
    text = M.apply_chat_template(dev, [{"role": "user", "content": "Is this response helpful? Response: Boil the "
                                                                    "egg for eight minutes. Answer Yes or No."}])
    means, masks = _patch(dev, n_masks=8)
    means = means * 0.1
    gold = AnswerIds.of(dev).yes
    fast = mask_losses(dev, M.PrefixPool(dev).get(text), means, masks, torch.tensor([gold]))[0].cpu()
    ref = mask_losses_reference(dev, text, means, masks, gold).cpu()
    scale = max(1.0, float(ref.abs().max()))
    assert (fast - ref).abs().max() / scale <= tol
    if device != "cpu" or dtype != torch.float32:
        cpu = M.load_model(device="cpu")
        cpu_ref = mask_losses_reference(cpu, text, means, masks, gold)
        assert (fast - cpu_ref).abs().max() / scale <= 4 * tol  # 30 layers compound bfloat16's rounding
