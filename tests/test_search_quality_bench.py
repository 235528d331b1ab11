"""The search-quality benchmark's run directory holds one protocol and one profile (benchmarks/search_quality.py)."""
import json

import pytest

from widthnas.benchmarks.search_quality import SETUP, check_setup


def test_a_run_directory_resumes_only_with_its_own_profile_and_protocol(tmp_path):
    setup = {"mode": "decisive", "epochs": 4, "budgets": [0.36, 0.42], "seeds": 5, "profile": "shipped",
             "profile_sha256": "aa", "space": "f1", "seed": 0}
    check_setup(tmp_path, setup)
    saved = (tmp_path / SETUP).read_text()
    assert json.loads(saved) == setup
    check_setup(tmp_path, {**setup, "budgets": [0.36, 0.42, 0.5], "seeds": 7})  # more budgets and seeds: a resume
    for k, v in (("profile", "made here"), ("profile_sha256", "bb"), ("epochs", 3), ("space", "f2")):
        with pytest.raises(SystemExit, match=f"other settings .*'{k}'.*choose another --out"):
            check_setup(tmp_path, {**setup, k: v})
    assert (tmp_path / SETUP).read_text() == saved  # the record of the run is never rewritten
