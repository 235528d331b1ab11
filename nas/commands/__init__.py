"""The `widthnas` subcommands, one module each (`add_parser(sub)`, `run(args) -> int`); checks shared
by several commands are in nas/checks.py, options in options.py, held-out validation in validation.py."""
