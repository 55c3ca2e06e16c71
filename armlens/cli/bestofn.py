"""``armlens bestofn``: sample N responses per prompt, select one by each reward, report what each reward favours."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from armlens import rules as R
from armlens.cli import Command
from armlens.cli.common import ModelFlags
from armlens.errors import BadInputError, BadOutputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestOfNOptions(ModelFlags):
    """Best-of-N with the default model: sample N responses to each prompt of real preference data (prompt side
    only), select one per prompt by each reward (the ARM, the zero-shot judge, the few-shot ICL judge, the longer
    response, a random pick), and report the selections' length, formatting and upbeat-phrase rates against the
    pool, with intervals over prompts, and the agreement between rewards (resumable)."""

    rm: str
    """Saved ARM (FILE.arm); its few-shot pairs' prompts are left out and are the ICL judge's demonstrations."""
    data: str
    """Dataset name (see `armlens data list`) or path:FILE; only the prompts are used."""
    out: str
    """Output folder (records.jsonl, summary.json, summary.md); a rerun resumes it."""
    n: int = 8
    """Responses sampled per prompt (at least 2)."""
    limit: Annotated[int | None, R.COUNT_OR_ALL] = 20
    """Prompts (distinct, in a seeded order; 'all': every prompt)."""
    root: str | None = None
    """Data root folder (default: $ARMLENS_DATA_ROOT or the armlens cache)."""
    subsets: list[str] | None = None
    """Subsets to keep, comma-separated (default: all)."""
    model: str | None = None
    """Policy and judge model, the one the ARM was fitted on (default: the embedded SmolLM2-135M-Instruct)."""
    temperature: Annotated[float, R.POSITIVE_FLOAT] = 0.8
    """Sampling temperature (> 0: best-of-N needs different samples)."""
    max_new_tokens: int = 96
    """Tokens sampled at most per response."""
    replicates: list[str] | None = None
    """Other fits of the ARM (FILE.arm, comma-separated; e.g. other seeds) scored on the same sampled responses,
    each on the prompts outside its own few-shot draw; the summary pools the ARM against the zero-shot judge over
    all fits (default: none)."""
    icl_shots: int = 4
    """Demonstrations of the few-shot ICL judge (drawn from the ARM's few-shot pairs)."""
    seed: Annotated[int, R.INDEX] = 0
    """Seed of the prompt draw, the sampling and the random reward."""
    bootstrap: int = 1000
    """Bootstrap resamples of the intervals."""
    force: bool = False
    """Load the ARM even if the model differs from the one it was fitted on."""
    overwrite: bool = False
    """Start again in an --out folder written with other settings (its records are removed)."""
    quiet: bool = False
    """No progress bar."""


SETTINGS = "settings.json"


def _settings(args: BestOfNOptions) -> dict[str, Any]:
    """What decides a run's records (compared with the settings an earlier run left in --out)."""
    return {"rm": str(args.rm), "data": args.data, "root": args.root,  # as given: a clone resumes the same folder
            "subsets": ",".join(args.subsets) if args.subsets else None, "model": args.model, "n": args.n,
            "temperature": args.temperature, "max_new_tokens": args.max_new_tokens, "icl_shots": args.icl_shots,
            "seed": args.seed}


def _check(args: BestOfNOptions) -> Path:
    from armlens.cli.common import output_dir
    from armlens.io import read_json, settings_diff
    from armlens.rm import ActivationRM

    out = output_dir(args.out, SETTINGS)
    if (out / SETTINGS).is_file() and not args.overwrite:
        diff = settings_diff(read_json(out / SETTINGS), _settings(args), ignore=("limit",))
        if diff:
            raise BadOutputError(f"{out} holds best-of-N records made with other settings ({', '.join(diff)} differ); "
                                 "use another --out or pass --overwrite")
    for path in [args.rm, *(args.replicates or [])]:  # missing, unreadable or corrupt files: before the model loads
        ActivationRM.read(path)
    return out


def run_bestofn(args: BestOfNOptions) -> int:
    import dataclasses

    from tqdm.auto import tqdm

    from armlens.bestofn import (
        REWARDS,
        BestOfNConfig,
        RecordLog,
        draw_prompts,
        replicate_markdown,
        replicate_summary,
        run_prompt,
        score_replicate,
        summarize,
        summary_markdown,
    )
    from armlens.cli.common import on_interrupt
    from armlens.data import load_pairs
    from armlens.evaluation.baselines import make_judge
    from armlens.evaluation.judge import ICLSettings, JudgeConfig
    from armlens.evaluation.protocol import environment_versions
    from armlens.io import ResultsLock, atomic_write, sha256_file, write_json
    from armlens.model import model_id
    from armlens.reward import arm_reward, judge_reward, length_reward
    from armlens.rm import ActivationRM

    config = BestOfNConfig(n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                           bootstrap=args.bootstrap, seed=args.seed)  # its checks come first
    out = _check(args)
    pairs = load_pairs(args.data, root=args.root, subsets=args.subsets)
    log = RecordLog(out / "records.jsonl")
    on_interrupt(lambda: f"{len(log.read())} prompts are saved in {out}; rerun the same command to resume")
    with ResultsLock(out, "armlens bestofn"):
        if args.overwrite and log.path.exists():
            log.path.unlink()
        write_json(out / SETTINGS, _settings(args))
        model = args.load(args.model)
        rm = ActivationRM.load(args.rm, model, force=args.force)
        others = {}  # loaded and checked before any sampling
        for path in args.replicates or []:
            other = ActivationRM.load(path, model, force=args.force)
            name = f"arm seed {other.config.seed}"
            if name in others or other.config.seed == rm.config.seed:
                raise BadInputError(f"{path}: a second fit with seed {other.config.seed}; replicates need other seeds")
            others[name] = (path, other)
        few_shot = _fit_pairs(rm, pairs)
        if not few_shot:  # an ARM fitted elsewhere: the ICL judge's demonstrations come from this data instead
            few_shot = draw_prompts(pairs, 2 * args.icl_shots, args.seed + 1)
            logger.info("the ARM's few-shot pairs are not in %s: %d pairs drawn for the ICL judge", args.data,
                        len(few_shot))
        prompts = draw_prompts(pairs, args.limit, args.seed, exclude=few_shot)
        if not prompts:
            raise BadInputError("no prompts left once the few-shot pairs' prompts are left out")
        jc = JudgeConfig(template=rm.config.template, score=rm.config.score, icl=ICLSettings(shots=args.icl_shots),
                         seed=args.seed)
        rewards = {"arm": arm_reward(rm, criterion=next(iter(rm.fits))),
                   "zero-shot": judge_reward(make_judge("zero-shot", model, jc)),
                   "few-shot-icl": judge_reward(make_judge("few-shot-icl", model, jc).fit(few_shot)),
                   "longer": length_reward, "random": None}
        done = log.read()
        todo = [p for p in prompts if p.id not in done]
        if done:
            print(f"resuming {out}: {len(prompts) - len(todo)} of {len(prompts)} prompts already done")
        for pair in tqdm(todo, desc="best-of-N", disable=args.quiet):
            rec = run_prompt(model, pair, rewards, config, criterion=rm.config.criterion)
            log.append(rec)
            done[rec["id"]] = rec
        records = [done[p.id] for p in prompts]
        summary = summarize(records, REWARDS, bootstrap=args.bootstrap, seed=args.seed)
        reps, replicate_files = {}, {}
        for name, (path, other) in others.items():
            logger.info("replicate %s (%s): scoring the sampled responses", name, path)
            reps[name] = score_replicate(records, arm_reward(other, criterion=next(iter(other.fits))),
                                         RecordLog(out / f"replicate-seed{other.config.seed}.jsonl"),
                                         exclude=_fit_pairs(other, pairs))
            replicate_files[name] = {"path": path, "sha256": sha256_file(path), "heads": len(other.heads)}
        if reps:
            summary["replicates"] = replicate_summary(records, reps, bootstrap=args.bootstrap, seed=args.seed)
        write_json(out / "summary.json", {
            "config": {**_settings(args), "rm_sha256": sha256_file(args.rm), "limit": args.limit, "forced": rm.forced,
                       "bestofn": config.to_dict(),
                       "judges": dataclasses.asdict(jc), "arm": rm.config.to_dict(), "heads": rm.heads,
                       "replicates": replicate_files},
            "seeds": {"run": args.seed, "per_prompt": {r["id"]: r["seed"] for r in records}},
            "model": model_id(model), "versions": environment_versions(extra=("trl",)),
            **summary})
        text = summary_markdown(summary) + ("\n" + replicate_markdown(summary["replicates"])
                                            if "replicates" in summary else "")
        atomic_write(out / "summary.md", text)
    print(text, end="")
    print(f"wrote {out / 'records.jsonl'}, {out / 'summary.json'} and {out / 'summary.md'}")
    return 0


def _fit_pairs(rm: Any, pairs: list[Any]) -> list[Any]:
    """The pairs of ``pairs`` that ``rm`` was fitted on (its few-shot and selection pairs)."""
    ids = set(rm.fit_info.get("few_shot_ids", [])) | set(rm.fit_info.get("select_ids", []))
    return [p for p in pairs if p.id in ids]


COMMANDS = {"bestofn": Command(BestOfNOptions, run_bestofn)}
