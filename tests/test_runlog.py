"""The run's terminal is short; run.log keeps every message whole."""
from __future__ import annotations

from widthnas.latency.host_state import machine_note
from widthnas.nas.runlog import LOG_NAME, RunLog, short

LONG = ("profile: note: " + machine_note(2.01, 0.2773))
MARGIN = ("search: aiming at 0.2733 ms, margin 6.13 % = 2 x the RMS error 3.07 % of the latency check on this machine "
          "(reference at 2.01 x its profiled time), 40 networks: the profile was made on another machine, and its own "
          "validation would give 1.99 % = 2 x sqrt(held-out RMS error 0.75 %^2 + re-measurement noise 0.65 %^2)")


def test_short_messages_pass_unchanged_and_long_ones_are_cut_at_a_clause():
    assert short("[train]") == "[train]"
    for msg in (LONG, MARGIN):
        s = short(msg, 150)
        assert len(s) <= 150 and s.endswith(f"({LOG_NAME})")
        assert msg.startswith(s[: -len(f" … ({LOG_NAME})")])  # a prefix of the message, not a rewrite
    assert short(MARGIN, 150).startswith("search: aiming at 0.2733 ms, margin 6.13 %")
    assert "ran 2.01 x its profiled 0.2773 ms" in short(LONG, 150)


def test_a_multi_line_message_shows_its_first_line():
    assert short("widths chosen\nstem 16\nblock1 32", 150) == f"widths chosen … ({LOG_NAME})"


def test_run_log_keeps_every_message_whole_and_appends_on_resume(tmp_path):
    shown = []
    log = RunLog(tmp_path, shown.append, width=150)
    log(MARGIN)
    RunLog(tmp_path, shown.append)(LONG)  # a resumed run
    text = (tmp_path / LOG_NAME).read_text()
    assert MARGIN in text and LONG in text and text.index(MARGIN) < text.index(LONG)
    assert all(len(s) <= 150 for s in shown) and len(shown) == 2


def test_a_terse_log_shows_stage_lines_and_warnings_and_keeps_every_detail_in_the_file(tmp_path):
    shown = []
    log = RunLog(tmp_path, shown.append, terse=True)
    log.begin("search")  # not a terminal here: no status line, the stage is written to the file
    log(MARGIN)  # a detail: run.log only
    log("  WARNING: every candidate measured over the budget; choosing the fastest")  # to act on: shown
    log.say("[search] 5.2 min: chosen network predicted 0.2 ms")
    log.end()
    log.record("summary:\nwidths")
    assert shown == ["warning: every candidate measured over the budget; choosing the fastest",
                     "[search] 5.2 min: chosen network predicted 0.2 ms"]
    text = (tmp_path / LOG_NAME).read_text()
    for part in ("[search]\n", MARGIN, "every candidate measured over", "[search] 5.2 min", "summary:\nwidths"):
        assert part in text


def test_the_time_table_puts_each_stage_over_its_time_and_adds_the_total():
    from widthnas.nas.run_summary import time_table

    head, times = time_table({"profile": 6.0, "train": 276.0, "search": 30.0})
    assert head.split() == ["time", "profile", "train", "search", "total"]
    assert times.split() == ["6", "s", "4.6", "min", "30", "s", "5.2", "min"]
    for name in ("profile", "train", "search", "total"):  # each time ends under its stage's name
        end = head.index(name) + len(name)
        assert times[end - 1] != " " and (end == len(times) or times[end] == " ")


def _stub_run(tmp_path, monkeypatch, stage_fn):
    """A Run whose only stage is `profile`, doing stage_fn; its terminal and its run.log."""
    from widthnas.nas import run as nas_run

    monkeypatch.setattr(nas_run, "STAGES", ("profile",))
    monkeypatch.setattr(nas_run.Run, "stage_profile", lambda self: stage_fn())
    monkeypatch.setattr(nas_run, "stage_line", lambda stage, r, state: "stub outcome")
    r = nas_run.Run.__new__(nas_run.Run)
    shown = []
    r.cfg, r.state, r.dir = nas_run.RunConfig(), {}, tmp_path
    r.state_path, r.log = tmp_path / "run_state.json", RunLog(tmp_path, shown.append, terse=True)
    return r, shown


def test_a_stages_warnings_go_to_run_log_counted_ours_apart_from_a_librarys(tmp_path, monkeypatch):
    import warnings

    import numpy as np

    def stage():
        for _ in range(50):  # once per place, not 50 times
            warnings.warn("2 samples never settled")
        np.mean(np.array([]))  # numpy's RuntimeWarning, raised in numpy
        return {}

    r, shown = _stub_run(tmp_path, monkeypatch, stage)
    r.go()
    text = (tmp_path / LOG_NAME).read_text()
    assert text.count("profile: note: 2 samples never settled") == 1 and "profile: library warning (" in text
    import re

    assert len(shown) == 1 and re.fullmatch(rf"\[profile\] 0 s: stub outcome \(1 note, \d library warnings? in {LOG_NAME}\)",
                                            shown[0]), shown


def test_a_failing_stage_keeps_its_warnings_and_says_it_failed(tmp_path, monkeypatch):
    import warnings

    import pytest

    def stage():
        warnings.warn("the loss became NaN at step 12")
        raise RuntimeError("stage broke")

    r, shown = _stub_run(tmp_path, monkeypatch, stage)
    with pytest.raises(RuntimeError, match="stage broke"):
        r.go()
    text = (tmp_path / LOG_NAME).read_text()
    assert "profile: note: the loss became NaN at step 12" in text and "[profile] failed after" in text
    assert shown == []


def test_only_widthnas_code_outside_installed_libraries_counts_as_ours():
    import numpy

    from widthnas.nas import run as nas_run

    assert nas_run._ours(nas_run.__file__) and not nas_run._ours(numpy.__file__)
    inside = nas_run._PACKAGE / ".venv" / "lib" / "python3.11" / "site-packages" / "x.py"  # a venv in the checkout
    assert not nas_run._ours(str(inside))
    assert not nas_run._ours("/usr/lib/python3/dist-packages/x.py")
