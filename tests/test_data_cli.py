"""``armlens data list | stats | fetch`` through ``armlens.cli.main``."""

from __future__ import annotations

import json

from armlens.cli import main
from armlens.data.fetch import BIGBENCH_SDIST


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("llmbar", "hhh", "truthfulqa", "hh-rlhf", "xstest", "rewardbench", "rewardbench2", "preferencehack"):
        assert f"\n{name} " in "\n" + out
    assert main(["data", "list", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    assert next(s for s in specs if s["name"] == "xstest")["options"] == ["seed"]


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
    assert "armlens data fetch bigbench" in capsys.readouterr().err
    assert main(["data", "stats", "llmbar", "--root", str(data_root), "--seed", "1"]) == 2
    assert "does not take option" in capsys.readouterr().err


def test_data_fetch_rejects_an_unverified_sdist(capsys, tmp_path):
    sdist = tmp_path / BIGBENCH_SDIST
    sdist.write_bytes(b"not the real archive")
    assert main(["data", "fetch", "bigbench", "--sdist", str(sdist), "--cache", str(tmp_path / "c")]) == 2
    assert "differs from the pinned" in capsys.readouterr().err
