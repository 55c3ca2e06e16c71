# %% [markdown]
# # 01 · Quickstart: an Activation Reward Model in a few minutes
#
# An **Activation Reward Model** (ARM) turns an instruction model into a few-shot reward model without training:
#
# 1. ask the model *"Does the response meet the criterion? Answer Yes or No."* and read **P(Yes)** at the last token
#    (the *zero-shot judge*);
# 2. record what every attention head writes at that position (`blocks.{l}.attn.hook_z`) while the model judges a few
#    labelled examples, and average it (**Stage 1**);
# 3. learn with REINFORCE which heads to overwrite with those averages (**Stage 2**);
# 4. score new responses with the selected heads patched (**Stage 3**).
#
# This notebook loads the default model (SmolLM2-135M-Instruct, 30 layers × 9 heads, offline), fits an ARM on 8
# HHH preference pairs, scores held-out pairs, and compares it with the unpatched judge. Every step ends with a
# sanity check (`assert`) on something that must hold, ARENA style. Settings are small so that it runs in a minute
# or two on a 2-core CPU; the reference uses 200 REINFORCE steps and more few-shot pairs.

# %%
import os
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from IPython.display import display

# Work from the project root. Data: ARMLENS_DATA_ROOT (or --root), else the cache `armlens data fetch bigbench` fills.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "armlens").is_dir())
os.chdir(ROOT)
pio.renderers.default = "plotly_mimetype+notebook_connected"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets; bars are off  # interactive, small outputs (plotly.js from the CDN)
torch.manual_seed(0)
T_START = time.perf_counter()

from armlens import plots  # noqa: E402
from armlens.activations import extraction_prompts  # noqa: E402
from armlens.data import load_pairs, split_pairs  # noqa: E402
from armlens.evaluation.protocol import pairwise_correct  # noqa: E402
from armlens.model import load_model, model_info, run_last_logits, tokenize  # noqa: E402
from armlens.patching import capture_last_z, patch_hooks  # noqa: E402
from armlens.prompts import (  # noqa: E402
    AnswerIds,
    Example,
    JudgeTemplate,
    criterion_for,
    examples_from_pairs,
    scalar_prompt,
)
from armlens.rm import ActivationRM, ARMConfig  # noqa: E402
from armlens.scoring import score_from_logits, score_texts  # noqa: E402
from armlens.selection import ReinforceConfig  # noqa: E402
from armlens.stats import bootstrap_ci  # noqa: E402

N_FEWSHOT = 8  # few-shot pairs, two per HHH criterion: each gives a Yes (chosen) and a No (rejected) example
N_TEST = 12  # held-out pairs to score
STEPS = 30  # REINFORCE steps (ARMConfig's default is longer; kept short so the notebook runs in a minute or two)
TEMPLATE = JudgeTemplate(max_field_tokens=96)  # cut prompt and responses to 96 tokens: short judge prompts

assert ROOT.joinpath("armlens", "__init__.py").is_file()

# %% [markdown]
# ## 1. Load the model
#
# `load_model()` with no argument loads the embedded SmolLM2-135M-Instruct as a TransformerLens `TransformerBridge`.
# The judge's answer words must be single tokens: the reward is read at one position.

# %%
model = load_model()
info = model_info(model)
ids = AnswerIds.of(model, TEMPLATE)
print(f"{info.model_id}: {info.n_layers} layers x {info.n_heads} heads x d_head {info.d_head} "
      f"({info.n_key_value_heads} key/value heads), d_model {info.d_model}")
print("answer token ids:", ids)

assert (info.n_layers, info.n_heads, info.d_head) == (30, 9, 64)
assert len(info.answer_tokens["Yes"]) == 1 and len(info.answer_tokens["No"]) == 1
assert ids.yes != ids.no

# %% [markdown]
# ## 2. Data: HHH pairs, split by prompt
#
# `load_pairs("hhh")` reads the BIG-bench HHH alignment pairs (helpful / harmless / honest / other): four criteria, so
# four ARMs. `split_pairs(..., stratify=True)` deals whole *prompts* into a few-shot pool (per subset, so every
# criterion gets its pairs) and a test split, so no test prompt was seen while fitting.

# %%
pairs = load_pairs("hhh")
split = split_pairs(pairs, seed=0, n_fewshot=N_FEWSHOT, n_select=0, n_test=N_TEST, stratify=True)
split.check_no_leakage()
print(f"{len(pairs)} pairs; sizes {split.sizes()}")
display(pd.DataFrame([{"id": p.id, "subset": p.subset, "prompt": str(p.prompt)[:60], "chosen": p.chosen[:50],
               "rejected": p.rejected[:50]} for p in split.fewshot[:4]]))

# %%
assert split.sizes() == {"fewshot": N_FEWSHOT, "select": 0, "test": N_TEST}
fewshot_prompts = {p.prompt_key() for p in split.fewshot}
assert not any(p.prompt_key() in fewshot_prompts for p in split.test), "a test prompt leaked into the few-shot pool"

# %% [markdown]
# ## 3. The judge prompt
#
# Each (prompt, response) becomes one chat-templated question that ends with the assistant prefix: the logits at its
# last token are the judge's answer.

# %%
example = examples_from_pairs(split.test[:1])[0]
text = scalar_prompt(model, example, TEMPLATE)
print(text)
n_tokens = int(tokenize(model, [text])[1].sum())
print(f"--- {n_tokens} tokens; criterion for subset {split.test[0].subset!r}: {criterion_for(split.test[0])!r}")

# %%
assert text.endswith("<|im_start|>assistant\n"), "the read position must be the assistant prefix"
assert TEMPLATE.question in text and example.criterion in text
assert n_tokens < 2 * 96 + 120, "max_field_tokens should keep the prompt short"

# %% [markdown]
# ## 4. The zero-shot judge
#
# P(Yes) over the full vocabulary at the last token, nothing patched. A pair is judged correctly iff
# score(chosen) > score(rejected), strictly (RewardBench's protocol: a tie is wrong).

# %%
test_texts = [scalar_prompt(model, Example(p.prompt, r, None, criterion_for(p)), TEMPLATE)
              for p in split.test for r in (p.chosen, p.rejected)]
zero_shot = score_texts(model, test_texts, answer_ids=ids, batch_size=4)
zs_correct, zs_ties = pairwise_correct(zero_shot[0::2].numpy(), zero_shot[1::2].numpy())
print(f"zero-shot judge: {zs_correct.mean():.1%} of {N_TEST} pairs correct ({zs_ties} ties); "
      f"P(Yes) range {zero_shot.min():.3f}..{zero_shot.max():.3f}")

# %%
assert zero_shot.shape == (2 * N_TEST,)
assert bool(((zero_shot >= 0) & (zero_shot <= 1)).all()), "P(Yes) is a probability"
# Batched scoring under left padding must equal scoring one prompt alone.
alone = score_from_logits(run_last_logits(model, *tokenize(model, test_texts[:1])), ids.yes, ids.no)
assert torch.allclose(alone, zero_shot[:1], atol=1e-5), (alone, zero_shot[:1])

# %% [markdown]
# ## 5. Fit the ARM
#
# `ActivationRM.fit` fits one ARM per criterion. Stage 1 uses `ARMConfig`'s default reading, `answered`: each
# few-shot example's judge prompt followed by its gold answer word (Yes for the chosen response, No for the rejected
# one), read at that answer token, so the label reaches the activations; the mean of each head's hook_z there is
# what the ARM writes. (`reading="icl"` is MTV's alternative, answered demonstrations plus an unanswered query;
# `mean_ablation` averages unanswered prompts: no label, a baseline, not an ARM. `docs/defaults.md` shows the sweep
# that chose `answered`.) Stage 2: REINFORCE over Bernoulli head masks with the pairwise objective (one chosen /
# rejected pair per step, shared masks), then the best of 10 sampled masks.

# %%
config = ARMConfig(template=TEMPLATE, reinforce=ReinforceConfig(steps=STEPS, n_final_eval=16), seed=0)
rm = ActivationRM(model, config)
t0 = time.perf_counter()
rm.fit(split.fewshot, show_progress=False)
print(f"fitted in {time.perf_counter() - t0:.1f} s: {rm}")
for criterion, f in rm.fits.items():
    print(f"{len(f.heads):3d} heads for {criterion[:60]!r}")
print({k: round(v, 2) for k, v in rm.fit_info["timings_s"].items()})

# %%
helpful = criterion_for("hhh-helpful")
fit = rm.fits[helpful]  # one criterion's ARM: its means, its heads, its REINFORCE history
sel = fit.selection
assert set(rm.fits) == {criterion_for(p) for p in split.fewshot}, "one ARM per criterion in the few-shot draw"
assert fit.means.shape == (info.n_layers, info.n_heads, info.d_head) and torch.isfinite(fit.means).all()
assert fit.mask.dtype == torch.bool and fit.mask.shape == (info.n_layers, info.n_heads)
assert len(fit.heads) == int(fit.mask.sum()) == sel.n_heads > 0, "the reported head count is the mask's"
assert sel.prob_trajectory.shape == (STEPS, info.n_layers, info.n_heads) and len(sel.losses) == STEPS
assert torch.equal(sel.prob_trajectory[-1], sel.probs)
assert float(sel.probs.min()) >= 1e-3 - 1e-7 and float(sel.probs.max()) <= 1 - 1e-3 + 1e-7  # the policy's clamp
assert abs(sel.expected_heads[-1] - float(sel.probs.sum())) < 1e-3
assert len(sel.final_candidate_losses) == config.reinforce.n_final_samples
# Stage 1 is literally an average: rebuild this criterion's extraction prompts and average their last-token hook_z.
helpful_examples = [e for e in examples_from_pairs(split.fewshot) if e.criterion == helpful]
assert config.reading == "answered"
prompts = extraction_prompts(model, helpful_examples, config)
assert [t.endswith(TEMPLATE.yes) for t in prompts.texts] == [e.label for e in helpful_examples], "gold answers"
z_extract, _ = capture_last_z(model, prompts.texts)
assert torch.allclose(z_extract.mean(0), fit.means, atol=1e-4), "the means are the average last-token hook_z"

# %% [markdown]
# What REINFORCE did: the mean loss of the sampled masks and the expected number of selected heads per step, then
# each head's final selection probability (crosses: the heads in the chosen mask). With 30 steps the policy has only
# started to move away from its initial P = sigmoid(-1) = 0.27 per head, so the mask is still large; notebook 02
# looks at the heads in detail.

# %%
plots.plot_training_curves({0: sel.losses}, {0: sel.expected_heads}, entropy={0: sel.entropy},
                           subtitle=f"HHH helpful, {STEPS} steps x 32 masks").show()
plots.plot_selection_probability({0: sel.probs}, {0: sel.mask},
                                 subtitle="crosses: heads in the final mask (best of 10 sampled masks)").show()

# %% [markdown]
# ## 6. Score with the ARM
#
# `rm.score(prompt, response)` gives one reward; `rm.score_pairs(pairs)` the (chosen, rejected) rewards of each pair.
# Under the hood, the selected heads' hook_z at the last token is overwritten with the few-shot means.

# %%
print(rm.score("How do I boil an egg?", ["Put it in boiling water for about 8 minutes, then cool it in cold water.",
                                          "Eggs are overrated. Have toast."], criterion=helpful))
arm_chosen, arm_rejected = rm.score_pairs(split.test, show_progress=False)
arm_scores = torch.stack([arm_chosen, arm_rejected], 1).flatten()  # same order as test_texts
arm_correct, arm_ties = pairwise_correct(arm_chosen.numpy(), arm_rejected.numpy())

# %%
assert bool(((arm_scores >= 0) & (arm_scores <= 1)).all())
first = criterion_for(split.test[0])  # each pair is scored by its criterion's ARM
assert torch.allclose(rm.score_texts(test_texts[:2], criterion=first), arm_scores[:2], atol=1e-5)
assert float((arm_scores - zero_shot).abs().max()) > 1e-3, "patching the selected heads must change P(Yes)"
# The context manager patches inside the block only; afterwards the model is the plain judge again.
tokens, attn = tokenize(model, test_texts[:2])
with rm.patched(criterion=first):
    inside = score_from_logits(run_last_logits(model, tokens, attn), ids.yes, ids.no)
after = score_from_logits(run_last_logits(model, tokens, attn), ids.yes, ids.no)
assert torch.allclose(inside, arm_scores[:2], atol=1e-5) and torch.allclose(after, zero_shot[:2], atol=1e-5)
# Patching the heads with the prompt's *own* activations is a no-op.
own_z, own_logits = capture_last_z(model, test_texts[:1])
same = run_last_logits(model, *tokenize(model, test_texts[:1]), patch_hooks(model, own_z[0], rm.fits[first].mask))
assert torch.allclose(same, own_logits, atol=1e-4)

# %% [markdown]
# ## 7. ARM against the zero-shot judge
#
# Pairwise accuracy with a 95% bootstrap interval over pairs. With 12 test pairs the intervals are wide: this is a
# demonstration of the workflow, not a benchmark (`armlens eval` runs the full comparison).

# %%
rows = []
for name, correct, ties in (("zero-shot judge", zs_correct, zs_ties), ("ARM", arm_correct, arm_ties)):
    ci = bootstrap_ci(correct.astype(float), n=1000, seed=0)
    rows.append({"judge": name, "accuracy": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "ties": ties})
table = pd.DataFrame(rows)
display(table)

# %%
fig = go.Figure()
for name, s in (("zero-shot judge", zero_shot), ("ARM", arm_scores)):
    fig.add_trace(go.Scatter(x=s[1::2].tolist(), y=s[0::2].tolist(), mode="markers", name=name,
                             text=[p.id for p in split.test], hovertemplate="%{text}<br>rejected %{x:.3f}<br>"
                             "chosen %{y:.3f}<extra></extra>", marker={"size": 9}))
hi = float(torch.cat([zero_shot, arm_scores]).max()) * 1.05
fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="tie", line={"dash": "dot", "color": "#999"}))
fig.update_layout(title="P(Yes) of the chosen vs the rejected response (above the diagonal = correct)",
                  xaxis_title="P(Yes | rejected response)", yaxis_title="P(Yes | chosen response)",
                  template="plotly_white", width=650, height=520)
fig.show()

# %%
for r in rows:
    assert 0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1
assert table["accuracy"].tolist() == [zs_correct.mean(), arm_correct.mean()]

# %% [markdown]
# ## 8. Save and load
#
# A fitted ARM is two tensors (means and head mask) plus its config: one safetensors file. Loading it on the same
# model gives exactly the same scores.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = rm.save(Path(folder) / "hhh.arm")
    size_kb = path.stat().st_size / 1024
    rm2 = ActivationRM.load(path, model)
print(f"saved {size_kb:.0f} KB; loaded: {rm2}")

# %%
assert rm2.heads == rm.heads and set(rm2.fits) == set(rm.fits)
assert all(torch.equal(rm2.fits[c].means, f.means) and torch.equal(rm2.fits[c].mask, f.mask) for c, f in rm.fits.items())
assert rm2.config.to_dict() == rm.config.to_dict()
c2, r2 = rm2.score_pairs(split.test[:2], show_progress=False)
assert torch.equal(c2, arm_chosen[:2]) and torch.equal(r2, arm_rejected[:2]), "a loaded ARM scores identically"

# %%
elapsed = time.perf_counter() - T_START
print(f"notebook ran in {elapsed:.0f} s")
