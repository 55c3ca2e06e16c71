"""One rule for every numeric command-line option, applied by argparse before any command loads a model.

- A count (``--limit``, ``--seeds``, ``--steps``, ``--n-*``, ``--k-masks``, ...) is a **positive integer**;
  where "everything" makes sense it may instead be the word ``all`` (:func:`count_or_all`), never ``0`` or a
  negative number.
- A seed, a first seed or a layer index is a non-negative integer (:func:`index`); a pool that may be empty
  (``fit --select``) is a non-negative integer with 0 meaning none (:func:`count_or_zero`).
- Lists (``--shots 1,2,4``) apply the same rule to every element.

Each type raises ``argparse.ArgumentTypeError``; :class:`Parser` prints that as one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

ALL_WORDS = ("all",)
"""Words a count option accepts for "everything" (``--max-field-tokens`` also takes ``none``: never cut)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``armlens CMD: error: MESSAGE (see armlens CMD --help)``."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive(text: str) -> int:
    """A positive integer (1, 2, ...)."""
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _positive_or(text: str, words: tuple[str, ...], shown: str) -> int | None:
    """A positive integer, or one of ``words`` (returned as None); the error names ``shown``."""
    if text.strip().lower() in words:
        return None
    try:
        return positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or {shown!r}, got {text!r}") from None


def count_or_all(text: str) -> int | None:
    """A positive integer, or ``all`` (returned as None)."""
    return _positive_or(text, ALL_WORDS, "all")


def tokens_or_none(text: str) -> int | None:
    """A positive token count, or ``none`` / ``all`` (returned as None: never cut)."""
    return _positive_or(text, ("none", *ALL_WORDS), "none")


def index(text: str) -> int:
    """A non-negative integer: a seed or a layer index."""
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text!r}")
    return n


def count_or_zero(text: str) -> int:
    """A non-negative count where 0 means "none" (an optional pool)."""
    return index(text)


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text!r}")
    return x


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a temperature)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return x


def list_of(item: Callable[[str], object]) -> Callable[[str], list]:
    """A comma-separated list whose elements each pass ``item`` (at least one element)."""

    def parse(text: str) -> list:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"must be a comma-separated list, got {text!r}")
        out = []
        for p in parts:
            try:
                out.append(item(p))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"{p.strip()!r} in {text!r}: {e}") from None
        return out

    parse.__name__ = f"list of {getattr(item, '__name__', 'values')}"
    return parse
