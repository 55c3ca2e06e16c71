"""A short GRPO on the default model, once with the ARM as the reward and once with the zero-shot judge, through
TRL's GRPOTrainer (armlens.grpo): per step, the reward, the completions' length, formatting rate and upbeat-phrase
rate go to OUT/{arm,zero-shot}/steps.jsonl, and one figure of both runs to OUT/grpo.html (and .png when a browser
for kaleido is found). Needs the rl extra (pip install -e ".[rl]").

    .venv/bin/python scripts/grpo_demo.py --rm hhh.arm --out results/grpo            # 24 steps; ~1 min a step on 2 busy cores
    .venv/bin/python scripts/grpo_demo.py --steps 2 --out /tmp/grpo-smoke              # no --rm: fits a small ARM

The policy is a separate copy of the default model's weights (the judge's bridge is never trained); prompts are the
prompt side of real preference data (--data), minus the ARM's few-shot prompts.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rm", help="saved ARM fitted on the default model (default: fit a small one on --data)")
    ap.add_argument("--data", default="hhh", help="dataset whose prompts are trained on")
    ap.add_argument("--root", default=None, help="data root folder")
    ap.add_argument("--out", required=True, help="result folder")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt (the GRPO group)")
    ap.add_argument("--prompts-per-step", type=int, default=1)
    ap.add_argument("--max-completion-length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="arm,zero-shot", help="rewards to train with, comma-separated")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from armlens import load_model
    from armlens.bestofn import draw_prompts
    from armlens.data import load_pairs, split_pairs
    from armlens.evaluation.baselines import make_judge
    from armlens.evaluation.judge import JudgeConfig
    from armlens.evaluation.protocol import environment_versions
    from armlens.grpo import load_policy, run_grpo
    from armlens.reward import arm_reward, judge_reward
    from armlens.rm import ActivationRM, ARMConfig
    from armlens.selection import ReinforceConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judge_model = load_model()
    pairs = load_pairs(args.data, root=args.root)
    if args.rm:
        rm = ActivationRM.load(args.rm, judge_model)
    else:  # a small ARM, enough to show the loop (a real run should pass a fitted one)
        split = split_pairs(pairs, seed=args.seed, n_fewshot=8, n_select=0, n_test=0, stratify=True)
        rm = ActivationRM(judge_model, ARMConfig(n_trials=8, criteria="pooled", seed=args.seed,
                                                 reinforce=ReinforceConfig(steps=20))).fit(split.fewshot)
        rm.save(out / "demo.arm")
    few_shot_ids = set(rm.fit_info.get("few_shot_ids", []))
    prompts = [p.prompt for p in draw_prompts(pairs, None, args.seed,
                                              exclude=[p for p in pairs if p.id in few_shot_ids])]
    criterion = rm.config.criterion or next(iter(rm.fits))
    rewards = {"arm": lambda: arm_reward(rm, criterion=criterion),
               "zero-shot": lambda: judge_reward(make_judge("zero-shot", judge_model,
                                                            JudgeConfig(template=rm.config.template,
                                                                        score=rm.config.score)))}
    settings = {**vars(args), "criterion": criterion, "heads": rm.heads, "n_prompts": len(prompts),
                "versions": {**environment_versions(), "trl": _version("trl")}}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    histories = {}
    for name in args.runs.split(","):
        t0 = time.perf_counter()
        policy, tok = load_policy()
        histories[name] = run_grpo(policy, tok, rewards[name](), prompts, out / name, steps=args.steps,
                                   num_generations=args.generations, prompts_per_step=args.prompts_per_step,
                                   max_completion_length=args.max_completion_length, learning_rate=args.lr,
                                   seed=args.seed)
        print(f"{name}: {len(histories[name])} steps in {time.perf_counter() - t0:.0f} s")
    figure(histories, out)
    return 0


PANELS = (("reward (own judge)", None), ("length (chars)", "rewards/length/mean"),
          ("formatting rate", "rewards/formatted/mean"), ("upbeat-phrase rate", "rewards/upbeat/mean"))


def figure(histories: dict[str, list[dict]], out: Path) -> None:
    """One figure, four panels (reward, length, formatting, upbeat) per step, one line per run."""
    from plotly.subplots import make_subplots

    from armlens.plots.export import BrowserNotFoundError, write_figures

    fig = make_subplots(rows=1, cols=4, subplot_titles=[t for t, _ in PANELS])
    colors = {"arm": "#1f77b4", "zero-shot": "#ff7f0e"}
    for name, hist in histories.items():
        reward_key = f"rewards/{'arm' if name == 'arm' else 'zero_shot'}/mean"
        for col, (_, key) in enumerate(PANELS, start=1):
            k = key or reward_key
            fig.add_scatter(x=[h["step"] if "step" in h else i + 1 for i, h in enumerate(hist)],
                            y=[h.get(k) for h in hist], mode="lines+markers", name=name, legendgroup=name,
                            showlegend=col == 1, line={"color": colors.get(name)}, row=1, col=col)
    fig.update_layout(title="GRPO on SmolLM2-135M-Instruct: ARM reward vs zero-shot judge reward",
                      width=1400, height=380, template="plotly_white")
    fig.update_xaxes(title_text="step")
    try:
        paths = write_figures({"grpo": fig}, out)
    except BrowserNotFoundError as e:
        print(f"PNG skipped: {e}")
        paths = [out / "grpo.html"]
    print("wrote " + ", ".join(str(p) for p in paths))


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
