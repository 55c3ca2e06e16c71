"""How a config field is read from its one command-line word: a :class:`Rule` (parse, metavar, how the default is
shown), written on the field itself as ``typing.Annotated`` metadata, and the rule of a field's type where it has none.

The configs (``ARMConfig``, ``ReinforceConfig``, ``JudgeConfig``, ``EvalConfig``, ``AblationConfig``, ...) import this
module to say, on each field, what its flag accepts; :mod:`armlens.cli.options` reads the rules and hands them to tyro.
Nothing here imports tyro or the command line, so a config carries its rules without either.

The rule of a type (:func:`type_rule`), the one rule of every count on the command line:

- an ``int`` is a count (``--seeds``, ``--steps``, ``--n-*``, ``--k-masks``, ...): a **positive integer**; an ``int |
  None`` also takes the word ``none`` (the documented automatic choice);
- a float is a finite number; a string, itself; a ``Literal`` of strings, one of its words;
- lists and tuples are comma-separated (``--fewshot-per-criterion 1,2,4``), each element read by its type's rule.

A field whose rule differs says so with a rule from here: a seed, a layer index or an optional pool where 0 means none
is ``Annotated[int, INDEX]``; a test-pair limit that may be ``all`` is ``Annotated[int | None, COUNT_OR_ALL]``; and so
on. Every parser raises ``ValueError`` with a message that follows the flag's name.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Union

ALL_WORDS = ("all",)
"""Words a count option accepts for "everything" (``--max-field-tokens`` also takes ``none``: never cut)."""


# ---------------------------------------------------------------------------------------------------- value parsers


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def positive(text: str) -> int:
    """A positive integer (1, 2, ...)."""
    n = _int(text)
    if n < 1:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return n


def _positive_or(text: str, words: tuple[str, ...], shown: str) -> int | None:
    """A positive integer, or one of ``words`` (returned as None); the error names ``shown``."""
    if text.strip().lower() in words:
        return None
    try:
        return positive(text)
    except ValueError:
        raise ValueError(f"must be a positive integer or {shown!r}, got {text!r}") from None


def count_or_all(text: str) -> int | None:
    """A positive integer, or ``all`` (returned as None)."""
    return _positive_or(text, ALL_WORDS, "all")


def tokens_or_none(text: str) -> int | None:
    """A positive token count, or ``none`` / ``all`` (returned as None: never cut)."""
    return _positive_or(text, ("none", *ALL_WORDS), "none")


def positive_or_none(text: str) -> int | None:
    """A positive integer, or ``none`` (returned as None: the documented automatic choice)."""
    return _positive_or(text, ("none",), "none")


def index(text: str) -> int:
    """A non-negative integer: a seed, a layer index, or an optional pool where 0 means none."""
    n = _int(text)
    if n < 0:
        raise ValueError(f"must be 0 or a positive integer, got {text!r}")
    return n


def index_or_none(text: str) -> int | None:
    """A non-negative integer, or ``none``."""
    if text.strip().lower() == "none":
        return None
    return index(text)


def number(text: str) -> float:
    """A finite number."""
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, got {text!r}")
    return x


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    x = number(text)
    if not 0 <= x < 1:
        raise ValueError(f"must be at least 0 and below 1, got {text!r}")
    return x


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a temperature, a penalty, a memory budget)."""
    x = number(text)
    if x < 0:
        raise ValueError(f"must be a number >= 0, got {text!r}")
    return x


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a sampling temperature)."""
    x = number(text)
    if x <= 0:
        raise ValueError(f"must be a number > 0, got {text!r}")
    return x


def list_of(item: Callable[[str], Any], *, none_word: bool = False) -> Callable[[str], list]:
    """A comma-separated list whose elements each pass ``item`` (at least one element; ``none_word``: the word
    ``none`` is the empty list)."""

    def parse(text: str) -> list:
        if none_word and text.strip().lower() == "none":
            return []
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"must be a comma-separated list, got {text!r}")
        out = []
        for p in parts:
            try:
                out.append(item(p))
            except ValueError as e:
                raise ValueError(f"{p!r} in {text!r}: {e}") from None
        return out

    parse.__name__ = f"list of {getattr(item, '__name__', 'values')}"
    return parse


def list_or_all(item: Callable[[str], Any]) -> Callable[[str], list | None]:
    """Like :func:`list_of` (``none``: the empty list), and ``all`` for None (no restriction)."""
    items = list_of(item, none_word=True)

    def parse(text: str) -> list | None:
        return None if text.strip().lower() in ALL_WORDS else items(text)

    parse.__name__ = items.__name__
    return parse


def choice(text: str, choices: tuple[str, ...], *, sep: str = " ") -> str:
    """``text`` if it is one of ``choices``."""
    if text not in choices:
        raise ValueError(f"invalid choice{sep}{text!r} (choose from {', '.join(choices)})")
    return text


# ---------------------------------------------------------------------------------------------------- rules


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one field is read from its one command-line word and shown as a default."""

    parse: Callable[[str], Any]
    """The word to the value; raises ``ValueError`` saying what is wrong."""
    metavar: str
    """The value's placeholder in ``--help`` (``INT``, ``INT|all``, ``X,...``)."""
    show: Callable[[Any], str] = str
    """The default as ``--help`` shows it."""


def show_none(word: str) -> Callable[[Any], str]:
    """Shows None as ``word`` (``all``, ``none``), anything else as itself."""
    return lambda x: word if x is None else str(x)


def show_list(x: Any) -> str:
    """Shows a list comma-separated, an empty list or None as ``none``."""
    return "none" if x is None else (",".join(str(v) for v in x) if x else "none")


def tuple_of(item: Callable[[str], Any], *, none_word: bool = False) -> Callable[[str], tuple]:
    """:func:`list_of`, as a tuple."""
    many = list_of(item, none_word=none_word)

    def parse(text: str) -> tuple:
        return tuple(many(text))

    parse.__name__ = many.__name__
    return parse


INDEX = Rule(index, "INT")
"""A seed, a layer index, or an optional pool or interval where 0 means none (0, 1, 2, ...)."""
INDEX_OR_NONE = Rule(index_or_none, "INT|none", show_none("none"))
""":data:`INDEX`, or ``none`` (the documented automatic choice)."""
INDICES_OR_NONE = Rule(tuple_of(index, none_word=True), "X,...", show_list)
"""Layer indices, comma-separated (``none``: the empty tuple)."""
COUNT_OR_ALL = Rule(count_or_all, "INT|all", show_none("all"))
"""A positive count, or ``all`` (None: no limit)."""
TOKENS_OR_NONE = Rule(tokens_or_none, "INT|none", show_none("none"))
"""A positive token count, or ``none`` (None: never cut)."""
NON_NEGATIVE = Rule(non_negative_float, "FLOAT")
"""A number >= 0 (a temperature that may be 0, a penalty, a memory budget, a GPU share)."""
POSITIVE_FLOAT = Rule(positive_float, "FLOAT")
"""A number > 0 (a learning rate, a sampling temperature)."""
POSITIVE_FLOATS = Rule(list_of(positive_float), "X,...", show_list)
"""Numbers > 0, comma-separated (the learning rates of an axis)."""
FRACTIONS = Rule(list_of(fraction), "X,...", show_list)
"""Numbers in [0, 1), comma-separated (shares of an axis)."""

_INT = Rule(positive, "INT")
_FLOAT = Rule(number, "FLOAT")
_TEXT = Rule(str, "STR", show_none("none"))


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True  # noqa: UP007
    return tp, False


def type_rule(tp: Any) -> Rule | None:
    """The rule of a field of type ``tp`` that names none (``None``: tyro's own, for bools, optional Literals and
    dataclasses)."""
    inner, optional = _strip_optional(tp)
    if inner is int:
        return Rule(positive_or_none, "INT|none", show_none("none")) if optional else _INT
    if inner is float and not optional:
        return _FLOAT
    if inner is str:
        return _TEXT
    origin = typing.get_origin(inner)
    if origin is Literal and not optional and all(isinstance(c, str) for c in typing.get_args(inner)):
        words = tuple(typing.get_args(inner))
        return Rule(lambda text, words=words: choice(text, words, sep=": "), "{" + ",".join(words) + "}")
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        item = args[0] if args else str
        if typing.get_origin(item) is Literal:
            choices = tuple(str(c) for c in typing.get_args(item))
            parse: Any = lambda text, choices=choices: choice(text, choices)  # noqa: E731
            item = str
        else:
            parse = {int: positive, float: number, str: str}.get(item)
        if parse is None:
            return None
        if origin is tuple:
            return Rule(tuple_of(parse, none_word=optional), "X,...", show_list)
        return Rule(list_of(parse, none_word=optional), {int: "INT,...", float: "X,...", str: "STR,..."}[item],
                    show_list)
    return None


def field_rule(tp: Any) -> Rule | None:
    """The rule of a field annotated ``tp`` (with ``typing.get_type_hints(..., include_extras=True)``): the
    :class:`Rule` in its ``Annotated`` metadata, else its type's (:func:`type_rule`)."""
    if typing.get_origin(tp) is Annotated:
        for marker in typing.get_args(tp)[1:]:
            if isinstance(marker, Rule):
                return marker
        tp = typing.get_args(tp)[0]
    return type_rule(tp)


# ------------------------------------------------------------------------------------------- constructed configs

def bad_fields(config: Any, *, counts: Sequence[str] = (), indices: Sequence[str] = (),
               positive: Sequence[str] = (), non_negative: Sequence[str] = (), fractions: Sequence[str] = (),
               finite: Sequence[str] = ()) -> list[str]:
    """``name=value`` for each named field of ``config`` (built in Python, where no flag's rule has read it) that
    breaks its bound, in the order given: ``counts`` integers >= 1, ``indices`` integers >= 0, ``positive`` finite
    numbers > 0, ``non_negative`` finite numbers >= 0, ``fractions`` finite numbers in [0, 1), ``finite`` any finite
    number. A bool is neither an integer nor a number here."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    checks: list[tuple[Sequence[str], Callable[[Any], bool]]] = [
        (counts, lambda v: integer(v) and v >= 1), (indices, lambda v: integer(v) and v >= 0),
        (positive, lambda v: number(v) and v > 0), (non_negative, lambda v: number(v) and v >= 0),
        (fractions, lambda v: number(v) and 0 <= v < 1), (finite, number)]
    return [f"{name}={getattr(config, name)!r}" for names, ok in checks for name in names
            if not ok(getattr(config, name))]
