"""Every command's options are a dataclass; tyro turns it into flags, with the help read from each field's docstring.

A command's options dataclass holds its run-level fields (``data``, ``out``, ``limit``, ...) and nests the real config
dataclasses it configures (``arm: ARMConfig``, ``judge: JudgeConfig``, or is an :class:`~armlens.analysis.grid.
AblationConfig` itself), so each flag's type, choices, default and help come from one definition. Nested fields have
dotted flags (``--arm.reinforce.steps``); a command names short aliases for the ones people use (``--steps``).

:func:`parse` derives, for each command, a subclass of every dataclass in the tree whose field annotations add:

- the field's rule (:func:`armlens.rules.field_rule`): the :class:`~armlens.rules.Rule` the config writes on the
  field (``Annotated[int, INDEX]`` for a seed, ``Annotated[int | None, COUNT_OR_ALL]`` for a limit that takes
  ``all``), else the rule of its type (a count is a **positive integer**, never ``0``; lists are comma-separated and
  apply the element's rule to every element), turned into a tyro constructor that names the flag;
- the help: the field's docstring on one line (``armlens.config.field_docs``);
- the command's aliases, and ``tyro.conf.Suppress`` for fields the command sets itself (a seed it draws).

Every bad value, unknown flag or missing option is one line, ``armlens CMD: error: MESSAGE (see armlens CMD
--help)``, exit status 2, before any data or model loads (:class:`UsageError`), through tyro's public API only: each
field's constructor (a :class:`Rule`, or a tyro ``PrimitiveConstructorSpec`` the field declares in ``Annotated``)
raises it naming the flag as typed; words tyro does not know come back from ``return_unknown_args``; what tyro refuses
itself (a missing option or value) it prints as a box and exits 2, and :func:`parse` reads that box back as one line.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from armlens.errors import ArmlensError
from armlens.rules import Rule, type_rule

T = TypeVar("T")


class UsageError(ArmlensError):
    """Bad command-line input: ``main`` prints it as one line and exits 2."""


def spec(rule: Rule, flag: Callable[[], str] | None = None) -> Any:
    """The tyro constructor of a field read by ``rule``. With ``flag``, a bad word raises :class:`UsageError` naming
    ``flag()`` (the flag as typed), which tyro lets through (it catches only ValueError and TypeError)."""
    from tyro.constructors import PrimitiveConstructorSpec

    def parse(args: list[str]) -> Any:
        return rule.parse(args[0])

    read = parse if flag is None else _naming(parse, flag)
    return PrimitiveConstructorSpec(nargs=1, metavar=rule.metavar, instance_from_str=read,
                                    is_instance=lambda x: True, str_from_instance=lambda x: [rule.show(x)])


def _naming(parse: Callable[[list[str]], Any], flag: Callable[[], str]) -> Callable[[list[str]], Any]:
    """``parse`` with its ValueError for a bad word raised as a :class:`UsageError` naming ``flag()`` (a UsageError
    it raises itself passes through)."""

    def read(args: list[str]) -> Any:
        try:
            return parse(args)
        except ValueError as e:
            raise UsageError(f"argument {flag()}: {' '.join(str(e).split())}") from None

    return read


# ---------------------------------------------------------------------------------------------------- derived types


def _one_line(doc: str) -> str:
    import re

    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc)  # :data:`AXES` -> AXES
    text = text.replace("``", "'")
    return " ".join(text.split())


class _Builder:
    """Derives, for one command, the annotated subclass of each dataclass in its options tree."""

    def __init__(self, aliases: dict[str, str], hidden: Sequence[str], argv: Sequence[str] = ()):
        self.argv = list(argv)
        self.aliases: dict[str, list[str]] = {}
        for alias, path in aliases.items():
            self.aliases.setdefault(path, []).append(alias)
        self.hidden = set(hidden)
        self.used: set[str] = set()

    def derive(self, cls: type, prefix: str = "") -> type:
        import tyro

        from armlens.config import field_docs

        hints = typing.get_type_hints(cls, include_extras=True)
        docs = field_docs(cls)
        fields = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            path = f"{prefix}{f.name}"
            tp = hints[f.name]
            annotated = typing.get_origin(tp) is Annotated
            base_tp = typing.get_args(tp)[0] if annotated else tp
            default = self._default(f)
            if path in self.hidden:
                self.used.add(path)
                fields.append((f.name, Annotated[tp, tyro.conf.Suppress], default))
                continue
            meta: list[Any] = []
            names = [f"--{path.replace('_', '-')}", *self.aliases.get(path, [])]
            sub_cls = base_tp if dataclasses.is_dataclass(base_tp) else None
            if annotated and sub_cls is None:  # the field's own constructor: its errors name the flag too
                tp = Annotated[(base_tp, *(self._named(m, names) for m in typing.get_args(tp)[1:]))]
            if sub_cls is not None:
                derived = self.derive(sub_cls, f"{path}.")
                tp = Annotated[(derived, *typing.get_args(tp)[1:])] if annotated else derived
                factory = f.default_factory if f.default_factory is not dataclasses.MISSING else (lambda d=f.default: d)
                default = dataclasses.field(default_factory=lambda fac=factory, d=derived: convert(fac(), d),
                                            **({"kw_only": True} if f.kw_only is True else {}))
            elif not annotated:
                rule = type_rule(tp)
                if rule is not None:
                    meta.append(spec(rule, lambda names=names: _flag_used(names, self.argv)))
            doc = docs.get(f.name, "")
            arg: dict[str, Any] = {"help": _one_line(doc)} if doc else {}
            if f.default is None and "default" in doc.lower():  # the docstring says what None does
                arg["help_behavior_hint"] = ""
            if path in self.aliases:
                self.used.add(path)
                arg["aliases"] = tuple(self.aliases[path])
            if arg:
                meta.append(tyro.conf.arg(**arg))
            fields.append((f.name, Annotated[(tp, *meta)] if meta else tp, default))
        derived_cls = dataclasses.make_dataclass(cls.__name__, fields, bases=(cls,),
                                                 frozen=cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
        derived_cls.__doc__ = cls.__doc__
        derived_cls.__module__ = cls.__module__
        derived_cls.__qualname__ = cls.__qualname__
        derived_cls.__armlens_base__ = cls  # type: ignore[attr-defined]
        return derived_cls

    def _named(self, marker: Any, names: list[str]) -> Any:
        """``marker`` (an ``Annotated`` entry), a :class:`Rule` or tyro constructor spec made to raise
        :class:`UsageError` naming the flag the user typed; anything else as it is."""
        from tyro.constructors import PrimitiveConstructorSpec

        def flag() -> str:
            return _flag_used(names, self.argv)

        if isinstance(marker, Rule):
            return spec(marker, flag)
        if isinstance(marker, PrimitiveConstructorSpec) and marker.nargs == 1:
            return dataclasses.replace(marker, instance_from_str=_naming(marker.instance_from_str, flag))
        return marker

    @staticmethod
    def _default(f: dataclasses.Field) -> Any:
        kw = {"kw_only": True} if f.kw_only is True else {}
        if f.default_factory is not dataclasses.MISSING:
            return dataclasses.field(default_factory=f.default_factory, **kw)
        if f.default is not dataclasses.MISSING:
            return dataclasses.field(default=f.default, **kw)
        return dataclasses.field(**kw)


def convert(obj: Any, cls: type[T]) -> T:
    """``obj`` (a dataclass instance) as an instance of ``cls``, field by field, nested config dataclasses included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(obj, f.name)
        tp = hints[f.name]
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(value):
            value = convert(value, tp)  # type: ignore[arg-type]
        kwargs[f.name] = value
    return cls(**kwargs)


def plain(obj: Any) -> Any:
    """A parsed (derived) options instance as an instance of the command's own dataclass."""
    base = getattr(type(obj), "__armlens_base__", type(obj))
    return convert(obj, base)


# ---------------------------------------------------------------------------------------------------- parsing


def _flag_used(names: Sequence[str], argv: Sequence[str]) -> str:
    """Which of an option's ``names`` the user typed (the first name if none)."""
    for token in argv:
        key = token.split("=", 1)[0].replace("_", "-")
        for name in names:
            if key == name.replace("_", "-"):
                return name
    return names[0] if names else "?"


def _tyro_error(text: str, prog: str) -> str:
    """One line from the error tyro printed: a box holding a title, the message, a rule, then pointers to the help."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colours, if any
    lines = [line.strip().strip("\u2502\u2503|\u256d\u256e\u2570\u256f").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    body: list[str] = []
    for line in lines[1:]:  # after the title
        if set(line) <= set("-\u2500\u2501") or line.startswith(("For full helptext", "Argument helptext")):
            break
        body.append(line)
    if body and body[0].startswith("Missing from"):  # each missing option: its flag line, then its help
        missing = [line for line in body[1:] if line.startswith("-") or (line.isupper() and " " not in line)]
        return f"the following arguments are required: {', '.join(line.split()[0] for line in missing)}"
    return " ".join(" ".join(body).split()) or " ".join(" ".join(lines).split()) or "invalid arguments"


def parse(options: type[T], argv: Sequence[str], *, prog: str, description: str | None = None,
          aliases: dict[str, str] | None = None, hidden: Sequence[str] = ()) -> T:
    """``argv`` read into an instance of the dataclass ``options``; ``aliases`` maps extra flag names to dotted field
    paths (``{"--steps": "arm.reinforce.steps"}``), ``hidden`` lists paths the command sets itself.

    Bad input raises :class:`UsageError` (one line); ``--help`` prints the help and exits 0."""
    import contextlib
    import io

    import tyro

    builder = _Builder(aliases or {}, hidden, argv)
    derived = builder.derive(options)
    unknown = (set(builder.aliases) | builder.hidden) - builder.used
    if unknown:  # a typo in a command's table must fail the tests, not silently drop a flag
        raise RuntimeError(f"{prog}: no field at {sorted(unknown)}")

    # A bad value raises UsageError from its field's constructor; unknown words come back to be named here; what tyro
    # refuses itself (a missing option or value, a bad positional) it prints as a box on stderr and exits 2: that box
    # is read back as one line.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            parsed, unknown_words = tyro.cli(
                derived, prog=prog, description=description or _one_line(options.__doc__ or ""), args=list(argv),
                config=(tyro.conf.FlagCreatePairsOff,), return_unknown_args=True)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            sys.stderr.write(printed.getvalue())
            raise
        raise UsageError(_tyro_error(printed.getvalue(), prog)) from None
    sys.stderr.write(printed.getvalue())
    if unknown_words:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown_words)}")
    return plain(parsed)


def print_usage_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
