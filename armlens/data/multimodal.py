"""Multimodal RewardBench (Yasunaga et al. 2025, ``facebook/multimodal_rewardbench``): image + question, two
answers, which is better.

Format
------
One row per item, columns ``ID``, ``Text`` (the question), ``Image`` (the image: a path relative to the image
folder, or on the Hub an image record with its bytes), ``Output1``, ``Output2``, ``Better`` (``Output1`` or
``Output2``) and ``Category`` (``general correctness``, ``reasoning``, ``safety``, ...). Rows come from, in order:

1. ``path=FILE`` (JSON/JSONL/CSV/parquet): images from ``image_dir`` (default: the folder beside the file);
2. ``<data root>/multimodal-rewardbench/<split>.*``: images from the same folder;
3. the Hub (``repo_id``), for users with access; image paths are then read from ``image_dir``.

Each row becomes a :class:`~armlens.data.records.PreferencePair` whose ``images`` hold the image (a path, or the
bytes' record from the Hub), ``subset`` ``multimodal-rewardbench-<category>``. Rows whose image cannot be found are
dropped and counted in the load report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from armlens.data.hub import rows_for
from armlens.data.loaders import LoadReport, register
from armlens.data.records import PreferencePair
from armlens.data.rows import check_text, is_missing, require_keys
from armlens.errors import BadDataError

MMRB_REPO = "facebook/multimodal_rewardbench"
"""Multimodal RewardBench on the Hub (access may need accepting its terms)."""
MMRB_COLUMNS = ("ID", "Text", "Image", "Output1", "Output2", "Better")
_BETTER = {"output1": 1, "1": 1, "output2": 2, "2": 2}


def _subset(category: Any) -> str:
    if is_missing(category) or not str(category).strip():
        return "multimodal-rewardbench"
    return "multimodal-rewardbench-" + re.sub(r"[^a-z0-9]+", "-", str(category).strip().lower()).strip("-")


def _image(value: Any, image_dir: Path | None, loc: str) -> Any:
    """A path that exists, an image record with bytes, or ``None`` (not found)."""
    if isinstance(value, Mapping):  # a datasets Image record: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return dict(value)
        value = value.get("path")
    if hasattr(value, "convert"):  # a PIL image already
        return value
    if is_missing(value) or not str(value).strip():
        raise BadDataError(f"{loc}: the Image field is empty")
    p = Path(str(value)).expanduser()
    if not p.is_absolute() and image_dir is not None:
        p = image_dir / p
    return str(p) if p.is_file() else None


@register("multimodal-rewardbench", description="Multimodal RewardBench (image + question, Output1 vs Output2)",
          origin="hub", files=("multimodal-rewardbench/test.jsonl",))
def load_multimodal_rewardbench(
    root: str | Path | None,
    report: LoadReport,
    path: str | Path | None = None,
    repo_id: str = MMRB_REPO,
    split: str = "test",
    image_dir: str | Path | None = None,
) -> list[PreferencePair]:
    """Multimodal RewardBench pairs (see the module docstring); ``image_dir``: where relative image paths point."""
    rows, where = rows_for("multimodal-rewardbench", root, report, path, repo_id, split)
    report.rows_read += len(rows)
    if image_dir is not None:
        folder: Path | None = Path(image_dir).expanduser()
    elif Path(where).is_file():
        folder = Path(where).parent
    else:
        folder = None
    pairs = []
    for i, row in enumerate(rows):
        loc = f"{where}: row {i}"
        require_keys(row, MMRB_COLUMNS, loc)
        better = _BETTER.get(str(row["Better"]).strip().lower())
        if better is None:
            raise BadDataError(f"{loc}: Better must be Output1 or Output2, got {row['Better']!r}")
        out1, out2 = check_text(row["Output1"], loc, "Output1"), check_text(row["Output2"], loc, "Output2")
        if out1 == out2:
            report.drop("Output1 and Output2 are identical (nothing to judge)")
            continue
        image = _image(row["Image"], folder, loc)
        if image is None:
            report.drop("image file not found (pass image_dir=)")
            continue
        chosen, rejected = (out1, out2) if better == 1 else (out2, out1)
        meta = {"better": f"Output{better}", "category": row.get("Category"), "mmrb_id": str(row["ID"])}
        pairs.append(PreferencePair(
            id=f"multimodal-rewardbench/{row['ID']}", source="multimodal-rewardbench", subset=_subset(row.get("Category")),
            prompt=check_text(row["Text"], loc, "Text"), chosen=chosen, rejected=rejected, metadata=meta,
            images=(image,)))
    return pairs
