"""The run's log: every message in full in `<run>/run.log`, a short line of it on the terminal.

A newcomer reads the terminal at a glance; the explanations (why a margin, what another machine's
profile means) stay in run.log and report.md, where the terminal line points."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

WIDTH = 150  # characters per terminal line; longer messages are cut at a clause and point to run.log
LOG_NAME = "run.log"


def short(msg: str, width: int = WIDTH, pointer: str = f" … ({LOG_NAME})") -> str:
    """The message's first line, cut to `width` at the last clause boundary ('; ', '. ', ': ', ', ')
    that fits, else at a word; unchanged when it fits."""
    first = msg.split("\n", 1)[0]
    if len(first) <= width and first == msg:
        return msg
    room = width - len(pointer)
    if len(first) <= room:
        return first + pointer
    head = first[:room]
    for sep in ("; ", ". ", ": ", ", ", " ("):
        i = head.rfind(sep)
        if i >= room // 2:
            return head[:i] + pointer
    i = head.rfind(" ")
    return (head[:i] if i > 0 else head) + pointer


class RunLog:
    """log(msg): the whole message appended to run.log (timestamped), its short form printed."""

    def __init__(self, run_dir: str | Path, out: Callable[[str], None] = print, width: int = WIDTH):
        self.path, self.out, self.width = Path(run_dir) / LOG_NAME, out, width

    def __call__(self, msg: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:  # appended: a resumed run keeps its history
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        self.out(short(msg, self.width))
