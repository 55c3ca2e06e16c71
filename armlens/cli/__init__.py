"""The ``armlens`` command line: one entry point, one module per command group.

Each module in this package exposes ``add_parser(subparsers)``; it registers its subcommand(s) and sets
``func`` on the parser so that ``main`` can dispatch. Heavy imports (torch, transformers) happen inside the
command functions, so ``armlens --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command modules, in the order they appear in --help.
_COMMAND_MODULES = [
    "armlens.cli.info",
    "armlens.cli.data",
    "armlens.cli.arm",
    "armlens.cli.bench",
    "armlens.cli.eval",
    "armlens.cli.analysis",
    "armlens.cli.demo",
]


def build_parser() -> argparse.ArgumentParser:
    from armlens.cli.options import Parser

    parser = Parser(
        prog="armlens",
        description="armlens: a workbench for Activation Reward Models (few-shot reward models from attention heads).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from armlens.cli.common import INTERRUPTED_EXIT, interrupt_message

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line saying what finished and how to resume, no traceback
        if args.verbose:
            raise
        lead = "\n" if sys.stderr.isatty() else ""  # end a progress bar's line first
        print(lead + interrupt_message(args), file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # user-facing errors: one clear line
        if args.verbose:
            raise
        text = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"armlens {args.command}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
