"""``armlens data fetch bigbench``: BIG-bench task files from the ``bigbench==1.0.0`` sdist, hash-verified.

Context
-------
Anthropic's HHH alignment eval and TruthfulQA ship inside BIG-bench's source distribution. armlens bundles both
(:mod:`armlens.data.bundle`), because the package index no longer serves that sdist (it lists ``bigbench`` 0.0.1
only) and a direct file URL may be refused. This command stays for users who can reach the sdist, or hold a copy:
to rebuild HHH and TruthfulQA from upstream and check them against the pinned hashes, and to extract *other*
BIG-bench tasks (``--task NAME``). The steps:

1. download ``bigbench-1.0.0.tar.gz`` from its PyPI file URL (:data:`BIGBENCH_SDIST_URL`) with pooch, which checks
   the pinned SHA-256 (:data:`BIGBENCH_SDIST_SHA256`) before the file is moved into place; or take a local copy
   (``--sdist FILE``, fully offline), whose SHA-256 is checked against the same pin. When the index refuses the
   file, the error says so and names ``--sdist``;
2. stream only the needed members out of the 358 MB archive (no other file is written, no code from it runs);
3. check each HHH and TruthfulQA file against :data:`BIGBENCH_FILES`, whose hashes equal those of the bundled
   files (``tests/test_data_fetch.py`` checks it); another task's files are covered by the sdist's pin;
4. lay them out as a data root (``hhh_alignment/<category>.json``, ``truthfulqa_bigbench/{questions,task_mc}.json``,
   ``tasks/<task>/...`` for other tasks) under ``$ARMLENS_CACHE/bigbench`` (default ``~/.cache/armlens/bigbench``)
   with a ``MANIFEST.json`` recording every file's SHA-256; the ``hhh`` and ``truthfulqa`` loaders read the cache
   before the bundled copy.

pip is not used: pip 26 refuses to download this sdist ("Distributions from PyPI cannot declare direct URL
dependencies": bigbench 1.0.0 declares ``bleurt @ file://...``), even with ``--no-deps``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from armlens.data.roots import bigbench_cache_dir
from armlens.errors import BadDataError, BadInputError, NotFoundError, SetupError
from armlens.io import atomic_write_files, sha256_file, write_json

log = logging.getLogger(__name__)

BIGBENCH_VERSION = "1.0.0"
"""The BIG-bench release the files come from."""
BIGBENCH_SDIST = f"bigbench-{BIGBENCH_VERSION}.tar.gz"
"""Its source distribution on PyPI."""
BIGBENCH_SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
"""SHA-256 of ``bigbench-1.0.0.tar.gz`` as downloaded from PyPI."""
BIGBENCH_SDIST_URL = ("https://files.pythonhosted.org/packages/95/f8/"
                      f"c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/{BIGBENCH_SDIST}")
"""Where PyPI serves the sdist: its permanent, content-addressed file URL, as listed by
``https://pypi.org/simple/bigbench/`` (with the same SHA-256)."""
_TASKS = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks"
BIGBENCH_FILES: dict[str, tuple[str, str]] = {
    f"{_TASKS}/hhh_alignment/harmless/task.json":
        ("hhh_alignment/harmless.json", "4720acbc916cc18413e48c6bb55c19af73400436a6304c7e110b8bb40f8952a1"),
    f"{_TASKS}/hhh_alignment/helpful/task.json":
        ("hhh_alignment/helpful.json", "1bd2a58d9bb17b26af4806e8302374cea60671dc387fbfc2c5aa5c23e0901628"),
    f"{_TASKS}/hhh_alignment/honest/task.json":
        ("hhh_alignment/honest.json", "69ba96e5bff121327ad1366e3772b7b45c50e96e7f995b2cef62c350380f1b14"),
    f"{_TASKS}/hhh_alignment/other/task.json":
        ("hhh_alignment/other.json", "4d6b041d79e5bf2705a9f81994efb95274179faaba9270f6dc83bd0cd17c227e"),
    f"{_TASKS}/truthful_qa/questions.json":
        ("truthfulqa_bigbench/questions.json", "e4f3f864512c0d72f873fb8d3df6aa27bf62c118f7b61150166f270f6b00e4f6"),
    f"{_TASKS}/truthful_qa/task_mc.json":
        ("truthfulqa_bigbench/task_mc.json", "89a0402a23d5873b0c2f427e851fca7ac420f8d08731e61be52e6cbf1a18a281"),
}
"""sdist member -> (path under the cache, pinned SHA-256). The hashes equal those in the ``SHA256SUMS`` of the
preference data the tests read (``tests/test_data_fetch.py`` checks it)."""
TASK_NAME = re.compile(r"[A-Za-z0-9_]+")
"""What a BIG-bench task folder name looks like (``--task`` accepts nothing else: no paths)."""
MANIFEST = "MANIFEST.json"
"""Name of the manifest written beside the extracted files."""


@dataclass
class FetchResult:
    """What ``fetch_bigbench`` did."""

    dest: Path
    """The cache folder, usable as a data root."""
    files: dict[str, str] = field(default_factory=dict)
    """Path under ``dest`` -> SHA-256."""
    sdist_sha256: str = ""
    """SHA-256 of the sdist the files came from."""
    method: str = ""
    """``download``, ``local-sdist`` or ``cached`` (already present and verified)."""
    verified: bool = True
    """Whether the sdist and every file matched the pinned hashes."""


def download_sdist(dest: Path, verify: bool = True, show_progress: bool = False) -> Path:
    """Download the sdist into ``dest`` with pooch and return its path.

    With ``verify``, pooch checks :data:`BIGBENCH_SDIST_SHA256` and keeps nothing that does not match (ValueError);
    a copy already in ``dest`` with that hash is reused. A failed download is a RuntimeError suggesting ``--sdist``.
    """
    import pooch

    known = f"sha256:{BIGBENCH_SDIST_SHA256}" if verify else None
    log.info("downloading %s from %s", BIGBENCH_SDIST, BIGBENCH_SDIST_URL)
    try:
        got = pooch.retrieve(BIGBENCH_SDIST_URL, known_hash=known, fname=BIGBENCH_SDIST, path=dest,
                             progressbar=show_progress)
    except ValueError as e:  # pooch: the downloaded file's hash differs from the pin
        raise BadDataError(f"{BIGBENCH_SDIST_URL}: the download differs from the pinned SHA-256 ({e})") from e
    except OSError as e:  # requests' errors are OSErrors
        status = getattr(getattr(e, "response", None), "status_code", None)
        why = (f"the package index refused the file (HTTP {status}): it may no longer serve {BIGBENCH_SDIST}"
               if status is not None else "the package index could not be reached (offline? behind a proxy?)")
        raise SetupError(f"could not download {BIGBENCH_SDIST}: {why}. HHH and TruthfulQA need no download: "
                         f"armlens bundles them (`armlens data list`). For other BIG-bench tasks pass --sdist FILE "
                         f"with a copy of {BIGBENCH_SDIST} (SHA-256 {BIGBENCH_SDIST_SHA256}). ({e})") from e
    return Path(got)


def _cached(dest: Path, verify: bool, tasks: Sequence[str] = ()) -> dict[str, str] | None:
    """The manifest's files if every one is present with its recorded hash (and, with ``verify``, the pinned
    hash) and every task in ``tasks`` was extracted, else None."""
    mpath = dest / MANIFEST
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text())
        files = {k: v["sha256"] for k, v in manifest["files"].items()}
        extracted = manifest.get("tasks", {})
        extra = {k: v["sha256"] for t in tasks for k, v in extracted[t].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    pinned = dict(BIGBENCH_FILES.values())
    if set(files) != set(pinned) or (verify and files != pinned):
        return None
    files.update(extra)
    for rel, sha in files.items():
        if not (dest / rel).is_file() or sha256_file(dest / rel) != sha:
            return None
    return files


def check_task_names(tasks: Sequence[str]) -> list[str]:
    """``tasks`` if each is a plain BIG-bench task folder name (``[A-Za-z0-9_]+``); else a ValueError naming it."""
    bad = [t for t in tasks if not TASK_NAME.fullmatch(t)]
    if bad:
        raise BadInputError(f"--task {bad[0]!r} is not a BIG-bench task name (letters, digits and underscores, as in "
                            "'logical_deduction')")
    return list(dict.fromkeys(tasks))


def extract_members(sdist: Path, dest: Path, verify: bool = True, tasks: Sequence[str] = ()) -> dict[str, str]:
    """Stream the :data:`BIGBENCH_FILES` members of ``sdist``, and every file of each task in ``tasks``
    (``tasks/<task>/...``), into ``dest``; returns layout path -> SHA-256.

    The members are read into memory and written (:func:`armlens.io.atomic_write_files`) only once all are present
    (and, with ``verify``, all match their pinned hashes), so a failed fetch never leaves a half-written data root.
    """
    tasks = check_task_names(tasks)
    prefixes = {f"{_TASKS}/{t}/": t for t in tasks}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.name in BIGBENCH_FILES:
                    layout = BIGBENCH_FILES[member.name][0]
                else:
                    prefix = next((p for p in prefixes if member.name.startswith(p)), None)
                    rel = PurePosixPath(member.name.removeprefix(prefix or ""))
                    if prefix is None or ".." in rel.parts:
                        continue
                    layout = f"tasks/{prefixes[prefix]}/{rel}"
                src = tar.extractfile(member)
                assert src is not None
                blobs[layout] = src.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BadDataError(f"{sdist}: not a readable .tar.gz ({type(e).__name__}: {e})") from e
    found = {layout: hashlib.sha256(data).hexdigest() for layout, data in blobs.items()}
    missing = [m for m, (layout, _) in BIGBENCH_FILES.items() if layout not in found]
    missing += [f"{_TASKS}/{t}/" for t in tasks if not any(k.startswith(f"tasks/{t}/") for k in found)]
    if missing:
        raise BadDataError(f"{sdist}: members missing from the archive: {missing}")
    if verify:
        bad = [f"{layout} (got {found[layout][:12]}..., expected {sha[:12]}...)"
               for layout, sha in BIGBENCH_FILES.values() if found[layout] != sha]
        if bad:
            raise BadDataError(f"{sdist}: extracted files do not match the pinned SHA-256: {bad}")

    def write(tmps: list[str]) -> None:
        for tmp, data in zip(tmps, blobs.values(), strict=True):
            Path(tmp).write_bytes(data)

    atomic_write_files([dest / layout for layout in blobs], write)
    return found


def fetch_bigbench(
    cache: str | Path | None = None,
    sdist: str | Path | None = None,
    keep_sdist: bool = False,
    force: bool = False,
    verify: bool = True,
    show_progress: bool = False,
    tasks: Sequence[str] = (),
) -> FetchResult:
    """Fetch HHH, TruthfulQA and any other ``tasks`` from the ``bigbench==1.0.0`` sdist into ``cache`` (a data root).

    Args:
        cache: destination (default ``$ARMLENS_CACHE/bigbench``, i.e. ``~/.cache/armlens/bigbench``).
        sdist: use this local ``bigbench-1.0.0.tar.gz`` instead of downloading (never deleted).
        keep_sdist: keep the downloaded 358 MB archive in ``<cache>/sdist/`` (default: delete it after extraction).
        force: fetch again even when the cache already holds verified files.
        verify: require the pinned SHA-256 of the sdist and of every extracted file (turn off only for a
            different, trusted build of the archive; the manifest then records ``"verified": false``).
        show_progress: show a progress bar while downloading.
        tasks: other BIG-bench task folders to extract whole, to ``<cache>/tasks/<task>/`` (e.g.
            ``["logical_deduction"]``); no armlens loader reads them: they are files for your own code.

    Returns:
        A :class:`FetchResult`. Raises ValueError on a hash mismatch or a broken archive, RuntimeError when the
        download fails.
    """
    tasks = check_task_names(tasks)
    dest = Path(cache).expanduser() if cache is not None else bigbench_cache_dir()
    if not force and sdist is None:
        files = _cached(dest, verify, tasks)
        if files is not None:
            log.info("%s already holds verified BIG-bench files", dest)
            return FetchResult(dest, files, json.loads((dest / MANIFEST).read_text()).get("sdist_sha256", ""),
                               "cached")
    dest.mkdir(parents=True, exist_ok=True)
    downloaded = sdist is None
    if sdist is not None:
        path, method = Path(sdist).expanduser(), "local-sdist"
        if not path.is_file():
            raise NotFoundError(f"no such sdist: {path}")
    else:
        path, method = download_sdist(dest / "sdist", verify, show_progress), "download"
    sdist_sha = sha256_file(path)
    if verify and sdist_sha != BIGBENCH_SDIST_SHA256:
        raise BadDataError(f"{path}: SHA-256 {sdist_sha} differs from the pinned {BIGBENCH_SDIST_SHA256}")
    files = extract_members(path, dest, verify=verify, tasks=tasks)
    manifest = {
        "source": f"PyPI bigbench=={BIGBENCH_VERSION} sdist ({BIGBENCH_SDIST})",
        "sdist_sha256": sdist_sha,
        "method": method,
        "verified": verify,
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "license": "Apache-2.0 (BIG-bench)",
        "files": {layout: {"member": member, "sha256": files[layout], "bytes": (dest / layout).stat().st_size}
                  for member, (layout, _) in BIGBENCH_FILES.items()},
        "tasks": {t: {k: {"sha256": v, "bytes": (dest / k).stat().st_size} for k, v in files.items()
                      if k.startswith(f"tasks/{t}/")} for t in tasks},
    }
    write_json(dest / MANIFEST, manifest)
    if downloaded and not keep_sdist:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
    log.info("BIG-bench HHH, TruthfulQA%s are in %s (%s)", "".join(f", {t}" for t in tasks), dest, method)
    return FetchResult(dest, files, sdist_sha, method, verify)
