"""The preference data that ships inside the package: five small, permissively licensed sets (about 4 MB).

Context
-------
HHH and TruthfulQA come from BIG-bench, whose 358 MB sdist the package index no longer serves (it lists
``bigbench`` 0.0.1 only), and a reward-model workbench that cannot load its own benchmarks on a fresh machine is of
no use. So the files the offline loaders read are bundled as package data under ``armlens/data/bundled/``, laid out
as a data root, the last one :func:`armlens.data.roots.candidate_roots` searches:

============================  ===========================================  ============
folder                        what                                         licence
============================  ===========================================  ============
``llmbar/``                   LLMBar, = RewardBench v1's ``llmbar-*``      MIT
``hhh_alignment/``            BIG-bench ``hhh_alignment`` (4 categories)   Apache-2.0
``truthfulqa_bigbench/``      BIG-bench ``truthful_qa``                    Apache-2.0
``hh_rlhf/``                  HH-RLHF ``harmless-base`` test split         MIT
``xstest/``                   XSTest prompts and 5 models' completions     CC-BY-4.0
============================  ===========================================  ============

Each folder keeps its ``LICENSE`` and ``SOURCE`` (repository and commit, or the sdist) beside the data, and the
BIG-bench files keep their canary strings: the files are byte-identical to their sources. ``MANIFEST.json`` records
each dataset's licence, source and every file's size and SHA-256; :func:`verify_bundle` checks the files against it
(``armlens data list`` reports the result; a test runs it), and :func:`write_manifest` rewrites the manifest after
a maintainer changes the files on purpose (a test fails until then).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from armlens.errors import NotFoundError
from armlens.io import sha256_file, to_json

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"
"""The bundled data root (inside the installed package)."""
MANIFEST_NAME = "MANIFEST.json"
"""The manifest inside :data:`BUNDLED_ROOT`."""


@dataclass(frozen=True)
class BundledSet:
    """One bundled dataset: its folder under the bundled root, the loader that reads it, and its licence."""

    folder: str
    """Folder under :data:`BUNDLED_ROOT` (also the folder name under any data root)."""
    dataset: str
    """Registry name of the loader that reads it (``armlens data list``)."""
    licence: str
    """SPDX identifier of the data's licence (the folder's ``LICENSE`` has the text or where to find it)."""
    title: str
    """What it is, in a few words."""


BUNDLED_SETS: tuple[BundledSet, ...] = (
    BundledSet("llmbar", "llmbar", "MIT", "LLMBar (princeton-nlp/LLMBar), RewardBench v1's llmbar-* subsets"),
    BundledSet("hhh_alignment", "hhh", "Apache-2.0", "Anthropic HHH alignment eval, from BIG-bench 1.0.0"),
    BundledSet("truthfulqa_bigbench", "truthfulqa", "Apache-2.0", "TruthfulQA as shipped in BIG-bench 1.0.0"),
    BundledSet("hh_rlhf", "hh-rlhf", "MIT", "Anthropic HH-RLHF harmless-base test split"),
    BundledSet("xstest", "xstest", "CC-BY-4.0", "XSTest prompts and five models' human-labelled completions"),
)
"""What the package bundles, in the order ``armlens data list`` shows it."""


def bundled_root() -> Path:
    """The bundled data root. It ships with the package, so it exists wherever armlens is installed."""
    return BUNDLED_ROOT


def build_manifest(root: Path | None = None) -> dict[str, Any]:
    """The manifest of the files under ``root`` (default: the bundled root): per dataset its loader, licence,
    source and every file's SHA-256."""
    root = root or bundled_root()
    datasets = {}
    for s in BUNDLED_SETS:
        folder = root / s.folder
        if not folder.is_dir():
            raise NotFoundError(f"bundled dataset folder {folder} is missing")
        source = (folder / "SOURCE").read_text(encoding="utf-8").strip()
        files = {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(folder.iterdir()) if p.is_file()}
        datasets[s.folder] = {"dataset": s.dataset, "title": s.title, "licence": s.licence, "source": source,
                              "files": files}
    return {"format": 1, "datasets": datasets}


def read_manifest(root: Path | None = None) -> dict[str, Any]:
    """The committed manifest of ``root`` (default: the bundled root; each read once per process)."""
    return _read_manifest(root or bundled_root())


@cache
def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise NotFoundError(f"the bundled data's manifest {path} is missing: the armlens installation is "
                            "incomplete (reinstall it)")
    return json.loads(path.read_text(encoding="utf-8"))


def verify_bundle(root: Path | None = None) -> list[str]:
    """Every difference between the bundled files (or ``root``'s) and the manifest (empty when all files are present
    and intact)."""
    root = root or bundled_root()
    problems = []
    for entry in read_manifest(root)["datasets"].values():
        for rel, want in entry["files"].items():
            path = root / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif (got := sha256_file(path)) != want["sha256"]:
                problems.append(f"{rel}: SHA-256 {got[:12]}... differs from the manifest's {want['sha256'][:12]}...")
    return problems


def bundled_folder(dataset: str) -> str | None:
    """The bundled folder that the loader ``dataset`` reads, or None when the package does not bundle it."""
    return next((s.folder for s in BUNDLED_SETS if s.dataset == dataset), None)


def write_manifest(root: Path | None = None) -> Path:
    """Rewrite the bundled (or ``root``'s) manifest from its files: a maintainer's step after changing the bundled
    files on purpose (``python -c "from armlens.data.bundle import write_manifest; write_manifest()"``)."""
    root = root or bundled_root()
    path = root / MANIFEST_NAME
    path.write_text(to_json(build_manifest(root)) + "\n", encoding="utf-8")
    _read_manifest.cache_clear()
    return path
