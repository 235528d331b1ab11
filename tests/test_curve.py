"""The width-error curve: the uniform networks, supernet errors with BN recalibration, retraining,
atomic CSV/PNG, and `widthnas curve`."""
import json

import pytest

from widthnas.nas.curve import read_curve, supernet_curve, uniform_networks, write_curve


@pytest.fixture(scope="module")
def sup_run(tmp_path_factory, tiny, write_bar_dataset):
    from widthnas.nas.train import TrainConfig, train

    d = tmp_path_factory.mktemp("curve")
    write_bar_dataset(d / "data.npz", 256, 64, seed=4)
    (d / "space.json").write_text(json.dumps(tiny.to_dict()))
    cfg = TrainConfig(space=str(d / "space.json"), dataset="npz", data=str(d / "data.npz"), epochs=1, batch_size=32,
                      lr=0.05, threads=1, seed=0)
    t = train(cfg, d / "sup", progress=False, log=lambda *_: None)
    return d, t


class LinearTable:
    """A stand-in latency profile: ms proportional to the total channels."""

    def __init__(self, space):
        self.space = space

    def predict(self, widths):
        return 0.01 * sum(widths)


def test_uniform_networks_are_distinct_and_widen(tiny):
    nets = uniform_networks(tiny)
    widths = [tuple(w) for _, w in nets]
    assert len(set(widths)) == len(widths) >= 3
    assert widths[0] == tuple(tiny.min_widths) and widths[-1] == tuple(tiny.max_widths)
    assert all(all(a <= b for a, b in zip(u, v)) for u, v in zip(widths, widths[1:]))
    assert [m for m, _ in nets] == sorted(m for m, _ in nets)


def test_supernet_curve_recalibrates_each_network(sup_run, tiny, monkeypatch):
    import widthnas.nas.evaluate as ev

    d, t = sup_run
    calls = []
    real = ev.recalibrate_bn
    monkeypatch.setattr(ev, "recalibrate_bn", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    rows = supernet_curve(t.model, tiny, t.splits, "test", 128, LinearTable(tiny), log=lambda *_: None)
    assert len(calls) == len(rows) == len(uniform_networks(tiny))
    assert all(0 <= r["supernet_error"] <= 1 for r in rows)
    assert [r["predicted_ms"] for r in rows] == sorted(r["predicted_ms"] for r in rows)
    # the widest network's error equals evaluating it directly with the same recalibration
    direct = ev.evaluate_config(t.model, tiny.max_widths, t.splits, "test", 128)
    assert rows[-1]["supernet_error"] == pytest.approx(1 - direct["accuracy"])
    with pytest.raises(ValueError, match="needs a latency profile"):
        supernet_curve(t.model, tiny, t.splits, measure=True)


def test_write_curve_is_atomic_and_round_trips(tmp_path, monkeypatch):
    rows = [{"multiplier": 0.5, "widths": [8, 16], "predicted_ms": 0.2, "measured_ms": None, "supernet_error": 0.3,
             "retrain_error": None},
            {"multiplier": 1.0, "widths": [16, 32], "predicted_ms": 0.4, "measured_ms": None, "supernet_error": 0.2,
             "retrain_error": 0.1}]
    write_curve(tmp_path / "c.csv", tmp_path / "c.png", rows)
    assert read_curve(tmp_path / "c.csv") == rows
    before = (tmp_path / "c.png").read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.figure

    def boom(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        write_curve(tmp_path / "c.csv", tmp_path / "c.png", rows)
    assert (tmp_path / "c.png").read_bytes() == before  # the old plot survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "c.png"]  # no temporary files left


def test_curve_cli_with_retraining(sup_run, tmp_path, capsys):
    from widthnas.nas.cli import main

    d, _ = sup_run
    out = tmp_path / "curve.csv"
    rc = main(["curve", "--run", str(d / "sup"), "--retrain", "--retrain-epochs", "1", "--calib-images", "128",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = read_curve(out)
    assert rows and all(r["retrain_error"] is not None and r["predicted_ms"] is None for r in rows)
    assert out.with_suffix(".png").exists()
    assert "multiplier only" in capsys.readouterr().out  # no profile recorded: said so


@pytest.mark.parametrize("argv, msg", [(["--run", "{tmp}/nowhere"], "no such directory"),
                                       (["--run", "{tmp}"], "neither a `widthnas train`"),
                                       (["--run", "{sup}", "--retrain-epochs", "2"], "needs --retrain"),
                                       (["--run", "{sup}", "--calib-images", "0"], "use 1 or more"),
                                       (["--run", "{sup}", "--retrain", "--retrain-epochs", "0"],
                                        "--retrain-epochs 0: use 1 or more")])
def test_curve_cli_refuses_bad_input(sup_run, tmp_path, capsys, argv, msg):
    from widthnas.nas.cli import main

    d, _ = sup_run
    argv = [a.format(tmp=tmp_path, sup=d / "sup") for a in argv]
    assert main(["curve", *argv]) == 2
    assert msg in capsys.readouterr().err
