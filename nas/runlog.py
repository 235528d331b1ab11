"""The run's log: every message in full in `<run>/run.log`; on the terminal, one line per stage, read at a
glance (the explanations stay in run.log and report.md, where the terminal points)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

WIDTH = 150  # characters per terminal line; longer messages are cut at a clause and point to run.log
STATUS_WIDTH = 100  # characters of a stage's transient status line
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
    """log(msg): the whole message appended to run.log (timestamped); on the terminal its short form
    (terse=False), or, with terse, only as the running stage's status line. say: always shown."""

    def __init__(self, run_dir: str | Path, out: Callable[[str], None] = print, width: int = WIDTH,
                 terse: bool = False, status: bool = False):
        self.path, self.out, self.width, self.terse = Path(run_dir) / LOG_NAME, out, width, terse
        self.status = status  # the caller says whether a status line can be redrawn (a terminal)
        self._bar, self._stage = None, ""

    def record(self, msg: str) -> None:
        """Into run.log only (e.g. the summary, printed by the caller)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:  # appended: a resumed run keeps its history
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def __call__(self, msg: str) -> None:
        if msg.lstrip().startswith("WARNING"):  # a library's warning to act on reaches the terminal
            return self.say(f"warning: {msg.lstrip()[len('WARNING'):].lstrip(': ')}")
        self.record(msg)
        if not self.terse:
            self._show(short(msg, self.width))
        elif self._bar is not None:
            self._bar.set_description_str(short(f"[{self._stage}] {msg}", STATUS_WIDTH, " …"), refresh=True)

    def say(self, msg: str) -> None:
        """A line the user reads: the stage's outcome, the summary."""
        self.record(msg)
        self._show(short(msg, self.width))

    def begin(self, stage: str) -> None:
        """The stage's status line (terse, on a terminal): its latest message, redrawn in place."""
        self.end()
        self._stage = stage
        self.record(f"[{stage}]")
        if self.terse and self.status:
            from tqdm import tqdm

            self._bar = tqdm(total=None, bar_format="{desc}", leave=False, dynamic_ncols=True)
            self._bar.set_description_str(f"[{stage}] …", refresh=True)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self, line: str) -> None:
        if self._bar is not None:  # printed above the status line, which stays last
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            self.out(line)
