"""The ``armlens`` command line: one entry point, one module per command group.

Each command is a :class:`Command`: an options dataclass (run-level fields, and the config dataclasses it configures
nested in it), a function that runs it, and its short flag aliases. :mod:`armlens.cli.options` turns the dataclass into
flags with tyro, so a flag's type, choices, default and help come from the field's one definition. ``armlens --help``
and ``armlens data --help`` import no command module (they are instant); a command's own ``--help`` imports its
configs.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

DESCRIPTION = "armlens: a workbench for Activation Reward Models (few-shot reward models from attention heads)."


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``armlens`` command."""

    options: type
    """The options dataclass (its docstring is the command's description, its fields' docstrings the flags' help)."""
    run: Callable[[Any], int]
    """Runs the command on the parsed options; returns the exit status."""
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    """Short flags: ``{"--steps": "arm.reinforce.steps"}`` (dotted field paths in ``options``)."""
    hidden: tuple[str, ...] = ()
    """Field paths the command sets itself (not flags)."""


COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("armlens.cli.info",
             "print a model's layers, heads, d_head, key/value heads, context and answer tokens "
             "(--memory: a fit's memory plan)"),
    "data list": ("armlens.cli.data", "list the registered datasets"),
    "data stats": ("armlens.cli.data",
                   "pairs per subset, response lengths, share of pairs with the shorter chosen"),
    "data fetch": ("armlens.cli.data", "BIG-bench task files from the bigbench sdist (HHH and TruthfulQA come bundled)"),
    "fit": ("armlens.cli.arm", "fit an Activation Reward Model on a seeded few-shot draw and save it"),
    "score": ("armlens.cli.arm", "score a dataset's pairs with a saved ARM (pairs used to fit it are left out)"),
    "bench": ("armlens.cli.bench", "time the last-token fast path against one full forward per head mask"),
    "eval": ("armlens.cli.eval",
             "evaluate the ARM and baselines on datasets over seeds (accuracy, CIs, paired tests, bias suite)"),
    "ablate": ("armlens.cli.analysis",
               "run the stage-ablation grid (resumable) and save tidy results per cell and seed"),
    "heads": ("armlens.cli.heads",
              "which heads an ARM needs and what they do: a minimal set, single heads, direct logit attribution"),
    "figures": ("armlens.cli.analysis",
                "write every analysis figure (PNG + interactive HTML) from saved ablation results"),
    "demo": ("armlens.cli.demo", "the main job: ARM vs zero-shot and few-shot judges on HHH, with intervals"),
    "bestofn": ("armlens.cli.bestofn",
                "best-of-N: what the ARM and the judges select among sampled responses (length, formatting, tone)"),
}
"""Every command, in ``--help`` order: (module holding its :class:`Command`, one line of help)."""

GROUPS = {"data": "list, inspect and fetch preference datasets"}
"""Words that only group commands (``armlens data``)."""

_COMMAND_MODULES = list(dict.fromkeys(module for module, _ in COMMANDS.values()))


def command(name: str) -> Command:
    """The :class:`Command` called ``name`` (``"fit"``, ``"data stats"``)."""
    return importlib.import_module(COMMANDS[name][0]).COMMANDS[name]


def _help(group: str | None = None) -> str:
    names = [n for n in COMMANDS if group is None or n.startswith(f"{group} ")]
    if group is None:
        lines = ["usage: armlens [-h] [-v] COMMAND [OPTIONS]", "", DESCRIPTION, "", "commands:"]
    else:
        lines = [f"usage: armlens {group} [-h] COMMAND [OPTIONS]", "", GROUPS[group], "", "commands:"]
    width = max(len(n) for n in names) + 2
    lines += [f"  {n:<{width}}{COMMANDS[n][1]}" for n in names]
    lines += ["", "options:", "  -h, --help     show this help message and exit"]
    if group is None:
        lines.append("  -v, --verbose  log debug messages (and show tracebacks)")
    lines += ["", f"`armlens {group + ' ' if group else ''}COMMAND --help` lists a command's options."]
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> tuple[str, Any]:
    """``(command name, its parsed options)`` from the words after ``armlens`` (and its ``-v``); for tests and tools.

    Raises :class:`armlens.cli.options.UsageError` on bad input; ``--help`` prints and exits 0."""
    from armlens.cli.options import UsageError
    from armlens.cli.options import parse as parse_options

    argv = list(argv)
    words = argv[:1]
    if words and words[0] in GROUPS:
        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            print(_help(words[0]))
            raise SystemExit(0)
        words = argv[:2]
    name = " ".join(words)
    if name not in COMMANDS:
        group = words[0] in GROUPS
        choices = ", ".join(n for n in COMMANDS if (n.split()[0] == words[0]) == group)
        raise UsageError(f"unknown command {name!r}; choose from {choices}")
    cmd = command(name)
    return name, parse_options(cmd.options, argv[len(words):], prog=f"armlens {name}", aliases=cmd.aliases,
                               hidden=cmd.hidden)


def main(argv: Sequence[str] | None = None) -> int:
    from armlens import __version__
    from armlens.cli.options import UsageError, print_usage_error
    from armlens.errors import ArmlensError

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv.pop(0)
    if not argv:  # no command: the help, as a usage error
        print(_help(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_help())
        return 0
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    words = " ".join(argv[:2]) if argv[0] in GROUPS else argv[0]
    try:
        name, options = parse(argv)
    except UsageError as e:
        prog = f"armlens {words}" if words in COMMANDS else "armlens"
        print_usage_error(prog, str(e))
        raise SystemExit(2) from None
    from armlens.cli.common import (
        INTERRUPTED_EXIT,
        ModelFlags,
        interrupt_message,
        on_interrupt,
        show_warnings,
    )

    on_interrupt(None)
    try:
        if isinstance(options, ModelFlags):
            options.check()
        with show_warnings(name):
            return int(command(name).run(options) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line saying what finished and how to resume, no traceback
        if verbose:
            raise
        lead = "\n" if sys.stderr.isatty() else ""  # end a progress bar's line first
        print(lead + interrupt_message(name), file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except ArmlensError as e:  # what armlens refuses on purpose: one line
        if verbose:
            raise
        print(f"armlens {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception:  # anything else is a bug in armlens: its traceback, and a request to report it
        traceback.print_exc()
        print(f"armlens {name}: internal error (a bug in armlens {__version__}); please report it with the command "
              "line and the traceback above", file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """An error's message on one line (a library's message may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
