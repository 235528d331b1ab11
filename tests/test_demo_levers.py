"""benchmarks/demo_levers.py's pieces: variants read as `widthnas run` flags, runs read back, paired comparison."""
import pytest

from widthnas.benchmarks import demo_levers as dl


def test_a_variant_is_a_name_and_widthnas_run_flags():
    assert dl.parse_variant("fast:epochs=2,unary_configs=100,no_guard") == \
        ("fast", ["--epochs", "2", "--unary-configs", "100", "--no-guard"])
    for bad in ("base:epochs=2", ":epochs=2", "fast:=3", "2fast"):
        with pytest.raises(ValueError, match="--variant"):
            dl.parse_variant(bad)


def _state(acc: float, secs: float) -> dict:
    st = {k: {"seconds": secs} for k in dl.STAGES}
    st["finetune"].update(chosen={"test_acc": acc}, uniform={"test_acc": acc - 0.01})
    st["verify"]["chosen"] = {"normalised_ms": 0.1}
    st["search"]["budget_ms"] = 0.11
    return st


def test_the_comparison_pairs_seeds_and_times_against_base():
    rows = [dl.row(v, s, _state(acc, secs)) for v, s, acc, secs in
            [("base", 0, 0.80, 100), ("base", 1, 0.82, 110), ("base", 2, 0.81, 90),
             ("fast", 0, 0.79, 40), ("fast", 1, 0.82, 50), ("fast", 2, 0.80, 30)]]
    assert rows[0]["total_s"] == 700 and rows[0]["uniform_acc"] == pytest.approx(0.79)
    (c,) = dl.compare(rows)
    assert c["variant"] == "fast" and c["seeds"] == 3
    assert c["diff"] == pytest.approx((-0.01 + 0.0 - 0.01) / 3)
    assert c["ci_low"] < c["diff"] < c["ci_high"]
    assert c["time_ratio"] == pytest.approx(120 / 300)
    assert dl.compare(rows[:4]) == []  # one paired seed: no interval
