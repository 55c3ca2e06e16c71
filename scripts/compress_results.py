"""Compress the per-item result files of committed results folders to the gzip form armlens now writes.

    .venv/bin/python scripts/compress_results.py [FOLDER ...]   (default: experiments)
    .venv/bin/python scripts/compress_results.py --check        (list what is left, exit 1 if anything is)

The per-item files (every eval unit's ``items.jsonl``, each seed's ``split.json``, an ablation's
``cells/*/*/seed<N>.json`` and ``selection-*.json`` histories) are most of the bytes a clone of the repository
carries; armlens writes them as ``.gz`` since, and reads either form (``armlens.io.resolve_compressed``). This replaces
each plain file by its ``.gz`` form, written as armlens' writers write it (``armlens.io.gzip_bytes``: no file name, a
zero time stamp, so the bytes are the ones a rerun of the folder would produce) and read back to check that it
decompresses to the original bytes before the original is removed. A ``.gz`` already beside a plain file must hold the
same bytes (then only the plain file goes); any difference stops the script with nothing of that file removed.
Running it again changes nothing. Summaries, result records and figures stay plain.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from armlens.io import GZ, atomic_write, gzip_bytes

PATTERNS = ("items.jsonl", "split.json", "selection-*.json")
"""Per-item files, by name, anywhere under a folder."""
CELL = re.compile(r"seed\d+\.json")
"""An ablation cell's record (per-pair scores), by name, inside a ``cells/`` tree."""


def per_item_files(folder: Path) -> Iterator[Path]:
    """The plain per-item files under ``folder``, sorted (their ``.gz`` forms are not listed)."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):  # .tmp files of a writer, the lock
            continue
        name = path.name
        if any(fnmatch.fnmatchcase(name, p) for p in PATTERNS) or (CELL.fullmatch(name) and "cells" in path.parts):
            yield path


def compress_file(path: Path) -> tuple[int, int]:
    """Replace ``path`` by ``path.gz`` (see the module docstring); returns (bytes before, bytes after)."""
    data = path.read_bytes()
    gz = path.with_name(path.name + GZ)
    packed = gzip_bytes(data)
    if gz.exists():
        if gzip.decompress(gz.read_bytes()) != data:
            raise SystemExit(f"{gz} exists and holds other content than {path}; resolve by hand")
        packed = gz.read_bytes()
    else:
        atomic_write(gz, packed)
    if gzip.decompress(gz.read_bytes()) != data:  # read back from disk, not from memory
        gz.unlink()
        raise SystemExit(f"{gz} does not decompress to {path}'s bytes; {path} kept")
    path.unlink()
    return len(data), len(packed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", default=["experiments"], help="results folders (default: experiments)")
    parser.add_argument("--check", action="store_true", help="change nothing; list plain per-item files, exit 1 if any")
    args = parser.parse_args(argv)
    todo = [p for f in args.folders for p in per_item_files(Path(f))]
    if args.check:
        for p in todo:
            print(p)
        print(f"{len(todo)} per-item file(s) not compressed", file=sys.stderr)
        return 1 if todo else 0
    before = after = 0
    for p in todo:
        b, a = compress_file(p)
        before, after = before + b, after + a
    print(f"compressed {len(todo)} file(s): {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
