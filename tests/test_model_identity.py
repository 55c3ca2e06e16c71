"""A saved ARM knows the model it was fitted on: architecture and sampled weights, not only the embedding."""

from __future__ import annotations

import pytest
import torch

from armlens import model as M
from armlens import testing as T
from armlens.model.identity import _tensor_digest as tensor_digest
from armlens.rm import ActivationRM


def saved_arm(model, path):
    """An ARM with random means and two heads patched, saved to ``path`` (no fit needed to test identity)."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, generator=g)
    mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    mask[0, 1] = mask[-1, 2] = True
    return ActivationRM.from_patch(model, means, mask).save(path)


@pytest.fixture(scope="module")
def mha():
    model = T.tiny_model(n_layers=2, n_heads=4, d_head=16, seed=0)
    model.armlens_model_id = "tiny"  # the same name on both sides: the check must not rely on the id
    return model


def test_the_same_model_loads_and_the_fingerprint_covers_attention_and_mlp(mha, tmp_path):
    path = saved_arm(mha, tmp_path / "a.arm")
    assert ActivationRM.load(path, mha).heads == ["L0H1", "L1H2"]
    fp = M.model_fingerprint(mha)
    assert fp["n_key_value_heads"] == 4 and fp["model_id"] == "tiny" and fp["architecture"] == "LlamaForCausalLM"
    names = " ".join(fp["weights"])
    for part in ("embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert part in names, part


def test_grouped_query_model_with_the_same_embedding_is_refused(mha, tmp_path):
    gqa = T.tiny_model(n_layers=2, n_heads=4, n_key_value_heads=2, d_head=16, seed=0)
    gqa.armlens_model_id = "tiny"
    emb = lambda m: m.original_model.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(emb(mha), emb(gqa))  # the old embedding checksum could not tell them apart
    path = saved_arm(mha, tmp_path / "a.arm")
    with pytest.raises(ValueError, match=r"n_key_value_heads 4 vs 2.*weights of .*k_proj"):
        ActivationRM.load(path, gqa)


def test_a_fine_tune_of_one_layer_is_refused_unless_forced(mha, tmp_path):
    path = saved_arm(mha, tmp_path / "a.arm")
    tuned = T.tiny_model(n_layers=2, n_heads=4, d_head=16, seed=0)
    tuned.armlens_model_id = "tiny"
    w = tuned.original_model.model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        w.add_(1e-3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match=r"weights of model\.layers\.1\.mlp\.down_proj\.weight differ; pass force"):
        ActivationRM.load(path, tuned)
    with pytest.warns(UserWarning, match="as forced"):
        rm = ActivationRM.load(path, tuned, force=True)
    assert rm.heads == ["L0H1", "L1H2"]


def test_a_different_shape_is_refused_even_when_forced(mha, tmp_path):
    path = saved_arm(mha, tmp_path / "a.arm")
    deeper = T.tiny_model(n_layers=3, n_heads=4, d_head=16, seed=0)
    with pytest.raises(ValueError, match="n_layers 2 vs 3"):
        ActivationRM.load(path, deeper, force=True)


def test_a_dtype_change_is_tolerated_only_in_the_weight_digest():
    saved = {"dtype": "float32", "weights": {"w": {"shape": [2], "sum": 1.0, "sumsq": 2.0}}}
    bf16 = {"dtype": "bfloat16", "weights": {"w": {"shape": [2], "sum": 1.003, "sumsq": 2.004}}}
    assert M.fingerprint_differences(saved, bf16) == ([], [])
    same_dtype = {**bf16, "dtype": "float32"}
    assert M.fingerprint_differences(saved, same_dtype)[1] == ["weights of w"]


def test_digest_of_a_large_tensor_stays_in_bounds():
    """The default model's embedding has 28,311,552 entries: the strided sample must end at the last one (a float32
    index grid rounded past the end there)."""
    big = torch.arange(49152 * 576, dtype=torch.float32).view(49152, 576)
    d = tensor_digest(big)
    assert d["shape"] == [49152, 576] and d["head"][0] == 0.0
    flat = big.reshape(-1)
    idx = torch.arange(4096) * (flat.numel() - 1) // 4095
    assert int(idx[-1]) == flat.numel() - 1 and d["sum"] == float(flat[idx].double().sum())


@pytest.mark.slow
def test_save_and_load_on_the_default_model(default_model, tmp_path):
    """The fingerprint of the real model (large embedding, GQA) is computed, saved and matched on load."""
    path = saved_arm(default_model, tmp_path / "default.arm")
    loaded = ActivationRM.load(path, default_model)
    assert loaded.heads == ["L0H1", f"L{default_model.cfg.n_layers - 1}H2"]
