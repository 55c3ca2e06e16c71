"""``armlens.memory``: the memory plan's arithmetic, checked against hand-computed values on the tiny models and on
the real prefix caches they produce; ``armlens info --memory``."""

from __future__ import annotations

import json

import pytest

from armlens import model as M
from armlens import testing as T
from armlens.cli import main
from armlens.memory import SHAPES, ModelShape, fit_work, format_plan, kv_bytes_per_token, memory_plan
from armlens.rm import ARMConfig
from armlens.selection import ReinforceConfig


def test_kv_bytes_per_token_by_hand(tiny, tiny_gqa):
    mha, gqa = ModelShape.from_model(tiny), ModelShape.from_model(tiny_gqa)
    assert kv_bytes_per_token(mha) == 2 * 2 * 4 * 16 * 4 == 1024  # K and V x layers x kv heads x d_head x float32
    assert kv_bytes_per_token(gqa) == 2 * 3 * 2 * 16 * 4 == 768  # grouped-query: 2 key/value heads, not 4
    assert kv_bytes_per_token(gqa, "bfloat16") == 384
    assert kv_bytes_per_token(SHAPES["smollm2-135m-instruct"]) == 46080  # the "~46 KB per token" of PrefixPool
    assert kv_bytes_per_token(SHAPES["qwen2-7b"], "bfloat16") == 2 * 28 * 4 * 128 * 2 == 57344


def test_param_count_from_the_config_equals_the_model(tiny, tiny_gqa):
    for model in (tiny, tiny_gqa):
        exact = ModelShape.from_model(model)
        from_config = ModelShape.from_hf_config(model.original_model.config)
        assert from_config.n_params is None and from_config.param_count() == exact.param_count()
    v = len(T.tiny_tokenizer())  # by hand for the 2 x 4 x 16 model: d_model 64, d_mlp 64, untied embeddings
    block = 4 * 64 * 64 + 3 * 64 * 64 + 2 * 64
    assert ModelShape.from_model(tiny).param_count() == 2 * v * 64 + 2 * block + 64
    assert SHAPES["qwen2-7b"].param_count() == pytest.approx(7.6157e9, rel=1e-4)  # Qwen2-7B: 7.62 B parameters
    assert SHAPES["smollm2-135m-instruct"].param_count() == pytest.approx(134.5e6, rel=1e-3)


@pytest.mark.parametrize("text", ["Is this helpful? Yes or no.", "x" * 50])
def test_pool_bytes_match_real_prefix_caches(tiny_any, text):
    """The plan's per-token cost is what a PrefixPool really holds."""
    pool = M.PrefixPool(tiny_any)
    pool.get(text)
    n = int(M.tokenize(tiny_any, [text])[1].sum())
    plan = memory_plan(ModelShape.from_model(tiny_any), prompt_tokens=n, pool_prompts=1)
    assert pool.bytes == plan.pool_bytes == (n - 1) * plan.kv_bytes_per_token


def test_plan_arithmetic_by_hand(tiny):
    shape = ModelShape.from_model(tiny)
    arm = ARMConfig(n_train=10, val_pairs=1, reinforce=ReinforceConfig(k_masks=8, prefix_cache_mb=1.0))
    plan = memory_plan(shape, arm, prompt_tokens=51, runtime_mb=0)
    assert plan.pool_prompts == 12 and plan.pool_bytes == 12 * 50 * 1024  # under the 1 MiB cap
    assert plan.weights_bytes == 4 * shape.param_count() and plan.k_branches == 8
    widest = max(4 * 64, 3 * 64)
    assert plan.branch_bytes == (50 + 8) * 1024 + 2 * 8 * shape.d_vocab * 4 + 8 * widest * 4 + 4 * 8 * 58 * 4
    assert plan.forward_bytes == 3 * 153 * shape.d_vocab * 4 + 153 * widest * 4 + 4 * 153 * 153 * 4  # 3 x 51 tokens
    short = memory_plan(shape, arm, prompt_tokens=51, extraction_tokens=20, runtime_mb=0)
    assert short.forward_bytes == 3 * 20 * shape.d_vocab * 4 + 20 * widest * 4 + 4 * 20 * 20 * 4
    assert plan.peak_bytes == plan.weights_bytes + plan.pool_bytes + max(plan.branch_bytes, plan.forward_bytes)
    capped = memory_plan(shape, arm, prompt_tokens=1001, runtime_mb=0)
    assert capped.pool_bytes == 2**20 == capped.pool_cap_bytes  # 12 x 1000 x 1 KiB > 1 MiB: the cap holds
    half = memory_plan(shape, arm, dtype="bfloat16", prompt_tokens=51, runtime_mb=0)
    assert half.weights_bytes * 2 == plan.weights_bytes and half.pool_bytes * 2 == plan.pool_bytes
    forked = memory_plan(shape, arm, prompt_tokens=51, runtime_mb=0, processes=3)  # 3 criteria fitted at once
    assert forked.peak_bytes == plan.weights_bytes + 3 * (plan.pool_bytes + plan.working_bytes)
    assert "3 x (pool" in format_plan(forked)
    with pytest.raises(ValueError, match="unknown dtype"):
        memory_plan(shape, dtype="int3")
    with pytest.raises(ValueError, match="processes must be at least 1"):
        memory_plan(shape, processes=0)


def test_fit_work_counts_tokens_and_forwards(tiny):
    shape = ModelShape.from_model(tiny)
    arm = ARMConfig(n_trials=4, n_train=6, val_pairs=1, reinforce=ReinforceConfig(
        steps=10, k_masks=8, mask_chunk=4, n_final_samples=2, n_final_eval=5, val_every=5))
    w = fit_work(shape, arm, prompt_tokens=50, criteria=2)
    assert w.prefix_tokens == 2 * (4 * 150 + 8 * 50)
    assert w.branch_forwards == 2 * (10 * 2 + 2 * 5 + 2 * 2)  # steps x chunks + final choice + validation
    assert w.branch_positions == 2 * (10 * 8 + 2 * 5 + 2 * 2)
    assert w.flops == 2.0 * shape.param_count() * (w.prefix_tokens + w.branch_positions)


def test_info_memory_reads_a_folder_config_and_presets(saved_tiny_model, capsys):
    folder = saved_tiny_model(n_key_value_heads=2)
    hf = M.load_model(str(folder)).original_model
    assert main(["info", "--model", str(folder), "--memory", "--json", "--prompt-tokens", "11"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4 and plan["params"] == sum(
        p.numel() for p in hf.parameters())
    assert plan["pool_bytes"] == (ARMConfig().n_train + 2 * ARMConfig().val_pairs) * 10 * 512
    assert main(["info", "--memory", "--shape", "qwen2-7b", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "qwen2-7b in bfloat16" in out and "56.0 KiB" in out and "predicted peak" in out


@pytest.mark.slow
def test_default_model_shape_matches_its_preset(default_model):
    shape = ModelShape.from_model(default_model)
    preset = SHAPES["smollm2-135m-instruct"]
    assert {**shape.__dict__, "name": "", "n_params": None} == {**preset.__dict__, "name": "", "n_params": None}
    assert shape.param_count() == preset.param_count()


def test_info_memory_bad_input_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--memory", "--shape", "qwen2-7b", "--prompt-tokens", "0"])
    assert e.value.code == 2 and "armlens info: error:" in capsys.readouterr().err
    assert main(["info", "--memory", "--shape", "qwen2-7b", "--dtype", "int3"]) == 2
    assert capsys.readouterr().err.strip().startswith("armlens info: error: unknown dtype 'int3'")
