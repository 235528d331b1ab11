"""benchmarks/demo_levers.py's pieces: variants read as `widthnas run` flags, runs read back, paired comparison."""
import pytest

from widthnas.benchmarks import demo_levers as dl


def test_a_variant_is_a_name_and_widthnas_run_flags():
    assert dl.parse_variant("fast:epochs=2,unary_configs=100,no_guard") == \
        ("fast", ["--epochs", "2", "--unary-configs", "100", "--no-guard"])
    for bad in ("base:epochs=2", ":epochs=2", "fast:=3", "2fast"):
        with pytest.raises(ValueError, match="--variant"):
            dl.parse_variant(bad)


def _state(acc: float, secs: float, chosen=(16, 32), uniform=(8, 24)) -> dict:
    st = {k: {"seconds": secs} for k in dl.STAGES}
    st["finetune"].update(chosen={"test_acc": acc}, uniform={"test_acc": acc - 0.01})
    st["verify"]["chosen"] = {"normalised_ms": 0.1}
    st["search"].update(budget_ms=0.11, chosen={"widths": list(chosen)}, uniform={"widths": list(uniform)})
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


def test_only_variants_of_settings_read_after_training_share_a_supernet():
    assert dl.shareable(dl.parse_variant("fast:unary_configs=100,slim_images=128")[1])
    assert not dl.shareable(dl.parse_variant("fast:epochs=2,unary_configs=100")[1])
    assert not dl.shareable([])


def test_a_shared_run_starts_from_bases_profile_and_supernet_with_its_own_settings(tmp_path):
    import json

    base, out = tmp_path / "base_s0", tmp_path / "fast_s0"
    (base / "supernet").mkdir(parents=True)
    cfg = {"unary_configs": 300, "slim_images": 256, "epochs": 3, "method": "select"}
    (base / "run_config.json").write_text(json.dumps(cfg))
    state = {k: {"done": True, "seconds": 1.0} for k in dl.STAGES}
    (base / "run_state.json").write_text(json.dumps(state))
    for f in ("latency_check.jsonl", "config.json", "model.onnx", "report.md", "run.log",
              "supernet/ckpt.pt", "supernet/unaries.json", "supernet/unaries_measured.json"):
        (base / f).write_text(f)
    (base / "candidates").mkdir()
    dl.share_supernet(base, out, dl.parse_variant("fast:unary_configs=100,slim_images=128")[1])
    assert json.loads((out / "run_config.json").read_text()) == {**cfg, "unary_configs": 100, "slim_images": 128}
    assert set(json.loads((out / "run_state.json").read_text())) == {"profile", "train"}
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {"run_config.json", "run_state.json", "latency_check.jsonl", "supernet/ckpt.pt",
                     "supernet/unaries.json"}  # the search's files and the measured unaries are its own to make
    assert json.loads((base / "run_config.json").read_text()) == cfg  # base untouched
    (out / "marker").write_text("x")
    dl.share_supernet(base, out, [])  # a resumed benchmark leaves it as it is
    assert (out / "marker").exists()
    state["train"]["done"] = False
    (base / "run_state.json").write_text(json.dumps(state))
    with pytest.raises(RuntimeError, match="not trained"):
        dl.share_supernet(base, tmp_path / "other", [])


def test_retraining_pairs_each_runs_networks_by_its_seed_and_trains_a_shared_network_once(monkeypatch, tmp_path):
    """--retrain: the jobs handed to retrain_pool, and the accuracies read back into the rows and compared."""
    import widthnas.benchmarks.retrain_pool as rp

    acc = {((16, 32), 0): .85, ((16, 32), 1): .86, ((16, 32), 2): .84,  # base's chosen network, every seed
           ((24, 24), 0): .84, ((24, 24), 2): .83,  # fast's, where it chose otherwise
           ((8, 24), 0): .80, ((8, 24), 1): .81, ((8, 24), 2): .79}
    seen = {}

    def fake(out, proto, jobs, workers=2, log=print):
        seen.update(out=out, proto=proto, jobs=jobs, workers=workers)
        return {(tuple(w), s): {"test_acc": acc[(tuple(w), s)]} for w, s in jobs}

    monkeypatch.setattr(rp, "retrain_many", fake)
    rows = [dl.row("base", s, _state(.8, 10)) for s in range(3)]
    rows += [dl.row("fast", s, _state(.8, 5, chosen=(16, 32) if s == 1 else (24, 24))) for s in range(3)]
    dl.retrain_rows(rows, tmp_path, "mobilenet_v1_small", epochs=4, limit=20000, workers=2)
    # 3 seeds x {(16,32), (8,24)} for base, fast adds (24,24) at seeds 0 and 2: 8 networks, none twice
    assert sorted((tuple(w), s) for w, s in seen["jobs"]) == sorted(
        {((16, 32), s) for s in range(3)} | {((8, 24), s) for s in range(3)} | {((24, 24), 0), ((24, 24), 2)})
    assert seen["proto"].epochs == 4 and seen["proto"].limit == 20000 and seen["proto"].space == "mobilenet_v1_small"
    assert [r["retrained_acc"] for r in rows] == [.85, .86, .84, .84, .86, .83]
    assert all(r["retrained_uniform_acc"] == acc[((8, 24), r["seed"])] for r in rows)
    (c,) = dl.compare(rows, "retrained_acc")
    assert c["diff"] == pytest.approx((-.01 + 0 - .01) / 3) and c["seeds"] == 3
