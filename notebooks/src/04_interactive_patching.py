# %% [markdown]
# # 04 · Interactive patching: any prompt, any response, any heads
#
# Patch a head set of your choice into the judge and watch P(Yes) and the top next tokens change. Edit the cell
# marked **EDIT ME** (prompt, response, criterion, heads by `L{l}H{h}` name) and re-run from there.
#
# What is patched: for each chosen head, `blocks.{l}.attn.hook_z` at the last token (the read position) is
# overwritten with that head's mean over a few labelled judge prompts (Stage 1 of an ARM). Every other position and
# head is left alone. The last section sweeps all 270 heads one at a time for your prompt.

# %%
import os
import time
import warnings
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from IPython.display import display
from plotly.subplots import make_subplots

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "armlens").is_dir())
os.chdir(ROOT)  # data: ARMLENS_DATA_ROOT, or the cache `armlens data fetch bigbench` fills
pio.renderers.default = "plotly_mimetype+notebook_connected"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets; bars are off
T_START = time.perf_counter()

from armlens import plots  # noqa: E402
from armlens.activations import extract_means  # noqa: E402
from armlens.data import load_pairs, split_pairs  # noqa: E402
from armlens.model import load_model, prefix_cache, run_last_logits, tokenize  # noqa: E402
from armlens.patching import capture_last_z, head_label, mask_labels, parse_heads, patch_hooks, patched  # noqa: E402
from armlens.prompts import CRITERIA, AnswerIds, Example, JudgeTemplate, examples_from_pairs, scalar_prompt  # noqa: E402
from armlens.selection import mask_logits  # noqa: E402

TEMPLATE = JudgeTemplate(max_field_tokens=96)
model = load_model()
cfg = model.cfg
ids = AnswerIds.of(model, TEMPLATE)

assert (cfg.n_layers, cfg.n_heads) == (30, 9)

# %% [markdown]
# ## 1. Mean activations to patch in
#
# The label-carrying means of one criterion (HHH helpful): every head's last-token hook_z averaged over 8 `icl`
# extraction prompts, each with an answered Yes and an answered No demonstration and an unanswered query. To use a
# fitted ARM instead: `rm = ActivationRM.load("my.arm", model); means, mask = rm.fits[criterion].means, ...`.

# %%
fewshot = split_pairs(load_pairs("hhh", subsets=["hhh-helpful"]), seed=0, n_fewshot=6, n_select=0).fewshot
extraction = extract_means(model, examples_from_pairs(fewshot), reading="icl", n_trials=8, template=TEMPLATE,
                           show_progress=False)
means = extraction.means
print(f"means {tuple(means.shape)} from {extraction.n_prompts} prompts")

# %%
assert means.shape == (cfg.n_layers, cfg.n_heads, cfg.d_head) and torch.isfinite(means).all()
assert extraction.n_prompts == 8

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
