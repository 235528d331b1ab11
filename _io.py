"""Durable files, written one way everywhere: atomic replacement (readers see the old file or the new one,
never half of one, and no temporary file is left), fsynced appends (a killed writer loses at most the line in
flight; the code lives in latency.standalone_runner, copied verbatim to edge devices, which must stand alone),
and JSON readers whose errors name the file and the line."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_text", "append_line", "append_text", "read_json", "read_jsonl",
           "CorruptFileError"]


class CorruptFileError(ValueError):
    """A run's own record that does not parse."""


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; write it; it replaces `path` when the block ends cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are shared artefacts
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole text file atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display here, nor on most servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def atomic_savefig(fig, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically: readers never see half a plot (format from the suffix)."""
    path = Path(path)
    with atomic_path(path, suffix=".tmp" + path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi)


def read_json(path: str | Path, what: str = "file", fix: str = "", error: type[ValueError] = CorruptFileError) -> object:
    """json.loads of a file, or `error` naming the file (and what to do: `fix`)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is corrupt (line {e.lineno}: {e.msg}){'; ' + fix if fix else ''}") from None


def read_jsonl(path: str | Path, what: str = "file", fix: str = "") -> list:
    """One record per non-empty line; a corrupt line is a CorruptFileError naming the file and line."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise CorruptFileError(f"{what} {path} is corrupt at line {n} ({e.msg})"
                                   f"{'; ' + fix if fix else ''}")
    return out


# Last, since importing widthnas.latency imports modules that use atomic_write_text from here.
from widthnas.latency.standalone_runner import append_line, append_text  # noqa: E402
