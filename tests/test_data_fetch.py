"""``armlens data fetch bigbench`` on a small fake sdist (never the network) and the pinned hashes."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from armlens.data import fetch, load_pairs
from armlens.data.bundle import bundled_root, read_manifest
from armlens.data.fetch import BIGBENCH_FILES, BIGBENCH_SDIST, fetch_bigbench

HHH_TASK = {"examples": [{"input": "Can you help me?", "target_scores": {"Sure, happy to.": 1, "No.": 0}}]}
TQA = {"examples": [{"Question": "Is the Earth flat?", "Category": "Misconceptions",
                     "True answers": ["No, it is round."], "False answers": ["Yes."],
                     "Best answer": "No, it is round."}]}


OTHER_TASK = {"bigbench-1.0.0/bigbench/benchmark_tasks/logical_deduction/three_objects/task.json": b'{"examples": []}',
              "bigbench-1.0.0/bigbench/benchmark_tasks/logical_deduction/README.md": b"# logical deduction\n",
              "bigbench-1.0.0/bigbench/benchmark_tasks/logical_sequence/task.json": b"{}"}
"""Another BIG-bench task's files (and a task whose name shares a prefix, which must not come along)."""


def fake_sdist(path: Path, skip: str | None = None) -> Path:
    """A tiny ``bigbench-1.0.0.tar.gz`` with the members fetch extracts (small valid task files)."""
    with tarfile.open(path, "w:gz") as tar:
        for member, data in OTHER_TASK.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member, (layout, _) in BIGBENCH_FILES.items():
            if member == skip:
                continue
            body = HHH_TASK if layout.startswith("hhh") else TQA
            data = json.dumps(body).encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bigbench-1.0.0/setup.py")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    return path


def pin_to(monkeypatch, sdist: Path) -> None:
    """Make the fake sdist 'the' release: pin its hash and its members' hashes."""
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    with tarfile.open(sdist) as tar:
        pins = {m: (layout, hashlib.sha256(tar.extractfile(m).read()).hexdigest())
                for m, (layout, _) in BIGBENCH_FILES.items()}
    monkeypatch.setattr(fetch, "BIGBENCH_FILES", pins)


def test_pinned_hashes_equal_the_bundled_files():
    """The sdist's HHH and TruthfulQA files are the bundled ones: the manifest, and the files themselves, agree."""
    manifest = {rel: f["sha256"] for d in read_manifest()["datasets"].values() for rel, f in d["files"].items()}
    for layout, sha in BIGBENCH_FILES.values():
        assert manifest[layout] == sha
        assert hashlib.sha256((bundled_root() / layout).read_bytes()).hexdigest() == sha


def test_extracts_into_a_data_root_with_manifest(tmp_path):
    sdist = fake_sdist(tmp_path / BIGBENCH_SDIST)
    cache = tmp_path / "cache"
    result = fetch_bigbench(cache=cache, sdist=sdist, verify=False)
    assert result.method == "local-sdist" and not result.verified
    manifest = json.loads((cache / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {layout for layout, _ in BIGBENCH_FILES.values()}
    for layout, entry in manifest["files"].items():
        assert hashlib.sha256((cache / layout).read_bytes()).hexdigest() == entry["sha256"]
    assert sdist.exists()  # a user's sdist is never deleted
    assert not list(cache.glob(".staging-*"))
    assert len(load_pairs("hhh", root=cache)) == 4
    assert load_pairs("truthfulqa", root=cache)[0].chosen == "No, it is round."


def test_cache_is_found_without_a_root(tmp_path, monkeypatch):
    monkeypatch.delenv("ARMLENS_DATA_ROOT", raising=False)
    monkeypatch.setenv("ARMLENS_CACHE", str(tmp_path / "armlens"))
    monkeypatch.chdir(tmp_path)
    fetch_bigbench(sdist=fake_sdist(tmp_path / BIGBENCH_SDIST), verify=False)
    assert (tmp_path / "armlens" / "bigbench" / "hhh_alignment" / "honest.json").is_file()
    assert [p.subset for p in load_pairs("hhh")] == ["hhh-harmless", "hhh-helpful", "hhh-honest", "hhh-other"]


def test_hash_mismatch_is_an_error_and_writes_nothing(tmp_path, monkeypatch):
    sdist = fake_sdist(tmp_path / BIGBENCH_SDIST)
    with pytest.raises(ValueError, match="differs from the pinned"):
        fetch_bigbench(cache=tmp_path / "c1", sdist=sdist)
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match="do not match the pinned SHA-256"):
        fetch_bigbench(cache=tmp_path / "c2", sdist=sdist)
    assert not (tmp_path / "c2" / "hhh_alignment").exists()


def test_missing_member_is_an_error(tmp_path):
    member = next(iter(BIGBENCH_FILES))
    sdist = fake_sdist(tmp_path / BIGBENCH_SDIST, skip=member)
    with pytest.raises(ValueError, match="members missing"):
        fetch_bigbench(cache=tmp_path / "c", sdist=sdist, verify=False)


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """Serve a file at a local URL and make it the sdist's download URL (pooch's real HTTP path, no network).
    Returns ``serve(body) -> requests``, the list of paths requested so far."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # record requests instead of printing them
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve_file(body: bytes) -> list[str]:
        (www / BIGBENCH_SDIST).write_bytes(body)
        monkeypatch.setattr(fetch, "BIGBENCH_SDIST_URL", f"http://127.0.0.1:{server.server_port}/{BIGBENCH_SDIST}")
        return requests

    yield serve_file
    server.shutdown()
    server.server_close()


def test_download_then_cached(tmp_path, monkeypatch, serve):
    fake = fake_sdist(tmp_path / "fake.tar.gz")
    pin_to(monkeypatch, fake)
    requests = serve(fake.read_bytes())
    cache = tmp_path / "cache"
    result = fetch_bigbench(cache=cache)
    assert result.method == "download" and result.verified and len(requests) == 1
    assert result.sdist_sha256 == fetch.BIGBENCH_SDIST_SHA256
    assert not (cache / "sdist").exists()  # the downloaded archive is removed after extraction
    again = fetch_bigbench(cache=cache)
    assert again.method == "cached" and len(requests) == 1
    (cache / "hhh_alignment" / "other.json").write_text("{}")  # a tampered file is fetched again
    assert fetch_bigbench(cache=cache, keep_sdist=True).method == "download" and len(requests) == 2
    assert (cache / "sdist" / BIGBENCH_SDIST).read_bytes() == fake.read_bytes()
    assert fetch_bigbench(cache=cache, force=True).method == "download" and len(requests) == 2  # kept copy reused


def test_download_hash_mismatch_keeps_nothing(tmp_path, serve):
    serve(fake_sdist(tmp_path / "fake.tar.gz").read_bytes())  # not the pinned release
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="differs from the pinned SHA-256"):
        fetch_bigbench(cache=cache)
    assert not list((cache / "sdist").iterdir()) and not (cache / "hhh_alignment").exists()


def test_failed_download_suggests_sdist(tmp_path, monkeypatch, serve):
    """An index that refuses the file (here a 404; a 403 reads the same) says so, says HHH and TruthfulQA need no
    download, and names --sdist; an unreachable index says that instead."""
    serve(b"")
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_URL", fetch.BIGBENCH_SDIST_URL.replace(BIGBENCH_SDIST, "missing.tar.gz"))
    with pytest.raises(RuntimeError, match=r"refused the file \(HTTP 404\).*armlens bundles them.*--sdist FILE"):
        fetch_bigbench(cache=tmp_path / "cache")
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_URL", "http://127.0.0.1:9/unreachable.tar.gz")  # discard port
    with pytest.raises(RuntimeError, match="could not be reached.*--sdist FILE"):
        fetch_bigbench(cache=tmp_path / "cache")


def test_other_tasks_are_extracted_whole(tmp_path, monkeypatch):
    sdist, cache = fake_sdist(tmp_path / BIGBENCH_SDIST), tmp_path / "cache"
    fetch_bigbench(cache=cache, sdist=sdist, verify=False, tasks=["logical_deduction"])
    task = cache / "tasks" / "logical_deduction"
    assert sorted(p.relative_to(task).as_posix() for p in task.rglob("*") if p.is_file()) == \
        ["README.md", "three_objects/task.json"]
    assert not (cache / "tasks" / "logical_sequence").exists()  # a name that only starts the same is another task
    manifest = json.loads((cache / "MANIFEST.json").read_text())
    assert set(manifest["tasks"]["logical_deduction"]) == {"tasks/logical_deduction/README.md",
                                                           "tasks/logical_deduction/three_objects/task.json"}
    assert fetch_bigbench(cache=cache, verify=False, tasks=["logical_deduction"]).method == "cached"
    (task / "README.md").write_text("changed")
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_URL", "http://127.0.0.1:9/unreachable.tar.gz")  # discard port
    with pytest.raises(RuntimeError, match="could not download"):  # a changed task file is fetched again
        fetch_bigbench(cache=cache, verify=False, tasks=["logical_deduction"])


def test_a_task_not_in_the_archive_or_not_a_name_is_an_error(tmp_path):
    sdist = fake_sdist(tmp_path / BIGBENCH_SDIST)
    with pytest.raises(ValueError, match=r"members missing.*benchmark_tasks/no_such_task/"):
        fetch_bigbench(cache=tmp_path / "c", sdist=sdist, verify=False, tasks=["no_such_task"])
    assert not (tmp_path / "c" / "hhh_alignment").exists()  # nothing half-written
    with pytest.raises(ValueError, match="not a BIG-bench task name"):
        fetch_bigbench(cache=tmp_path / "c", sdist=sdist, verify=False, tasks=["../etc"])


def test_unverified_cache_is_not_reused_when_verifying(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fetch_bigbench(cache=cache, sdist=fake_sdist(tmp_path / BIGBENCH_SDIST), verify=False)
    assert fetch_bigbench(cache=cache, verify=False).method == "cached"
    monkeypatch.setattr(fetch, "BIGBENCH_SDIST_URL", "http://127.0.0.1:9/unreachable.tar.gz")  # discard port
    with pytest.raises(RuntimeError, match="could not download"):
        fetch_bigbench(cache=cache)  # the fake files do not carry the pinned hashes: fetch again
