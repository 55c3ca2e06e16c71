"""One strict way to read every armlens config from a dict (JSON results, saved ARMs, CLI overrides).

Every config is a dataclass whose fields carry their type and a docstring; :func:`from_dict` builds one from a
plain dict, recursing into nested config dataclasses and turning lists back into tuples where the field is a tuple.
An unknown key is an error naming the config and the key (a typo must never be dropped silently), and
:func:`replace_path` sets a nested field by its dotted path (``"reinforce.steps"``), which is how an ablation cell
says "the reference ARM with one setting changed".

A config may name some of its nested configs *flat sections* (a ``flat_sections`` class attribute): :func:`to_dict`
writes the fields of such a section ``icl`` as ``icl_shots``, ``icl_cache_demos``, ... in its place, and
:func:`from_dict` reads them back (or the section as a nested dict). That is how ``JudgeConfig`` groups each method's
settings in a section of its own while the ``config.json`` files and unit keys written before keep their flat keys.
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


def flat_sections(cls: type) -> dict[str, type]:
    """The flat sections of the config class ``cls`` (its ``flat_sections`` attribute): ``{field: section class}``."""
    names = getattr(cls, "flat_sections", ())
    if not names:
        return {}
    hints = typing.get_type_hints(cls)
    out = {}
    for name in names:
        sub = _dataclass_type(hints.get(name))
        if sub is None:
            raise TypeError(f"{cls.__name__}.flat_sections names {name!r}, which is not a config field")
        out[name] = sub
    return out


def flat_keys(cls: type) -> dict[str, tuple[str, str]]:
    """``{"{section}_{field}": (section, field)}`` for every field of every flat section of ``cls``."""
    out = {f"{s}_{f.name}": (s, f.name) for s, sub in flat_sections(cls).items()
           for f in dataclasses.fields(sub)}
    clash = sorted(set(out) & {f.name for f in dataclasses.fields(cls)})
    if clash:
        raise TypeError(f"{cls.__name__}: the flat keys {clash} are also fields of its own")
    return out


def serial_key(cls: type, path: str) -> str:
    """The key that :func:`to_dict` writes the field at ``path`` of a ``cls`` under: a field of ``cls`` (``"seed"``)
    is its own key, a field of a flat section (``"icl.shots"``) is ``"icl_shots"``."""
    head, _, rest = path.partition(".")
    if head not in {f.name for f in dataclasses.fields(cls)}:
        raise BadInputError(f"{cls.__name__} has no field {head!r} (path {path!r})")
    if not rest:
        return head
    sub = flat_sections(cls).get(head)
    if sub is None or rest not in {f.name for f in dataclasses.fields(sub)}:
        raise BadInputError(f"{path!r} is not a field of a flat section of {cls.__name__}")
    return f"{head}_{rest}"


def _nest(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with the flat keys of ``cls``'s flat sections (:func:`flat_keys`) gathered into a dict per section,
    merged with that section's nested dict where ``d`` has one too (a field given both ways is an error)."""
    flat = flat_keys(cls)
    if not flat or not set(d) & set(flat):
        return d
    out: dict[str, Any] = {}
    gathered: dict[str, dict[str, Any]] = {}
    for key, value in d.items():
        if key in flat:
            section, name = flat[key]
            gathered.setdefault(section, {})[name] = value
        else:
            out[key] = value
    for section, values in gathered.items():
        given = out.get(section, {})
        if not isinstance(given, dict):
            raise BadInputError(f"{cls.__name__}: {section} is given whole and as {sorted(values)} too")
        twice = sorted(set(given) & set(values))
        if twice:
            raise BadInputError(f"{cls.__name__}: {', '.join(f'{section}.{k}' for k in twice)} given twice (in "
                                f"{section} and as {', '.join(f'{section}_{k}' for k in twice)})")
        out[section] = {**given, **values}
    return out


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls(**d)``, strictly: unknown keys are an error; nested config dicts become their dataclasses; the fields of
    a flat section may be given flat (``icl_shots``) or nested (``{"icl": {"shots": ...}}``)."""
    if not isinstance(d, dict):
        raise BadInputError(f"{cls.__name__} needs a dict, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - fields - set(flat_keys(cls)))
    if unknown:
        raise BadInputError(f"unknown {cls.__name__} field(s): {unknown}; known: {sorted(fields)}")
    d = _nest(cls, d)
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
    the settings and keys written before that field existed still match; and a flat section's fields are written in
    its place as ``{section}_{field}`` (:func:`flat_sections`)."""
    flat = flat_sections(type(obj))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = _plain(getattr(obj, f.name))
        if f.name in flat:
            out.update({f"{f.name}_{k}": v for k, v in value.items()})
        else:
            out[f.name] = value
    return out


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
