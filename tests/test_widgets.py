"""The head picker (``armlens.widgets``) without a browser: its state, its readout against ``ActivationRM``, the
branch-read attention against full forwards, and the ipywidgets view driven by simulated clicks.

The notebook that leads with the widget is rendered to HTML and screenshotted in ``tests/test_notebooks.py``."""

from __future__ import annotations

import pytest
import torch

from armlens.analysis.heads import attention_from_last, branches_with_attention
from armlens.model import prefix_cache, run_last_logits, tokenize
from armlens.patching import patch_hooks
from armlens.rm import ActivationRM
from armlens.scoring import score_texts
from armlens.widgets import EFFECT, HeadPicker, grid_html
from armlens.widgets.snapshot import cell_colour

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "How do I boil an egg?"
RESPONSE = "Put it in boiling water for eight minutes, then cool it in cold water."
CRITERION = "The response is helpful."


def _rm(model, heads=((1, 2),), seed=0) -> ActivationRM:
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=gen) * 2
    mask = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return ActivationRM.from_patch(model, means, mask)


def _picker(model, **kw) -> HeadPicker:
    return HeadPicker(_rm(model), PROMPT, RESPONSE, CRITERION, **kw)


def test_branch_attention_equals_full_forwards(tiny_any):
    """One branched forward gives each mask's logits and the head's attention row as full forwards do."""
    model = tiny_any
    rm = _rm(model, heads=((0, 1), (0, 3)))
    text = HeadPicker(rm, PROMPT, RESPONSE, CRITERION).text
    tokens, attn = tokenize(model, [text])
    masks = torch.stack([torch.zeros_like(rm.mask), rm.mask])
    layer, head = model.cfg.n_layers - 1, 2
    logits, rows = branches_with_attention(model, prefix_cache(model, tokens, attn), rm.means, masks, layer, head)
    full = attention_from_last(model, text, layer, head, means=rm.means, mask=rm.mask)
    assert rows.shape == (2, tokens.shape[1])
    assert torch.allclose(rows.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(rows[0], torch.tensor(full.weights), atol=1e-5)
    assert torch.allclose(rows[1], torch.tensor(full.patched_weights), atol=1e-5)
    assert not torch.allclose(rows[0], rows[1], atol=1e-4), "a patch in an earlier layer moves the query"
    assert torch.allclose(logits[0], run_last_logits(model, tokens, attn)[0], atol=1e-4)
    assert torch.allclose(logits[1], run_last_logits(model, tokens, attn, patch_hooks(model, rm.means, rm.mask))[0],
                          atol=1e-4)


def test_toggle_changes_the_mask_and_the_score_is_the_arms(tiny_any):
    picker = _picker(tiny_any)
    rm = picker.rm
    assert torch.equal(picker.mask, rm.mask) and picker.heads == ["L1H2"]
    start = picker.readout()
    assert start.score[1] == pytest.approx(rm.score(PROMPT, RESPONSE, CRITERION), abs=1e-5)
    plain = float(score_texts(tiny_any, [picker.text], answer_ids=rm.answer_ids)[0])
    assert start.score[0] == pytest.approx(plain, abs=1e-5), "the unpatched column is the plain judge"

    assert picker.toggle(0, 1) is True
    assert picker.heads == ["L0H1", "L1H2"] and picker.attention_head == (0, 1)
    after = picker.readout()
    expected = ActivationRM.from_patch(tiny_any, rm.means, picker.mask.clone()).score(PROMPT, RESPONSE, CRITERION)
    assert after.score[1] == pytest.approx(expected, abs=1e-5)
    assert after.score[1] != pytest.approx(start.score[1], abs=1e-6), "adding a head changes the judge"
    assert after.score[0] == pytest.approx(start.score[0], abs=1e-6)
    assert after.p_yes == pytest.approx(after.score, abs=1e-6) and after.kind == "prob"
    assert after.attention.label == "L0H1" and len(after.attention.tokens) == after.n_tokens

    assert picker.toggle(0, 1) is False
    assert picker.heads == ["L1H2"]
    assert picker.readout().score[1] == pytest.approx(start.score[1], abs=1e-6)
    with pytest.raises(ValueError, match="outside"):
        picker.toggle(tiny_any.cfg.n_layers, 0)


def test_readout_tables(tiny):
    r = _picker(tiny, top_k=5).readout()
    table = r.table()
    assert list(table.index) == ["P(Yes)", "P(No)", "logit(Yes) - logit(No)"]
    assert list(table.columns) == ["unpatched", "patched", "change"]
    assert table.loc["P(Yes)", "change"] == pytest.approx(r.p_yes[1] - r.p_yes[0])
    assert len(r.top) == 5 and r.top["p patched"].is_monotonic_decreasing
    assert r.margin[1] == pytest.approx(
        torch.tensor(r.p_yes[1]).log().item() - torch.tensor(r.p_no[1]).log().item(), abs=1e-4)
    att = r.attention_table(4)
    assert len(att) == 4 and att["patched"].is_monotonic_decreasing


def test_presets_and_the_effect_map(tiny):
    picker = _picker(tiny, attribution_k=3)
    n_layers, n_heads = picker.shape
    picker.preset("none")
    assert not picker.mask.any()
    picker.preset("all")
    assert picker.mask.all()
    picker.preset("arm")
    assert torch.equal(picker.mask, picker.rm.mask)
    effect = picker.single_head_effect()
    assert effect.shape == (n_layers, n_heads)
    # The effect of one head equals the margin change of two full forwards.
    tokens, attn = tokenize(tiny, [picker.text])
    ids = picker.rm.answer_ids
    base = run_last_logits(tiny, tokens, attn)[0]
    one = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    one[0, 2] = True
    hit = run_last_logits(tiny, tokens, attn, patch_hooks(tiny, picker.rm.means, one))[0]
    want = float((hit[ids.yes] - hit[ids.no]) - (base[ids.yes] - base[ids.no]))
    assert float(effect[0, 2]) == pytest.approx(want, abs=1e-4)
    picker.preset("topk")
    assert int(picker.mask.sum()) == 3
    assert set(picker.mask.flatten().nonzero().flatten().tolist()) == set(effect.abs().flatten().topk(3).indices.tolist())
    assert bool(picker.mask[picker.attention_head])
    picker.preset("topk", k=1)
    assert int(picker.mask.sum()) == 1
    with pytest.raises(ValueError, match="unknown preset"):
        picker.preset("best")
    assert picker.map_names == ["ARM heads", EFFECT]
    values, signed = picker.head_map(EFFECT)
    assert signed and torch.equal(values, effect)


def test_text_edits_change_the_prompt_and_its_cache(tiny):
    picker = _picker(tiny)
    before = picker.readout()
    picker.set_text(response="No idea, sorry.")
    assert "No idea" in picker.text
    after = picker.readout()
    assert after.score[1] == pytest.approx(picker.arm().score(PROMPT, "No idea, sorry.", CRITERION), abs=1e-5)
    assert after.n_tokens != before.n_tokens
    picker.set_text(criterion="The response is short.")
    assert picker.readout().score[1] == pytest.approx(
        picker.arm().score(PROMPT, "No idea, sorry.", "The response is short."), abs=1e-5)
    with pytest.raises(ValueError, match="empty"):
        picker.set_text(prompt="  ")
    picker.set_heads("L0H0,L1H3")
    assert picker.heads == ["L0H0", "L1H3"]
    picker.set_attention_head("L1H3")
    assert picker.readout().attention.label == "L1H3"


def test_snapshot_html_shows_grid_and_scores(tiny):
    picker = _picker(tiny)
    r = picker.readout()
    page = picker.snapshot_html(r)
    assert page.count("<td title='L") == tiny.cfg.n_layers * tiny.cfg.n_heads
    assert page.count("&#x2715;</b>") == 1 and "L1H2" in page and "P(Yes)" in page and f"{r.p_yes[1]:.4f}" in page
    assert cell_colour(0.0, signed=True) == "#f7f7f7" and cell_colour(1.0, signed=False) == "#08306b"
    assert cell_colour(-2.0, signed=True, scale=1.0) == "#b2182b"
    assert "range 0 to 1" in grid_html(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool), signed=False, title="x")


def test_view_reacts_to_clicks_presets_and_text(tiny):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from plotly.callbacks import Points

    from armlens.widgets import HeadPickerView, head_picker

    view = head_picker(_rm(tiny), PROMPT, RESPONSE, CRITERION)
    assert isinstance(view, HeadPickerView)
    picker = view.picker
    marks = view.grid.data[1]
    assert list(marks.x) == [2] and list(marks.y) == [1]
    # A click on the heatmap cell (layer 0, head 3): plotly reports the cell's x (head) and y (layer).
    view._on_click(view.grid.data[0], Points(point_inds=[[0, 3]], xs=[3], ys=[0], trace_index=0), None)
    assert picker.heads == ["L0H3", "L1H2"] and view.head.value == "L0H3"
    assert sorted(zip(marks.y, marks.x, strict=True)) == [(0, 3), (1, 2)]
    assert f"{view.last.p_yes[1]:.4f}" in view.readout_box.value
    assert view.last.score[1] == pytest.approx(picker.arm().score(PROMPT, RESPONSE, CRITERION), abs=1e-5)
    assert len(view.latencies) == 1 and view.latencies[0] > 0
    view._on_click(view.grid.data[0], Points(point_inds=[], xs=[], ys=[], trace_index=0), None)  # no point
    assert len(view.latencies) == 1
    # Only the heatmap listens (the crosses skip hover, so a click on one reaches its cell): one toggle per click.
    assert view.grid.data[0]._click_callbacks and not view.grid.data[1]._click_callbacks
    assert view.grid.data[1].hoverinfo == "skip"
    # Clicking a patched head again removes it.
    view._on_click(view.grid.data[0], Points(point_inds=[[0, 3]], xs=[3], ys=[0], trace_index=0), None)
    assert picker.heads == ["L1H2"]

    # The message plotly's frontend sends for a click on cell (layer 1, head 1) goes the same way.
    view.grid._js2py_pointsCallback = {"event_type": "plotly_click", "points": {
        "xs": [1], "ys": [1], "point_indexes": [[1, 1]], "trace_indexes": [0]}}
    assert picker.heads == ["L1H1", "L1H2"] and len(view.latencies) == 3
    view.grid._js2py_pointsCallback = {"event_type": "plotly_click", "points": {
        "xs": [1], "ys": [1], "point_indexes": [[1, 1]], "trace_indexes": [0]}}
    assert picker.heads == ["L1H2"]

    view.buttons["none"].click()
    assert not picker.mask.any() and len(marks.x) == 0
    view.k.value = 2
    view.buttons["topk"].click()
    assert int(picker.mask.sum()) == 2 and view.maps.value == EFFECT
    view.buttons["arm"].click()
    assert picker.heads == ["L1H2"]

    view.response.value = "No idea, sorry."
    assert picker.response == "No idea, sorry."
    assert view.last.score[1] == pytest.approx(picker.arm().score(PROMPT, "No idea, sorry.", CRITERION), abs=1e-5)
    view.prompt.value = " "
    assert "empty" in view.status.value and picker.prompt == PROMPT
    view.head.value = "L1H0"
    assert view.last.attention.label == "L1H0"

    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "<table" in bundle["text/html"] and "P(Yes)" in bundle["text/html"]


def test_a_conversation_prompt_is_judged_as_its_text(tiny):
    """HHH prompts are conversations: the picker keeps the text the judge prompt shows, which renders the same."""
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": PROMPT}]
    rm = _rm(tiny)
    picker = HeadPicker(rm, chat, RESPONSE, CRITERION)
    assert picker.prompt.startswith("User: Hi") and isinstance(picker.prompt, str)
    assert picker.readout().score[1] == pytest.approx(rm.score(chat, RESPONSE, CRITERION), abs=1e-5)
    picker.set_text(prompt=chat[-1:])
    assert picker.prompt == f"User: {PROMPT}"


def test_readout_repr_is_one_line(tiny):
    r = _picker(tiny).readout()
    assert repr(r).startswith("Readout(P(Yes) ") and "\n" not in repr(r) and "1 heads patched" in repr(r)
    assert "Top next tokens" in r._repr_html_()
