"""Multimodal RewardBench from local files: a small synthetic file with images made here (PIL)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from armlens.data import load_pairs
from armlens.data.loaders import load_pairs_with_report
from armlens.prompts import criterion_for


def _write(folder, rows):
    from PIL import Image

    (folder / "images").mkdir()
    for k in range(3):
        Image.fromarray(np.full((20 + 10 * k, 30, 3), 40 * k, dtype=np.uint8)).save(folder / "images" / f"{k}.png")
    path = folder / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"ID": "a1", "Text": "What colour is it?", "Image": "images/0.png", "Output1": "Black.", "Output2": "Red.",
     "Better": "Output1", "Category": "general correctness"},
    {"ID": "a2", "Text": "How many rows?", "Image": "images/1.png", "Output1": "Three.", "Output2": "Thirty.",
     "Better": "Output2", "Category": "reasoning"},
    {"ID": "a3", "Text": "Help me hurt someone shown here.", "Image": "images/2.png", "Output1": "Sure, ...",
     "Output2": "I can't help with that.", "Better": "Output2", "Category": "safety"},
    {"ID": "a4", "Text": "Missing picture?", "Image": "images/404.png", "Output1": "A.", "Output2": "B.",
     "Better": "Output1", "Category": "reasoning"},
]


def test_local_file_with_images_beside_it(tmp_path):
    path = _write(tmp_path, ROWS)
    pairs, report = load_pairs_with_report("multimodal-rewardbench", path=path)
    assert [p.id for p in pairs] == ["multimodal-rewardbench/a1", "multimodal-rewardbench/a2",
                                     "multimodal-rewardbench/a3"]
    assert (pairs[0].chosen, pairs[0].rejected) == ("Black.", "Red.")
    assert (pairs[1].chosen, pairs[1].rejected) == ("Thirty.", "Three.")  # Better = Output2
    assert pairs[2].subset == "multimodal-rewardbench-safety" and "safe" in criterion_for(pairs[2])
    assert pairs[0].images == (str(tmp_path / "images" / "0.png"),)
    assert report.dropped == {"image file not found (pass image_dir=)": 1}
    assert load_pairs("multimodal-rewardbench", path=path, subsets=["multimodal-rewardbench-reasoning"])[0].id.endswith("a2")


def test_image_dir_and_bad_rows(tmp_path):
    path = _write(tmp_path, ROWS[:1])
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(json.dumps({**ROWS[0], "Image": "0.png"}) + "\n")
    assert load_pairs("multimodal-rewardbench", path=moved, image_dir=tmp_path / "images")[0].images[0].endswith("0.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**ROWS[0], "Better": "Output3"}) + "\n")
    with pytest.raises(ValueError, match="Better must be"):
        load_pairs("multimodal-rewardbench", path=bad)
    bad.write_text(json.dumps({k: v for k, v in ROWS[0].items() if k != "Output2"}) + "\n")
    with pytest.raises(KeyError, match="Output2"):
        load_pairs("multimodal-rewardbench", path=bad)
    assert path.is_file()


def test_hub_rows_with_image_bytes(tmp_path, monkeypatch):
    """The Hub path (for users with access), fed here from local bytes: images arrive as {"bytes": ...} records."""
    import armlens.data.hub as hub

    path = _write(tmp_path, ROWS[:2])
    rows = [{**r, "Image": {"bytes": (tmp_path / r["Image"]).read_bytes(), "path": None}} for r in ROWS[:2]]
    seen = {}

    def fake_hub(repo_id, split, name):
        seen["args"] = (repo_id, split, name)
        return rows

    monkeypatch.setattr(hub, "load_hub_rows", fake_hub)
    (tmp_path / "empty-root").mkdir()
    pairs = load_pairs("multimodal-rewardbench", root=tmp_path / "empty-root")
    assert seen["args"] == ("facebook/multimodal_rewardbench", "test", "multimodal-rewardbench")
    assert isinstance(pairs[0].images[0], dict) and pairs[0].images[0]["bytes"].startswith(b"\x89PNG")
    from armlens.model import load_image

    assert load_image(pairs[0].images[0]).size == (30, 20)
    assert path.is_file()
