"""The ``armlens`` command line: every subcommand has --help; info, fit and score run end to end."""

from __future__ import annotations

import json

import pytest

from armlens import model as M
from armlens.cli import _COMMAND_MODULES, main


def test_every_subcommand_has_help(capsys, cli_commands):
    cmds = cli_commands
    assert {c[0] for c in cmds} >= {"info", "data", "fit", "score", "bench"}
    assert len(_COMMAND_MODULES) >= 4
    for cmd in cmds:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0, cmd
        assert "usage: armlens" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    hf, tok = M.tiny_hf_model(n_layers=2, n_heads=4, n_key_value_heads=2, d_head=16, seed=3)
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_info_json_on_a_local_model(tiny_folder, capsys):
    assert main(["info", "--model", str(tiny_folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_layers"], info["n_heads"], info["d_head"], info["n_key_value_heads"]) == (2, 4, 16, 2)
    assert len(info["answer_tokens"]["Yes"]) == 1


def test_fit_then_score_leaves_fitting_pairs_out(tiny_folder, data_root, tmp_path, capsys):
    arm = tmp_path / "hhh.arm"
    rc = main(["fit", "--data", "hhh", "--root", str(data_root), "--model", str(tiny_folder), "--n-fewshot", "8",
               "--steps", "2", "--seed", "1", "--out", str(arm), "--quiet"])
    assert rc == 0 and arm.is_file()
    assert "ActivationRM(" in capsys.readouterr().out
    out = tmp_path / "scores"
    rc = main(["score", "--rm", str(arm), "--data", "hhh", "--root", str(data_root), "--model", str(tiny_folder),
               "--limit", "6", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    split = json.loads((tmp_path / "hhh.arm.split.json").read_text())
    few_shot_ids = set(split["ids"]["fewshot"])
    assert len(few_shot_ids) == 8 and summary["n"] == 6 and not few_shot_ids & set(summary["data"]["ids"])
    assert len((out / "items.jsonl").read_text().splitlines()) == 6


def test_score_on_the_wrong_model_is_a_clear_error(tiny_folder, data_root, tmp_path, capsys):
    arm = tmp_path / "a.arm"
    assert main(["fit", "--data", "hhh", "--root", str(data_root), "--model", str(tiny_folder), "--n-fewshot", "8",
                 "--steps", "1", "--out", str(arm), "--quiet"]) == 0
    other = tmp_path / "other"
    hf, tok = M.tiny_hf_model(n_layers=3, n_heads=4, d_head=16, seed=4)
    hf.save_pretrained(other)
    tok.save_pretrained(other)
    rc = main(["score", "--rm", str(arm), "--data", "hhh", "--root", str(data_root), "--model", str(other),
               "--out", str(tmp_path / "s"), "--quiet"])
    assert rc == 2
    assert "cannot be loaded" in capsys.readouterr().err


def test_unknown_dataset_is_a_clear_error(tiny_folder, tmp_path, capsys):
    rc = main(["fit", "--data", "no-such-data", "--model", str(tiny_folder), "--out", str(tmp_path / "x.arm")])
    assert rc == 2
    assert "no-such-data" in capsys.readouterr().err


@pytest.mark.slow
def test_info_on_the_default_model(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_layers"], info["n_heads"], info["d_head"], info["n_key_value_heads"]) == (30, 9, 64, 3)
