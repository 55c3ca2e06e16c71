"""``load_model(..., device_map=...)``: a model spread by a Hugging Face device map (here the CPU and disk offload,
the two placements a CPU machine has) computes what the plainly loaded model computes, on the fast path too."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M

PROMPT = "<|im_start|>user\nIs it true? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-dm")
    hf, tok = M.tiny_hf_model(n_layers=3, n_heads=4, n_key_value_heads=2, d_head=16, seed=3)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path


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
