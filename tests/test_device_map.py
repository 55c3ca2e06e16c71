"""``load_model(..., device_map=...)``: a model spread by a Hugging Face device map (here the CPU and disk offload,
the two placements a CPU machine has) computes what the plainly loaded model computes, on the fast path too."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M

PROMPT = "<|im_start|>user\nIs it true? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def folder(saved_tiny_model):
    return saved_tiny_model(n_layers=3, n_key_value_heads=2)


def test_device_map_with_disk_offload_matches_the_plain_model(folder, tmp_path, one_thread):
    pytest.importorskip("accelerate")
    plain = M.load_model(str(folder))
    placed = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
              "model.layers.1": "disk", "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    spread = M.load_model(str(folder), device_map=placed, offload_folder=str(tmp_path))
    assert spread.original_model.hf_device_map == placed
    tokens = [M.tokenize(m, [PROMPT]) for m in (plain, spread)]
    assert torch.equal(M.run_last_logits(plain, *tokens[0]), M.run_last_logits(spread, *tokens[1]))
    branches = [M.run_cached_branches(m, M.prefix_cache(m, *t), 4) for m, t in zip((plain, spread), tokens,
                                                                                    strict=True)]
    assert torch.equal(*branches)


def test_device_map_excludes_device(folder):
    with pytest.raises(ValueError, match="either device or device_map"):
        M.load_model(str(folder), device="cpu", device_map="auto")


def test_cli_device_map_flag_places_the_model_and_fits_the_same_arm(folder, data_root, tmp_path):
    """``--device-map`` (a JSON map here, the one placement a CPU machine has without disk) reaches load_model, and
    the ARM fitted on the placed model is the one fitted on the plain model."""
    pytest.importorskip("accelerate")
    from armlens.cli import main
    from armlens.rm import ActivationRM

    common = ["fit", "--data", "hhh", "--root", str(data_root), "--model", str(folder), "--n-fewshot", "8",
              "--steps", "2", "--n-trials", "4", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain.arm")]) == 0
    assert main([*common, "--out", str(tmp_path / "mapped.arm"), "--device-map", '{"": "cpu"}']) == 0
    model = M.load_model(str(folder))
    plain, mapped = (ActivationRM.load(tmp_path / f"{n}.arm", model) for n in ("plain", "mapped"))
    assert plain.fits.keys() == mapped.fits.keys()
    for key, fit in plain.fits.items():
        assert torch.equal(fit.mask, mapped.fits[key].mask)
        torch.testing.assert_close(fit.means, mapped.fits[key].means, atol=1e-6, rtol=0)
