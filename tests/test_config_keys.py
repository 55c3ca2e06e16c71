"""Unit and fit keys stay what they were (issue 40): a results folder is resumed by recomputing the key of every unit
from its settings (:func:`armlens.evaluation.keys.unit_key`, :func:`~armlens.evaluation.keys.fit_key`,
:func:`armlens.analysis.grid.fit_key`), so a change to how the configs are laid out must not change a key, or every
finished unit would be recomputed. The expected keys below were computed by the code that wrote them, from settings
given as the flat ``JudgeConfig`` dicts that ``config.json`` and ``result.json`` hold."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from armlens.analysis.grid import Cell, fit_key
from armlens.data.records import PreferencePair
from armlens.evaluation import keys as K
from armlens.evaluation.baselines import JUDGES
from armlens.evaluation.eval_config import EvalConfig
from armlens.evaluation.judge import (
    GenSettings,
    HeadSettings,
    ICLSettings,
    JudgeConfig,
    ProbeSettings,
    SAVsSettings,
    SteeringSettings,
    VotingSettings,
)
from armlens.evaluation.planning import Plan
from armlens.evaluation.store import SPLIT
from armlens.rm import ARMConfig
from armlens.testing import tiny_model

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

POOLS = {"fewshot": "a" * 64, "select": "b" * 64, "test": "c" * 64}
OTHER = {"template": {"max_field_tokens": 200}, "score": "logit_diff", "batch_size": 4, "routing": "oracle",
         "icl_shots": 2, "icl_cache_demos": False, "gen_max_new_tokens": 3, "voting_n": 3, "voting_temperature": 0.5,
         "probe_features": "hook_z", "probe_layer": 5, "probe_c": 0.5, "steering_layers": [3, 4],
         "steering_coefs": [0.5, 2.0], "steering_positions": "all", "savs_top_k": 7, "savs_score": "margin",
         "head_count": 4, "arm": {"reading": "icl", "n_trials": 8, "reinforce": {"steps": 20}}}
"""A flat ``judge`` dict of an old ``config.json`` with every method setting changed from its default."""

KEYS = {
    "default": {
        "arm": ("c64b3291da91e6830b4d", "2edbbd5f73fe4ea6dfa3"),
        "mean-ablation": ("59d67a0d46872e5965b7", "e54b03ec2587ebd269ef"),
        "zero-shot": ("e983492a44944ac2cbd7", "e91bd4e913caf3d53fcc"),
        "few-shot-icl": ("917d6c2db1d30259e74a", "ed91513bdc074e84ccca"),
        "generative": ("018610e8f6477fd9f00b", "418f6c5c1c8e7e8c7c75"),
        "voting": ("93b892b910804a61ece6", "307ca52330b914b9ccd9"),
        "longer": ("0fc1f7cf60b1ce6c25ae", "63467f7f36aa59e43ff7"),
        "shorter": ("2709db3aabb6adf551c3", "9fe2559799ae67a6c31d"),
        "probe": ("61aa05df4d76db2fa128", "ffc827bb93ac1962525f"),
        "steering": ("0a2229e8969e9f966ab1", "b351968272e41eba5bda"),
        "savs": ("6e732452cc135be10d68", "25552107aa5326989d8e"),
        "implicit": ("8c379f7d4d1659ae3a92", "6d657d9b45d4921e05c7"),
        "random-heads": ("a92834e28f16e0dad8bf", "82f386fe1acdc5ca4eab"),
        "topk-heads": ("1997e2f1aad1d0d9fd42", "6a0e5b3e20aa3a5aa3e7"),
    },
    "other": {
        "arm": ("7bae2f0ef14b9d074aa4", "7c0a28a8d23136b9cdd6"),
        "mean-ablation": ("d7ab0eb1d82441616555", "49bd3f4ebfc353b8a17d"),
        "zero-shot": ("d8a9f538487402724634", "d59e6ed408f09556cb49"),
        "few-shot-icl": ("2f90b88f38d3c4368a85", "5272f91b8ed6bc27286f"),
        "generative": ("b94b8c96932eb304d4ae", "db68732ef41f91d79839"),
        "voting": ("3bd4afc0fd59f5e9d55a", "3f6c6e963a30f15477e5"),
        "longer": ("0fc1f7cf60b1ce6c25ae", "63467f7f36aa59e43ff7"),
        "shorter": ("2709db3aabb6adf551c3", "9fe2559799ae67a6c31d"),
        "probe": ("cc4d7cf9ceec15e5f0c3", "f9c8eace6b05f3244c22"),
        "steering": ("cd24d4aba3031e982ea8", "46d9a7cdeb10e75d8684"),
        "savs": ("f98e22fc632c7a6f883c", "aad55f1f703ebfa59f6c"),
        "implicit": ("25c8ac143472525cb655", "053f66ce4527e007dcf3"),
        "random-heads": ("11a9fa3995edead6a1cc", "f446604d3ffd5d874737"),
        "topk-heads": ("780bf2aeb9b96896d877", "c48aebcf5c787fb0bc51"),
    },
}
"""(unit key, fit key) per method of seed 2 on the pools :data:`POOLS`, judge settings ``{}`` and :data:`OTHER`."""

EVAL_TEST = {
    "pools": {
        ("llmbar", 0): {
            "fewshot": "8a6d1691ba25382c7c6c8b6412bbcca76e3fb9ef4709fd6ce932b386c50c706b",
            "select": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "test": "5b31d9bce0c4c1c394d7cdd185d6d361fbf532ecdaecc896e41ef0cee1d1e05d",
        },
        ("hhh", 3): {
            "fewshot": "709410cedbe824edf8a149af5e9149fc413bd8d50e9174d7d7e78d50af7bdd48",
            "select": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "test": "b5ff689565b13e8c073a4dc5ddfdc8a73b5a14be14d02a818f971f729c4965a9",
        },
        ("xstest", 1): {
            "fewshot": "0973ab016ffd16e9e1bfe483c933ccb75680a6cbab786d9505e7bd333cda8577",
            "select": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "test": "0e433a9db16e76c353a89546fdcd351e48b5e0c62aa33c3e744e23a920d72e2f",
        },
        ("truthfulqa", 4): {
            "fewshot": "b4e6eaf4c2e51227e1c43d96fffbf1f4ac6de0622a773605d4c7814e717afa57",
            "select": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "test": "0d77f9ef29e937853ab7cb53363e8bf378c99083439ab5f7dbc79797b7e27317",
        },
    },
    "keys": {
        ("llmbar", 0): {
            "arm": ("e538a1c18034925e345f", "385ee7f14cf6699df34d"),
            "mean-ablation": ("dbfd9a50903c830cb829", "8c63117b4854a9ab90c0"),
            "zero-shot": ("cd18d2c115ca19f5fb62", "6dec6915a3950cc20adf"),
            "longer": ("8805212c43e2fbae26a4", "5439bca925d35b7f0905"),
            "shorter": ("aa414a8331a5e9985e55", "476911f1925ef23708e6"),
            "probe": ("ee3de4c14cc988c96f29", "82752e1aee2aa38f79ec"),
            "steering": ("e307ece3bee0f5e5dc43", "36753d0770fe4fc5703f"),
            "savs": ("c329ef908c7c6fac4079", "93aa00a31824400d9622"),
        },
        ("hhh", 3): {
            "arm": ("9c560057bf9ed384afeb", "3ce8bdfed50532a669b4"),
            "mean-ablation": ("ce93e97fa020a11a34f9", "c2df4e97fbcb1b0c07a2"),
            "zero-shot": ("463f34d6fc6ecbf0cafa", "b142208739101856b02b"),
            "longer": ("f97bef6647c0f86c68ad", "ae7f86d0d4176900e796"),
            "shorter": ("dcfd2c13eca1bfe60c16", "19072e43496ece0bdc29"),
            "probe": ("436c0401cb0f1f9405e4", "64949806f278bea05191"),
            "steering": ("7996bd4cfab705eb07e3", "44a7661702113d9a75b0"),
            "savs": ("5f5b277d8a7819eb3893", "4b91edf4bbd794dba17d"),
        },
        ("xstest", 1): {
            "arm": ("c77f7c582df55789d8f1", "64417e6fcd6b9837fb1d"),
            "mean-ablation": ("aa0335afcf0a569c4e79", "9b2e14b7e61fe4e34ed0"),
            "zero-shot": ("8cf0d1c3c5aeedbe7d4e", "a310502e3c0966352627"),
            "longer": ("f746134b3b0b4904e280", "28d34301a299a5ce344a"),
            "shorter": ("e19cfab9389968675147", "dae8bf2b0e9a4be5cb47"),
            "probe": ("2b5728e50e8b927a5c78", "afcd2966fad90ed28883"),
            "steering": ("45a4a076cd1aa657564b", "d08ec928997996458221"),
            "savs": ("36125f5cea079076d987", "98a85b6c76adf690dbbf"),
        },
        ("truthfulqa", 4): {
            "arm": ("f20690c5f934ad610e7d", "a04078fa8bd00f9ca16a"),
            "mean-ablation": ("f80611ef23136d8fe2e0", "afe2d77d06ab59129e18"),
            "zero-shot": ("adffe1fe9c5f31a0aa97", "39cf025e5a7752b0680a"),
            "longer": ("34ec90e0cfb044d29abc", "8d6d1fe090bd4b195460"),
            "shorter": ("11f8780a020979d8762e", "d1190d57948a4fb4cfcd"),
            "probe": ("97bee1342fd63fa01eaa", "1268fde3353de3408de4"),
            "steering": ("4da005017f4809ca8820", "cb989b58cf366d8f5ffe"),
            "savs": ("eb42269544ef9191728d", "476a5906481eaf57b21d"),
        },
    },
}
"""Pools and keys of four units of ``experiments/eval-test`` (a long run resumed across sessions: its finished units
must stay finished; its ``llmbar/seed0/arm/fit-385ee7f14cf6699df34d.arm`` is the ARM it fitted)."""


NESTED = JudgeConfig(icl=ICLSettings(shots=6, cache_demos=False), gen=GenSettings(max_new_tokens=9),
                     voting=VotingSettings(n=7, temperature=1.3), probe=ProbeSettings("resid", layer=1, c=2.5),
                     steering=SteeringSettings(layers=(0, 1), coefs=(0.0, 1.5, 3.0), positions="all"),
                     savs=SAVsSettings(top_k=3, score="vote"), head=HeadSettings(count=11))
"""A judge config in the nested form (a section per method), every method setting off its default."""

NESTED_FLAT = {"icl_shots": 6, "icl_cache_demos": False, "gen_max_new_tokens": 9, "voting_n": 7,
               "voting_temperature": 1.3, "probe_features": "resid", "probe_layer": 1, "probe_c": 2.5,
               "steering_layers": [0, 1], "steering_coefs": [0.0, 1.5, 3.0], "steering_positions": "all",
               "savs_top_k": 3, "savs_score": "vote", "head_count": 11}
""":data:`NESTED` as the flat ``judge`` dict of a ``config.json``."""

NESTED_KEYS = {
    "few-shot-icl": ("2ec52c0fe4218524cef4", "211b5dc76c41dfe359df"),
    "generative": ("5be151a07d18f9b3acee", "dd011ea781c486715c15"),
    "voting": ("7cdbd2d95de805ccbecd", "af7a6901fce40ff74f8e"),
    "probe": ("2e6af0766cc3afe1f50f", "3cbadb84d49c6277e558"),
    "steering": ("d2323698ded33d2eacad", "2ce1cd26b334c7cee6e7"),
    "savs": ("75c8b7f27ed35dd5c500", "29100d0d16803d7a3964"),
    "random-heads": ("ab223c5601d70cb0d176", "99789238d53792df844d"),
    "topk-heads": ("ec569f1bbdc513ae02b7", "ef0230ad10df324c3e29"),
    "zero-shot": ("f61f32334fa0b1d0e7af", "d4995440a5a186f824ba"),
}
"""(unit key, fit key) of seed 1 of ``llmbar`` on pools ``d...``, ``e...``, ``f...`` (model id ``m2``, bias kind
``length``) with the judge settings :data:`NESTED_FLAT`, computed by the code of the flat ``JudgeConfig`` (before its
per-method settings were nested)."""

NESTED_JSON = (
    '{"criterion": null, "routing": "label-free", "score": "prob", "batch_size": 1, "seed": 0, "show_progress": false, '
    '"icl_shots": 6, "icl_cache_demos": false, "gen_max_new_tokens": 9, "voting_n": 7, "voting_temperature": 1.3, '
    '"probe_features": "resid", "probe_layer": 1, "probe_c": 2.5, "steering_layers": [0, 1], '
    '"steering_coefs": [0.0, 1.5, 3.0], "steering_positions": "all", "savs_top_k": 3, "savs_score": "vote", '
    '"head_count": 11}')
"""``json.dumps`` of the flat ``JudgeConfig.to_dict()`` of :data:`NESTED_FLAT` less ``template`` and ``arm``, as
the flat ``JudgeConfig`` wrote it."""

JUDGE_KEYS = ["template", "criterion", "routing", "score", "batch_size", "seed", "show_progress", "arm", "icl_shots",
              "icl_cache_demos", "gen_max_new_tokens", "voting_n", "voting_temperature", "probe_features",
              "probe_layer", "probe_c", "steering_layers", "steering_coefs", "steering_positions", "savs_top_k",
              "savs_score", "head_count"]
"""The keys of ``JudgeConfig.to_dict()``, in order, as the flat ``JudgeConfig`` wrote them."""


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def plan(dataset: str, seed: int) -> Plan:
    """A plan whose pools stand for the recorded ones: one pair each, named after its pool (see :func:`keys`)."""
    pool = {name: [PreferencePair(name, "x", "x", "", "", "")] for name in ("fewshot", "select", "test")}
    return Plan(dataset, seed, pool["fewshot"], pool["select"], pool["test"], {}, {}, Path("."))


def keys(model, plan: Plan, pools: dict[str, str], method: str, config: EvalConfig, model_id: str,
         monkeypatch) -> tuple[str, str]:
    """(unit key, fit key) of ``method`` on ``plan``, with ``pools`` the recorded hashes of its pools."""
    monkeypatch.setattr(K, "pairs_hash", lambda pairs: pools[pairs[0].id])
    monkeypatch.setattr(K.M, "model_id", lambda m: model_id)
    judge = config.judge_config(plan.seed)
    return (K.unit_key(plan, method, judge, model_id, config.bias_kinds_for(method)),
            K.fit_key(model, plan, method, judge))


@pytest.mark.parametrize("settings", ["default", "other"])
def test_unit_and_fit_keys_of_every_method_are_unchanged(settings, model, monkeypatch):
    config = EvalConfig.from_dict({"judge": {} if settings == "default" else OTHER, "bias_kinds": ["length"]})
    for method in JUDGES:
        assert keys(model, plan("hhh", 2), POOLS, method, config, "m", monkeypatch) == KEYS[settings][method], method


def test_the_keys_of_the_running_eval_test_folder_are_unchanged(model, monkeypatch):
    config = EvalConfig.from_dict({  # experiments/eval-test/config.json, less what keys do not read
        "data": ["llmbar", "hhh", "xstest", "truthfulqa"], "methods": ["arm", "mean-ablation", "zero-shot", "longer",
        "shorter", "probe", "steering", "savs"], "seeds": 5, "partition": "test", "limit": None, "n_fewshot": 16,
        "n_select": 0})
    for (dataset, seed), expected in EVAL_TEST["keys"].items():
        for method, key_pair in expected.items():
            got = keys(model, plan(dataset, seed), EVAL_TEST["pools"][(dataset, seed)], method, config,
                       "smollm2-135m-instruct", monkeypatch)
            assert got == key_pair, (dataset, seed, method)


def committed_units(run: str) -> list[Path]:
    return sorted((EXPERIMENTS / run).glob("*/seed*/*/result.json"))


@pytest.mark.parametrize("run", ["eval", "eval-hh-rlhf"])
def test_committed_units_recompute_their_keys(run, model, monkeypatch):
    """The committed headline folders predate settings added since (routing, REINFORCE"s ``final``): the units of
    methods those did not touch must still recompute their stored key from the stored ``config.json``."""
    config = EvalConfig.from_dict(json.loads((EXPERIMENTS / run / "config.json").read_text()))
    checked = 0
    for path in committed_units(run):
        result = json.loads(path.read_text())
        if result["method"] not in ("longer", "shorter", "implicit"):
            continue
        split = json.loads(gzip.open(path.parent.parent / SPLIT).read())
        pools = {**split["pairs_sha256"], "test": split["test_sample"]["pairs_sha256"]}
        got = keys(model, plan(result["dataset"], result["seed"]), pools, result["method"], config,
                   result["model"]["model_id"], monkeypatch)
        assert got[0] == result["key"], path
        checked += 1
    assert checked >= 15


def test_committed_ablation_cells_recompute_their_fit_keys():
    """Every cell of ``experiments/ablations-dev`` names the fitted ARM it used by :func:`fit_key` of the ARM config
    it records."""
    checked = 0
    for path in sorted((EXPERIMENTS / "ablations-dev").glob("*/cells/*/*/seed*.json.gz")):
        cell = json.loads(gzip.open(path).read())
        if not cell.get("fit_key"):
            continue
        same = Cell(cell["axis"], cell["series"], cell["setting"], pairs=cell["pairs"])  # the recorded ARM, as is
        assert fit_key(same, ARMConfig.from_dict(cell["arm"])) == cell["fit_key"], path
        checked += 1
    assert checked > 200


def test_the_nested_judge_settings_keep_the_flat_keys(model, monkeypatch):
    """The per-method sections (``JudgeConfig.icl``, ``.probe``, ...) hash into the unit and fit keys the flat fields
    did, read from the flat dict of a ``config.json``, from the nested dict, or built in Python."""
    pools = {"fewshot": "d" * 64, "select": "e" * 64, "test": "f" * 64}
    base = EvalConfig.from_dict({"bias_kinds": ["length"]})
    nested_dict = {s: {k.removeprefix(f"{s}_"): v for k, v in NESTED_FLAT.items() if k.startswith(f"{s}_")}
                   for s in JudgeConfig.flat_sections}
    for judge in (NESTED, JudgeConfig.from_dict(NESTED_FLAT), JudgeConfig.from_dict(nested_dict)):
        assert judge == NESTED
        config = dataclasses.replace(base, judge=judge)
        for method, expected in NESTED_KEYS.items():
            assert keys(model, plan("llmbar", 1), pools, method, config, "m2", monkeypatch) == expected, method


def test_the_nested_judge_config_is_written_flat_as_before():
    d = NESTED.to_dict()
    assert list(d) == JUDGE_KEYS
    assert json.dumps({k: v for k, v in d.items() if k not in ("template", "arm")}) == NESTED_JSON
    assert list(JudgeConfig().to_dict()) == JUDGE_KEYS
    assert list(EvalConfig(data=["x"], judge=NESTED).to_dict()["judge"]) == JUDGE_KEYS
    assert EvalConfig.from_dict(EvalConfig(data=["x"], judge=NESTED).to_dict()).judge == NESTED


@pytest.mark.parametrize("run", ["eval", "eval-hh-rlhf", "eval-test"])
def test_committed_judge_sections_read_and_write_back_the_same(run):
    """The ``judge`` section of a committed ``config.json`` reads into the nested config and is written back with the
    same keys, in the same order, with the same values (``arm`` aside: its fields added since are written too)."""
    saved = json.loads((EXPERIMENTS / run / "config.json").read_text())["judge"]
    written = json.loads(json.dumps(JudgeConfig.from_dict(saved).to_dict()))
    assert [k for k in written if k in saved] == list(saved)
    assert {k: v for k, v in written.items() if k in saved and k != "arm"} == {
        k: v for k, v in saved.items() if k != "arm"}
    assert set(written) - set(saved) <= {"routing"}  # the headline folders predate it


def test_a_judge_setting_given_both_flat_and_nested_is_refused():
    from armlens.errors import BadInputError

    with pytest.raises(BadInputError, match=r"probe\.c given twice"):
        JudgeConfig.from_dict({"probe": {"c": 2.0}, "probe_c": 3.0})
    assert JudgeConfig.from_dict({"probe": {"c": 2.0}, "probe_layer": 3}).probe == ProbeSettings(layer=3, c=2.0)
    with pytest.raises(BadInputError, match="unknown JudgeConfig field.*probe_cc"):
        JudgeConfig.from_dict({"probe_cc": 3.0})
    with pytest.raises(BadInputError, match="unknown ProbeSettings field"):
        JudgeConfig.from_dict({"probe": {"cc": 3.0}})
