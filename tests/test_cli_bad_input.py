"""Bad input on every command: a non-zero exit, one line naming the problem, no model loaded, no file written.

Also: Ctrl-C (a real SIGINT to a subprocess) prints one line and exits 130; a fit whose --out breaks at the end is
saved to a printed fallback; a results folder refuses a second writer and a run with other settings.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from armlens import model as M
from armlens.cli import main
from armlens.io import HOLDER_NAME, LOCK_NAME, ResultsLock
from armlens.rm import ActivationRM

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world(tmp_path, monkeypatch, tiny):
    """A scratch folder with a file, a folder of someone else's files, a folder locked by a live process and a saved
    ARM (of a tiny model); loading a model fails the test (every check must come first)."""
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    (tmp_path / "locked").mkdir()
    held = FileLock(tmp_path / "locked" / LOCK_NAME)  # the kernel lock a running `armlens eval` holds, and its record
    held.acquire()
    (tmp_path / "locked" / HOLDER_NAME).write_text(json.dumps({"pid": os.getpid(), "command": "armlens eval"}))
    mask = torch.zeros(tiny.cfg.n_layers, tiny.cfg.n_heads, dtype=torch.bool)
    mask[0, 0] = True
    ActivationRM.from_patch(tiny, torch.zeros(*mask.shape, tiny.cfg.d_head), mask).save(tmp_path / "existing.arm")
    broken_arms(tmp_path / "existing.arm", tmp_path)
    (tmp_path / "evalrun").mkdir()  # an `armlens eval` folder (its summary.json is not a score run's)
    for name, text in [("config.json", "{}"), ("summary.json", '{"config": {}, "results": {}}'), ("results.md", "")]:
        (tmp_path / "evalrun" / name).write_text(text)
    rows = ['{"prompt": "a", "chosen": "b", "rejected": "c"}', "", '{"prompt": "d", "chosen": "e", "rejected": "f"}',
            '{"prompt": "g", "rejected": "h"}']  # the fourth line has no chosen
    (tmp_path / "missing4.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "results").mkdir()  # an (empty) ablation results folder for `figures`
    row = '{"prompt": "caf\u00e9?", "chosen": "yes", "rejected": "no"}\n'
    (tmp_path / "latin1.jsonl").write_bytes(row.replace("\u00e9", "e").encode() + row.encode("latin-1"))
    monkeypatch.setattr(M, "load_model", lambda *a, **k: pytest.fail("a model was loaded before the input was checked"))
    yield tmp_path
    held.release()


def broken_arms(good: Path, folder: Path) -> None:
    """Beside a saved ARM: ``corrupt.arm`` (every 97th tensor byte flipped), ``oldbad.arm`` (a file from before
    digests whose mask holds 254) and ``foreign.arm`` (an armlens tensors file that is not an ARM)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = bytearray(good.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # after the header: the tensors' bytes
    for i in range(start, len(data), 97):
        data[i] ^= 0xFF
    (folder / "corrupt.arm").write_bytes(bytes(data))
    with safe_open(str(good), framework="pt") as f:
        meta, tensors = f.metadata()["armlens"], {k: f.get_tensor(k) for k in f.keys()}
    tensors["0.mask"] = tensors["0.mask"] * 254
    save_file(tensors, str(folder / "oldbad.arm"), metadata={"armlens": meta})
    save_file({"w": torch.zeros(2)}, str(folder / "foreign.arm"), metadata={"armlens": '{"method": "probe"}'})


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


DATA = ["--data", "hhh"]  # with --root <real data> added where the case is not about --root

# (command words, extra arguments (T = the scratch folder), expected message), one row per case
CASES = [
    # numbers: one rule, a positive integer or 'all'
    ("data stats hhh", "--limit 0", r"argument --limit: must be a positive integer or 'all', got '0'"),
    ("fit", "--out T/a.arm --steps 0", r"argument --steps: must be a positive integer, got '0'"),
    ("fit", "--out T/a.arm --n-fewshot -2", r"argument --n-fewshot: must be a positive integer, got '-2'"),
    ("score", "--rm T/existing.arm --out T/s --limit 0", r"argument --limit: must be a positive integer or 'all'"),
    ("bench", "--k-masks 0", r"argument --k-masks: must be a positive integer, got '0'"),
    ("eval", "--out T/e --limit 0", r"argument --limit: must be a positive integer or 'all', got '0'"),
    ("eval", "--out T/e --limit -1", r"argument --limit: must be a positive integer or 'all', got '-1'"),
    ("eval", "--out T/e --seeds 0", r"argument --seeds: must be a positive integer"),
    ("eval", "--out T/e --n-fewshot two", r"argument --n-fewshot: 'two' is not a whole number"),
    ("ablate", "--out T/a --seeds 0", r"argument --seeds: must be a positive integer"),
    ("ablate", "--out T/a --limit 0", r"argument --limit: must be a positive integer or 'all'"),
    ("ablate", "--out T/a --heads 1,0", r"argument --heads: '0' in '1,0': must be a positive integer"),
    ("ablate", "--out T/a --flips 0,1.5", r"argument --flips: '1.5' in '0,1.5': must be at least 0 and below 1"),
    ("figures", "--results T/results --out T/f --seed -1", r"argument --seed: must be 0 or a positive integer"),
    ("demo", "--out T/d --steps 0", r"argument --steps: must be a positive integer"),
    ("heads", "--results T/foreign", r"--results .*foreign holds no run.json: not an `armlens ablate` folder"),
    ("heads", "--results T/foreign --seeds 0,-1", r"argument --seeds: '-1' in '0,-1': must be 0 or a positive integer"),
    ("heads", "--results T/foreign --margin 1.5", r"--margin must be in \[0, 1\) and --n-random >= 0, got 1.5"),
    ("eval", "--out T/e --workers 0", r"argument --workers: must be a positive integer, got '0'"),
    # model placement: a dtype outside the choices, a device map that is neither a strategy nor a JSON object
    ("fit", "--out T/a.arm --dtype float8", r"argument --dtype: .*float8"),
    ("fit", "--out T/a.arm --device-map {cpu", r"--device-map is not a valid JSON object"),
    # outputs: checked before any work
    ("fit", "--out T/foreign", r"--out .*foreign is a folder; give a file name"),
    ("fit", "--out T/file/a.arm", r"--out .*file/a.arm cannot be created: .*file is a file, not a folder"),
    ("fit", "--out T/existing.arm", r"--out .*existing.arm already exists; pass --overwrite to replace it"),
    ("bench", "--out T/foreign", r"--out .*foreign is a folder; give a file name"),
    ("score", "--rm T/existing.arm --out T/file", r"--out .*file is a file, not a folder"),
    ("score", "--rm T/existing.arm --out T/foreign", r"--out .*foreign is not empty and holds no results"),
    ("score", "--rm T/existing.arm --out T/locked", r"results folder .*locked is in use by process \d+"),
    ("score", "--rm T/missing.arm --out T/s", r"no saved ARM at .*missing.arm"),
    ("eval", "--out T/file", r"--out .*file is a file, not a folder"),
    ("eval", "--out T/file/sub", r"--out .*sub cannot be created: .*file is a file, not a folder"),
    ("eval", "--out T/foreign", r"--out .*foreign is not empty and holds no results .*not an evaluation folder"),
    ("eval", "--out T/locked", r"results folder .*locked is in use by process \d+ .*use another --out"),
    ("ablate", "--out T/file", r"--out .*file is a file, not a folder"),
    ("ablate", "--out T/locked", r"results folder .*locked is in use by process \d+"),
    ("ablate", "--out T/foreign", r"--out .*foreign is not empty and holds no results"),
    ("figures", "--results T/results --out T/file", r"--out .*file is a file, not a folder"),
    ("figures", "--results T/file --out T/f", r"--results .*file is a file, not a results folder"),
    ("demo", "--out T/file/sub", r"--out .*sub cannot be created"),
    ("demo", "--out T/locked", r"results folder .*locked is in use by process \d+"),
    ("data fetch bigbench", "--cache T/file", r"--cache .*file is a file, not a folder"),
    ("data fetch bigbench", "--cache T/locked --sdist T/missing.tar.gz", r"results folder .*locked is in use"),
    # files that are not UTF-8: the file and the line
    ("data stats path:T/latin1.jsonl", "", r"latin1.jsonl, line 2: not valid utf-8 \(byte 0xe9"),
    ("eval", "--out T/e --data path:T/latin1.jsonl", r"latin1.jsonl, line 2: not valid utf-8"),
    # --root takes a folder and says so for a file, pointing to path:FILE
    ("data stats hhh", "--root T/file", r"data root .*file is a file; a data root is a folder .*--data path:"),
    ("fit", "--out T/a.arm --root T/file", r"data root .*file is a file; a data root is a folder"),
    ("score", "--rm T/existing.arm --out T/s --root T/file", r"data root .*file is a file"),
    ("eval", "--out T/e --root T/file", r"data root .*file is a file"),
    ("ablate", "--out T/a --root T/file", r"data root .*file is a file"),
    ("bench", "--root T/file", r"data root .*file is a file"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --n 0", r"argument --n: must be a positive integer"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --limit 0", r"argument --limit: must be a positive integer"),
    ("bestofn", "--rm T/missing.arm --data hhh --out T/b", r"no saved ARM at .*missing.arm"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/file", r"--out .*file is a file, not a folder"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/locked", r"results folder .*locked is in use by process"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --root T/file", r"data root .*file is a file"),
    ("demo", "--out T/d --root T/file", r"data root .*file is a file"),
    # a refused eval writes nothing: every dataset is loaded, the dtype and device checked, before --out is made
    ("eval", "--out T/e --data hhh,nosuch", r"unknown dataset 'nosuch'"),
    ("eval", "--out T/e --dtype float8", r"argument --dtype: invalid choice: 'float8'"),
    ("eval", "--out T/e --device tpu", r"--device 'tpu' is not a device; give cpu, cuda, cuda:N or mps$"),
    ("fit", "--out T/a.arm --device tpu", r"--device 'tpu' is not a device"),
    ("score", "--rm T/existing.arm --out T/s --device cuda:7", r"--device cuda:7: this process sees \d+ CUDA device"),
    # saved ARMs: read and checked before the model loads (a digest of the tensors, a 0/1 mask, finite means)
    ("score", "--rm T/corrupt.arm --out T/s", r"corrupt.arm is corrupt: its tensors differ from the SHA-256 saved"),
    ("score", "--rm T/oldbad.arm --out T/s", r"oldbad.arm is corrupt: fit 0's head mask holds values other than 0"),
    ("score", "--rm T/file --out T/s", r"file is not a readable armlens ARM file"),
    ("score", "--rm T/foreign.arm --out T/s", r"foreign.arm holds no saved ARM"),
    ("score", "--rm T/existing.arm --out T/s --criterion nope", r"this ARM holds no fit named 'nope'; its fits: pooled"),
    ("bestofn", "--rm T/corrupt.arm --data hhh --out T/b", r"corrupt.arm is corrupt"),
    ("bestofn", "--rm T/existing.arm --replicates T/foreign.arm --data hhh --out T/b", r"foreign.arm holds no saved"),
    # score --overwrite replaces a score run's results, never another command's folder
    ("score", "--rm T/existing.arm --out T/evalrun --overwrite", r"evalrun is not empty and holds no results .*"
     r"`armlens score`"),
    # options checked as they are read, before any data: unknown axis settings, signs that make no sense
    ("ablate", "--out T/a --estimators mean,foo", r"argument --estimators: 'foo' in 'mean,foo': invalid choice"),
    ("ablate", "--out T/a --readings nope", r"argument --readings: 'nope' in 'nope': invalid choice"),
    ("fit", "--out T/a.arm --arm.reinforce.sparsity -1", r"argument --arm.reinforce.sparsity: must be a number >= 0"),
    ("fit", "--out T/a.arm --arm.reinforce.prefix-cache-mb -5", r"argument --arm.reinforce.prefix-cache-mb: must be"),
    ("fit", "--out T/a.arm --arm.reinforce.lr 0", r"argument --arm.reinforce.lr: must be a number > 0, got '0'"),
    ("eval", "--out T/e --interim T/i", r"--interim goes with --summary-only"),
    ("eval", "--out T/e --summary-only --interim T/e", r"--interim must be another folder than --out"),
    ("eval", "--out T/e --worker-gpus -1", r"argument --worker-gpus: must be a number >= 0, got '-1'"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --temperature -1", r"argument --temperature: must be a "
     r"number > 0"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --temperature 0", r"argument --temperature: must be"),
    ("bestofn", "--rm T/existing.arm --data hhh --out T/b --n 1", r"at least 2 responses per prompt"),
    ("figures", f"--results {REPO}/experiments/ablations/hhh --out T/f --seed 99 --formats html",
     r"--seed 99: the results hold seed\(s\) 0, 1, 2$"),  # a committed folder; it drew seed 0 without a word
    # output paths: a trailing slash names a folder; a folder is writable only if a file can be made in it
    ("fit", "--out T/new/", r"--out .*new/ is a folder; give a file name"),
    ("fit", "--out /proc/a.arm", r"--out /proc/a.arm cannot be created: the folder /proc is not writable"),
    # messages name the line of a JSON-lines file (blank lines count)
    ("data stats path:T/missing4.jsonl", "", r"missing4.jsonl: line 4 has no key 'chosen'"),
]


def argv_for(words: str, extra: str, folder: Path, data_root: Path) -> list[str]:
    argv = [a.replace("T/", f"{folder}/") for a in words.split() + extra.split()]
    needs_data = words in ("fit", "score", "eval", "ablate") and "--data" not in extra
    if needs_data:
        argv += DATA
    if needs_data and "--root" not in extra:
        argv += ["--root", str(data_root)]
    return argv + (["--quiet"] if words in ("fit", "score", "eval", "ablate", "demo") else [])


@pytest.mark.parametrize(("words", "extra", "expected"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_bad_input_matrix(world, data_root, capsys, words, extra, expected):
    before = snapshot(world)
    with pytest.raises(SystemExit) as e:  # argparse errors exit; everything else returns
        sys.exit(main(argv_for(words, extra, world, data_root)))
    err = capsys.readouterr().err.strip()
    assert e.value.code not in (0, None), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"armlens {words.split()[0]}") and "error:" in err, err
    assert re.search(expected, err), err
    assert snapshot(world) == before  # no partial files, nothing created


def test_empty_responses_are_counted_in_the_load_report(tmp_path, capsys):
    rows = [{"prompt": "q1", "chosen": "a", "rejected": "b"}, {"prompt": "q2", "chosen": "  ", "rejected": "b"},
            {"prompt": "q3", "chosen": "a", "rejected": ""}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "stats", f"path:{path}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["n_pairs"] == 1 and report["dropped"] == {"empty chosen or rejected response": 2}


def test_every_command_is_in_the_matrix(cli_commands):
    covered = {c[0].split()[0] if c[0].split()[0] != "data" else " ".join(c[0].split()[:2]) for c in CASES}
    commands = {" ".join(c) for c in cli_commands if c != ["data"]}
    without_inputs = {"info", "data list"}  # nothing to check: no numbers, outputs or data roots
    assert commands - without_inputs <= covered, commands - without_inputs - covered


def test_a_fit_whose_out_breaks_at_the_end_is_saved_to_a_fallback(tmp_path, data_root, monkeypatch, capsys,
                                                                   saved_tiny_model):
    folder = saved_tiny_model()
    out = tmp_path / "fits" / "a.arm"
    monkeypatch.chdir(tmp_path)
    from armlens.rm import ActivationRM

    real_save = ActivationRM.save

    def save(self, path):  # the disk fills up while the fit runs: only the requested path fails
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        return real_save(self, path)

    def quick_fit(self, fewshot, select=None, show_progress=True):  # the save is under test, not the fit
        from armlens.rm import POOLED, CriterionARM

        cfg = self.model.cfg
        mask = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool)
        mask[0, 0] = True
        self.fits = {POOLED: CriterionARM(POOLED, torch.zeros(cfg.n_layers, cfg.n_heads, cfg.d_head), mask)}
        return self

    monkeypatch.setattr(ActivationRM, "save", save)
    monkeypatch.setattr(ActivationRM, "fit", quick_fit)
    capsys.readouterr()
    rc = main(["fit", "--data", "hhh", "--root", str(data_root), "--model", str(folder), "--n-fewshot", "8",
               "--steps", "1", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1
    m = re.search(r"the fit was saved to (\S+) instead", captured.err)
    ours = [line for line in captured.err.splitlines() if line.startswith("armlens fit")]  # (not HF's load bar)
    assert m and len(ours) == 1 and "No space left on device" in ours[0] and m.group(0) in ours[0]
    rescued = Path(m.group(1))
    assert rescued.parent == tmp_path and rescued.is_file() and Path(f"{rescued}.split.json").is_file()
    assert ActivationRM.load(rescued, M.load_model(str(folder))).heads  # the rescued fit loads
    assert not out.exists()


def test_eval_refuses_other_settings_and_a_second_writer(tmp_path):
    from armlens.evaluation.runner import EvalConfig, check_out
    from armlens.io import write_json

    out = tmp_path / "e"
    cfg = EvalConfig(data=["hhh"], out=str(out), seeds=2)
    write_json(out / "config.json", cfg.to_dict())
    assert check_out(cfg) == out  # same settings: resumable
    other = EvalConfig(data=["hhh"], out=str(out), seeds=3)
    with pytest.raises(ValueError, match=r"other settings \(seeds differ\); use a new --out, or pass --change-settings"):
        check_out(other)
    assert check_out(other, allow_changed_settings=True) == out
    rc = main(["eval", "--data", "hhh", "--out", str(out), "--seeds", "3", "--quiet"])
    assert rc == 2
    held = FileLock(out / LOCK_NAME)  # another process's kernel lock (its record names it)
    held.acquire()
    try:
        (out / HOLDER_NAME).write_text(json.dumps({"pid": 12345, "command": "armlens eval"}))
        with pytest.raises(ValueError, match=r"in use by process 12345 \(`armlens eval`"):
            check_out(cfg)
    finally:
        held.release()
    with ResultsLock(out):  # the holder is gone: its lock went with it
        pass


@pytest.mark.slow  # a subprocess that imports torch and runs until interrupted (~20 s on 2 busy cores)
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, saved_tiny_model):
    folder = saved_tiny_model()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Tell me about thing {i}.",
                                         "chosen": f"Thing {i} is a fine thing.", "rejected": "No."}) + "\n"
                             for i in range(40)))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    err_file = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "armlens.cli", "eval", "--data", f"path:{pairs}", "--model", str(folder),
         "--methods", "few-shot-icl", "--seeds", "200", "--limit", "4", "--n-fewshot", "2", "--n-select", "0",
         "--bias", "none", "--max-field-tokens", "16", "--n-bootstrap", "10", "--out", str(out), "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err_file,  # a file: a full pipe cannot stall it
        # a test suite started in the background (nohup, `cmd &`) ignores SIGINT, and a child inherits that: Python
        # then installs no KeyboardInterrupt handler, the signal does nothing and the run finishes with exit 0
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600  # the wait ends at the first saved unit; a loaded machine may take minutes
    while not list(out.glob("*/seed*/*/result.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    assert list(out.glob("*/seed*/*/result.json")), "no unit finished within 600 s"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    err_file.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    m = re.fullmatch(r"armlens eval: interrupted; (\d+) finished unit\(s\) saved in (.+); rerun the same command "
                     r"to resume", lines[0])
    assert m and int(m.group(1)) >= 1 and m.group(2) == str(out), lines[0]
    assert ResultsLock(out).holder() is None and not (out / HOLDER_NAME).exists()  # the lock is released
    assert not [p for p in out.rglob("*.tmp")]  # no half-written file


def test_bare_armlens_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: armlens" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_only_armlens_errors_are_one_line_anything_else_is_a_bug_report(monkeypatch, capsys):
    import dataclasses

    import armlens
    import armlens.cli as cli
    from armlens.errors import ArmlensError, BadDataError

    assert armlens.ArmlensError is ArmlensError and issubclass(BadDataError, ValueError)
    real = cli.command("data list")

    def failing(error: Exception) -> None:
        def run(options):
            raise error
        monkeypatch.setattr(cli, "command", lambda name: dataclasses.replace(real, run=run))

    failing(BadDataError("pairs.jsonl, line 3: not valid JSON\n(more)"))
    assert main(["data", "list"]) == 2
    assert capsys.readouterr().err == "armlens data list: error: pairs.jsonl, line 3: not valid JSON (more)\n"
    failing(ValueError("a plain ValueError is a bug"))
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "ValueError: a plain ValueError is a bug" in err
    assert err.splitlines()[-1].startswith("armlens data list: internal error (a bug in armlens")


def test_an_over_long_field_is_refused_at_once_naming_the_pair(tmp_path, saved_tiny_model, capsys):
    folder = saved_tiny_model()
    rows = [{"id": f"p{i}", "prompt": f"Question {i}?", "chosen": "A fine answer.", "rejected": "No."} for i in range(4)]
    rows[2]["chosen"] = "word " * 1_000_000  # 5 MB: tokenising it whole took minutes and gigabytes
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0 = time.perf_counter()
    rc = main(["fit", "--data", f"path:{data}", "--model", str(folder), "--n-fewshot", "4", "--steps", "1",
               "--out", str(tmp_path / "a.arm"), "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("armlens fit")]
    assert rc == 2 and len(err) == 1, err
    assert re.search(r"1 pair\(s\) do not fit the model.s context of \d+ tokens as judge prompts: \S*p2 \(over", err[0]), err[0][:300]
    assert "--max-field-tokens N" in err[0]
    assert time.perf_counter() - t0 < 60


@pytest.mark.slow  # the default model's tokenizer: a real BPE vocabulary
def test_a_huge_field_is_cut_as_if_tokenised_whole(default_model):
    from armlens.prompts import cut_to_tokens, is_cut

    words = ["alpha", "beta,", "gamma.", "  delta", "\n\nepsilon", "zeta-eta", "théta", "1234567", "(iota)"]
    text = " ".join(words[(i * 7) % len(words)] for i in range(60_000))  # ~450k characters
    ids = default_model.tokenizer.encode(text, add_special_tokens=False)
    for n in (1, 7, 64):
        head, tail = (n + 1) // 2, n // 2
        whole = default_model.tokenizer.decode(ids[:head]) + " [...] " + (
            default_model.tokenizer.decode(ids[-tail:]) if tail else "")
        assert cut_to_tokens(default_model, text, n) == whole
        assert is_cut(default_model, text, n)
