"""The ``armlens`` command line: every subcommand has --help; info, fit and score run end to end."""

from __future__ import annotations

import json
import re

import pytest

from armlens import io as aio
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
def tiny_folder(saved_tiny_model):
    return saved_tiny_model(n_key_value_heads=2)


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
    assert len(aio.read_jsonl(out / "items.jsonl.gz")) == 6 and not (out / "items.jsonl").exists()


def test_score_on_the_wrong_model_is_a_clear_error(tiny_folder, data_root, tmp_path, capsys, saved_tiny_model):
    arm = tmp_path / "a.arm"
    assert main(["fit", "--data", "hhh", "--root", str(data_root), "--model", str(tiny_folder), "--n-fewshot", "8",
                 "--steps", "1", "--out", str(arm), "--quiet"]) == 0
    other = saved_tiny_model(n_layers=3, seed=4)
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


def _help_entries(text: str) -> dict[str, str]:
    """``--flag`` -> its help entry (flags line and help text, box borders dropped, lines joined)."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for raw in [*text.splitlines(), "--"]:
        line = raw.strip().strip("│").strip()
        if line.startswith("--") or "──" in line or line.endswith("options") or set(line) == {"-"}:  # flag or header
            if current:
                for flag in re.findall(r"(--[\w.-]+)", current[0]):
                    entries.setdefault(flag, " ".join(current))
            current = [line] if line.startswith("--") else []
        elif current:
            current.append(line)
    return entries


def _squash(text: str) -> str:
    return re.sub(r"[\s'\"]", "", text)


def test_fit_help_shows_every_arm_field_with_its_docstring_and_dataclass_default(capsys, monkeypatch):
    """Defaults and help are defined once: on ARMConfig / ReinforceConfig / JudgeTemplate, read by ``fit --help``."""
    import dataclasses
    import typing

    from armlens.cli import command
    from armlens.config import field_docs
    from armlens.rm import ARMConfig
    from armlens.rules import field_rule

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--help"])
    assert e.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    hidden = set(command("fit").hidden)
    checked = 0

    def walk(obj, prefix):
        nonlocal checked
        hints = typing.get_type_hints(type(obj), include_extras=True)
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            path = f"{prefix}{f.name}"
            value = getattr(obj, f.name)
            if path in hidden:
                assert f"--{path.replace('_', '-')}" not in entries
                continue
            if dataclasses.is_dataclass(value):
                walk(value, f"{path}.")
                continue
            assert docs.get(f.name, "").strip(), f"{type(obj).__name__}.{f.name} has no docstring (its --help text)"
            entry = entries.get(f"--{path.replace('_', '-')}")
            assert entry is not None, path
            shown = re.search(r"\(default: (.*)\)\s*$", entry)
            assert shown, entry
            rule = field_rule(hints[f.name])
            expected = rule.show(value) if rule else str(value)
            assert _squash(shown.group(1)) == _squash(expected), (path, shown.group(1), expected)
            checked += 1

    walk(ARMConfig(), "arm.")
    assert checked >= 25
    assert "--steps" in entries and "--arm.reinforce.steps" in entries  # the short alias and the general form


def test_options_parse_to_the_config_dataclasses():
    from armlens.analysis.grid import SWEEP_GRID
    from armlens.cli import parse
    from armlens.cli.options import UsageError
    from armlens.rm import ARMConfig

    _, fit = parse(["fit", "--data", "hhh", "--out", "a.arm", "--steps", "5", "--arm.reinforce.k-masks", "4",
                    "--reading", "answered", "--max-field-tokens", "64", "--subsets", "a,b"])
    assert type(fit.arm) is ARMConfig and fit.arm.reinforce.steps == 5 and fit.arm.reinforce.k_masks == 4
    assert fit.arm.reading == "answered" and fit.arm.template.max_field_tokens == 64 and fit.subsets == ["a", "b"]
    _, ablate = parse(["ablate", "--out", "o", "--fewshot-per-criterion", "1,3", "--seeds", "2", "--grid", "sweep",
                       "--limit", "all", "--arm.n-trials", "4"])
    cfg = ablate.config()
    assert cfg.fewshot_per_criterion == [1, 3] and cfg.seeds == [0, 1] and cfg.limit is None
    assert cfg.grid == list(SWEEP_GRID) and cfg.grid[0] == "selection" and "criteria" in cfg.grid
    assert cfg.arm.n_trials == 4 and cfg.steps == [50, 100, 200, 300, 600]
    for argv in (["ablate", "--out", "o", "--shots", "1,2"], ["ablate", "--out", "o", "--grid", "bogus"]):
        with pytest.raises(UsageError):
            parse(argv)
