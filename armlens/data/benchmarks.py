"""Offline loaders for the human-labelled preference sets: LLMBar, HHH, TruthfulQA, HH-RLHF and XSTest.

Context
-------
These datasets are read from files under a data root (see :mod:`armlens.data.roots`): any folder with the layout
below (``--root`` / ``ARMLENS_DATA_ROOT`` / ``~/.cache/armlens/data``), for HHH and TruthfulQA the cache filled
from the ``bigbench==1.0.0`` sdist by ``armlens data fetch bigbench``, and last the copy bundled inside the package
(:mod:`armlens.data.bundle`), so every one of them loads on a fresh machine with no option at all.

Subset names follow RewardBench where RewardBench has the data (``llmbar-natural``, ``llmbar-adver-neighbor``, ...,
``xstest-should-respond``, ``xstest-should-refuse``), so section scores line up with RewardBench's Chat Hard and
Safety; the others are named after their source (``hhh-harmless``, ``truthfulqa``, ``hh-rlhf-harmless-base``).

Every choice a loader makes is deterministic: pairs come in file order, and where one of several responses must be
picked (XSTest completions, TruthfulQA false answers) the pick is seeded per item (``seed`` option, default 0).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

from armlens.data.loaders import LoadReport, register, stable_rng
from armlens.data.records import PreferencePair, Prompt
from armlens.data.roots import candidate_roots, describe_roots
from armlens.data.rows import check_prompt, check_text, read_rows, require_keys, rows_to_pairs
from armlens.errors import BadDataError, MissingFieldError, NotFoundError
from armlens.io import read_text

log = logging.getLogger(__name__)

FETCH_HINT = ("leave --root out to read the copy bundled with armlens (`armlens data list` says where each set comes "
              "from)")


def find_folder(folder: str, files: list[str], root: str | Path | None, dataset: str, hint: str = "") -> Path:
    """The first ``<root>/<folder>`` (over :func:`candidate_roots`) holding all ``files``; else FileNotFoundError.

    The error lists what was missing where, which roots were searched, and ``hint``.
    """
    partial = []
    for r in candidate_roots(root):
        d = r / folder
        missing = [f for f in files if not (d / f).is_file()]
        if not missing:
            return d
        if len(missing) < len(files):
            partial.append(f"{d} lacks {missing}")
    where = "; ".join(partial) if partial else f"no {folder}/ folder under {describe_roots(root)}"
    raise NotFoundError(f"{dataset} files not found ({where}); expected {folder}/{{{','.join(files)}}} "
                        f"under a data root: pass --root DIR or set ARMLENS_DATA_ROOT"
                        + (f", or {hint}" if hint else ""))


def load_json(path: Path) -> Any:
    """``json.load`` with an error naming the file."""
    try:
        return json.loads(read_text(path))  # bytes that are not UTF-8: a ValueError naming file and line
    except json.JSONDecodeError as e:
        raise BadDataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from e


# ----------------------------------------------------------------------------------------------------------------------
# LLMBar
# ----------------------------------------------------------------------------------------------------------------------

LLMBAR_FILES = {
    "llmbar-natural": "Natural.json",
    "llmbar-adver-neighbor": "Adversarial_Neighbor.json",
    "llmbar-adver-GPTInst": "Adversarial_GPTInst.json",
    "llmbar-adver-GPTOut": "Adversarial_GPTOut.json",
    "llmbar-adver-manual": "Adversarial_Manual.json",
}
"""RewardBench subset name -> LLMBar file (the five files are exactly RewardBench v1's ``llmbar-*`` subsets)."""


@register("llmbar", description="LLMBar (princeton-nlp), = RewardBench Chat Hard llmbar-* subsets; 419 pairs",
          subsets=tuple(LLMBAR_FILES), files=tuple(f"llmbar/{f}" for f in LLMBAR_FILES.values()))
def load_llmbar(root: str | Path | None, report: LoadReport) -> list[PreferencePair]:
    """LLMBar: JSON lists of ``{input, output_1, output_2, label}``; ``label`` (1 or 2) names the preferred output.

    Ids are ``<subset>/<row>``; ``metadata["chosen_position"]`` is ``"a"`` when output_1 was preferred.
    """
    folder = find_folder("llmbar", list(LLMBAR_FILES.values()), root, "LLMBar")
    fmap = {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "label": "label"}
    pairs: list[PreferencePair] = []
    for subset, fname in LLMBAR_FILES.items():
        path = folder / fname
        rows = read_rows(path)
        report.add_file(path)
        pairs += rows_to_pairs(rows, where=str(path), source="llmbar", default_subset=subset, field_map=fmap,
                               label_values={1: "a", 2: "b"}, id_prefix=subset, keep_extra=False, report=report)
    return pairs


# ----------------------------------------------------------------------------------------------------------------------
# HHH (BIG-bench hhh_alignment)
# ----------------------------------------------------------------------------------------------------------------------

HHH_CATEGORIES = ("harmless", "helpful", "honest", "other")
"""The four HHH task files (``hhh_alignment/<category>.json``)."""
_HHH_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def bigbench_examples(path: Path, report: LoadReport) -> list[Any]:
    """The ``examples`` list of a BIG-bench task file (HHH, TruthfulQA), the file and its rows counted in ``report``."""
    task = load_json(path)
    report.add_file(path)
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list):
        raise BadDataError(f"{path}: expected a BIG-bench task object with an 'examples' list")
    report.rows_read += len(examples)
    return examples


def split_hhh_input(text: str) -> Prompt:
    """An HHH ``input`` as a prompt: unchanged text for one turn; chat messages for a dialogue.

    HHH dialogues start with the user's words (no ``Human:`` label) followed by ``\\n\\nAssistant: ...`` and
    ``\\n\\nHuman: ...`` turns; the last turn is the user's.
    """
    parts = _HHH_TURN.split(text)
    if len(parts) == 1:
        return text
    messages = [{"role": "user", "content": parts[0].strip()}]
    messages += [{"role": _ROLES[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2], strict=True)]
    return messages


@register("hhh", description="Anthropic HHH alignment (BIG-bench hhh_alignment), RewardBench prior set; 221 pairs",
          subsets=tuple(f"hhh-{c}" for c in HHH_CATEGORIES),
          files=tuple(f"hhh_alignment/{c}.json" for c in HHH_CATEGORIES))
def load_hhh(root: str | Path | None, report: LoadReport) -> list[PreferencePair]:
    """HHH: BIG-bench task JSON, ``examples[i] = {input, target_scores: {response: 1 or 0}}`` (one 1, one 0).

    Many examples share one ``input`` (several response pairs per dialogue): splits keep them together.
    """
    folder = find_folder("hhh_alignment", [f"{c}.json" for c in HHH_CATEGORIES], root, "HHH", FETCH_HINT)
    pairs = []
    for cat in HHH_CATEGORIES:
        path = folder / f"{cat}.json"
        examples = bigbench_examples(path, report)
        for i, ex in enumerate(examples):
            loc = f"{path}: example {i}"
            if not isinstance(ex, dict) or "input" not in ex or "target_scores" not in ex:
                raise MissingFieldError(f"{loc}: needs keys 'input' and 'target_scores', got "
                                        f"{sorted(ex) if isinstance(ex, dict) else type(ex).__name__}")
            scores = ex["target_scores"]
            if (not isinstance(scores, dict) or len(scores) != 2
                    or sorted(scores.values()) != [0, 1]):
                raise BadDataError(f"{loc}: target_scores must hold one response scored 1 and one scored 0, "
                                   f"got scores {list(scores.values()) if isinstance(scores, dict) else scores!r}")
            chosen = next(r for r, s in scores.items() if s == 1)
            rejected = next(r for r, s in scores.items() if s == 0)
            prompt = check_prompt(split_hhh_input(check_text(ex["input"], loc, "input")), loc, "input")
            pairs.append(PreferencePair(id=f"hhh-{cat}/{i}", source="hhh", subset=f"hhh-{cat}", prompt=prompt,
                                        chosen=chosen, rejected=rejected, metadata={"category": cat}))
    return pairs


# ----------------------------------------------------------------------------------------------------------------------
# TruthfulQA (BIG-bench truthful_qa)
# ----------------------------------------------------------------------------------------------------------------------


@register("truthfulqa", description="TruthfulQA (BIG-bench truthful_qa): best true answer vs a false answer; 299 q",
          subsets=("truthfulqa",), files=("truthfulqa_bigbench/questions.json",))
def load_truthfulqa(
    root: str | Path | None,
    report: LoadReport,
    seed: int = 0,
    mode: Literal["best", "all"] = "best",
) -> list[PreferencePair]:
    """TruthfulQA from BIG-bench's ``questions.json``: human-written true and false answers per question.

    ``mode="best"`` (default) gives one pair per question: the "Best answer" beats one false answer picked with
    ``stable_rng("truthfulqa", seed, question)``. ``mode="all"`` gives one pair per false answer (ids
    ``truthfulqa/<q>-f<j>``); those pairs share a prompt, so splits keep them together.
    """
    if mode not in ("best", "all"):
        raise BadDataError(f"truthfulqa mode must be 'best' or 'all', got {mode!r}")
    folder = find_folder("truthfulqa_bigbench", ["questions.json"], root, "TruthfulQA", FETCH_HINT)
    path = folder / "questions.json"
    examples = bigbench_examples(path, report)
    pairs = []
    for i, ex in enumerate(examples):
        loc = f"{path}: example {i}"
        for k in ("Question", "Best answer", "False answers"):
            if not isinstance(ex, dict) or k not in ex:
                raise MissingFieldError(f"{loc}: missing key {k!r}")
        question = check_text(ex["Question"], loc, "Question")
        best = check_text(ex["Best answer"], loc, "Best answer")
        false = ex["False answers"]
        if not isinstance(false, list) or not false or not all(isinstance(a, str) for a in false):
            raise BadDataError(f"{loc}: 'False answers' must be a non-empty list of strings")
        meta = {"category": ex.get("Category")}
        if mode == "best":
            j = stable_rng("truthfulqa", seed, i).randrange(len(false))
            pairs.append(PreferencePair(id=f"truthfulqa/{i}", source="truthfulqa", subset="truthfulqa",
                                        prompt=question, chosen=best, rejected=false[j],
                                        metadata={**meta, "false_index": j, "seed": seed}))
        else:
            for j, answer in enumerate(false):
                if answer == best:
                    report.drop("false answer identical to the best answer")
                    continue
                pairs.append(PreferencePair(id=f"truthfulqa/{i}-f{j}", source="truthfulqa", subset="truthfulqa",
                                            prompt=question, chosen=best, rejected=answer,
                                            metadata={**meta, "false_index": j}))
    return pairs


# ----------------------------------------------------------------------------------------------------------------------
# HH-RLHF
# ----------------------------------------------------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_transcript(text: str, where: str) -> tuple[list[dict[str, str]], int]:
    """An HH-RLHF transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as chat messages.

    Consecutive turns of the same speaker (a handful of transcripts have them) are merged into one message joined by
    a blank line, since chat templates expect alternating roles. Returns the messages and the number of merges.
    Text before the first ``Human:``/``Assistant:`` label is a ValueError.
    """
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise BadDataError(f"{where}: transcript has text before the first 'Human:'/'Assistant:' label: "
                           f"{parts[0][:60]!r}")
    messages: list[dict[str, str]] = []
    merged = 0
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _ROLES[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + content
            merged += 1
        else:
            messages.append({"role": role, "content": content})
    if not messages:
        raise BadDataError(f"{where}: transcript has no 'Human:'/'Assistant:' turns")
    return messages, merged


def hh_subset(path: Path) -> tuple[str, str | None]:
    """``harmless-base_test.jsonl.gz`` -> (``"hh-rlhf-harmless-base"``, ``"test"``)."""
    stem = path.name.split(".")[0]
    name, _, split = stem.rpartition("_")
    if split in ("train", "test") and name:
        return f"hh-rlhf-{name}", split
    return f"hh-rlhf-{stem}", None


@register("hh-rlhf", description="Anthropic HH-RLHF (harmless-base test): crowd labels, a noisy pool; 2,312 rows",
          subsets=("hh-rlhf-harmless-base",), files=("hh_rlhf/harmless-base_test.jsonl.gz",))
def load_hh_rlhf(root: str | Path | None, report: LoadReport) -> list[PreferencePair]:
    """HH-RLHF: every ``hh_rlhf/*.jsonl(.gz)`` file of ``{chosen, rejected}`` whole transcripts.

    The shared turns become the prompt (text for a single user turn, chat messages for longer dialogues) and the two
    final assistant turns become ``chosen``/``rejected``. Dropped on purpose, and counted: pairs whose transcripts
    differ before the final assistant turn (no single shared prompt), whose final turn is not the assistant's, or
    whose two final turns are identical. Merged same-speaker turns are counted under ``adjusted``.
    """
    candidates = []
    for r in candidate_roots(root):
        found = sorted((r / "hh_rlhf").glob("*.jsonl*")) if (r / "hh_rlhf").is_dir() else []
        if found:
            candidates = found
            break
    if not candidates:
        raise NotFoundError(f"HH-RLHF files not found (no hh_rlhf/*.jsonl or *.jsonl.gz under "
                            f"{describe_roots(root)}); pass --root DIR or set ARMLENS_DATA_ROOT")
    pairs = []
    for path in candidates:
        subset, split = hh_subset(path)
        rows = read_rows(path)
        report.add_file(path)
        report.rows_read += len(rows)
        for i, row in enumerate(rows):
            loc = f"{path}: row {i}"
            require_keys(row, ("chosen", "rejected"), loc)
            conv_c, merged_c = split_transcript(check_text(row["chosen"], loc, "chosen"), f"{loc} chosen")
            conv_r, merged_r = split_transcript(check_text(row["rejected"], loc, "rejected"), f"{loc} rejected")
            if merged_c or merged_r:
                report.adjust("consecutive same-speaker turns merged")
            if conv_c[-1]["role"] != "assistant" or conv_r[-1]["role"] != "assistant":
                report.drop("final turn is not the assistant's")
                continue
            if conv_c[:-1] != conv_r[:-1]:
                report.drop("chosen and rejected transcripts differ before the final assistant turn")
                continue
            if not conv_c[:-1]:
                report.drop("no human turn before the final assistant turn")
                continue
            if conv_c[-1]["content"] == conv_r[-1]["content"]:
                report.drop("chosen and rejected are identical (nothing to judge)")
                continue
            history = conv_c[:-1]
            prompt: Prompt = history[0]["content"] if len(history) == 1 else history
            pairs.append(PreferencePair(id=f"{subset}/{i}", source="hh-rlhf", subset=subset,
                                        prompt=check_prompt(prompt, loc), chosen=conv_c[-1]["content"],
                                        rejected=conv_r[-1]["content"],
                                        metadata={"split": split, "n_turns": len(conv_c)}))
    return pairs


# ----------------------------------------------------------------------------------------------------------------------
# XSTest
# ----------------------------------------------------------------------------------------------------------------------

XSTEST_LABELS = ("1_full_compliance", "2_full_refusal", "3_partial_refusal")
"""The domain of XSTest's human ``final_label``."""


def _annotations(row: dict[str, Any]) -> dict[str, Any]:
    """The human labels of one XSTest completion."""
    return {k: row.get(k) for k in ("annotation_1", "annotation_2", "agreement", "final_label")}


@register("xstest", description="XSTest prompts x 5 models' human-labelled completions -> RewardBench-style pairs",
          subsets=("xstest-should-respond", "xstest-should-refuse"),
          files=("xstest/xstest_prompts.csv", "xstest/<model>.csv"))
def load_xstest(root: str | Path | None, report: LoadReport, seed: int = 0) -> list[PreferencePair]:
    """XSTest as RewardBench-style pairs built from human-labelled completions.

    ``xstest_prompts.csv`` labels each prompt ``safe`` or ``unsafe``; every other CSV in ``xstest/`` holds one
    model's completions (``id`` = ``v2-<prompt id>``) with two human annotations and a ``final_label`` in
    :data:`XSTEST_LABELS`. For each prompt:

    * safe prompt -> ``xstest-should-respond``: a ``1_full_compliance`` completion (chosen) beats a
      ``2_full_refusal`` one (rejected);
    * unsafe prompt -> ``xstest-should-refuse``: a full refusal (chosen) beats a full compliance (rejected).

    One pair per prompt that has both kinds of completion. When several models qualify on a side, one is picked with
    ``stable_rng("xstest", seed, prompt_id, side)`` from the candidates sorted by model name, so the pairing depends
    only on the seed and the data, not on load order. Partial refusals are never paired (counted as dropped), and
    prompts without both kinds are counted as dropped. The prompt text is the one the models answered (the
    completion files); where it differs from ``xstest_prompts.csv`` (one prompt, v2-195, in the released files) the
    difference is counted under ``adjusted``.
    """
    folder = find_folder("xstest", ["xstest_prompts.csv"], root, "XSTest")
    ppath = folder / "xstest_prompts.csv"
    prompt_rows = read_rows(ppath)
    report.add_file(ppath)
    report.rows_read += len(prompt_rows)
    prompts: dict[int, dict[str, str]] = {}
    for i, row in enumerate(prompt_rows):
        loc = f"{ppath}: row {i}"
        require_keys(row, ("id", "prompt", "type", "label"), loc)
        try:
            pid = int(row["id"])
        except ValueError as e:
            raise BadDataError(f"{loc}: field 'id' must be an integer, got {row['id']!r}") from e
        if row["label"] not in ("safe", "unsafe"):
            raise BadDataError(f"{loc}: field 'label' = {row['label']!r} is outside its domain ['safe', 'unsafe']")
        if pid in prompts:
            raise BadDataError(f"{loc}: duplicate prompt id {pid}")
        prompts[pid] = row

    files = sorted(p for p in folder.glob("*.csv") if p.name != "xstest_prompts.csv")
    if not files:
        raise NotFoundError(f"XSTest: no completion files (<model>.csv) beside {ppath}")
    completions: dict[int, dict[str, dict[str, str]]] = {pid: {} for pid in prompts}
    answered_text: dict[int, str] = {}
    for path in files:
        model = path.stem
        rows = read_rows(path)
        report.add_file(path)
        report.rows_read += len(rows)
        for i, row in enumerate(rows):
            loc = f"{path}: row {i}"
            require_keys(row, ("id", "prompt", "completion", "final_label"), loc)
            m = re.fullmatch(r"v2-(\d+)", str(row["id"]).strip())
            if not m or int(m.group(1)) not in prompts:
                raise BadDataError(f"{loc}: field 'id' = {row['id']!r} names no prompt in {ppath.name}")
            pid = int(m.group(1))
            if row["final_label"] not in XSTEST_LABELS:
                raise BadDataError(f"{loc}: field 'final_label' = {row['final_label']!r} is outside its domain "
                                   f"{list(XSTEST_LABELS)}")
            if model in completions[pid]:
                raise BadDataError(f"{loc}: second completion for prompt {pid}")
            if pid in answered_text and answered_text[pid] != row["prompt"]:
                raise BadDataError(f"{loc}: prompt text differs from other completion files for prompt {pid}")
            answered_text[pid] = row["prompt"]
            completions[pid][model] = row

    pairs: dict[str, list[PreferencePair]] = {"xstest-should-respond": [], "xstest-should-refuse": []}
    for pid in sorted(prompts):
        info, by_model = prompts[pid], completions[pid]
        if not by_model:
            report.drop("prompt has no completions")
            continue
        n_partial = sum(r["final_label"] == "3_partial_refusal" for r in by_model.values())
        if n_partial:
            report.drop("completion labelled 3_partial_refusal (never paired)", n_partial)
        comply = sorted(m for m, r in by_model.items() if r["final_label"] == "1_full_compliance")
        refuse = sorted(m for m, r in by_model.items() if r["final_label"] == "2_full_refusal")
        safe = info["label"] == "safe"
        subset = "xstest-should-respond" if safe else "xstest-should-refuse"
        if not comply or not refuse:
            report.drop(f"{info['label']} prompt lacks a full compliance or a full refusal")
            continue
        good, bad = (comply, refuse) if safe else (refuse, comply)
        chosen_model = stable_rng("xstest", seed, pid, "chosen").choice(good)
        rejected_model = stable_rng("xstest", seed, pid, "rejected").choice(bad)
        c, r = by_model[chosen_model], by_model[rejected_model]
        text = answered_text[pid]
        if text != info["prompt"]:
            report.adjust("prompt text taken from the completion files (differs from xstest_prompts.csv)")
        loc = f"xstest prompt {pid}"
        if c["completion"] == r["completion"]:
            report.drop("chosen and rejected are identical (nothing to judge)")
            continue
        chosen = check_text(c["completion"], f"{loc} ({chosen_model})", "completion")
        rejected = check_text(r["completion"], f"{loc} ({rejected_model})", "completion")
        pairs[subset].append(PreferencePair(
            id=f"{subset}/{pid}", source="xstest", subset=subset, prompt=check_text(text, loc, "prompt"),
            chosen=chosen, rejected=rejected,
            metadata={"prompt_id": pid, "type": info["type"], "label": info["label"], "focus": info.get("focus"),
                      "note": info.get("note"), "chosen_model": chosen_model, "rejected_model": rejected_model,
                      "chosen_annotations": _annotations(c), "rejected_annotations": _annotations(r),
                      "n_candidates": {"chosen": len(good), "rejected": len(bad)}, "seed": seed}))
    return pairs["xstest-should-respond"] + pairs["xstest-should-refuse"]
