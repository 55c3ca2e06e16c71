"""``armlens eval``: the ARM against the judges people use, per dataset and seed, resumable."""

from __future__ import annotations

import argparse
import dataclasses
import time

from armlens.cli.options import (
    count_or_all,
    count_or_zero,
    index,
    list_of,
    non_negative_float,
    positive,
    tokens_or_none,
)

_METHODS_HELP = "arm, zero-shot, few-shot-icl, generative, voting, longer, shorter, probe, steering, savs, implicit"


def _csv(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate the ARM and baselines on datasets over seeds (accuracy, CIs, paired tests, bias suite)",
        description="For each dataset and seed: split the pairs (few-shot / selection / test), fit every method on the "
                    "same draw, score the test pairs and the bias suite. Writes per-item JSONL, summary.json and "
                    "results.md under --out; rerunning with the same --out skips finished work.",
    )
    p.add_argument("--data", required=True, help="comma-separated dataset names (see `armlens data list`) or path:FILE")
    p.add_argument("--root", default=None, help="data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets to keep (default: all)")
    p.add_argument("--methods", default="all", help=f"comma-separated methods or 'all' ({_METHODS_HELP})")
    p.add_argument("--seeds", type=positive, default=3, help="number of seeds: few-shot draws and head selections (default 3)")
    p.add_argument("--first-seed", type=index, default=0, help="first seed (default 0)")
    p.add_argument("--out", default="runs/eval", help="output folder, reused to resume (default runs/eval)")
    p.add_argument("--limit", type=count_or_all, default=40,
                   help="test pairs per dataset and seed, a seeded sample ('all' for every test pair; default 40)")
    p.add_argument("--n-fewshot", type=positive, default=8, help="few-shot pairs (default 8)")
    p.add_argument("--n-select", type=count_or_zero, default=8,
                   help="head-selection pairs (default 8; 0: none, select on the few-shot pairs)")
    p.add_argument("--no-stratify", action="store_true",
                   help="draw the few-shot and selection pools without regard to subsets (default: per subset, so "
                        "each criterion's ARM gets its own pairs)")
    p.add_argument("--icl-demos", type=positive, default=None,
                   help="few-shot-icl judge: answered demonstrations in its prompt (default: JudgeConfig's)")
    p.add_argument("--steps", type=positive, default=None, help="ARM REINFORCE steps (default: ARMConfig's)")
    p.add_argument("--n-trials", type=positive, default=None,
                   help="ARM icl extraction prompts averaged (default: ARMConfig's)")
    p.add_argument("--arm-reading", choices=["icl", "answered", "mean_ablation"], default=None,
                   help="ARM Stage 1 reading (default: ARMConfig's; mean_ablation is the method mean-ablation)")
    p.add_argument("--estimator", choices=["mean", "wpca", "class_diff", "median", "trimmed_mean"], default="mean",
                   help="ARM activation estimator (default mean)")
    p.add_argument("--score", choices=["prob", "normalized", "logit_diff"], default="prob",
                   help="reading of the judge's answer logits for the token-probability methods (default prob)")
    p.add_argument("--max-field-tokens", type=tokens_or_none, default=None,
                   help="cut prompts and responses to this many tokens in judge prompts, in the middle of the field "
                        "(default 'none': never; a prompt beyond the context is an error)")
    p.add_argument("--batch-size", type=positive, default=1, help="prompts per forward pass (default 1: fastest on CPUs, see armlens bench)")
    p.add_argument("--bias", default=None,
                   help="comma-separated bias kinds, or 'none' (default: all of length, format, positivity, "
                        "length-real, format-real)")
    p.add_argument("--voting-n", type=positive, default=5, help="voting: sampled judgements per prompt (default 5)")
    p.add_argument("--voting-temperature", type=non_negative_float, default=0.7, help="voting: temperature (default 0.7)")
    p.add_argument("--probe-features", choices=["resid", "hook_z"], default="resid", help="probe features (default resid)")
    p.add_argument("--probe-layer", type=index, default=None, help="probe residual layer (default: middle layer)")
    p.add_argument("--steering-layers", type=list_of(index), default=None, help="steering candidate layers, comma-separated (default: middle layer)")
    p.add_argument("--steering-coefs", default="1.0", help="steering candidate coefficients, comma-separated (default 1.0)")
    p.add_argument("--savs-top-k", type=positive, default=20, help="SAVs voting heads (default 20)")
    p.add_argument("--n-bootstrap", type=positive, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", help="parameter dtype (default float32)")
    p.add_argument("--change-settings", action="store_true",
                   help="reuse an --out folder whose config.json holds other settings (only matching units are kept)")
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
    layers = args.steering_layers
    base = ARMConfig()
    arm = dataclasses.replace(
        base, estimator=args.estimator, **({"reading": args.arm_reading} if args.arm_reading else {}),
        **({"n_trials": args.n_trials} if args.n_trials else {}),
        reinforce=dataclasses.replace(base.reinforce, **({"steps": args.steps} if args.steps else {})))
    judge = JudgeConfig(
        score=args.score, arm=arm, batch_size=args.batch_size,
        template=dataclasses.replace(JudgeConfig().template, max_field_tokens=args.max_field_tokens),
        voting_n=args.voting_n, voting_temperature=args.voting_temperature,
        probe_features=args.probe_features, probe_layer=args.probe_layer,
        steering_layers=tuple(int(x) for x in layers) if layers else None,
        steering_coefs=tuple(float(x) for x in _csv(args.steering_coefs) or []),
        savs_top_k=args.savs_top_k, **({"icl_shots": args.icl_demos} if args.icl_demos else {}),
    )
    return EvalConfig(
        data=_csv(args.data) or [], out=args.out, methods=_csv(args.methods) or [], seeds=args.seeds,
        first_seed=args.first_seed, root=args.root, subsets=_csv(args.subsets), limit=args.limit,
        n_fewshot=args.n_fewshot, n_select=args.n_select, stratify=not args.no_stratify,
        bias_kinds=bias, n_bootstrap=args.n_bootstrap, model=args.model, device=args.device, dtype=args.dtype,
        judge=judge, show_progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from armlens.cli.common import on_interrupt, resume_note
    from armlens.evaluation.runner import check_out, results_markdown, run_eval

    config = config_from_args(args)
    config.validate()
    check_out(config, args.change_settings)  # before any data or model is loaded
    on_interrupt(args, resume_note(config.out, "*/seed*/*/result.json", "unit(s)"))
    t0 = time.perf_counter()
    summary = run_eval(config, allow_changed_settings=args.change_settings)
    print(results_markdown(summary))
    run_info = summary.get("run", {})
    print(f"{run_info.get('computed', 0)} unit(s) computed, {run_info.get('reused', 0)} reused, "
          f"{time.perf_counter() - t0:.1f} s; results in {Path(config.out) / 'results.md'} and summary.json")
    return 0
