"""Durable files: atomic replacement, fsynced appends, corrupt records named."""
import os

import pytest

from widthnas._io import CorruptFileError, append_line, append_text, atomic_path, atomic_write_text, read_jsonl


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]  # no temporary file left
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    with atomic_path(p) as tmp:
        tmp.write_bytes(b"new")
    assert p.read_text() == "new" and synced and oct(p.stat().st_mode & 0o777) == "0o644"


def test_appends_are_fsynced_and_a_torn_line_stays_apart(tmp_path, monkeypatch):
    p = tmp_path / "m.jsonl"
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    append_line(p, {"a": 1})
    assert len(synced) == 1
    with open(p, "a") as f:
        f.write('{"torn": ')  # a writer killed mid-line
    append_line(p, {"b": 2})
    append_text(tmp_path / "log.txt", "line\n")
    assert len(synced) == 3
    lines = p.read_text().splitlines()
    assert lines == ['{"a":1}', '{"torn": ', '{"b":2}']
    with pytest.raises(CorruptFileError, match=r"metrics .*m\.jsonl is corrupt at line 2"):
        read_jsonl(p, "metrics")
