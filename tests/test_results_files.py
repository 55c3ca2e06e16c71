"""The committed results folders after their per-item files were compressed (``scripts/compress_results.py``): no
plain per-item file is left, and the compressed files read back through the analysis code to the committed numbers.
Also the script itself: verified, idempotent, and writing the bytes armlens' own writers write."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from armlens import io as aio

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SCRIPT = ROOT / "scripts" / "compress_results.py"


def compress_script():
    spec = importlib.util.spec_from_file_location("compress_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_experiments = pytest.mark.skipif(not (EXPERIMENTS / "eval").is_dir(), reason="no committed experiments/")


# ---------------------------------------------------------------------------------------------------- committed folders


@needs_experiments
def test_committed_results_hold_no_plain_per_item_file():
    left = [str(p.relative_to(ROOT)) for p in compress_script().per_item_files(EXPERIMENTS)]
    assert left == [], f"run `.venv/bin/python scripts/compress_results.py` ({len(left)} left, e.g. {left[:3]})"
    assert len(list(EXPERIMENTS.glob("eval/*/seed*/*/items.jsonl.gz"))) >= 200


@needs_experiments
def test_every_adopted_unit_holds_its_source_units_items():
    """A unit taken from another folder (``armlens eval --adopt``) names a committed unit that still holds the key it
    was adopted under, and its per-item scores are that unit's (its rows, relabelled nowhere)."""
    adopted = [p for p in EXPERIMENTS.glob("*/*/seed*/*/result.json") if "adopted" in json.loads(p.read_text())]
    assert len(adopted) >= 20  # HH-RLHF's decoding units, taken from release 2 (experiments/eval-hh-rlhf)
    for path in adopted:
        record = json.loads(path.read_text())["adopted"]
        source = (path.parent / record["from"]).resolve()
        assert record["rule"] in ("same key", "criteria unchanged")
        assert json.loads((source / "result.json").read_text())["key"] == record["key"], path
        assert aio.read_jsonl(path.parent / "items.jsonl.gz") == aio.read_jsonl(source / "items.jsonl.gz"), path


@needs_experiments
def test_a_committed_eval_seed_reads_back_to_its_recorded_accuracy():
    """Every unit of one committed seed is a finished unit (its compressed items found), and its test items give
    back the accuracy and size its result.json records, in the order of the seed's (compressed) split."""
    from armlens.evaluation.store import read_items, read_unit

    seed = EXPERIMENTS / "eval" / "llmbar" / "seed0"
    split = aio.read_json(seed / "split.json")  # split.json.gz on disk
    units = sorted(p.parent for p in seed.glob("*/result.json"))
    assert len(units) == 12
    for unit in units:
        key = json.loads((unit / "result.json").read_text())["key"]
        result = read_unit(unit, key)
        assert result is not None, unit
        test = [r for r in read_items(unit) if r["split"] == "test"]
        assert [r["id"] for r in test] == split["test_sample"]["ids"]
        assert len(test) == result["test"]["n"]
        assert sum(r["correct"] for r in test) / len(test) == pytest.approx(result["test"]["accuracy"], abs=1e-12)


@needs_experiments
def test_a_committed_ablation_folder_gives_back_its_committed_summary():
    """``load_results`` reads the compressed cells and REINFORCE histories; the cells summarised as ``armlens
    ablate`` does give the committed summary.csv byte for byte."""
    from armlens.analysis.results import load_results, summarize

    folder = EXPERIMENTS / "ablations" / "hhh"
    res = load_results(folder)
    assert set(res.seeds) == {0, 1, 2} and len(res.cells) > 100
    assert all("reference" in a.selections and a.selections["reference"].probs is not None
               for a in res.seeds.values())
    assert summarize(res.cells).to_csv(index=False) == (folder / "summary.csv").read_text()


# ---------------------------------------------------------------------------------------------------- the script


def _folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A small results folder in the old layout: per-item files plain, beside files that stay plain."""
    out = tmp_path / "results"
    files = {
        "eval/d/seed0/arm/items.jsonl": b'{"id": "p1", "correct": true}\n{"id": "p2", "correct": false}\n',
        "eval/d/seed0/arm/result.json": b'{"key": "k"}\n',
        "eval/d/seed0/split.json": b'{\n  "ids": ["p1", "p2"]\n}\n',
        "eval/summary.json": b'{"results": {}}\n',
        "abl/seeds/seed0/selection-reference.json": b'{"mask": [[0, 1]]}\n',
        "abl/seeds/seed0/attention.json": b'{"weights": [1.0]}\n',
        "abl/cells/heads/4/seed0.json": b'{\n  "correct": [1, 0]\n}\n',
        "abl/cells/heads/4/seed12.json": b'{\n  "correct": [0]\n}\n',
        "abl/run.json": b'{"seeds_done": [0]}\n',
        "posttraining/seed0.json": b'{"not": "a cell"}\n',
    }
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return out, files


STAY_PLAIN = {"eval/d/seed0/arm/result.json", "eval/summary.json", "abl/seeds/seed0/attention.json", "abl/run.json",
              "posttraining/seed0.json"}


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_compress_results_replaces_per_item_files_by_verified_gzip(tmp_path):
    out, files = _folder(tmp_path)
    check = run_script("--check", str(out))
    assert check.returncode == 1 and "5 per-item file(s) not compressed" in check.stderr
    done = run_script(str(out))
    assert done.returncode == 0, done.stderr
    assert "compressed 5 file(s)" in done.stdout
    for name, data in files.items():
        plain, gz = out / name, out / (name + ".gz")
        if name in STAY_PLAIN:
            assert plain.read_bytes() == data and not gz.exists(), name
        else:
            assert not plain.exists() and gzip.decompress(gz.read_bytes()) == data, name
            assert gz.read_bytes() == aio.gzip_bytes(data), name  # the bytes a rerun's writer would write
            assert aio.read_bytes(aio.resolve_compressed(plain)) == data
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = run_script(str(out))
    assert again.returncode == 0 and "compressed 0 file(s)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps  # idempotent: nothing touched
    assert run_script("--check", str(out)).returncode == 0


def test_compress_results_keeps_a_plain_file_whose_gz_differs(tmp_path):
    out, files = _folder(tmp_path)
    items = out / "eval/d/seed0/arm/items.jsonl"
    (items.parent / "items.jsonl.gz").write_bytes(aio.gzip_bytes(b'{"id": "other"}\n'))
    done = run_script(str(out))
    assert done.returncode != 0 and "holds other content" in done.stderr
    assert items.read_bytes() == files["eval/d/seed0/arm/items.jsonl"]
    (items.parent / "items.jsonl.gz").write_bytes(aio.gzip_bytes(items.read_bytes()))  # the same content: accepted
    assert run_script(str(out)).returncode == 0 and not items.exists()
