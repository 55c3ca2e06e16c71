"""Figures: every plot is titled, has labelled axes and the right colour scale; ``armlens figures`` rebuilds them
from a saved (tiny) results folder, HTML always and PNG when a Chrome-family browser is available."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from armlens import analysis as A
from armlens import plots
from armlens.cli import main as cli_main
from armlens.cli.analysis import build_figures
from armlens.data.records import PreferencePair

_DIV_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ids(html: str) -> str:
    """A figure's HTML with plotly's random div id masked."""
    return _DIV_ID.sub("ID", html)


def toy_pairs(n: int = 20) -> list[PreferencePair]:
    topics = ["the sea", "bread", "a cat", "rain", "music", "trains", "tea", "chess", "snow", "maps"]
    return [
        PreferencePair(
            id=f"toy/{i}", source="hhh", subset=f"hhh-{('helpful', 'harmless')[i % 2]}", prompt=f"Tell me about {topics[i % 10]} ({i}).",
            chosen=f"Here is a short, accurate note about {topics[i % 10]}.", rejected="No." * (1 + i % 3),
        )
        for i in range(n)
    ]


def tiny_config() -> A.AblationConfig:
    from armlens.prompts import JudgeTemplate
    from armlens.rm import ARMConfig
    from armlens.selection import ReinforceConfig

    arm = ARMConfig(n_trials=2, template=JudgeTemplate(max_field_tokens=24),
                    reinforce=ReinforceConfig(steps=3, k_masks=4, n_final_eval=4, n_final_samples=3))
    return A.AblationConfig(data="toy", seeds=[0, 1], n_fewshot=6, limit=4, arm=arm, attribution_examples=2,
                            fewshot_per_criterion=[2, 3], heads=[1, 2, 4], flips=[0.0, 0.5], steps=[2, 3],
                            trials=[2], demos=[1], priors=[-1.0], learning_rates=[0.1], bootstrap=50,
                            gen_max_new_tokens=2, grid=list(A.AXES))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("results")
    A.run_ablations(tiny, toy_pairs(), tiny_config(), out, show_progress=False)
    return out


def titles(fig) -> list[str]:
    out = []
    for key in ("xaxis", "yaxis", "xaxis2", "yaxis2"):
        ax = getattr(fig.layout, key, None)
        if ax is not None and ax.title.text:
            out.append(ax.title.text)
    return out


def check_labelled(fig, x: str | None = None, y: str | None = None) -> None:
    assert fig.layout.title.text, "figure without a title"
    assert fig.layout.xaxis.title.text, "x axis without a title"
    assert fig.layout.yaxis.title.text, "y axis without a title"
    if x:
        assert fig.layout.xaxis.title.text == x
    if y:
        assert fig.layout.yaxis.title.text == y


def test_head_maps_are_labelled_and_scaled():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 4, generator=g)
    mask = probs > 0.5
    fig = plots.plot_selection_probability({0: probs, 1: probs.flip(0)}, {0: mask, 1: mask.flip(0)})
    check_labelled(fig, "Head", "Layer")
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    assert heat.customdata[2][3] == "L2H3" and "%{customdata}" in heat.hovertemplate
    assert fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]  # layer 0 at the top, as TransformerLens' imshow

    effects = torch.randn(3, 4, generator=g)
    fig = plots.plot_attribution(effects, probs, mask, rho=0.3)
    check_labelled(fig, "Head", "Layer")
    assert fig.layout.coloraxis.colorscale[0][1] == go.Figure(
        go.Heatmap(colorscale="RdBu")).data[0].colorscale[0][1]
    assert fig.layout.coloraxis.cmid == 0 and fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax
    assert "+0.30" in fig.layout.title.text

    fig = plots.plot_head_map(effects, title="effects", colorbar_title="Δ (logits)", signed=True)
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -fig.data[0].zmax
    fig = plots.plot_stability(probs, 3)
    check_labelled(fig, "Head", "Layer")
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    # a run with one seed so far (a stage-ablation folder mid-run) says "1 seed", not "1 seeds"
    assert "across 3 seeds and" in fig.layout.title.text
    assert "across 1 seed and" in plots.plot_stability(probs, 1).layout.title.text

    traj = torch.rand(10, 3, 4, generator=g)
    fig = plots.plot_trajectory(traj, [0, 4, 9], seed=0)
    check_labelled(fig, "Head", "Layer")
    assert [a.text for a in fig.layout.annotations][:3] == ["after step 1", "after step 5", "after step 10"]
    slider = plots.plot_trajectory_slider(traj)
    assert len(slider.frames) == 10 and len(slider.layout.sliders[0].steps) == 10
    fig = plots.plot_training_curves({0: [1.0, 0.5]}, {0: [3.0, 2.5]})
    assert fig.layout.title.text and "REINFORCE step" in titles(fig)
    assert any("no held-apart pairs" in a.text for a in fig.layout.annotations)  # the empty panel says why
    fig = plots.plot_training_curves({0: [1.0, 0.5]}, {0: [3.0, 2.5]}, val_losses={0: [(2.0, 0.7)]})
    assert not any("no held-apart pairs" in a.text for a in fig.layout.annotations)


def test_transfer_plot_is_signed():
    gain = pd.DataFrame({"a": {"x": 10.0, "y": -5.0}, "b": {"x": float("nan"), "y": 2.0}})
    fig = plots.plot_transfer(gain)
    check_labelled(fig)
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -10 and fig.data[0].zmax == 10
    assert fig.data[0].text[0] == ["+10", "n/a"]


def test_jaccard_and_attention_plots():
    m = pd.DataFrame([[0.8, 0.1], [0.1, float("nan")]], index=["helpful", "harmless"], columns=["helpful", "harmless"])
    fig = plots.plot_jaccard(m, chance=0.05)
    check_labelled(fig)
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1 and fig.data[0].text[1][1] == "n/a"
    assert "0.05" in fig.layout.title.text
    fig = plots.plot_attention(["a", "b", "c"], [0.2, 0.7, 0.1], head="L3H1", patched_weights=[0.3, 0.3, 0.4])
    check_labelled(fig)
    assert "L3H1" in fig.layout.title.text and len(fig.data) == 2


def test_ablation_plot_has_intervals_and_references():
    cells = pd.DataFrame([
        {"axis": "selection", "series": "ARM", "setting": s, "x": None, "reading": "prob", "seed": seed,
         "accuracy": acc + 0.05 * seed, "ci_low": 0.0, "ci_high": 1.0, "ties": 0, "n_pairs": 10, "n_heads": 3}
        for s, acc in (("reinforce", 0.6), ("none", 0.5)) for seed in range(3)
    ] + [
        {"axis": "heads", "series": "random", "setting": str(k), "x": float(k), "reading": "prob", "seed": seed,
         "accuracy": 0.5, "ci_low": 0.0, "ci_high": 1.0, "ties": 0, "n_pairs": 10, "n_heads": k}
        for k in (1, 2, 4) for seed in range(3)
    ])
    summary = A.summarize(cells)
    zs = A.zero_shot_reference(cells)
    assert zs is not None and zs[0] == pytest.approx(0.55)
    fig = plots.plot_ablation(summary, cells, axis="selection", zero_shot=zs, data_name="toy")
    check_labelled(fig, y=plots.ACC_TITLE)
    main = fig.data[0]
    assert main.error_y.array is not None and all(v is not None and v > 0 for v in main.error_y.array)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert {round(s.y0, 3) for s in lines} >= {55.0, 50.0}  # zero-shot and chance
    assert "3 seeds" in fig.layout.title.text and "95%" in fig.layout.title.text
    fig = plots.plot_ablation(summary, cells, axis="heads", zero_shot=zs)
    assert fig.layout.xaxis.type == "log"
    fig = plots.plot_ablation_overview(summary, zero_shot=zs)
    assert fig.layout.title.text and fig.layout.yaxis.title.text == plots.ACC_TITLE
    with pytest.raises(ValueError):
        plots.plot_ablation(summary, axis="flip")


def test_figures_from_saved_results_html(results_dir, tmp_path, capsys):
    res = A.load_results(results_dir)
    figs, html = build_figures(res)
    expected = {"heads_selection_probability", "heads_trajectory", "heads_training_curves",
                "heads_training_curves_long", "heads_training_curves_lr0.1",
                "heads_stability", "heads_attribution", "heads_attention", "heads_criteria_jaccard", "ablation_overview",
                *(f"ablation_{a}" for a in A.AXES)}
    assert set(figs) == expected and set(html) == {"heads_trajectory"}
    for name, fig in figs.items():
        assert fig.layout.title.text, name
    out = tmp_path / "figs"
    assert cli_main(["figures", "--results", str(results_dir), "--out", str(out), "--formats", "html"]) == 0
    written = {p.stem for p in out.glob("*.html")}
    # every setting against its axis's default, paired; the accuracy-sparsity frontier from the folder's cells
    assert written == expected | {"sweep", "frontier"}
    for name in expected:  # each file holds the figure built above (plotly's div ids are random)
        want = html.get(name, figs[name]).to_html(include_plotlyjs="cdn", full_html=True)
        assert _ids((out / f"{name}.html").read_text(encoding="utf-8")) == _ids(want), name
    table = pd.read_csv(out / "sweep.csv")
    assert set(table["axis"]) <= set(A.AXES) and table["reference"].any() and (out / "sweep.md").is_file()
    conv = pd.read_csv(out / "convergence.csv")  # REINFORCE's settling, per training run, from the saved curves
    assert set(conv["run"]) == {"reference", "steps3", "lr0.1"} and (conv["n_seeds"] == 2).all()
    assert "Has REINFORCE converged?" in (out / "convergence.md").read_text()
    other = shutil.copytree(results_dir, tmp_path / "other")
    two = tmp_path / "two"
    assert cli_main(["figures", "--results", f"{results_dir},{other}", "--out", str(two),
                     "--formats", "html"]) == 0  # several folders: per-folder prefixes, one pooled sweep
    assert (two / "other_heads_trajectory.html").is_file() and (two / "sweep.html").is_file()
    # --before: the reference ARM against an earlier round's (here the same run copied: a difference of 0 exactly)
    rounds = tmp_path / "rounds"
    assert cli_main(["figures", "--results", str(other), "--before", str(results_dir), "--out", str(rounds),
                     "--formats", "html"]) == 0
    table = pd.read_csv(rounds / "rounds.csv")
    assert len(table) == 1 and table["diff"].iloc[0] == 0 and table["p_value"].iloc[0] == 1
    md = (rounds / "rounds.md").read_text()
    assert "| data |" in md and "+0.0 (+0.0 to +0.0)" in md and f"{int(table['n_pairs'].iloc[0])} pairs" in md
    # one cell of each round instead of their references: a steps cell against the reference fit it ends as, and
    # another steps cell (a different choice) against it
    assert cli_main(["figures", "--results", str(other), "--before", str(results_dir), "--cell", "steps/3",
                     "--before-cell", "selection/reinforce", "--out", str(rounds), "--formats", "html"]) == 0
    same = pd.read_csv(rounds / "rounds-steps_3-vs-selection_reinforce.csv")
    assert same["diff"].iloc[0] == 0 and same["after"].iloc[0].endswith(" steps=3")
    assert cli_main(["figures", "--results", str(other), "--before", str(results_dir), "--cell", "steps/2",
                     "--out", str(rounds), "--formats", "html"]) == 0
    two_vs_ref = pd.read_csv(rounds / "rounds-steps_2-vs-reference.csv")
    cells = A.load_cells(results_dir, with_scores=True)
    step2 = cells[(cells.axis == "steps") & (cells.setting == "2")].sort_values("seed")
    ref = cells[(cells.axis == "selection") & (cells.setting == "reinforce")].sort_values("seed")
    assert two_vs_ref["diff"].iloc[0] == pytest.approx(step2["accuracy"].mean() - ref["accuracy"].mean())
    capsys.readouterr()
    assert cli_main(["figures", "--results", str(other), "--before", str(results_dir), "--cell", "steps/9",
                     "--out", str(rounds)]) != 0
    assert "no cell of steps=9" in capsys.readouterr().err
    assert cli_main(["figures", "--results", str(other), "--cell", "steps/3", "--out", str(rounds)]) != 0
    assert "pass the earlier round with --before" in capsys.readouterr().err
    assert cli_main(["figures", "--results", str(other), "--before", str(results_dir), "--cell", "steps",
                     "--out", str(rounds)]) != 0
    assert "expected AXIS/SETTING" in capsys.readouterr().err
    assert cli_main(["figures", "--results", str(other), "--before", str(tmp_path / "nope"), "--out", str(rounds)]) != 0
    err = capsys.readouterr().err
    assert "--before" in err and "does not exist" in err
    text = (out / "heads_trajectory.html").read_text()
    assert "cdn.plot.ly" in text and "sliders" in text  # small file, interactive slider in the HTML


def test_png_needs_a_browser(results_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plots.export, "find_browser", lambda: None)
    with pytest.raises(plots.BrowserNotFoundError, match="Chrome-family browser"):
        plots.write_figures({"x": go.Figure()}, tmp_path, formats=("png",))
    assert not list(tmp_path.iterdir())  # nothing half-written
    rc = cli_main(["figures", "--results", str(results_dir), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert rc == 2 and "apt-get install -y chromium" in err and len(err.strip().splitlines()) == 1
    html = sorted((tmp_path / "f").glob("*.html"))  # HTML first, then the explanation for the PNGs
    assert html and f"{len(html)} HTML figure(s) were written" in err and not list((tmp_path / "f").glob("*.png"))


@pytest.mark.skipif(plots.find_browser() is None, reason="no Chrome-family browser for kaleido")
def test_figures_png(results_dir, tmp_path):
    out = tmp_path / "png"
    assert cli_main(["figures", "--results", str(results_dir), "--out", str(out), "--formats", "png"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 9 + 1 + len(A.AXES) + 1 + 1  # nine head figures, the overview, one per axis, the sweep, the frontier
    figs, _ = build_figures(A.load_results(results_dir))
    pixels = {}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 300_000
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        if p.stem in figs:  # drawn at the figure's own size
            fig = figs[p.stem]
            assert rgb.size == (fig.layout.width, fig.layout.height), p.stem
        assert len(rgb.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, p.stem  # a drawing, not a blank page
        pixels[p.stem] = rgb.tobytes()
    assert len(set(pixels.values())) == len(pixels)  # no two figures came out the same


def test_figures_without_results_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["figures", "--results", str(tmp_path), "--out", str(tmp_path / "f")]) == 2
    assert "no run.json" in capsys.readouterr().err
