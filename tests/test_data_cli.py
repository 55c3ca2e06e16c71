"""``armlens data list | stats | fetch`` through ``armlens.cli.main``."""

from __future__ import annotations

import json
import re
import shutil

from armlens.cli import main
from armlens.data import bundle
from armlens.data.bundle import bundled_root
from armlens.data.fetch import BIGBENCH_SDIST


def test_data_list(capsys, monkeypatch, tmp_path):
    """On a fresh machine every offline set comes from the package; a user's root that holds one set takes it over;
    a bundled file that differs from the manifest makes the command fail and name it."""
    monkeypatch.delenv("ARMLENS_DATA_ROOT", raising=False)
    monkeypatch.setenv("ARMLENS_CACHE", str(tmp_path / "cache"))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("llmbar", "hhh", "truthfulqa", "hh-rlhf", "xstest"):
        assert re.search(rf"^{name} +package ", out, re.M), name
    for name in ("rewardbench", "rewardbench2", "preferencehack"):
        assert re.search(rf"^{name} +hub ", out, re.M), name
    assert "bundled files: all match their SHA-256" in out
    assert main(["data", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    specs = {s["name"]: s for s in listing["datasets"]}
    assert specs["xstest"]["options"] == ["seed"] and listing["bundled"]["problems"] == []
    assert {specs[n]["folder"] for n in ("llmbar", "hhh", "xstest")} == {str(bundled_root())}

    mine = tmp_path / "mine"
    shutil.copytree(bundled_root() / "xstest", mine / "xstest")
    monkeypatch.setenv("ARMLENS_DATA_ROOT", str(mine))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^xstest +\$ARMLENS_DATA_ROOT ", out, re.M) and re.search(r"^hhh +package ", out, re.M)
    assert f"$ARMLENS_DATA_ROOT: {mine}" in out

    broken = tmp_path / "bundled"
    shutil.copytree(bundled_root(), broken)
    (broken / "hhh_alignment" / "other.json").write_text("{}")
    monkeypatch.setattr(bundle, "BUNDLED_ROOT", broken)
    assert main(["data", "list"]) == 1
    assert "hhh_alignment/other.json: SHA-256" in capsys.readouterr().out


def test_data_stats_table(capsys, data_root):
    assert main(["data", "stats", "llmbar", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "llmbar-adver-neighbor" in out and "88.1%" in out and "80.4%" in out
    assert "llmbar: 419 pairs from 419 rows" in out


def test_data_stats_json(capsys, data_root):
    assert main(["data", "stats", "xstest", "--root", str(data_root), "--json", "--seed", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {k: v["n"] for k, v in result["stats"]["subsets"].items()} == {"xstest-should-respond": 113,
                                                                          "xstest-should-refuse": 131}
    assert result["report"]["options"] == {"seed": 3}
    assert result["report"]["dropped"]["completion labelled 3_partial_refusal (never paired)"] == 176


def test_data_stats_generic_file_with_field_map(capsys, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"q": "hi", "good": "hello there", "bad": "go"}) + "\n")
    argv = ["data", "stats", f"path:{path}", "--field-map", "prompt=q", "--field-map", "chosen=good",
            "--field-map", "rejected=bad", "--json"]
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["total"]["n"] == 1 and stats["total"]["chosen_shorter"] == 0.0


def test_data_errors_are_one_line(capsys, tmp_path, data_root):
    assert main(["data", "stats", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["data", "stats", "hhh", "--root", str(tmp_path)]) == 2
    assert "leave --root out to read the copy bundled with armlens" in capsys.readouterr().err
    assert main(["data", "stats", "llmbar", "--root", str(data_root), "--seed", "1"]) == 2
    assert "does not take option" in capsys.readouterr().err


def test_data_fetch_rejects_an_unverified_sdist(capsys, tmp_path):
    sdist = tmp_path / BIGBENCH_SDIST
    sdist.write_bytes(b"not the real archive")
    assert main(["data", "fetch", "bigbench", "--sdist", str(sdist), "--cache", str(tmp_path / "c")]) == 2
    assert "differs from the pinned" in capsys.readouterr().err
