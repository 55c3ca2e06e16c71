"""One strict way to read every armlens config from a dict (JSON results, saved ARMs, CLI overrides).

Every config is a dataclass whose fields carry their type and a docstring; :func:`from_dict` builds one from a
plain dict, recursing into nested config dataclasses and turning lists back into tuples where the field is a tuple.
An unknown key is an error naming the config and the key (a typo must never be dropped silently), and
:func:`replace_path` sets a nested field by its dotted path (``"reinforce.steps"``), which is how an ablation cell
says "the reference ARM with one setting changed".
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, TypeVar

from armlens.errors import BadInputError

T = TypeVar("T")


def _dataclass_type(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``), or ``None``."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(tp))


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls(**d)``, strictly: unknown keys are an error; nested config dicts become their dataclasses."""
    if not isinstance(d, dict):
        raise BadInputError(f"{cls.__name__} needs a dict, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - fields)
    if unknown:
        raise BadInputError(f"unknown {cls.__name__} field(s): {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for key, value in d.items():
        tp = hints[key]
        sub = _dataclass_type(tp)
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value)
        elif _is_tuple(tp) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """``dataclasses.asdict(obj)``, except that a nested config with a ``to_dict`` of its own is written by it: a
    config that leaves a later field out at its default (``ARMConfig.soft``) leaves it out wherever it is nested, so
    the settings and keys written before that field existed still match."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        own = getattr(value, "to_dict", None)
        return own() if callable(own) else to_dict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def replace_path(obj: T, path: str, value: Any) -> T:
    """A copy of the config ``obj`` with the field at the dotted ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    if head not in {f.name for f in dataclasses.fields(obj)}:  # type: ignore[arg-type]
        raise BadInputError(f"{type(obj).__name__} has no field {head!r} (path {path!r})")
    if rest:
        value = replace_path(getattr(obj, head), rest, value)
    return dataclasses.replace(obj, **{head: value})  # type: ignore[type-var]


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string literal under it) in the dataclass ``cls`` and its bases; a
    subclass's docstring wins. Fields without one are absent. This is the help text of the command line."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # a class made at run time: its bases' docstrings stand
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        stmts = body.body
        for stmt, nxt in zip(stmts, stmts[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs
