"""The `widthnas` subcommands, one module each, in the order `widthnas --help` lists them.

Each module has `add_parser(sub)`, which adds its subcommand to the parser's subparsers, and
`run(args) -> int`, which runs it. Checks shared by several commands live in nas/checks.py; helpers
shared by several commands here in options.py (space and widths options) and validation.py (fit and
validate's held-out validation).
"""
