"""``armlens data fetch bigbench`` on a small fake sdist (never the network) and the pinned hashes."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from armlens.data import fetch, load_pairs
from armlens.data.fetch import BIGBENCH_FILES, BIGBENCH_SDIST, fetch_bigbench

HHH_TASK = {"examples": [{"input": "Can you help me?", "target_scores": {"Sure, happy to.": 1, "No.": 0}}]}
TQA = {"examples": [{"Question": "Is the Earth flat?", "Category": "Misconceptions",
                     "True answers": ["No, it is round."], "False answers": ["Yes."],
                     "Best answer": "No, it is round."}]}


def fake_sdist(path: Path, skip: str | None = None) -> Path:
    """A tiny ``bigbench-1.0.0.tar.gz`` with the members fetch extracts (small valid task files)."""
    with tarfile.open(path, "w:gz") as tar:
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


def test_pinned_hashes_equal_the_shared_sha256sums(data_root):
    sums = {}
    for line in (data_root / "SHA256SUMS").read_text().splitlines():
        sha, name = line.split()
        sums[name.removeprefix("./")] = sha
    for layout, sha in BIGBENCH_FILES.values():
        assert sums[layout] == sha


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


def test_pip_download_then_cached(tmp_path, monkeypatch):
    fake = fake_sdist(tmp_path / "fake.tar.gz")
    pin_to(monkeypatch, fake)
    calls = []

    def fake_run(cmd, capture_output, text):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / BIGBENCH_SDIST).write_bytes(fake.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    cache = tmp_path / "cache"
    result = fetch_bigbench(cache=cache)
    assert result.method == "pip" and result.verified
    assert calls[0][:8] == [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "bigbench==1.0.0"]
    assert not (cache / "sdist").exists()  # the downloaded archive is removed after extraction
    again = fetch_bigbench(cache=cache)
    assert again.method == "cached" and len(calls) == 1
    (cache / "hhh_alignment" / "other.json").write_text("{}")  # a tampered file is fetched again
    assert fetch_bigbench(cache=cache).method == "pip"


def test_pip_refusal_falls_back_to_the_simple_index(tmp_path, monkeypatch):
    fake = fake_sdist(tmp_path / "fake.tar.gz")
    pin_to(monkeypatch, fake)
    refusal = ("ERROR: Distributions from PyPI cannot declare direct URL dependencies.\n"
               "bigbench depends on bleurt @ file://localhost//tmp/...")
    monkeypatch.setattr(fetch.subprocess, "run",
                        lambda cmd, capture_output, text: subprocess.CompletedProcess(cmd, 1, "", refusal))
    body = fake.read_bytes()
    index = {"files": [{"filename": BIGBENCH_SDIST, "url": "https://files.example/bigbench-1.0.0.tar.gz",
                        "hashes": {"sha256": hashlib.sha256(body).hexdigest()}}]}

    def opener(req, timeout):
        url = req if isinstance(req, str) else req.full_url
        return io.BytesIO(json.dumps(index).encode() if url.startswith("https://pypi.org/simple/") else body)

    monkeypatch.setattr(fetch, "_urlopen", opener)
    result = fetch_bigbench(cache=tmp_path / "cache")
    assert result.method == "pypi-simple" and result.verified


def test_simple_index_digest_mismatch(tmp_path):
    index = {"files": [{"filename": BIGBENCH_SDIST, "url": "https://x/y.tar.gz", "hashes": {"sha256": "0" * 64}}]}

    def opener(req, timeout):
        return io.BytesIO(json.dumps(index).encode() if not isinstance(req, str) else b"not the file")

    with pytest.raises(ValueError, match="differs from the index"):
        fetch._pypi_download(tmp_path, opener)
    assert not list(tmp_path.iterdir())


def test_other_pip_failure_suggests_sdist(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.subprocess, "run",
                        lambda cmd, capture_output, text: subprocess.CompletedProcess(cmd, 1, "", "No network"))
    with pytest.raises(RuntimeError, match="--sdist FILE"):
        fetch_bigbench(cache=tmp_path / "cache")


def test_unverified_cache_is_not_reused_when_verifying(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fetch_bigbench(cache=cache, sdist=fake_sdist(tmp_path / BIGBENCH_SDIST), verify=False)
    assert fetch_bigbench(cache=cache, verify=False).method == "cached"
    monkeypatch.setattr(fetch.subprocess, "run",
                        lambda cmd, capture_output, text: subprocess.CompletedProcess(cmd, 1, "", "offline"))
    with pytest.raises(RuntimeError, match="pip could not download"):
        fetch_bigbench(cache=cache)  # the fake files do not carry the pinned hashes: fetch again
