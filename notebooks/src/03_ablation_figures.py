# %% [markdown]
# # 03 · Stage ablations: what each part of an ARM contributes
#
# An ARM is a pipeline: Stage 1 reads hook_z at the last token of prompts that carry the label, Stage 1b turns them
# into one vector per head (mean, weighted-PCA denoising, ...), Stage 2 picks heads (REINFORCE or an alternative),
# Stage 3 reads a score off the patched judge. Every cell of the ablation grid of `armlens.analysis` is **the
# reference ARM (`ARMConfig`) with one setting changed**, fitted through `ActivationRM`, or another head set or score
# reading on the reference fit:
#
# | axis | varies |
# |---|---|
# | `selection` | REINFORCE vs random heads (same count) vs top-k by P(select) / by single-head attribution vs all vs none |
# | `reading` | icl (one turn / chat turns) vs answered vs mean-ablation (no label: the baseline) |
# | `estimator` | mean vs weighted PCA (uniform / confidence weights) vs class difference vs median vs trimmed mean |
# | `steps`, `prior`, `objective` | REINFORCE: step count (one run, the choice made at each count), initial logit, answer vs pairwise loss |
# | `demos`, `trials` | icl: answered demonstrations per class, prompts averaged |
# | `criteria` | one ARM per criterion vs one pooled |
# | `scoring` | P(Yes) vs P(Yes given Yes or No) vs logit difference vs generative, for the ARM and the zero-shot judge |
# | `shots`, `heads`, `flip` | few-shot pairs per criterion (`fewshot_per_criterion`); number of patched heads; share of flipped few-shot labels |
#
# This notebook runs five axes at **small settings** (one criterion, 2 seeds, 8 few-shot pairs, 8 test pairs, 20
# REINFORCE steps) and draws every figure of `armlens figures` from the saved results. With 8 test pairs per seed the
# intervals are very wide: read the figures for their shape, and run `armlens ablate` for numbers.

# %%
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import plotly.io as pio
from IPython.display import display

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "armlens").is_dir())
os.chdir(ROOT)  # data: ARMLENS_DATA_ROOT, or the cache `armlens data fetch bigbench` fills
pio.renderers.default = "plotly_mimetype+notebook_connected"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets; bars are off
T_START = time.perf_counter()

from armlens import plots  # noqa: E402
from armlens.analysis import (  # noqa: E402
    AblationConfig,
    load_cells,
    load_results,
    plan_cells,
    run_ablations,
    summarize,
    zero_shot_reference,
)
from armlens.cli.analysis import build_figures  # noqa: E402  (the exact figure set of `armlens figures`)
from armlens.data import load_pairs  # noqa: E402
from armlens.model import load_model  # noqa: E402
from armlens.patching import mask_labels  # noqa: E402
from armlens.prompts import JudgeTemplate  # noqa: E402
from armlens.rm import ARMConfig  # noqa: E402
from armlens.selection import ReinforceConfig  # noqa: E402

OUT = Path(tempfile.mkdtemp(prefix="armlens-nb03-"))  # results folder (deleted at the end; keep it if you like)
# The reference ARM of this small run: ARMConfig's defaults (the answered reading), made small (20 REINFORCE
# steps; the icl-lines cell of the reading axis averages 4 icl prompts).
ARM = ARMConfig(n_trials=4, template=JudgeTemplate(max_field_tokens=96),
                reinforce=ReinforceConfig(steps=20, n_final_eval=8))
CONFIG = AblationConfig(  # one criterion (HHH helpful), so one ARM per fit; three fits per seed besides the reference
    data="hhh", subsets=["hhh-helpful"], seeds=[0, 1], n_fewshot=8, limit=8, arm=ARM,
    grid=["selection", "reading", "scoring", "steps", "heads"], readings=["icl-lines", "answered", "mean_ablation"],
    steps=[10, 20], attribution_examples=4, gen_max_new_tokens=2, heads=[1, 4, 16, 64], bootstrap=200,
)
print(OUT)

assert OUT.is_dir() and not any(OUT.iterdir())

# %% [markdown]
# ## 1. The grid
#
# `plan_cells` lists the cells (axis, series, setting). Every cell is the reference ARM with one setting changed,
# fitted through `ActivationRM` (so its heads are selected for the means it patches), or another head set or score
# reading on the reference fit. Per seed, cells that need the same ARM share one fit, the step-count cells share one
# REINFORCE run, and all cells are scored as branches of the last token over one prefix per test prompt.

# %%
model = load_model()
pairs = load_pairs("hhh", subsets=CONFIG.subsets)
cells_planned = plan_cells(CONFIG, model.cfg.n_layers, model.cfg.n_heads)
display(pd.Series([c.axis for c in cells_planned]).value_counts().rename("cells").to_frame().T)

# %%
assert len({(c.axis, c.series, c.setting) for c in cells_planned}) == len(cells_planned), "cells are distinct"
assert {c.axis for c in cells_planned} == set(CONFIG.grid)
assert sum(c.axis == "heads" for c in cells_planned) == 3 * len(CONFIG.heads)  # top-k P(select), attribution, random

# %% [markdown]
# ## 2. Run it
#
# Results land in `OUT/` as one JSON per cell and seed, plus each seed's split, REINFORCE results, attribution map and
# attention row. A rerun on the same folder reads them back instead of recomputing.

# %%
t0 = time.perf_counter()
cells = run_ablations(model, pairs, CONFIG, OUT, show_progress=False)
seconds = time.perf_counter() - t0
print(f"{len(cells)} cell results in {seconds:.0f} s")
display(cells[["axis", "series", "setting", "seed", "accuracy", "ties", "n_heads"]].head(8))

# %%
assert len(cells) == len(cells_planned) * len(CONFIG.seeds)
assert cells["accuracy"].between(0, 1).all() and (cells["n_pairs"] == CONFIG.limit).all()
assert ((cells["ci_low"] <= cells["accuracy"] + 1e-9) & (cells["accuracy"] <= cells["ci_high"] + 1e-9)).all()
# The grid's design, checked on the raw scores: every axis contains the reference ARM, and "no heads" is the
# zero-shot judge.
full = load_cells(OUT, with_scores=True).set_index(["axis", "series", "setting", "seed"])
for seed in CONFIG.seeds:
    ref = full.loc[("selection", "ARM", "reinforce", seed)]
    # the same reference fit, and the choice after 20 of the steps axis' 20 steps (one run to the longest)
    for key in [("scoring", "ARM", "prob"), ("reading", "ARM", "answered"), ("steps", "ARM", "20")]:
        other = full.loc[(*key, seed)]
        assert other["chosen_scores"] == ref["chosen_scores"] and other["rejected_scores"] == ref["rejected_scores"], key
    assert full.loc[("selection", "ARM", "none", seed)]["chosen_scores"] == \
        full.loc[("scoring", "zero-shot", "prob", seed)]["chosen_scores"]
    # P(Yes | Yes, No) = sigmoid(logit difference): a monotone map, so the same pairs are judged correct.
    for series in ("ARM", "zero-shot"):
        assert full.loc[("scoring", series, "normalized", seed)]["correct"] == \
            full.loc[("scoring", series, "logit_diff", seed)]["correct"]
heads_cells = cells[(cells["axis"] == "heads")]
assert (heads_cells["n_heads"] == heads_cells["setting"].astype(int)).all(), "top-k and random cells patch k heads"

# %%
t0 = time.perf_counter()
again = run_ablations(model, pairs, CONFIG, OUT, show_progress=False)
print(f"rerun on the same folder: {time.perf_counter() - t0:.1f} s")
cols = ["axis", "series", "setting", "seed", "accuracy"]
assert again[cols].sort_values(cols).reset_index(drop=True).equals(cells[cols].sort_values(cols).reset_index(drop=True))
assert time.perf_counter() - t0 < seconds / 2, "a rerun reads results back instead of recomputing"

# %% [markdown]
# ## 3. Summary across seeds
#
# `summarize` gives the mean accuracy per setting with a Student-t interval over seeds (two seeds: very wide);
# `zero_shot_reference` the zero-shot judge's accuracy, the dashed line in the figures.

# %%
summary = summarize(cells)
zero_shot = zero_shot_reference(cells)
print(f"zero-shot judge: {zero_shot[0]:.1%}")
display(summary[summary["axis"].isin(["selection", "reading"])][
    ["axis", "setting", "n_seeds", "accuracy", "ci_low", "ci_high", "n_heads"]].round(3))

# %%
assert (summary["n_seeds"] == len(CONFIG.seeds)).all()
per_seed = cells[(cells["axis"] == "selection") & (cells["setting"] == "reinforce")]["accuracy"]
assert abs(summary.set_index(["axis", "setting"]).loc[("selection", "reinforce"), "accuracy"] - per_seed.mean()) < 1e-12
assert abs(zero_shot[0] - cells[(cells["axis"] == "selection") & (cells["setting"] == "none")]["accuracy"].mean()) < 1e-12

# %% [markdown]
# ## 4. The figures
#
# `load_results` reads the folder back (no model needed) and `build_figures` makes every figure `armlens figures`
# writes: head analyses (selection probabilities, trajectory, training curves, stability, attribution, attention;
# with several criteria also their overlap) and one ablation figure per axis plus an overview.

# %%
results = load_results(OUT)
figures, html_versions = build_figures(results)
print(sorted(figures))

# %%
expected = {"heads_selection_probability", "heads_trajectory", "heads_training_curves", "heads_stability",
            "heads_attribution", "heads_attention", "ablation_overview",
            *(f"ablation_{axis}" for axis in CONFIG.grid)}
assert expected <= set(figures), expected - set(figures)
for name, fig in figures.items():
    assert fig.layout.title.text, f"{name} has no title"
assert set(results.seeds) == set(CONFIG.seeds)
for s in CONFIG.seeds:  # the saved REINFORCE results are the head sets the reference cells patched (per criterion)
    saved = {h for name, sel in results.seeds[s].selections.items() if name.startswith("criterion-")
             for h in mask_labels(sel.mask)}
    assert saved == set(full.loc[("selection", "ARM", "reinforce", s)]["heads"])

# %% [markdown]
# What each stage contributes, at a glance (categorical axes), then the numeric axes.

# %%
figures["ablation_overview"].show()
for axis in ("steps", "heads"):
    figures[f"ablation_{axis}"].show()

# %% [markdown]
# The head analyses from the same results: which heads REINFORCE chose in each seed (each seed also drew its own
# few-shot pairs), how often each head was chosen, single-head attribution beside the selection probability, where
# the top selected head attends from the read position.

# %%
for name in ("heads_selection_probability", "heads_stability", "heads_attribution", "heads_attention"):
    figures[name].show()

# %% [markdown]
# ## 5. Write them to files
#
# `write_figures` writes interactive HTML (always) and PNG (needs a Chrome-family browser for kaleido); this is what
# `armlens figures --results OUT --out figures/` does.

# %%
formats = ["html", "png"] if os.environ.get("ARMLENS_NB_PNG") and plots.find_browser() else ["html"]
written = plots.write_figures(figures, OUT / "figures", formats=formats, html_figures=html_versions)
print(f"{len(written)} files in {OUT / 'figures'}")

# %%
assert {p.stem for p in written} == set(figures) and all(p.stat().st_size > 1000 for p in written)
shutil.rmtree(OUT)
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
