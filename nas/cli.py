"""The `widthnas` command line: one subcommand per pipeline stage, each in its module under
nas/commands/ (`add_parser(sub)` and `run(args)`)."""
from __future__ import annotations

import argparse
import sys

from .checks import UserError
from .commands import (curve, evaluate, export, fit, ladder, profile, profiles, run, search, space, train,
                       validate)

# by the subcommand each adds (its module's name), in the order `widthnas --help` lists them
COMMANDS = {c.__name__.rsplit(".", 1)[1]: c
            for c in (space, profile, fit, validate, ladder, profiles, search, train, evaluate, export, run, curve)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="widthnas", description="Hardware-aware channel-width search (AOWS).")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded in what a command writes
    try:
        return COMMANDS[args.cmd].run(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
