"""``armlens eval``: the ARM against the judges people use, per dataset and seed, resumable."""

from __future__ import annotations

import argparse
import dataclasses
import time

_METHODS_HELP = "arm, zero-shot, few-shot-icl, generative, voting, longer, shorter, probe, steering, savs, implicit"


def _csv(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _limit(text: str) -> int | None:
    if text.lower() in ("all", "none", "0"):
        return None
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate the ARM and baselines on datasets over seeds (accuracy, CIs, paired tests, bias suite)",
        description="For each dataset and seed: split the pairs (few-shot / selection / test), fit every method on the "
                    "same draw, score the test pairs and the bias suite. Writes per-item JSONL, summary.json and "
                    "results.md under --out; rerunning with the same --out skips finished work.",
    )
    p.add_argument("--data", required=True, help="comma-separated dataset names (see `armlens data list`) or path:FILE")
    p.add_argument("--root", default=None, help="data root (default: ARMLENS_DATA_ROOT or ../shared/data/preference)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets to keep (default: all)")
    p.add_argument("--methods", default="all", help=f"comma-separated methods or 'all' ({_METHODS_HELP})")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds: few-shot draws and head selections (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", default="runs/eval", help="output folder, reused to resume (default runs/eval)")
    p.add_argument("--limit", type=_limit, default=40,
                   help="test pairs per dataset and seed, a seeded sample ('all' for every test pair; default 40)")
    p.add_argument("--n-fewshot", type=int, default=8, help="few-shot pairs (default 8)")
    p.add_argument("--n-select", type=int, default=8, help="head-selection pairs (default 8)")
    p.add_argument("--stratify", action="store_true", help="fill the few-shot and selection pools per subset")
    p.add_argument("--shots", type=int, default=4, help="demonstrations per in-context prompt (ARM icl extraction, few-shot-icl; default 4)")
    p.add_argument("--steps", type=int, default=50, help="ARM REINFORCE steps (default 50; the reference uses 200)")
    p.add_argument("--n-trials", type=int, default=24, help="ARM icl extraction prompts (default 24; the reference uses 100)")
    p.add_argument("--arm-mode", choices=["icl", "per_example"], default="per_example",
                   help="ARM extraction reading (default per_example, as ActivationRM)")
    p.add_argument("--estimator", choices=["mean", "wpca", "class_diff", "median", "trimmed_mean"], default="mean",
                   help="ARM activation estimator (default mean)")
    p.add_argument("--score", choices=["prob", "normalized", "logit_diff"], default="prob",
                   help="reading of the judge's answer logits for the token-probability methods (default prob)")
    p.add_argument("--max-field-tokens", type=_limit, default=None,
                   help="cut prompts and responses to this many tokens in judge prompts, in the middle of the field "
                        "(default: never; a prompt beyond the context is an error)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts per forward pass (default 1: fastest on CPUs, see armlens bench)")
    p.add_argument("--bias", default=None,
                   help="comma-separated bias kinds, or 'none' (default: all of length, format, positivity, "
                        "length-real, format-real)")
    p.add_argument("--voting-n", type=int, default=5, help="voting: sampled judgements per prompt (default 5)")
    p.add_argument("--voting-temperature", type=float, default=0.7, help="voting: temperature (default 0.7)")
    p.add_argument("--probe-features", choices=["resid", "hook_z"], default="resid", help="probe features (default resid)")
    p.add_argument("--probe-layer", type=int, default=None, help="probe residual layer (default: middle layer)")
    p.add_argument("--steering-layers", default=None, help="steering candidate layers, comma-separated (default: middle layer)")
    p.add_argument("--steering-coefs", default="1.0", help="steering candidate coefficients, comma-separated (default 1.0)")
    p.add_argument("--savs-top-k", type=int, default=20, help="SAVs voting heads (default 20)")
    p.add_argument("--n-bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", help="parameter dtype (default float32)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):  # -> EvalConfig (imported lazily: `armlens --help` stays instant)
    from armlens.data import BIAS_KINDS
    from armlens.evaluation.baselines import JudgeConfig
    from armlens.evaluation.runner import EvalConfig
    from armlens.rm import ARMConfig

    if args.bias is None:
        bias = list(BIAS_KINDS)
    elif args.bias.strip().lower() == "none":
        bias = []
    else:
        bias = _csv(args.bias) or []
    layers = _csv(args.steering_layers)
    judge = JudgeConfig(
        score=args.score,
        arm=dataclasses.replace(ARMConfig(), mode=args.arm_mode, estimator=args.estimator),
        voting_n=args.voting_n, voting_temperature=args.voting_temperature,
        probe_features=args.probe_features, probe_layer=args.probe_layer,
        steering_layers=tuple(int(x) for x in layers) if layers else None,
        steering_coefs=tuple(float(x) for x in _csv(args.steering_coefs) or []),
        savs_top_k=args.savs_top_k,
    )
    return EvalConfig(
        data=_csv(args.data) or [], out=args.out, methods=_csv(args.methods) or [], seeds=args.seeds,
        first_seed=args.first_seed, root=args.root, subsets=_csv(args.subsets), limit=args.limit,
        n_fewshot=args.n_fewshot, n_select=args.n_select, stratify=args.stratify, shots=args.shots,
        steps=args.steps, n_trials=args.n_trials, max_field_tokens=args.max_field_tokens, batch_size=args.batch_size,
        bias_kinds=bias, n_bootstrap=args.n_bootstrap, model=args.model, device=args.device, dtype=args.dtype,
        judge=judge, show_progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from armlens.evaluation.runner import results_markdown, run_eval

    config = config_from_args(args)
    t0 = time.perf_counter()
    summary = run_eval(config)
    print(results_markdown(summary))
    run_info = summary.get("run", {})
    print(f"{run_info.get('computed', 0)} unit(s) computed, {run_info.get('reused', 0)} reused, "
          f"{time.perf_counter() - t0:.1f} s; results in {Path(config.out) / 'results.md'} and summary.json")
    return 0
