"""Paired statistics of the benchmarks (benchmarks/stats.py) against scipy, and the pooled cells."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from widthnas.benchmarks.stats import cell_diffs, main, paired_diff


def test_paired_diff_is_scipys_one_sample_t_interval_of_the_differences():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.01, 7), rng.normal(0.79, 0.01, 7)
    got = paired_diff(a, b)
    ref = st.ttest_1samp(a - b, 0.0).confidence_interval(0.95)
    assert got["diff"] == pytest.approx(np.mean(a - b))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ref.low, ref.high))
    wide = paired_diff(a, b, comparisons=3)
    assert wide["ci_low"] < got["ci_low"] and wide["ci_high"] > got["ci_high"]
    with pytest.raises(ValueError):
        paired_diff([0.5], [0.4])


def test_cells_pair_methods_per_file_and_budget(tmp_path, capsys):
    f = tmp_path / "sq.csv"
    f.write_text("method,budget,accs\n"
                 "default,10%,0.80 0.82 0.81\nows,10%,0.79 0.80 0.81\n"
                 "default,20%,0.85 0.86 0.84\nows,20%,0.86 0.86 0.85\nuniform,20%,0.8 0.8 0.8\n")
    cells = cell_diffs([str(f)], "default", "ows")
    assert [c["budget"] for c in cells] == ["10%", "20%"]
    assert cells[0]["diff"] == pytest.approx(0.01) and cells[1]["diff"] == pytest.approx(-2 / 300)
    assert main([str(f)]) == 0
    out = capsys.readouterr().out
    pooled = np.mean([0.01, -2 / 300])
    assert f"{100 * pooled:+.2f}" in out.splitlines()[-1]
