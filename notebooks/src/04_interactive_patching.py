# %% [markdown]
# # 04 · Interactive patching: click heads, see the judge change
#
# The **head picker** below is a layer x head grid. Click a cell to add that head to the patch set (or take it out);
# the judge is re-read at once: P(Yes), the Yes-No logit margin and the top next tokens, unpatched against patched,
# and where the chosen head attends from the read position. The buttons set the patch set to the ARM's heads, the
# top-k heads by their single-head effect on this prompt, none or all; the text areas change the prompt, response
# and criterion (the new text is read when you leave the box); the drop-downs choose what colours the grid and whose
# attention is shown.
#
# What is patched: for each chosen head, `blocks.{l}.attn.hook_z` at the last token (the read position) is
# overwritten with that head's mean over labelled judge prompts (Stage 1 of the ARM fitted here). Only the last
# position changes, so the prompt's prefix runs once and every click is one forward of two copies of the last token
# (unpatched and patched) over its cache. **Measured** on the default model (SmolLM2-135M-Instruct; 1 torch thread on
# 2 CPU cores shared with other jobs): a click on a 303-token judge prompt updates the view in a median of 0.17 to
# 0.31 s (four runs of 20 clicks, slower when the cores were busier). Section 0 measures it on your machine and
# prints it.
#
# The picker needs `pip install -e ".[notebooks]"` (`scripts/setup.sh` installs it) and a Jupyter frontend with
# widgets (JupyterLab, Notebook 7, VS Code). Elsewhere (GitHub, an HTML export without network access, a terminal)
# it shows a static snapshot of the same grid and readout. The scripted cells after it do the same things by code:
# edit the cell marked **EDIT ME** and re-run from there; the last section sweeps all 270 heads one at a time.

# %%
import os
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from IPython.display import HTML, display
from plotly.subplots import make_subplots

# Work from the project root when the notebook sits in a clone; elsewhere (a copy opened in JupyterLab, as
# tests/test_picker_browser.py runs it) from where it is: the data it reads are bundled in the package.
ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "armlens").is_dir()),
            Path.cwd())
os.chdir(ROOT)  # data: ARMLENS_DATA_ROOT, or the cache `armlens data fetch bigbench` fills, else the bundled copy
# Figures as plotly's mimetype (JupyterLab's plotly extension draws it, offline) and as HTML that loads plotly.js from
# its CDN (HTML exports). Not `notebook_connected`: its one-off set-up output imports plotly.js from the CDN in
# JupyterLab too, which logs a console error wherever that address cannot be reached (tests/test_picker_browser.py).
pio.renderers["html_cdn"] = pio.base_renderers.HtmlRenderer(connected=True, include_plotlyjs="cdn")
pio.renderers.default = "plotly_mimetype+html_cdn"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets; bars are off
T_START = time.perf_counter()

from armlens import plots  # noqa: E402
from armlens.data import load_pairs, split_pairs  # noqa: E402
from armlens.model import load_model, model_id, prefix_cache, run_last_logits, tokenize  # noqa: E402
from armlens.patching import capture_last_z, head_label, mask_labels, parse_heads, patch_hooks, patched  # noqa: E402
from armlens.prompts import CRITERIA, AnswerIds, Example, JudgeTemplate, scalar_prompt  # noqa: E402
from armlens.rm import ActivationRM, ARMConfig  # noqa: E402
from armlens.selection import ReinforceConfig, mask_logits  # noqa: E402
from armlens.widgets import HeadPickerView, head_picker  # noqa: E402

TEMPLATE = JudgeTemplate(max_field_tokens=128)
model = load_model()
cfg = model.cfg
ids = AnswerIds.of(model, TEMPLATE)

assert (cfg.n_layers, cfg.n_heads) == (30, 9)

# %% [markdown]
# ## An ARM to patch with
#
# One criterion, HHH helpful, fitted on 6 few-shot pairs with small settings so that the notebook stays quick: Stage 1
# averages every head's hook_z at the gold answer token of the few-shot examples' judge prompts (the default
# `answered` reading: Yes after the chosen response, No after the rejected one), Stage 2 runs 15 REINFORCE steps, so the selection probabilities have
# only started to separate. To use your own fit instead: `rm = ActivationRM.load("my.arm", model)`.

# %%
CRITERION = CRITERIA["hhh-helpful"]
split = split_pairs(load_pairs("hhh", subsets=["hhh-helpful"]), seed=0, n_fewshot=6, n_select=0)
arm_config = ARMConfig(template=TEMPLATE, reinforce=ReinforceConfig(steps=15, n_final_samples=4))
rm = ActivationRM(model, arm_config).fit(split.fewshot, show_progress=False)
fit = rm.fit_for(CRITERION)
means = fit.means
print(rm)

# %%
assert list(rm.fits) == [CRITERION] and fit.info["n_extraction_prompts"] == 2 * len(split.fewshot)  # Yes and No
assert means.shape == (cfg.n_layers, cfg.n_heads, cfg.d_head) and torch.isfinite(means).all()
assert fit.selection is not None and fit.selection.probs is not None and bool(fit.mask.any())

# %% [markdown]
# ## 0. The head picker

# %%
PICK_PROMPT = "My neighbour's dog barks all night. How can I make it stop?"
PICK_RESPONSE = ("Talk to your neighbour first: they may not know. If that fails, keep a log of the nights and "
                 "contact your local council or animal control about a noise complaint.")
view = head_picker(rm, PICK_PROMPT, PICK_RESPONSE, CRITERION)
display(view)

# %% [markdown]
# What a click does, by code: `view.click(layer, head)` toggles the cell and redraws, exactly as the grid's click
# handler does; the shown patched score is the one `ActivationRM` gives for that head set. The timing below is from
# the click to the redrawn view in this kernel (the frontend's round trip adds a few milliseconds), on an HHH test
# pair whose judge prompt is about 300 tokens, 10 heads switched on and then off again.

# %%
picker = view.picker if isinstance(view, HeadPickerView) else view
before = picker.readout()
after = view.click(13, 1)
assert picker.heads == sorted(set(before.heads) ^ {"L13H1"}, key=lambda h: tuple(map(int, h[1:].split("H"))))
assert abs(after.score[1] - picker.arm().score(PICK_PROMPT, PICK_RESPONSE, CRITERION)) < 1e-4
assert abs(after.score[0] - before.score[0]) < 1e-5, "the unpatched column does not depend on the patch set"
view.click(13, 1)  # back to the ARM's heads

lengths = {p.id: int(tokenize(model, [scalar_prompt(model, Example(p.prompt, p.chosen, None, CRITERION), TEMPLATE)])[1].sum())
           for p in split.test}
long_pair = next(p for p in split.test if lengths[p.id] == min(lengths.values(), key=lambda n: abs(n - 300)))
t0 = time.perf_counter()
view.set_text(prompt=long_pair.prompt, response=long_pair.chosen)
n_tokens = picker.readout().n_tokens
t_text = time.perf_counter() - t0
heads = [(2, 5), (6, 0), (9, 3), (13, 1), (15, 7), (17, 6), (20, 2), (22, 4), (25, 5), (28, 8)]
mask_before = picker.mask.clone()
latencies = []
for layer, head in heads + heads:  # each head on, then off again
    t0 = time.perf_counter()
    view.click(layer, head)
    latencies.append(time.perf_counter() - t0)
LATENCY_S = statistics.median(latencies)
print(f"click -> updated view: median {LATENCY_S * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over "
      f"{len(latencies)} clicks; judge prompt {n_tokens} tokens; {model_id(model)} on {torch.get_num_threads()} "
      f"torch threads. A new text (its prefix runs once): {t_text:.2f} s.")
restored = view.set_text(prompt=PICK_PROMPT, response=PICK_RESPONSE)

# %%
assert len(latencies) == 20 and abs(n_tokens - 300) <= 60
assert LATENCY_S < 3.0, "a click is one two-token forward over the cached prefix; seconds mean something is wrong"
assert torch.equal(picker.mask, mask_before) and picker.prompt == PICK_PROMPT

# %% [markdown]
# The picker's state as a static snapshot (what a viewer without a widget frontend sees in place of the widget; it
# is how the picker appears in an HTML export of this notebook): the grid coloured by REINFORCE's selection
# probability with the patched heads crossed, and the judge's readout.

# %%
display(HTML(view.snapshot_html()))

# %% [markdown]
# ## 1. The mean activations patched in
#
# `means` are the ARM's Stage 1 means above (`fit.means`, `[n_layers, n_heads, d_head]`); the scripted cells below
# patch them into any head set you name.

# %% [markdown]
# ## 2. EDIT ME: prompt, response, criterion, heads

# %%
PROMPT = "My neighbour's dog barks all night. How can I make it stop?"
RESPONSE = ("Talk to your neighbour first: they may not know. If that fails, keep a log of the nights and contact "
            "your local council or animal control about a noise complaint.")
CRITERION = CRITERIA["hhh-helpful"]
HEADS = "L13H1,L17H6,L20H2,L25H5"  # L{layer}H{head}, comma-separated (or a list of (layer, head) tuples)
TOP_K = 8  # next tokens to show

text = scalar_prompt(model, Example(PROMPT, RESPONSE, None, CRITERION), TEMPLATE)
mask = parse_heads(HEADS, cfg.n_layers, cfg.n_heads)
print(f"judge prompt: {int(tokenize(model, [text])[1].sum())} tokens; heads: {mask_labels(mask)}")

# %%
assert mask.dtype == torch.bool and mask.shape == (cfg.n_layers, cfg.n_heads) and bool(mask.any())
assert torch.equal(parse_heads(mask_labels(mask), cfg.n_layers, cfg.n_heads), mask), "names <-> mask round trip"
for bad in ("L30H0", "L3H9", "head 3"):
    try:
        parse_heads(bad, cfg.n_layers, cfg.n_heads)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{bad!r} should be rejected")

# %% [markdown]
# ## 3. Patch and compare
#
# `judge` runs one forward pass with the given heads patched (none: the plain judge) and reads the last-token
# distribution: full-vocabulary P(Yes) and P(No), the two-way P(Yes | Yes or No), the Yes-No logit margin, and the
# top next tokens.

# %%
def judge(text: str, mask: torch.Tensor | None = None, k: int = TOP_K) -> dict:
    hooks = patch_hooks(model, means, mask) if mask is not None and bool(mask.any()) else []
    logits = run_last_logits(model, *tokenize(model, [text]), hooks)[0]
    probs = logits.softmax(-1)
    top = probs.topk(k)
    return {
        "logits": logits,
        "P(Yes)": float(probs[ids.yes]), "P(No)": float(probs[ids.no]),
        "P(Yes | Yes, No)": float(probs[ids.yes] / (probs[ids.yes] + probs[ids.no])),
        "logit(Yes) - logit(No)": float(logits[ids.yes] - logits[ids.no]),
        "top": pd.DataFrame({"token": [model.tokenizer.decode([int(i)]) for i in top.indices],
                             "prob": top.values.tolist()}),
    }


def compare(results: dict[str, dict]) -> pd.DataFrame:
    keys = ["P(Yes)", "P(No)", "P(Yes | Yes, No)", "logit(Yes) - logit(No)"]
    return pd.DataFrame({name: [r[k] for k in keys] for name, r in results.items()}, index=keys)


def top_tokens_figure(results: dict[str, dict], title: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results), shared_yaxes=True)
    for j, r in enumerate(results.values(), start=1):
        t = r["top"]
        fig.add_trace(go.Bar(x=[repr(s) for s in t["token"]], y=t["prob"], showlegend=False,
                             marker={"color": ["#d62728" if s.strip() in ("Yes", "No") else "#1f77b4" for s in t["token"]]}),
                      row=1, col=j)
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", width=900, height=380)
    return fig


results = {"unpatched": judge(text), f"patched ({len(mask_labels(mask))} heads)": judge(text, mask)}
top_tokens_figure(results, "Top next tokens at the read position (red: the answer words)").show()
display(compare(results))

# %%
base, hit = results.values()
for r in results.values():
    assert 0 <= r["P(Yes)"] <= 1 and 0 <= r["P(No)"] <= 1 and r["P(Yes)"] + r["P(No)"] <= 1 + 1e-6
    assert r["top"]["prob"].is_monotonic_decreasing and r["top"]["prob"].sum() <= 1 + 1e-6
assert float((hit["logits"] - base["logits"]).abs().max()) > 1e-3, "patching these heads must change the logits"
# The context manager gives the same patch, and leaves the model clean afterwards.
tokens, attn = tokenize(model, [text])
with patched(model, means, mask):
    inside = run_last_logits(model, tokens, attn)[0]
assert torch.allclose(inside, hit["logits"], atol=1e-4)
assert torch.allclose(run_last_logits(model, tokens, attn)[0], base["logits"], atol=1e-5)
# Patching the heads with this prompt's own activations is a no-op.
own_z, _ = capture_last_z(model, [text])
noop = run_last_logits(model, tokens, attn, patch_hooks(model, own_z[0], mask))[0]
assert torch.allclose(noop, base["logits"], atol=1e-4)

# %% [markdown]
# ## 4. Head sets by mask
#
# A mask is any boolean `[n_layers, n_heads]` tensor: here every head of a band of layers, or every head at once
# (which overwrites the whole last-token attention output with the few-shot average and so makes the judge ignore
# the response).

# %%
late = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
late[20:25] = True  # all heads of layers 20-24
everything = torch.ones_like(late)
other = "A different answer: just buy earplugs."
sets = {"unpatched": None, "layers 20-24": late, "all heads": everything}
table = pd.DataFrame({name: {r: judge(scalar_prompt(model, Example(PROMPT, resp, None, CRITERION), TEMPLATE), m)["P(Yes)"]
                             for r, resp in (("your response", RESPONSE), ("other response", other))}
                      for name, m in sets.items()})
display(table)

# %%
assert int(late.sum()) == 5 * cfg.n_heads and mask_labels(late)[0] == "L20H0"
# With every head patched, the last position no longer reads the response at all: both responses score the same.
assert abs(table.loc["your response", "all heads"] - table.loc["other response", "all heads"]) < 1e-5
assert abs(table.loc["your response", "unpatched"] - table.loc["other response", "unpatched"]) > 1e-5

# %% [markdown]
# ## 5. Head-by-head sweep for this prompt
#
# All 270 heads, one at a time. Only the last position changes, so the prompt's prefix is run once and each head is
# one branch of a single-token forward over its key/value cache (`armlens.selection.mask_logits`, the fast path
# REINFORCE uses). Crosses mark your head set.

# %%
n = cfg.n_layers * cfg.n_heads
one_hot = torch.cat([torch.zeros(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)]).view(n + 1, cfg.n_layers, cfg.n_heads)
t0 = time.perf_counter()
sweep_logits = mask_logits(model, prefix_cache(model, *tokenize(model, [text])), means, one_hot)[0]  # [1 + n, vocab]
p_yes = sweep_logits.softmax(-1)[:, ids.yes]
delta = (p_yes[1:] - p_yes[0]).view(cfg.n_layers, cfg.n_heads)
print(f"sweep of {n} heads in {time.perf_counter() - t0:.1f} s; unpatched P(Yes) {float(p_yes[0]):.4f}")
best = torch.topk(delta.abs().flatten(), 5).indices.tolist()
display(pd.DataFrame([{"head": head_label(*divmod(i, cfg.n_heads)), "ΔP(Yes)": float(delta.flatten()[i])} for i in best]))

# %%
assert abs(float(p_yes[0]) - base["P(Yes)"]) < 1e-4, "the empty branch is the unpatched judge"
first = mask_labels(mask)[0]
layer, head = (int(x) for x in first[1:].split("H"))
single = judge(text, parse_heads(first, cfg.n_layers, cfg.n_heads))
assert abs(float(p_yes[1 + layer * cfg.n_heads + head]) - single["P(Yes)"]) < 1e-4, "fast path == full forward"

# %%
plots.plot_head_map(delta, title="ΔP(Yes) when one head is patched with its few-shot mean",
                    colorbar_title="ΔP(Yes)", signed=True, mask=mask,
                    subtitle=f"prompt: {PROMPT[:60]!r}; unpatched P(Yes) {float(p_yes[0]):.3f}").show()

# %% [markdown]
# ### Which heads of your set matter? Leave one out
#
# Patch your whole set, then the set without each head in turn: a large change means that head carries the effect.

# %%
members = mask.nonzero().tolist()
drop = mask.expand(len(members), -1, -1).clone()
for i, (layer_i, head_i) in enumerate(members):
    drop[i, layer_i, head_i] = False
rows = torch.cat([mask[None], drop])
loo = mask_logits(model, prefix_cache(model, *tokenize(model, [text])), means, rows)[0].softmax(-1)[:, ids.yes]
loo_table = pd.DataFrame({"dropped head": [head_label(*m) for m in members],
                          "P(Yes) without it": loo[1:].tolist(), "change vs full set": (loo[1:] - loo[0]).tolist()})
display(loo_table)

# %%
assert abs(float(loo[0]) - hit["P(Yes)"]) < 1e-4, "the full-set branch equals the patched full forward"
assert len(loo_table) == int(mask.sum())

# %%
strongest = head_label(*divmod(best[0], cfg.n_heads))
results = {"unpatched": base, f"{strongest} patched": judge(text, parse_heads(strongest, cfg.n_layers, cfg.n_heads))}
top_tokens_figure(results, f"Top next tokens: the single head with the largest |ΔP(Yes)| ({strongest})").show()
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
