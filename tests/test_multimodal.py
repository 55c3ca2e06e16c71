"""Vision-language ARMs on tiny random LLaVA-OneVision and Idefics3 models: parity with the models' own image path,
the ARM invariants with images in the prompt, left padding with images of different sizes, fit / save / load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from armlens import model as M
from armlens import testing as T
from armlens.data.records import PreferencePair
from armlens.patching import capture_last_z, patch_hooks
from armlens.prompts import AnswerIds, Example, JudgeTemplate, scalar_prompt
from armlens.rm import ActivationRM, ARMConfig
from armlens.scoring import score_from_logits, score_patched, score_texts
from armlens.selection import ReinforceConfig, mask_losses, mask_losses_reference

SHORT = JudgeTemplate(max_field_tokens=16)
Z_ATOL = 1e-4  # float32 noise of a second implementation (tests/test_model.py uses the same bound)
SIZES = [(40, 70), (30, 30), (64, 40), (50, 20)]  # height x width: different tilings, different token counts


def image(seed: int, size: tuple[int, int] = (32, 32)):
    from PIL import Image

    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (*size, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=["llava_onevision", "idefics3"])
def vlm(request):
    return T.tiny_model(family=request.param, seed=0)


def pairs_with_images(n: int = 4) -> list[PreferencePair]:
    things = ["a red square", "a cat", "a map", "snow"]
    return [PreferencePair(id=f"mm/{i}", source="toy", subset="toy", prompt=f"What is in the picture? ({i})",
                           chosen=f"It shows {things[i % 4]}.", rejected="No idea.",
                           images=(image(i, SIZES[i % len(SIZES)]),)) for i in range(n)]


def texts_for(model, n=3):
    return [scalar_prompt(model, Example(p.prompt, p.chosen, None, images=p.images), SHORT)
            for p in pairs_with_images(n)]


def random_means(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, generator=g)


def test_prompts_carry_their_images(vlm):
    texts = texts_for(vlm, 2)
    assert all(isinstance(t, M.ImageText) and len(t.images) == 1 for t in texts)
    tokens, attn = M.tokenize(vlm, texts)
    assert (attn.sum(-1) > 40).all() and (attn[:, -1] == 1).all()  # image tokens expanded; read position is -1
    same_text_other_image = M.ImageText(str(texts[0]), [image(99)])
    assert same_text_other_image != texts[0] and hash(same_text_other_image) != hash(texts[0])
    assert (texts[0] + "Yes").images == texts[0].images  # answered prompts keep the images


def test_image_path_equals_the_models_own_forward_with_pixel_values(vlm):
    """Image slots + features written at hook_embed give the logits of the model's own forward on pixel_values,
    batched (left-padded, images of different sizes) and one by one."""
    texts = texts_for(vlm, 3)
    batched = M.run_last_logits(vlm, *M.tokenize(vlm, texts))
    proc = vlm.armlens_processor
    for i, text in enumerate(texts):
        enc = proc(text=[str(text)], images=[[M.load_image(x) for x in text.images]], return_tensors="pt",
                   add_special_tokens=False)
        with torch.no_grad():
            own = vlm(enc["input_ids"], attention_mask=enc["attention_mask"],
                      **{k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")})[:, -1]
        torch.testing.assert_close(M.run_last_logits(vlm, *M.tokenize(vlm, [text])), own, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched[i : i + 1], own, atol=1e-4, rtol=1e-4)


def test_hook_z_matches_o_proj_input_with_images(vlm):
    """hook_z on the language backbone equals the input of that layer's o_proj in an independent copy of the model
    run by plain transformers with pixel_values, captured with a plain PyTorch forward pre-hook."""
    from armlens.testing import tiny_vlm_parts

    family = "idefics3" if "idefics3" in M.model_id(vlm) else "llava_onevision"
    hf, _, _ = tiny_vlm_parts(family, seed=0)  # same seeded weights, never booted
    text = texts_for(vlm, 1)[0]
    enc = vlm.armlens_processor(text=[str(text)], images=[[M.load_image(x) for x in text.images]],
                                return_tensors="pt", add_special_tokens=False)
    seen = {}
    layers = hf.get_decoder().layers
    handles = [layer.self_attn.o_proj.register_forward_pre_hook(lambda mod, args, i=i: seen.__setitem__(i, args[0]))
               for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            hf(**enc)
    finally:
        for h in handles:
            h.remove()
    zs = {}
    hooks = [(M.hook_z_name(layer), lambda z, hook, layer=layer: zs.__setitem__(layer, z.detach().clone()))
             for layer in range(vlm.cfg.n_layers)]
    M.run_last_logits(vlm, *M.tokenize(vlm, [text]), hooks)
    assert len(zs) == len(layers) == vlm.cfg.n_layers
    for layer in range(vlm.cfg.n_layers):
        z = zs[layer]
        assert z.shape[1] == enc["input_ids"].shape[1] and z.shape[-2:] == (vlm.cfg.n_heads, vlm.cfg.d_head)
        torch.testing.assert_close(z.reshape(*z.shape[:2], -1), seen[layer], atol=Z_ATOL, rtol=0)


def test_empty_mask_and_own_activations(vlm):
    texts = texts_for(vlm, 2)
    plain = score_texts(vlm, texts)
    empty = torch.zeros(vlm.cfg.n_layers, vlm.cfg.n_heads, dtype=torch.bool)
    torch.testing.assert_close(score_texts(vlm, texts, means=random_means(vlm), mask=empty), plain)
    z, logits = capture_last_z(vlm, texts[:1])
    full = torch.ones_like(empty)
    tokens, attn = M.tokenize(vlm, texts[:1])
    torch.testing.assert_close(M.run_last_logits(vlm, tokens, attn, patch_hooks(vlm, z[0], full)), logits,
                               atol=1e-5, rtol=1e-5)
    other = M.run_last_logits(vlm, tokens, attn, patch_hooks(vlm, random_means(vlm), full))
    assert not torch.allclose(other, logits, atol=1e-3)
    ids = AnswerIds.of(vlm)
    assert score_from_logits(logits, ids.yes, ids.no).shape == (1,)


def test_batched_equals_one_by_one_with_images_of_different_sizes(vlm):
    texts = texts_for(vlm, 4)
    lengths = M.tokenize(vlm, texts)[1].sum(-1)
    means = random_means(vlm)
    mask = torch.rand(vlm.cfg.n_layers, vlm.cfg.n_heads, generator=torch.Generator().manual_seed(1)) < 0.5
    batched = score_texts(vlm, texts, means=means, mask=mask, batch_size=4, kind="logit_diff")
    single = score_texts(vlm, texts, means=means, mask=mask, batch_size=1, kind="logit_diff")
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    if "llava" in M.model_id(vlm):
        assert len(set(lengths.tolist())) > 1  # the batch really was left-padded


def test_fast_path_equals_full_recomputation(vlm):
    """The prefix (image tokens included) is run once; K masks over it equal one full forward per mask."""
    texts = texts_for(vlm, 2)
    means = random_means(vlm)
    masks = torch.rand(5, vlm.cfg.n_layers, vlm.cfg.n_heads, generator=torch.Generator().manual_seed(3)) < 0.5
    masks[0] = False
    ids = AnswerIds.of(vlm)
    gold = torch.tensor([ids.yes, ids.no])
    cache = M.prefix_cache(vlm, *M.tokenize(vlm, texts))
    fast = mask_losses(vlm, cache, means, masks, gold, chunk=4)
    for b, text in enumerate(texts):
        ref = mask_losses_reference(vlm, text, means, masks, int(gold[b]))
        torch.testing.assert_close(fast[b], ref, atol=1e-4, rtol=1e-4)
    # branch scoring with shared prefixes (same image, other response) equals full forwards
    pair = pairs_with_images(1)[0]
    both = [scalar_prompt(vlm, Example(pair.prompt, r, None, images=pair.images), SHORT)
            for r in (pair.chosen, pair.rejected)]
    patches = [(means, masks[1]), (means, masks[2])]
    shared = score_patched(vlm, both, patches, groups=["p", "p"])
    full = torch.cat([score_texts(vlm, [t], means=m, mask=k) for t, (m, k) in zip(both, patches, strict=True)])
    torch.testing.assert_close(shared, full, atol=1e-4, rtol=1e-4)


def test_other_images_are_other_tokens(vlm):
    a, b = (scalar_prompt(vlm, Example("Describe it.", "A thing.", None, images=(image(s),)), SHORT) for s in (1, 2))
    ta, tb = M.tokenize(vlm, [a])[0][0].tolist(), M.tokenize(vlm, [b])[0][0].tolist()
    assert len(ta) == len(tb) and ta != tb  # same text, same size, other pixels: the shared prefix stops there
    again = scalar_prompt(vlm, Example("Describe it.", "Another.", None, images=(image(1),)), SHORT)
    assert M.common_prefix_length([ta, M.tokenize(vlm, [again])[0][0].tolist()]) > ta.index(max(ta))


def test_text_models_refuse_images(tiny):
    with pytest.raises(ValueError, match="cannot read images"):
        scalar_prompt(tiny, Example("Describe it.", "A thing.", None, images=(image(0),)))


def test_arm_fit_score_save_load_on_a_vision_language_model(vlm, tmp_path):
    cfg = ARMConfig(n_trials=4, template=SHORT, reading="icl",
                    reinforce=ReinforceConfig(steps=2, k_masks=4, n_final_samples=2, n_final_eval=2))
    pairs = pairs_with_images(4)
    rm = ActivationRM(vlm, cfg).fit(pairs[:3], show_progress=False)
    assert rm.means.shape == (vlm.cfg.n_layers, vlm.cfg.n_heads, vlm.cfg.d_head)
    chosen, rejected = rm.score_pairs(pairs[3:], show_progress=False)
    single = rm.score(pairs[3].prompt, pairs[3].chosen, criterion=rm._criterion(pairs[3]), images=pairs[3].images)
    assert single == pytest.approx(float(chosen[0]), abs=1e-5)  # full forward vs the branch path
    loaded = ActivationRM.load(rm.save(tmp_path / "mm.arm"), vlm)
    c2, r2 = loaded.score_pairs(pairs[3:], show_progress=False)
    assert torch.equal(c2, chosen) and torch.equal(r2, rejected)
    other = T.tiny_model(family="llava_onevision" if "idefics3" in M.model_id(vlm) else "idefics3", seed=0)
    with pytest.raises(ValueError, match="cannot be loaded"):
        ActivationRM.load(tmp_path / "mm.arm", other)


def test_load_model_reads_a_saved_vision_language_model_with_its_processor(tmp_path):
    from armlens.testing import tiny_vlm_parts

    vlm = T.tiny_model(family="llava_onevision", seed=0)
    hf, _, _ = tiny_vlm_parts("llava_onevision", seed=0)
    hf.save_pretrained(tmp_path)
    vlm.armlens_processor.save_pretrained(tmp_path)
    loaded = M.load_model(str(tmp_path), device="cpu")
    assert M.is_multimodal(loaded) and loaded.cfg.n_layers == vlm.cfg.n_layers
    mine, theirs = loaded.original_model.state_dict(), vlm.original_model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # AutoProcessor may pick another image backend (torch resize, not PIL): compare with the loaded model's own forward
    text = texts_for(loaded, 1)[0]
    enc = loaded.armlens_processor(text=[str(text)], images=[[M.load_image(x) for x in text.images]],
                                   return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        own = loaded(enc["input_ids"], attention_mask=enc["attention_mask"],
                     **{k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")})[:, -1]
    torch.testing.assert_close(M.run_last_logits(loaded, *M.tokenize(loaded, [text])), own, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llava_onevision", "idefics3"])
def test_booting_a_vision_language_model_never_installs_packages(family, monkeypatch, tmp_path):
    """TransformerLens 4.3 pip-installs torchvision (unpinned: it replaced this machine's CPU torch with a CUDA
    build mid-run) when a multimodal AutoProcessor fails to load; armlens boots with that hook only checking."""
    import subprocess

    from transformer_lens.model_bridge.sources.transformers import helpers

    from armlens.testing import tiny_vlm_parts

    calls = []

    def no_pip(cmd, *a, **k):
        calls.append(cmd)
        raise AssertionError(f"a package install was attempted: {cmd}")

    monkeypatch.setattr(subprocess, "check_call", no_pip)
    monkeypatch.setattr(subprocess, "run", no_pip)
    real = helpers._ensure_torchvision
    vlm = T.tiny_model(family=family, seed=0)
    hf, _, _ = tiny_vlm_parts(family, seed=0)
    hf.save_pretrained(tmp_path)
    vlm.armlens_processor.save_pretrained(tmp_path)
    M.load_model(str(tmp_path), device="cpu")
    assert calls == [] and helpers._ensure_torchvision is real  # restored after the boot
    from armlens.model.loading import no_package_installs

    with no_package_installs():  # inside the guard: a check, no install
        assert helpers._ensure_torchvision() == (__import__("importlib").util.find_spec("torchvision") is not None)
    assert calls == []
