"""The one record every armlens dataset loader produces: a preference pair.

Context
-------
Everything armlens measures is measured on preference pairs: one prompt, a preferred (``chosen``) response and a
dispreferred (``rejected``) one. Loaders for RewardBench, LLMBar, HHH, TruthfulQA, HH-RLHF, XSTest, PreferenceHack and
generic files all return ``list[PreferencePair]``, so judges, the evaluation protocol and the bias suite never see a
source-specific format.

A prompt is either plain text or a list of chat messages (``{"role": ..., "content": ...}``); multi-turn prompts keep
their turns so the judge can render them through the model's chat template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armlens.errors import MissingFieldError

Message = dict[str, str]
Prompt = str | list[Message]


def prompt_text(prompt: Prompt) -> str:
    """A prompt flattened to text (chat turns joined as ``Role: content``), for judge prompts, grouping and display."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


@dataclass(frozen=True)
class PreferencePair:
    """One preference judgement: ``chosen`` is better than ``rejected`` for ``prompt``."""

    id: str
    """Stable identifier, unique within a dataset (e.g. ``"llmbar-natural/17"``)."""
    source: str
    """Loader name that produced it (``"llmbar"``, ``"hhh"``, ...)."""
    subset: str
    """RewardBench-style subset name (``"llmbar-adver-neighbor"``, ``"hhh-harmless"``, ...)."""
    prompt: Prompt
    """The user request: text, or chat messages for multi-turn prompts (the last one is the user's turn)."""
    chosen: str
    """The preferred response."""
    rejected: str
    """The dispreferred response."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Optional extras: ``chosen_model``, ``rejected_model``, annotations, ``bias`` type, transform record, ..."""
    images: tuple[Any, ...] = ()
    """Images the prompt shows (file paths or PIL images), for vision-language judges; empty for text pairs."""

    def prompt_text(self) -> str:
        """The prompt flattened to text (:func:`prompt_text`)."""
        return prompt_text(self.prompt)

    def prompt_key(self) -> str:
        """A hash of the prompt; pairs sharing it must stay on one side of any split."""
        return hashlib.sha256(json.dumps(self.prompt, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.images:
            d.pop("images")
        else:
            d["images"] = [str(i) if isinstance(i, (str, Path)) else i for i in self.images]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreferencePair:
        missing = [k for k in ("id", "source", "subset", "prompt", "chosen", "rejected") if k not in d]
        if missing:
            raise MissingFieldError(f"PreferencePair record is missing field(s) {missing}: {sorted(d)}")
        return cls(**{k: d[k] for k in ("id", "source", "subset", "prompt", "chosen", "rejected")},
                   metadata=dict(d.get("metadata") or {}), images=tuple(d.get("images") or ()))


def image_key(image: Any) -> str:
    """An image's identity in hashes: its path, or a digest of its bytes or pixels."""
    if isinstance(image, dict):  # a datasets Image record
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha256(image).hexdigest()
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def pairs_hash(pairs: list[PreferencePair]) -> str:
    """SHA-256 over the pairs' content (ids, prompts and both responses), recorded beside every result."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.id, p.prompt, p.chosen, p.rejected], sort_keys=True).encode())
        for image in p.images:  # text pairs hash as before
            h.update(image_key(image).encode())
    return h.hexdigest()
