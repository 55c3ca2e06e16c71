"""A short GRPO on the default model, once with the ARM as the reward and once with the zero-shot judge, through
TRL's GRPOTrainer (armlens.grpo), then what each run did to the policy, measured on held-apart prompts.

    .venv/bin/python scripts/grpo_demo.py --rm hhh.arm --out results/grpo          # about 40 s a step on 2 cores
    .venv/bin/python scripts/grpo_demo.py --steps 2 --heldout 4 --out /tmp/grpo-smoke  # no --rm: fits a small ARM
    .venv/bin/python scripts/grpo_demo.py --out results/grpo --figure-only           # redraw from the saved files

Prompts are the prompt side of real preference data (--data), minus the ARM's few-shot prompts, in a seeded order:
the last --heldout of them are never trained on. Each prompt is judged under its own criterion (a per-criterion ARM
routes it to that criterion's heads; the zero-shot judge reads the same criterion text). The policy is a separate copy
of the default model's weights (the judge's bridge is never trained), trained on chat-formatted prompts.

Written to OUT: settings.json (arguments, versions, heads); per run, RUN/steps.jsonl (TRL's log per step: reward,
length, formatting and upbeat-phrase rates of the completions) and RUN/heldout.json (the trained policy's samples on
the held-apart prompts, and their scores under both rewards); initial/heldout.json (the untrained policy, same
seeds); summary.json and summary.md (each run's change in length, formatting, upbeat rate and both rewards against
the initial policy, and between the two runs, paired over held-apart prompts with 95% bootstrap intervals); grpo.html
and grpo.png (both runs over steps). A finished run (its heldout.json written with the same settings) is read back,
not rerun.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

RUN_KEYS = ("data", "steps", "generations", "prompts_per_step", "max_completion_length", "lr", "seed", "heldout",
            "samples", "rm")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rm", help="saved ARM fitted on the default model (default: fit a small one on --data)")
    ap.add_argument("--data", default="hhh", help="dataset whose prompts are trained on")
    ap.add_argument("--root", default=None, help="data root folder")
    ap.add_argument("--out", required=True, help="result folder")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt (the GRPO group)")
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5,
                    help="learning rate (3e-5: set before any run, for a visible change in a few dozen steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout", type=int, default=40, help="prompts held apart for the before/after comparison")
    ap.add_argument("--samples", type=int, default=2, help="completions per held-apart prompt and policy")
    ap.add_argument("--runs", default="arm,zero-shot", help="rewards to train with, comma-separated")
    ap.add_argument("--figure-only", action="store_true", help="redraw the figure and summary from OUT's files")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    runs = args.runs.split(",")
    if args.figure_only:
        figure({name: _read_steps(out / name) for name in runs}, out)
        return 0

    from armlens import load_model
    from armlens.bestofn import draw_prompts
    from armlens.data import load_pairs, split_pairs
    from armlens.evaluation.baselines import make_judge
    from armlens.evaluation.judge import JudgeConfig
    from armlens.evaluation.protocol import environment_versions
    from armlens.grpo import compare_policies, load_policy, run_grpo, sample_policy
    from armlens.io import atomic_write, sha256_file
    from armlens.prompts import criterion_for
    from armlens.reward import arm_reward, judge_reward
    from armlens.rm import ActivationRM, ARMConfig
    from armlens.selection import ReinforceConfig

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
    drawn = draw_prompts(pairs, None, args.seed, exclude=[p for p in pairs if p.id in few_shot_ids])
    if len(drawn) <= args.heldout:
        raise SystemExit(f"{len(drawn)} prompts: too few to hold {args.heldout} apart and train on the rest")
    train, held = drawn[:-args.heldout], drawn[-args.heldout:]
    fixed = rm.config.criterion  # a configured criterion overrides the data's
    crit = {p.id: fixed or criterion_for(p) for p in drawn}
    # the criterion column routes each prompt; criterion= is only the fallback a multi-criterion ARM asks for
    rewards = {"arm": arm_reward(rm, criterion=fixed or next(iter(rm.fits))),
               "zero-shot": judge_reward(make_judge("zero-shot", judge_model,
                                                    JudgeConfig(template=rm.config.template, score=rm.config.score)))}
    settings = {**{k: getattr(args, k) for k in RUN_KEYS}, "runs": runs, "heads": rm.heads,
                "rm_sha256": sha256_file(args.rm) if args.rm else None,
                "n_train_prompts": len(train), "n_heldout_prompts": len(held),
                "heldout_ids": [p.id for p in held], "versions": environment_versions(extra=("trl",))}
    atomic_write(out / "settings.json", json.dumps(settings, indent=2))
    key = {k: settings[k] for k in RUN_KEYS}

    def saved(name: str) -> dict | None:
        """A finished policy's held-apart record, if it was made with these settings."""
        path = out / name / "heldout.json"
        record = json.loads(path.read_text()) if path.exists() else None
        return record if record and record.get("key") == key else None

    def heldout(name: str, policy, tok) -> dict:
        """The policy's samples on the held-apart prompts and both rewards' scores, saved."""
        path = out / name / "heldout.json"
        t0 = time.perf_counter()
        samples = sample_policy(policy, tok, [p.prompt for p in held], n=args.samples,
                                max_new_tokens=args.max_completion_length, seed=args.seed)
        scores = {}
        for rname, fn in rewards.items():
            flat = fn(prompts=[p.prompt for p, g in zip(held, samples, strict=True) for _ in g],
                      completions=[c for g in samples for c in g],
                      criterion=[crit[p.id] for p, g in zip(held, samples, strict=True) for _ in g])
            scores[rname] = [flat[i * args.samples:(i + 1) * args.samples] for i in range(len(held))]
        record = {"key": key, "ids": [p.id for p in held], "samples": samples, "scores": scores,
                  "seconds": time.perf_counter() - t0}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record))
        return record

    records = {"initial": saved("initial") or heldout("initial", *load_policy())}
    for name in runs:
        records[name] = saved(name)
        if records[name] is None:
            t0 = time.perf_counter()
            policy, tok = load_policy()
            hist = run_grpo(policy, tok, rewards[name], [p.prompt for p in train], out / name, steps=args.steps,
                            num_generations=args.generations, prompts_per_step=args.prompts_per_step,
                            max_completion_length=args.max_completion_length, learning_rate=args.lr,
                            seed=args.seed, conversational=True,
                            columns={"criterion": [crit[p.id] for p in train]})
            print(f"{name}: {len(hist)} steps in {time.perf_counter() - t0:.0f} s")
            records[name] = heldout(name, policy, tok)
    summary = compare_policies({n: r["samples"] for n, r in records.items()},
                               {rname: {n: r["scores"][rname] for n, r in records.items()} for rname in rewards},
                               seed=args.seed)
    atomic_write(out / "summary.json", json.dumps({"settings": settings, **summary}, indent=2))
    text = summary_markdown(summary)
    atomic_write(out / "summary.md", text)
    print(text)
    figure({name: _read_steps(out / name) for name in runs}, out)
    return 0


def summary_markdown(summary: dict) -> str:
    """Each trained policy against the initial one, and the two runs against each other, on held-apart prompts."""
    cols = ["length", "formatted", "upbeat", "reward:arm", "reward:zero-shot"]
    head = ["length (chars)", "formatted rate", "upbeat rate", "ARM reward", "zero-shot reward"]
    lines = [f"Held-apart prompts: {summary['n_prompts']}, {summary['n_per_prompt']} samples each; "
             "mean difference (95% paired bootstrap interval over prompts)", "",
             "| comparison | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    rows = [(f"{n} - {summary['base']}", d) for n, d in summary["vs_base"].items()] + list(summary["between"].items())
    for label, d in rows:
        cells = []
        for c in cols:
            if c not in d:
                cells.append("n/a")
                continue
            fmt = "{:+.1f} [{:+.1f}, {:+.1f}]" if c == "length" else "{:+.3f} [{:+.3f}, {:+.3f}]"
            cells.append(fmt.format(d[c]["diff"], *d[c]["ci95"]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    means = summary["means"]
    lines += ["", "| policy | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    for n, m in means.items():
        lines.append(f"| {n} | " + " | ".join("n/a" if c not in m else
                                               (f"{m[c]:.1f}" if c == "length" else f"{m[c]:.3f}") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _read_steps(folder: Path) -> list[dict]:
    path = folder / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


PANELS = (("own reward (P(Yes))", None), ("length (chars)", "rewards/length/mean"),
          ("formatting rate", "rewards/formatted/mean"), ("upbeat-phrase rate", "rewards/upbeat/mean"))


def figure(histories: dict[str, list[dict]], out: Path) -> None:
    """One figure, four panels (reward, length, formatting, upbeat) per step, one line per run."""
    from plotly.subplots import make_subplots

    from armlens.plots.export import BrowserNotFoundError, write_figures

    fig = make_subplots(rows=1, cols=4, subplot_titles=[t for t, _ in PANELS])
    colors = {"arm": "#1f77b4", "zero-shot": "#ff7f0e"}
    for name, hist in histories.items():
        reward_key = f"rewards/{name.replace('-', '_')}/mean"
        for col, (_, key) in enumerate(PANELS, start=1):
            k = key or reward_key
            fig.add_scatter(x=[h.get("step", i + 1) for i, h in enumerate(hist)], y=[h.get(k) for h in hist],
                            mode="lines+markers", name=f"trained on {name}", legendgroup=name, showlegend=col == 1,
                            line={"color": colors.get(name)}, row=1, col=col)
    fig.update_layout(title="GRPO on SmolLM2-135M-Instruct (training prompts, per step): ARM reward vs zero-shot "
                            "judge reward", width=1400, height=380, template="plotly_white")
    fig.update_xaxes(title_text="step")
    try:
        paths = write_figures({"grpo": fig}, out)
    except BrowserNotFoundError as e:
        print(f"PNG skipped: {e}")
        paths = [out / "grpo.html"]
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    raise SystemExit(main())
