"""Subcommands added by later stages register here (search, train, evaluate, export, run)."""


def register(sub) -> None:
    pass
