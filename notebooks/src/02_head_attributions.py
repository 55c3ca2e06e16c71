# %% [markdown]
# # 02 · Head attributions: which heads REINFORCE selects, what they do, where they look
#
# An ARM is a head mask plus one mean vector per head. This notebook opens up the mask:
#
# 1. **Selection**: REINFORCE's per-head selection probability and how it moves over the steps;
# 2. **Patching effects**: what each head does *on its own* when its mean is patched in (the change of the judge's
#    Yes-No logit margin towards the gold answer), beside REINFORCE's choice;
# 3. **Attention**: where the selected heads attend from the read position (the last token);
# 4. **Stability**: how much the chosen head set changes with the REINFORCE seed.
#
# Small settings (8 few-shot pairs, 30 REINFORCE steps, 3 seeds) so that it runs in about two minutes on a 2-core CPU:
# the probabilities have only started to separate, which is itself worth seeing. `armlens ablate` + `armlens figures`
# draw the same figures from larger runs.

# %%
import os
import time
import warnings
from pathlib import Path

import pandas as pd
import plotly.io as pio
import torch
from IPython.display import display

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "armlens").is_dir())
os.chdir(ROOT)  # data: --root / ARMLENS_DATA_ROOT, or the cache `armlens data fetch bigbench` fills
pio.renderers.default = "plotly_mimetype+notebook_connected"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets; bars are off
torch.manual_seed(0)
T_START = time.perf_counter()

from armlens import plots  # noqa: E402
from armlens.activations import extract_means  # noqa: E402
from armlens.analysis.heads import (  # noqa: E402
    attention_entropy,
    attention_from_last,
    expected_random_jaccard,
    pairwise_jaccard,
    rank_agreement,
    selection_frequency,
    top_heads,
    trajectory_steps,
)
from armlens.data import load_pairs, split_pairs  # noqa: E402
from armlens.model import PrefixPool, load_model, tokenize  # noqa: E402
from armlens.patching import head_label, mask_labels, parse_heads  # noqa: E402
from armlens.prompts import AnswerIds, JudgeTemplate, examples_from_pairs, scalar_prompt  # noqa: E402
from armlens.rm import ARMConfig  # noqa: E402
from armlens.scoring import score_texts  # noqa: E402
from armlens.selection import ReinforceConfig, mask_losses, reinforce, single_head_effects  # noqa: E402

N_FEWSHOT = 8  # few-shot pairs of one criterion (HHH helpful: 16 labelled examples), for the means and REINFORCE
STEPS = 30  # REINFORCE steps per seed (reference: 200)
SEEDS = (0, 1, 2)  # REINFORCE seeds for the stability analysis
N_ATTRIBUTION = 8  # examples in the single-head patching sweep (alternating Yes / No)
TEMPLATE = JudgeTemplate(max_field_tokens=96)

assert SEEDS[0] == 0 and len(set(SEEDS)) == len(SEEDS)

# %% [markdown]
# ## 1. Model, data and the mean activations (Stage 1)
#
# One criterion (an ARM is fitted per criterion): HHH's helpful pairs. Stage 1 is `ARMConfig`'s default reading,
# `answered`: each example's judge prompt followed by its gold answer (Yes for the chosen response, No for the
# rejected one), read at the answer token, so the label reaches the activations (`docs/defaults.md`: the sweep that
# chose it over MTV's `icl` reading). One `PrefixPool` holds the key/value cache of every few-shot judge prompt's
# prefix, so REINFORCE and the patching sweep run each prefix once; every head mask then costs a single-token forward.

# %%
model = load_model()
cfg = model.cfg
ids = AnswerIds.of(model, TEMPLATE)
split = split_pairs(load_pairs("hhh", subsets=["hhh-helpful"]), seed=0, n_fewshot=N_FEWSHOT, n_select=0, n_test=4)
examples = examples_from_pairs(split.fewshot)
texts = [scalar_prompt(model, e, TEMPLATE) for e in examples]
pool = PrefixPool(model)
extraction = extract_means(model, examples, ARMConfig(template=TEMPLATE), show_progress=False)
means = extraction.means
print(f"{len(examples)} examples ({len(set(texts))} distinct judge prompts); means {tuple(means.shape)} from "
      f"{extraction.n_prompts} answered prompts; the unpatched judge prefers the gold answer on "
      f"{extraction.gold_accuracy:.0%} of them")

# %%
assert means.shape == (cfg.n_layers, cfg.n_heads, cfg.d_head) and torch.isfinite(means).all()
assert [e.label for e in examples[:4]] == [True, False, True, False], "pairs give (chosen: Yes, rejected: No)"
assert extraction.n_prompts == len(examples) and 0.0 <= extraction.gold_accuracy <= 1.0  # one prompt per example

# %% [markdown]
# ## 2. Which heads REINFORCE selects
#
# Each step draws one (chosen, rejected) pair, samples 32 head masks from independent Bernoullis `p = sigmoid(theta)`,
# scores each mask by the pairwise loss `-log sigmoid(log P(Yes | chosen) - log P(Yes | rejected))` with those heads
# patched (the default objective; `objective="answer"` scores one example's gold-answer cross-entropy instead), and
# moves `theta` towards the masks with below-average loss. The final mask is the best of 10 masks sampled from the
# learned probabilities.

# %%
runs = {}
t0 = time.perf_counter()
runs[0] = reinforce(model, means, examples, ReinforceConfig(steps=STEPS, n_final_eval=16, seed=0), template=TEMPLATE,
                    pool=pool, show_progress=False)
sel = runs[0]
print(f"REINFORCE (seed 0) in {time.perf_counter() - t0:.1f} s: {sel.n_heads} heads selected; expected count "
      f"{sel.expected_heads[0]:.1f} after step 1 -> {sel.expected_heads[-1]:.1f} after step {STEPS}")
display(top_heads(sel.probs, k=10))

# %%
assert len(pool) == len(set(texts)) == pool.misses, "one prefix per distinct judge prompt, computed once"
assert sel.prob_trajectory.shape == (STEPS, cfg.n_layers, cfg.n_heads)
assert torch.equal(sel.prob_trajectory[-1], sel.probs)
assert float(sel.probs.min()) >= 1e-3 - 1e-7 and float(sel.probs.max()) <= 1 - 1e-3 + 1e-7
assert sel.n_heads == len(mask_labels(sel.mask)) and torch.equal(parse_heads(mask_labels(sel.mask), *sel.mask.shape), sel.mask)
# The final mask is the candidate with the lowest mean loss over the training pairs: recompute its loss. The default
# pairwise objective's loss of a (chosen, rejected) pair is -log sigmoid(log P(Yes | chosen) - log P(Yes | rejected)).
yes = torch.tensor([ids.yes])
log_p_yes = torch.stack([-mask_losses(model, pool[t], means, sel.mask[None], yes)[0, 0] for t in texts])
chosen_loss = torch.nn.functional.softplus(-(log_p_yes[0::2] - log_p_yes[1::2])).mean()
assert abs(float(chosen_loss) - min(sel.final_candidate_losses)) < 1e-4, (float(chosen_loss), sel.final_candidate_losses)

# %% [markdown]
# The selection probability after a few steps (small multiples), then the final probabilities with the chosen heads
# marked. Hover for `L{l}H{h}` labels.

# %%
plots.plot_trajectory(sel.prob_trajectory, trajectory_steps(STEPS, 5), seed=0,
                      subtitle=f"HHH, {N_FEWSHOT} few-shot pairs, {STEPS} steps x 32 masks").show()

# %% [markdown]
# ## 3. Patching effects of single heads
#
# `single_head_effects` patches one head at a time (all 270 as side-by-side branches of the last token over each
# prompt's prefix cache) and measures the change of `logit(Yes) - logit(No)`, signed towards the gold answer
# (positive = the head's mean pushes the judge towards the right answer), averaged over 8 examples.

# %%
t0 = time.perf_counter()
effects = single_head_effects(model, means, examples[:N_ATTRIBUTION], template=TEMPLATE, pool=pool, show_progress=False)
rho = rank_agreement(effects, sel.probs)
print(f"sweep of {cfg.n_layers * cfg.n_heads} heads x {N_ATTRIBUTION} examples in {time.perf_counter() - t0:.1f} s; "
      f"Spearman(effect, P(select)) = {rho:+.2f}")
display(top_heads(effects, k=8))

# %%
assert effects.shape == (cfg.n_layers, cfg.n_heads) and torch.isfinite(effects).all()
assert -1.0 <= rho <= 1.0
# Fast path (branches over a shared prefix cache) == slow path (full forwards) for the strongest head.
layer, head = divmod(int(effects.abs().flatten().argmax()), cfg.n_heads)
one = parse_heads(head_label(layer, head), cfg.n_layers, cfg.n_heads)
sub = texts[:N_ATTRIBUTION]
sign = torch.tensor([1.0 if e.label else -1.0 for e in examples[:N_ATTRIBUTION]])
patched = score_texts(model, sub, means=means, mask=one, answer_ids=ids, kind="logit_diff")
plain = score_texts(model, sub, answer_ids=ids, kind="logit_diff")
slow = float((sign * (patched - plain)).mean())
print(f"{head_label(layer, head)}: sweep {float(effects[layer, head]):+.4f}, full forwards {slow:+.4f}")
assert abs(slow - float(effects[layer, head])) < 2e-3

# %%
plots.plot_attribution(effects, sel.probs, sel.mask, rho=rho).show()

# %% [markdown]
# ## 4. Where the selected heads attend
#
# `attention_from_last` reads `blocks.{l}.attn.hook_pattern` at the last query position of one held-out judge prompt,
# once unpatched and once with the ARM's heads patched (a patch in an earlier layer changes this head's query).

# %%
test_text = scalar_prompt(model, examples_from_pairs(split.test[:1])[0], TEMPLATE)
ranked = top_heads(sel.probs, k=4, mask=sel.mask)
rows = []
for _, r in ranked.iterrows():
    att = attention_from_last(model, test_text, int(r["layer"]), int(r["head"]), means=means, mask=sel.mask)
    top3 = sorted(range(len(att.weights)), key=lambda i: -att.weights[i])[:3]
    rows.append({"head": att.label, "P(select)": r["value"], "entropy (nats)": attention_entropy(att.weights),
                 "top tokens": ", ".join(f"{att.tokens[i]!r} {att.weights[i]:.2f}" for i in top3),
                 "max |patched - unpatched|": max(abs(a - b) for a, b in zip(att.weights, att.patched_weights or att.weights, strict=True))})
    if len(rows) == 1:
        first = att
display(pd.DataFrame(rows))

# %%
n_tokens = int(tokenize(model, [test_text])[1].sum())
assert len(first.tokens) == len(first.weights) == n_tokens
assert abs(sum(first.weights) - 1) < 1e-4 and min(first.weights) >= 0
# Causality: nothing patched can change a layer-0 attention pattern (patches act on hook_z, after the pattern).
l0 = attention_from_last(model, test_text, 0, 0, means=means, mask=sel.mask)
assert l0.patched_weights is not None and max(abs(a - b) for a, b in zip(l0.weights, l0.patched_weights, strict=True)) < 1e-6

# %%
plots.plot_attention(first.tokens, first.weights, head=first.label, patched_weights=first.patched_weights,
                     subtitle=f"held-out prompt {split.test[0].id} (chosen response); P(select) "
                              f"{float(sel.probs[first.layer, first.head]):.2f}").show()

# %% [markdown]
# ## 5. Stability across seeds
#
# Re-run REINFORCE with other seeds (same examples, same means) and compare the chosen head sets: how often each head
# is chosen, and the Jaccard overlap between runs against what random head sets of the same sizes would give. (The
# ablation grid of notebook 03 also redraws the few-shot pairs per seed.)

# %%
t0 = time.perf_counter()
for s in SEEDS[1:]:
    runs[s] = reinforce(model, means, examples, ReinforceConfig(steps=STEPS, n_final_eval=16, seed=s),
                        template=TEMPLATE, pool=pool, show_progress=False)
masks = torch.stack([runs[s].mask for s in SEEDS])
freq = selection_frequency(masks)
jac = pairwise_jaccard(masks)
k_mean = float(masks.float().sum((1, 2)).mean())
chance = expected_random_jaccard(k_mean, k_mean, cfg.n_layers * cfg.n_heads)
off_diag = jac[~torch.eye(len(SEEDS), dtype=torch.bool)]
print(f"{len(SEEDS) - 1} more runs in {time.perf_counter() - t0:.1f} s; head-set sizes "
      f"{[runs[s].n_heads for s in SEEDS]}; chosen in every run: {mask_labels(freq == 1)}")
print(f"mean Jaccard between seeds {float(off_diag.mean()):.2f} (random sets of that size: {chance:.2f}); "
      f"Spearman of P(select) seed 0 vs 1: {rank_agreement(runs[0].probs, runs[1].probs):+.2f}")
display(pd.DataFrame(jac.numpy(), index=[f"seed {s}" for s in SEEDS], columns=[f"seed {s}" for s in SEEDS]).round(2))

# %%
assert torch.equal(torch.diag(jac), torch.ones(len(SEEDS))) and torch.equal(jac, jac.T)
assert set((freq * len(SEEDS)).round().unique().tolist()) <= set(range(len(SEEDS) + 1))
assert abs(float(freq.sum()) * len(SEEDS) - float(masks.sum())) < 1e-4
assert 0.0 <= chance <= 1.0
# Same seed, same result: the differences above come from the seed alone.
a, b = (reinforce(model, means, examples, ReinforceConfig(steps=3, n_final_eval=2, seed=7), template=TEMPLATE,
                  pool=pool, show_progress=False) for _ in range(2))
assert torch.equal(a.probs, b.probs) and torch.equal(a.mask, b.mask)

# %% [markdown]
# How to read this: compare the mean Jaccard index between seeds with the chance level. When they are close (as they
# tend to be at 30 steps on 8 pairs), most of the chosen set is noise and the robust signals are the heads chosen in
# every run and the rank correlation of the selection probabilities; more steps (the reference uses 200) and more
# few-shot pairs are what make the choice settle. The training curves show how little the policy has moved.

# %%
plots.plot_training_curves({s: runs[s].losses for s in SEEDS}, {s: runs[s].expected_heads for s in SEEDS}).show()
plots.plot_selection_probability({s: runs[s].probs for s in SEEDS}, {s: runs[s].mask for s in SEEDS}).show()
plots.plot_stability(freq, len(SEEDS), subtitle=f"mean Jaccard between seeds {float(off_diag.mean()):.2f}; "
                                                 f"random sets of that size {chance:.2f}").show()

# %% [markdown]
# ## 6. What the patched heads do to the answer, and how few of them are needed
#
# Three views of seed 0's head set (`armlens heads` runs them on the seeds of an `armlens ablate` folder, and
# `armlens figures` draws them; `docs/results.md` reports them on the development pairs):
#
# - **Direct logit attribution**: head `h` writes `(mu_h - z_h) W_O[h]` more into the residual stream at the read
#   position; read through the final norm onto `W_U[Yes] - W_U[No]`, that is its direct effect on the judge's Yes-No
#   logit. The heads' effects plus the norm's remainder are the *direct* path; the rest of the measured change goes
#   through later layers (*indirect*).
# - **Leave-one-out and pruning**: every head removed in turn, all in one branch pass, then heads removed greedily while
#   the pairwise accuracy stays within a margin.
# - **Top-k**: the policy's k most likely heads against k random heads.
#
# On this slice (8 pairs) every accuracy is a count out of 8 and the pruning chooses on the same pairs it reports:
# these cells show the tools, not a finding.

# %%
from armlens.analysis.attribution import direct_logit_attribution  # noqa: E402
from armlens.analysis.minimal import leave_one_out, prune, score_sets  # noqa: E402
from armlens.selection import random_mask, top_k_mask  # noqa: E402

held_out = [scalar_prompt(model, e, TEMPLATE) for e in examples_from_pairs(split.test)]
attr = direct_logit_attribution(model, held_out, means, sel.mask, ids)
separation = (attr.effects[0::2] - attr.effects[1::2]).mean(0)
print(f"{len(held_out)} held-out prompts: patch changes Yes-No by {float((attr.patched - attr.clean).mean()):+.2f} "
      f"on average, {float(attr.direct.mean()):+.2f} of it through the direct path")
display(top_heads(separation, k=5, mask=sel.mask))

# %%
assert torch.allclose(attr.clean + attr.direct + attr.indirect, attr.patched, atol=1e-4)
assert torch.all(attr.effects[:, ~sel.mask] == 0)  # only patched heads write anything new

# %%
t0 = time.perf_counter()
loo = leave_one_out(model, texts, means, sel.mask, ids)
small = prune(model, texts, means, sel.mask, ids, margin=0.125, grid=8)
print(f"leave-one-out of {sel.n_heads} heads and pruning in {time.perf_counter() - t0:.1f} s: "
      f"{small.to_dict()['n_heads']} heads keep {small.accuracy:.0%} (full set {small.full_accuracy:.0%}, "
      f"margin {small.margin:.1%}) on the {len(texts) // 2} few-shot pairs")
ks = [k for k in (1, 2, 5, 10, 20) if k < sel.n_heads]
rows = torch.stack([sel.mask, *[top_k_mask(sel.probs, k) for k in ks], *[random_mask(cfg.n_layers, cfg.n_heads, k, seed=0)
                                                                          for k in ks]])
acc = score_sets(model, texts, means, rows, ids).accuracy
display(pd.DataFrame({"k": ks, "top-k by P(select)": acc[1:1 + len(ks)].tolist(),
                      "random k": acc[1 + len(ks):].tolist()}).assign(full=float(acc[0])))

# %%
assert loo.full[0] == small.full_accuracy and small.accuracy >= small.full_accuracy - small.margin - 1e-9
assert torch.equal(small.mask & sel.mask, small.mask)
assert float(acc[0]) == loo.full[0]  # the full set scored twice, in two branch passes

# %% [markdown]
# ## 7. Where the judge's length preference lives
#
# The bias suite pads each rejected response with content-free text (`build_bias_suite`, kind `length`); the plain
# judge is *hacked* on a pair when it scores the padded rejected response strictly above the chosen one. Each head is
# mean-ablated alone (its last-token hook_z replaced by its mean over the few-shot judge prompts, the `mean_ablation`
# reading), all 270 of them as branches of one pass; the heads whose ablation most lowers the hacked margin are then
# ablated together, and `segment_attention` shows where they look from the read position (first token, criterion,
# prompt, response, the response's last 8 tokens, question, ...). `armlens heads` runs this on an ablation folder's
# seeds, and cross-fits the top sets (ranked on one half of the pairs, scored on the other). Here the slice is the
# 8 few-shot pairs and the ranking is scored on the pairs it was made on: the tools, not a finding.

# %%
from armlens.analysis.heads import segment_attention  # noqa: E402
from armlens.data.bias import build_bias_suite  # noqa: E402
from armlens.patching import single_head_masks  # noqa: E402
from armlens.prompts import SEGMENTS  # noqa: E402

hacked = build_bias_suite(split.fewshot, seed=0, kinds=["length"])["length"]
hacked_texts = [scalar_prompt(model, e, TEMPLATE) for e in examples_from_pairs(hacked)]
ablation = extract_means(model, examples, ARMConfig(template=TEMPLATE, reading="mean_ablation"),
                         show_progress=False).means
n_all = cfg.n_layers * cfg.n_heads
singles = single_head_masks(cfg.n_layers, cfg.n_heads)  # row 0: nothing ablated; row 1 + j: head j alone
t0 = time.perf_counter()
one = score_sets(model, hacked_texts, ablation, singles, ids)
hack_rate = (one.margins < 0).double().mean(0)  # margins are chosen minus rejected
order = torch.argsort(one.mean_margin[1:] - one.mean_margin[0], descending=True)  # hacked margin lowered most first
K = 5
top = torch.zeros(n_all, dtype=torch.bool)
top[order[:K]] = True
top = top.view(cfg.n_layers, cfg.n_heads)
sets = score_sets(model, hacked_texts, ablation, torch.stack([singles[0], top, random_mask(cfg.n_layers, cfg.n_heads,
                                                                                              K, seed=0)]), ids)
print(f"{n_all} single-head ablations and 3 sets on {len(hacked)} length-hacked pairs in "
      f"{time.perf_counter() - t0:.1f} s; hack rate: plain judge {hack_rate[0]:.0%}, top {K} bias heads ablated "
      f"{(sets.margins[:, 1] < 0).double().mean():.0%}, {K} random heads ablated {(sets.margins[:, 2] < 0).double().mean():.0%}")
shares = segment_attention(model, hacked_texts[1::2], TEMPLATE)  # the padded rejected responses' prompts
display(pd.DataFrame({f"top {K} bias heads": shares[:, top].mean((0, 1)).tolist(),
                      "selected by REINFORCE": shares[:, sel.mask].mean((0, 1)).tolist(),
                      "all heads": shares.mean((0, 1, 2)).tolist()}, index=list(SEGMENTS)).round(3))
print("top bias heads:", mask_labels(top), "- of them selected by the seed-0 fit:", mask_labels(top & sel.mask))

# %%
plain = score_texts(model, hacked_texts, answer_ids=ids)  # row 0 is the plain judge, read with full forwards
gap = plain[1::2] - plain[0::2]
clear = gap.abs() > 1e-4  # away from ties, where float noise between the two passes could flip a flag
assert torch.equal((one.margins[:, 0] < 0)[clear], (gap > 0)[clear]), (one.margins[:, 0], gap)
assert torch.allclose(one.scores[:, 0], plain, atol=1e-4), (one.scores[:, 0] - plain).abs().max()
assert torch.allclose(sets.scores[:, 0], one.scores[:, 0], atol=1e-4)  # the same unablated row in two passes
assert shares.shape == (len(hacked), cfg.n_layers, cfg.n_heads, len(SEGMENTS))
assert torch.allclose(shares.sum(-1), torch.ones(shares.shape[:-1]), atol=1e-4)  # every row is split, nothing lost

# %%
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
