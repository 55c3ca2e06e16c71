"""armlens.io: the atomic writer, file modes, output checks, the results-folder lock, decoding errors."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armlens import io as aio
from armlens.errors import LockedOutputError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_respects_the_umask(tmp_path, umask_022):
    path = aio.write_json(tmp_path / "a" / "summary.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert mode(path) == 0o644  # not mkstemp's 0o600
    os.umask(0o077)
    assert mode(aio.atomic_write(tmp_path / "private.txt", "secret")) == 0o600
    os.umask(0o002)
    assert mode(aio.atomic_write_with(tmp_path / "b.bin", lambda t: Path(t).write_bytes(b"\0"))) == 0o664


def test_failed_writes_leave_the_old_file_and_no_temp(tmp_path):
    path = aio.atomic_write(tmp_path / "f.txt", "old")
    with pytest.raises(TypeError):
        aio.write_json(path, {"bad": object()})
    with pytest.raises(RuntimeError):
        with aio.atomic_open(path) as f:
            f.write("half")
            raise RuntimeError("boom")

    def bad_writer(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aio.atomic_write_with(path, bad_writer)
    with pytest.raises(OSError):
        aio.atomic_write_files([tmp_path / "x.png", tmp_path / "y.png"], lambda tmps: (_ for _ in ()).throw(OSError()))
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_ctrl_c_just_after_the_temp_file_is_made_leaves_none(tmp_path, monkeypatch):
    # CI once found a stray '.result.json.*.tmp' after a Ctrl-C: the signal landed between the temporary file's
    # creation and its being recorded for clean-up. A Ctrl-C at the first step after creation must leave nothing.
    path = aio.atomic_write(tmp_path / "f.txt", "old")
    real_close, real_mkdir = os.close, Path.mkdir

    def interrupted_close(fd):
        real_close(fd)
        monkeypatch.setattr(os, "close", real_close)
        raise KeyboardInterrupt

    def interrupted_mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        aio.atomic_write(path, "new")
    monkeypatch.setattr(Path, "mkdir", interrupted_mkdir)
    with pytest.raises(KeyboardInterrupt):
        with aio.atomic_dir(tmp_path / "cache"):
            pass
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_jsonl_and_nan(tmp_path):
    path = aio.write_jsonl(tmp_path / "i.jsonl", [{"a": float("nan")}, {"a": 1}])
    assert aio.read_jsonl(path) == [{"a": None}, {"a": 1}]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: not valid JSON"):
        aio.read_jsonl(tmp_path / "bad.jsonl")


def test_decoding_errors_name_file_and_line(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"a": 1},\n{"b": "caf\u00e9"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.json, line 2: not valid utf-8 \(byte 0xe9"):
        aio.read_json(path)


def test_output_file_checks(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        aio.check_output_file(tmp_path / "folder")
    with pytest.raises(ValueError, match=r"cannot be created: .*file is a file, not a folder"):
        aio.check_output_file(tmp_path / "file" / "sub" / "a.arm")
    with pytest.raises(ValueError, match="already exists; pass --overwrite"):
        aio.check_output_file(tmp_path / "file", overwrite=False, hint="pass --overwrite")
    assert aio.check_output_file(tmp_path / "new" / "deeper" / "a.arm") == tmp_path / "new" / "deeper" / "a.arm"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access  # permission bits do not bind root, so the check is simulated for that folder
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
    with pytest.raises(ValueError, match="the folder .*ro is not writable"):
        aio.check_output_file(ro / "sub" / "a.arm")
    with pytest.raises(ValueError, match="ro is not writable"):
        aio.check_output_dir(ro)


def test_output_dir_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        aio.check_output_dir(tmp_path / "file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no results this command can resume"):
        aio.check_output_dir(other, resumable=lambda p: (p / "config.json").is_file())
    (other / "config.json").write_text("{}")
    assert aio.check_output_dir(other, resumable=lambda p: (p / "config.json").is_file()) == other


HOLD = """
import sys, time
from armlens.io import ResultsLock
ResultsLock(sys.argv[1], "armlens test-holder").acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_in_child(folder: Path) -> subprocess.Popen:
    """A child process holding ``folder``'s results lock (it says so on stdout once it does)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_refuses_a_live_writer_and_names_its_command(tmp_path):
    folder = tmp_path / "runs"
    holder = hold_in_child(folder)
    try:
        with pytest.raises(LockedOutputError, match=rf"in use by process {holder.pid} \(`armlens test-holder`, "
                                                    r"on .* since .*\); wait for it to finish or use another --out"):
            aio.ResultsLock(folder).acquire()
        with pytest.raises(ValueError, match="in use by process"):  # a LockedOutputError is a ValueError
            aio.check_output_dir(folder)
    finally:
        holder.kill()
        holder.wait()
    with aio.ResultsLock(folder, "test") as lock:  # killed (SIGKILL): the kernel released its lock
        assert json.loads(lock.holder_path.read_text())["pid"] == os.getpid()
        with aio.ResultsLock(folder):  # a second handle in the same process shares the lock
            pass
        assert aio.ResultsLock(folder).holder() is None  # this process's own hold is not "in use"
        assert lock.holder_path.exists()  # and leaves it to the first
    assert not lock.holder_path.exists()
    assert aio.ResultsLock(folder).holder() is None


def test_a_lock_file_naming_a_live_unrelated_process_does_not_block(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / aio.LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    assert aio.ResultsLock(folder).holder() is None
    assert aio.check_output_dir(folder) == folder
    with aio.ResultsLock(folder):
        pass


def _race(folder: str, barrier, wins, hold_s: float) -> None:
    from armlens.io import ResultsLock

    lock = ResultsLock(folder, "racer")
    barrier.wait()
    try:
        lock.acquire()
    except LockedOutputError:
        return
    wins.put(os.getpid())
    time.sleep(hold_s)  # hold it while the others try
    lock.release()


def test_processes_racing_for_a_stale_lock_cannot_both_win(tmp_path):
    """The pid-file lock this replaced let two processes that both saw a stale lock both take it over."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(8):  # the old lock lost about one round in four
        folder = tmp_path / f"runs{round_}"
        folder.mkdir()
        (folder / aio.LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 1, "host": os.uname().nodename,
                                                        "started": "long ago"}))  # left by a process long gone
        n = 6
        barrier, wins = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(folder), barrier, wins, 0.5)) for _ in range(n)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        winners = []
        while not wins.empty():
            winners.append(wins.get())
        assert len(winners) == 1, winners
        assert all(proc.exitcode == 0 for proc in procs)


def test_io_sits_at_the_bottom():
    imported = set()
    for module in Path(aio.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    own = {m for m in imported if m == "armlens.errors" or m.startswith("armlens.io.")}
    assert not [m for m in imported - own if m.startswith("armlens")]


def test_settings_diff_is_dotted():
    old = {"seeds": 2, "out": "a", "judge": {"arm": {"mode": "icl"}, "voting_n": 5}}
    new = {"seeds": 3, "out": "b", "judge": {"arm": {"mode": "per_example"}, "voting_n": 5}}
    assert aio.settings_diff(old, new, ignore=["out"]) == ["judge.arm.mode", "seeds"]


# ---------------------------------------------------------------------------------------------------- compressed results


ROWS = [{"id": "p1", "chosen_score": 0.75, "rejected_score": float("nan"), "text": "caf\u00e9"}, {"id": "p2", "x": [1, 2]}]


def test_a_gz_writer_writes_deterministic_gzip_of_the_plain_bytes(tmp_path):
    plain = aio.write_jsonl(tmp_path / "plain" / "items.jsonl", ROWS)
    first = aio.write_jsonl(tmp_path / "a" / "items.jsonl.gz", ROWS)
    data = first.read_bytes()
    assert data[:3] == b"\x1f\x8b\x08" and data[3] == 0, "gzip, deflate, no header flags (no file name)"
    assert data[4:8] == b"\0\0\0\0", "a zero time stamp"
    assert gzip.decompress(data) == plain.read_bytes()  # the same text as the plain writer's
    os.utime(first, (1, 1))
    again = aio.write_jsonl(first, ROWS)  # rewritten later: the same bytes
    assert again.read_bytes() == data and again.stat().st_mtime > 1
    elsewhere = aio.write_jsonl(tmp_path / "b" / "other-name.jsonl.gz", ROWS)  # no name or folder in the bytes
    assert elsewhere.read_bytes() == data
    obj = {"mask": [[0, 1]], "probs": [0.25, None]}
    one_line = aio.write_json(tmp_path / "selection-reference.json.gz", obj, indent=None)
    assert gzip.decompress(one_line.read_bytes()) == (aio.to_json(obj, None) + "\n").encode()
    assert aio.gzip_bytes(b"x") == aio.gzip_bytes(b"x") != aio.gzip_bytes(b"y")


def test_readers_take_either_form_of_a_name(tmp_path):
    plain = aio.write_jsonl(tmp_path / "plain" / "items.jsonl", ROWS)
    packed = aio.write_jsonl(tmp_path / "packed" / "items.jsonl.gz", ROWS)
    want = aio.read_jsonl(plain)
    assert want[0]["rejected_score"] is None and want[0]["text"] == "caf\u00e9"
    for folder in ("plain", "packed"):  # whichever form is on disk, under either name
        for name in ("items.jsonl", "items.jsonl.gz"):
            assert aio.read_jsonl(tmp_path / folder / name) == want, (folder, name)
            assert aio.result_exists(tmp_path / folder / name)
    assert aio.resolve_compressed(tmp_path / "plain" / "items.jsonl.gz") == plain
    assert aio.resolve_compressed(tmp_path / "packed" / "items.jsonl") == packed
    aio.write_json(tmp_path / "s.json.gz", {"a": 1})
    assert aio.read_json(tmp_path / "s.json") == aio.read_json(tmp_path / "s.json.gz") == {"a": 1}
    assert aio.read_text(tmp_path / "s.json") == '{\n  "a": 1\n}\n'
    # both forms on disk (copied in by hand): the name asked for wins
    (tmp_path / "both.json").write_text('{"form": "plain"}')
    (tmp_path / "both.json.gz").write_bytes(aio.gzip_bytes(b'{"form": "gz"}'))
    assert aio.read_json(tmp_path / "both.json") == {"form": "plain"}
    assert aio.read_json(tmp_path / "both.json.gz") == {"form": "gz"}
    # neither: the error names what was asked for; a damaged file is named too
    assert not aio.result_exists(tmp_path / "none.jsonl")
    with pytest.raises(FileNotFoundError, match=r"none\.jsonl'"):
        aio.read_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "cut.jsonl.gz").write_bytes(packed.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"cut\.jsonl\.gz is not a readable gzip file"):
        aio.read_jsonl(tmp_path / "cut.jsonl")
    (tmp_path / "bad.jsonl.gz").write_bytes(aio.gzip_bytes(b'{"a": 1}\n{oops\n'))
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz, line 2: not valid JSON"):
        aio.read_jsonl(tmp_path / "bad.jsonl")


def test_a_write_replaces_the_other_form_so_no_stale_copy_is_read(tmp_path):
    old = aio.write_jsonl(tmp_path / "items.jsonl", [{"v": "old"}])
    new = aio.write_jsonl(tmp_path / "items.jsonl.gz", [{"v": "new"}])
    assert not old.exists() and aio.read_jsonl(old) == [{"v": "new"}]
    assert aio.write_json(tmp_path / "items.jsonl", {"v": "plain again"}) == old and not new.exists()


def test_result_files_list_the_same_names_in_the_same_order_in_either_form(tmp_path):
    names = ["seed0.json", "seed1.json", "seed10.json", "seed2.json"]
    for i, n in enumerate(names):
        aio.write_json(tmp_path / "cells" / "a" / "x" / (n + ".gz" if i % 2 else n), {"i": i})
    (tmp_path / "cells" / "a" / "x" / "notes.txt").write_text("not a cell")
    found = aio.result_files(tmp_path, "cells/*/*/seed*.json")
    assert [f.name for f in found] == sorted(names)
    assert [aio.read_json(f)["i"] for f in found] == [0, 1, 2, 3]  # plain and compressed alike
    assert aio.result_files(tmp_path / "missing", "*.json") == []


def test_sha256_file_reads_in_chunks_and_returns_the_digest(tmp_path):
    data = os.urandom(3 << 20)[: (3 << 20) - 5]  # more than one 1 MiB chunk, not a whole number of them
    (tmp_path / "f").write_bytes(data)
    assert aio.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
