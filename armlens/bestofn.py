"""Best-of-N: what does each reward pick among N sampled responses?

For each prompt of real preference data (the prompt side only), N responses are sampled from the policy model
(:func:`armlens.generation.generate_responses`), every reward scores all N, and each reward's best response is
selected. A reward that favours surface features picks responses longer, more formatted or more upbeat than the pool
it chose from: per reward, :func:`summarize` reports the selected responses' length, formatting rate and upbeat
phrase rate (:mod:`armlens.style`) against the pool's average, with bootstrap intervals over prompts, and how often
two rewards pick the same response (and the rank correlation of their scores within a prompt).

Other fits of the ARM (``--replicates``: other seeds, so other few-shot draws) are scored on the same sampled
responses, each on the prompts outside its own few-shot draw (:func:`score_replicate`), and
:func:`replicate_summary` pools the ARM's selections against the plain judge's over those fits, resampling fits,
and prompts crossed (:func:`armlens.stats.crossed_interval`: the fits score nearly the same prompts), so the spread
between few-shot draws is in the interval and a prompt scored by every fit counts once.

Records are per prompt and appended to ``records.jsonl`` as each prompt finishes (:class:`RecordLog`), so an
interrupted run resumes where it stopped; each prompt's sampling seed derives from the run's seed and the prompt's
id, so a resumed run writes what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armlens.data.records import PreferencePair
from armlens.errors import BadDataError, BadInputError
from armlens.generation import generate_responses
from armlens.prompts import criterion_for, prompt_key
from armlens.stats import bootstrap_ci, crossed_interval, paired_bootstrap, spearman
from armlens.style import FEATURES, style_features
from armlens.typing import Model

logger = logging.getLogger(__name__)

REWARDS = ("arm", "zero-shot", "few-shot-icl", "longer", "random")
"""The rewards ``armlens bestofn`` compares, in report order."""

RewardFn = Callable[..., list[float]]


@dataclass
class BestOfNConfig:
    """Sampling and reporting settings of a best-of-N run (saved in ``summary.json``)."""

    n: int = 8
    """Responses sampled per prompt."""
    temperature: float = 0.8
    """Sampling temperature of the policy."""
    max_new_tokens: int = 96
    """Tokens sampled at most per response."""
    bootstrap: int = 1000
    """Bootstrap resamples of the intervals over prompts."""
    seed: int = 0
    """Seed of the prompt draw, of each prompt's sampling (with its id) and of the random reward."""

    def __post_init__(self) -> None:
        if self.n < 2:
            raise BadInputError(f"best-of-N needs at least 2 responses per prompt to choose from, got n={self.n}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise BadInputError(f"best-of-N samples: the temperature must be a number > 0, got {self.temperature} "
                                "(0 would give N identical greedy responses)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_seed(seed: int, key: str) -> int:
    """A 31-bit seed from the run's seed and a prompt's id (stable across runs and resumptions)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big") >> 1


def draw_prompts(pairs: Sequence[PreferencePair], limit: int | None, seed: int,
                 exclude: Sequence[PreferencePair] = ()) -> list[PreferencePair]:
    """One pair per distinct prompt (its first), prompts of ``exclude`` left out, in a seeded order, at most
    ``limit``. Only the prompt side is used downstream."""
    banned = {prompt_key(p.prompt) for p in exclude}
    seen: dict[str, PreferencePair] = {}
    for p in pairs:
        k = prompt_key(p.prompt)
        if k not in banned and k not in seen:
            seen[k] = p
    out = sorted(seen.values(), key=lambda p: p.id)
    random.Random(f"bestofn-{seed}").shuffle(out)
    return out[:limit] if limit is not None else out


def run_prompt(model: Model, pair: PreferencePair, rewards: Mapping[str, RewardFn | None], config: BestOfNConfig,
               criterion: str | None = None) -> dict[str, Any]:
    """Sample ``config.n`` responses to ``pair.prompt``, score them with every reward, select each reward's best
    (the first on a tie). ``random`` in ``rewards`` is drawn here, seeded by the prompt. Returns the record."""
    crit = criterion or criterion_for(pair)
    seed = prompt_seed(config.seed, pair.id)
    responses = generate_responses(model, [pair.prompt], n=config.n, temperature=config.temperature,
                                   max_new_tokens=config.max_new_tokens, seed=seed, batch_size=1)[0]
    scores: dict[str, list[float]] = {}
    for name, fn in rewards.items():
        if name == "random":
            rng = random.Random(prompt_seed(config.seed, f"random:{pair.id}"))
            scores[name] = [rng.random() for _ in responses]
        elif fn is not None:
            scores[name] = [float(s) for s in fn(prompts=[pair.prompt] * len(responses), completions=responses,
                                                 criterion=[crit] * len(responses))]
    features = [style_features(r) for r in responses]
    return {
        "id": pair.id, "subset": pair.subset, "prompt": pair.prompt, "criterion": crit, "seed": seed,
        "responses": responses, "features": {f: [x[f] for x in features] for f in FEATURES}, "scores": scores,
        "selected": {name: int(np.argmax(s)) for name, s in scores.items()},
    }


class RecordLog:
    """Per-prompt records in ``records.jsonl``: one JSON line appended (and synced) per prompt; a torn last line
    (an interrupted write) is dropped when the log is read back."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        """Records by prompt id (a damaged trailing line is cut off the file)."""
        if not self.path.is_file():
            return {}
        out: dict[str, dict[str, Any]] = {}
        good = 0
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    break
                if not line.endswith(b"\n"):
                    break
                out[rec["id"]] = rec
                good += len(line)
        if good < self.path.stat().st_size:
            logger.warning("%s: dropping a torn last record (an interrupted write)", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(good)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _ci(values: Sequence[float], n: int, seed: int) -> dict[str, float]:
    ci = bootstrap_ci(np.asarray(values, dtype=float), n=n, seed=seed)
    return {"mean": ci.estimate, "ci95": [ci.low, ci.high]}


def summarize(records: Sequence[Mapping[str, Any]], rewards: Sequence[str], *, bootstrap: int = 1000,
              seed: int = 0, reference: str = "zero-shot") -> dict[str, Any]:
    """Per reward and feature: the selected responses' mean, the pool's mean, and their difference per prompt, with
    bootstrap intervals over prompts; each reward's selections against ``reference``'s (the plain judge), paired over
    prompts; agreement between every two rewards."""
    if not records:
        raise BadDataError("no best-of-N records to summarise")
    pool = {f: [float(np.mean(r["features"][f])) for r in records] for f in FEATURES}
    per_reward: dict[str, Any] = {}
    for name in rewards:
        row: dict[str, Any] = {}
        for f in FEATURES:
            chosen = [float(r["features"][f][r["selected"][name]]) for r in records]
            row[f] = {"selected": _ci(chosen, bootstrap, seed), "pool": float(np.mean(pool[f])),
                      "diff": _ci([c - p for c, p in zip(chosen, pool[f], strict=True)], bootstrap, seed)}
        per_reward[name] = row
    versus: dict[str, Any] = {}
    if reference in rewards:
        ref = {f: [float(r["features"][f][r["selected"][reference]]) for r in records] for f in FEATURES}
        for name in rewards:
            if name != reference:
                row = {}
                for f in FEATURES:
                    d = paired_bootstrap([float(r["features"][f][r["selected"][name]]) for r in records], ref[f],
                                         n=bootstrap, seed=seed)
                    row[f] = {"diff": d.diff, "ci95": [d.low, d.high], "p": d.p_value}
                versus[name] = row
    agreement: dict[str, Any] = {}
    for i, a in enumerate(rewards):
        for b in rewards[i + 1:]:
            same = [float(r["selected"][a] == r["selected"][b]) for r in records]
            rhos = [spearman(r["scores"][a], r["scores"][b]) for r in records]
            rhos = [x for x in rhos if not math.isnan(x)]
            agreement[f"{a} vs {b}"] = {"same_selection": _ci(same, bootstrap, seed),
                                        "spearman_mean": float(np.mean(rhos)) if rhos else None,
                                        "n_spearman": len(rhos)}
    n = len(records[0]["responses"])
    return {"n_prompts": len(records), "n_per_prompt": n, "chance_same_selection": 1.0 / n,
            "pool": {f: _ci(v, bootstrap, seed) for f, v in pool.items()}, "rewards": per_reward,
            "reference": reference if versus else None, "versus_reference": versus, "agreement": agreement}


def _feature_cells(row: Mapping[str, Any]) -> str:
    """A table row's feature cells: each feature's difference and 95% interval (``{diff, ci95}``), length in whole
    characters, rates to two decimals."""
    cells = []
    for f in FEATURES:
        fmt = "{:+.0f} [{:+.0f}, {:+.0f}]" if f == "length" else "{:+.2f} [{:+.2f}, {:+.2f}]"
        cells.append(fmt.format(row[f]["diff"], *row[f]["ci95"]))
    return " | ".join(cells)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown tables: selected minus pool per feature, selected minus the reference reward's
    selection, and agreement."""
    lines = [f"Best-of-{summary['n_per_prompt']} on {summary['n_prompts']} prompts: selected minus pool average "
             "(95% bootstrap interval over prompts)", "",
             "| reward | length (chars) | formatted rate | upbeat rate |", "|---|---|---|---|"]
    for name, row in summary["rewards"].items():
        diffs = {f: {"diff": row[f]["diff"]["mean"], "ci95": row[f]["diff"]["ci95"]} for f in FEATURES}
        lines.append(f"| {name} | {_feature_cells(diffs)} |")
    if summary.get("versus_reference"):
        lines += ["", f"Selected minus the {summary['reference']} reward's selection, paired over prompts "
                  "(95% bootstrap interval)", "", "| reward | length (chars) | formatted rate | upbeat rate |",
                  "|---|---|---|---|"]
        for name, row in summary["versus_reference"].items():
            lines.append(f"| {name} | {_feature_cells(row)} |")
    pool = summary["pool"]
    lines += ["", f"Pool: length {pool['length']['mean']:.0f} chars, formatted {pool['formatted']['mean']:.2f}, "
              f"upbeat {pool['upbeat']['mean']:.2f}", "",
              f"| rewards | same selection (chance {summary['chance_same_selection']:.2f}) | mean Spearman |",
              "|---|---|---|"]
    for pair, a in summary["agreement"].items():
        s = a["same_selection"]
        rho = "n/a" if a["spearman_mean"] is None else f"{a['spearman_mean']:+.2f}"
        lines.append(f"| {pair} | {s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] | {rho} |")
    return "\n".join(lines) + "\n"


def score_replicate(records: Sequence[Mapping[str, Any]], reward: RewardFn, log: RecordLog,
                    exclude: Sequence[PreferencePair] = ()) -> dict[str, dict[str, Any]]:
    """Score each record's sampled responses with another fit's ``reward`` (no new sampling) and select its best,
    skipping prompts of ``exclude`` (that fit's few-shot pairs). Per prompt ``{id, scores, selected}`` is appended to
    ``log``; prompts already in it are read back. Returns the log's records by prompt id."""
    banned = {prompt_key(p.prompt) for p in exclude}
    done = log.read()
    for r in records:
        if r["id"] in done or prompt_key(r["prompt"]) in banned:
            continue
        n = len(r["responses"])
        scores = [float(x) for x in reward(prompts=[r["prompt"]] * n, completions=r["responses"],
                                           criterion=[r["criterion"]] * n)]
        rec = {"id": r["id"], "scores": scores, "selected": int(np.argmax(scores))}
        log.append(rec)
        done[r["id"]] = rec
    return done


def replicate_summary(records: Sequence[Mapping[str, Any]], replicates: Mapping[str, Mapping[str, Any]], *,
                      base: str = "arm", reference: str = "zero-shot", bootstrap: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """The ARM's selections minus ``reference``'s, per fit (``base``: the run's own ARM, on every record; each
    replicate on the records it scored) and pooled over fits with fits and prompts crossed
    (:func:`armlens.stats.crossed_interval`)."""
    fits: dict[str, dict[str, np.ndarray]] = {}
    prompt_ids: dict[str, list[str]] = {}
    by_id = {r["id"]: r for r in records}
    sources = {base: {r["id"]: r["selected"][base] for r in records},
               **{name: {i: rec["selected"] for i, rec in reps.items() if i in by_id} for name, reps in replicates.items()}}
    for name, picks in sources.items():
        if not picks:
            raise BadDataError(f"the {name} fit selected on no prompt of this run")
        ids = [i for i in by_id if i in picks]
        prompt_ids[name] = ids
        fits[name] = {f: np.array([float(by_id[i]["features"][f][picks[i]])
                                   - float(by_id[i]["features"][f][by_id[i]["selected"][reference]]) for i in ids])
                      for f in FEATURES}
    out: dict[str, Any] = {"reference": reference, "fits": {}, "pooled": {}}
    for name, diffs in fits.items():
        out["fits"][name] = {"n_prompts": int(diffs["length"].size),
                             **{f: {"diff": float(d.mean()), "ci95": list(_ci(d.tolist(), bootstrap, seed)["ci95"])}
                                for f, d in diffs.items()}}
    for f in FEATURES:
        d = crossed_interval([fits[n][f] for n in fits], [prompt_ids[n] for n in fits], bootstrap, seed)
        out["pooled"][f] = {"diff": d.diff, "ci95": [d.low, d.high], "p": d.p_value}
    out["n_fits"] = len(fits)
    return out


def replicate_markdown(rep: Mapping[str, Any]) -> str:
    """Per fit and pooled: the ARM's selection minus the reference judge's, as a Markdown table."""
    lines = [f"The ARM's selection minus the {rep['reference']} judge's, per ARM fit and pooled over "
             f"{rep['n_fits']} fits (95% interval; pooled: fits and prompts crossed)", "",
             "| fit | prompts | length (chars) | formatted rate | upbeat rate |", "|---|---|---|---|---|"]
    rows = [(n, r["n_prompts"], r) for n, r in rep["fits"].items()] + [("pooled", "", rep["pooled"])]
    for name, n, r in rows:
        lines.append(f"| {name} | {n} | {_feature_cells(r)} |")
    return "\n".join(lines) + "\n"
