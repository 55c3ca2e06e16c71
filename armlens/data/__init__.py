"""Preference data: one pair record, loaders for the benchmarks, seeded leakage-free splits, and the bias suite.

Context
-------
Everything downstream (prompts, activations, head selection, scoring, evaluation) consumes
``list[PreferencePair]``. This package produces them:

- :mod:`armlens.data.records`    the :class:`PreferencePair` record, :func:`pairs_hash`, :func:`prompt_text`
- :mod:`armlens.data.roots`      where data lives (``--root``, ``ARMLENS_DATA_ROOT``, ``~/.cache/armlens/data``,
  the BIG-bench cache, the bundled copy)
- :mod:`armlens.data.bundle`     the five small sets bundled in the package, their licences and SHA-256 manifest
- :mod:`armlens.data.loaders`    the registry, :func:`load_pairs`, :class:`LoadReport`
- :mod:`armlens.data.rows`       file readers, field maps, rows to pairs, the generic ``path:FILE`` loader
- :mod:`armlens.data.benchmarks` offline loaders: ``llmbar``, ``hhh``, ``truthfulqa``, ``hh-rlhf``, ``xstest``
- :mod:`armlens.data.hub`        Hub-or-local loaders: ``rewardbench``, ``rewardbench2``, ``preferencehack``
- :mod:`armlens.data.fetch`      ``armlens data fetch bigbench``: BIG-bench task files from the PyPI sdist
- :mod:`armlens.data.splits`     few-shot / head-selection / test splits grouped by prompt
- :mod:`armlens.data.bias`       PreferenceHack-style bias slices and seeded transforms, and the hack rate
- :mod:`armlens.data.stats`      per-subset counts and length statistics

Example::

    from armlens.data import load_pairs, split_pairs
    pairs = load_pairs("llmbar", subsets=["llmbar-adver-neighbor"])
    split = split_pairs(pairs, seed=0, n_fewshot=16, n_select=32)
"""

from armlens.data import benchmarks as _benchmarks  # noqa: F401  (registers the offline loaders)
from armlens.data import hub as _hub  # noqa: F401  (registers the Hub loaders)
from armlens.data import multimodal as _multimodal  # noqa: F401  (registers Multimodal RewardBench)
from armlens.data import rows as _rows  # noqa: F401  (registers the generic path: loader)
from armlens.data.bias import BIAS_KINDS, HackRate, build_bias_suite, hack_rate, has_list_format
from armlens.data.loaders import (
    DatasetSpec,
    LoadReport,
    list_datasets,
    load_pairs,
    load_pairs_with_report,
)
from armlens.data.records import PreferencePair, pairs_hash, prompt_text
from armlens.data.roots import cache_dir, data_root
from armlens.data.rows import read_rows
from armlens.data.splits import Split, split_pairs
from armlens.data.stats import dataset_stats

__all__ = [
    "BIAS_KINDS",
    "DatasetSpec",
    "HackRate",
    "LoadReport",
    "PreferencePair",
    "Split",
    "build_bias_suite",
    "cache_dir",
    "data_root",
    "dataset_stats",
    "hack_rate",
    "has_list_format",
    "list_datasets",
    "load_pairs",
    "load_pairs_with_report",
    "pairs_hash",
    "prompt_text",
    "read_rows",
    "split_pairs",
]
