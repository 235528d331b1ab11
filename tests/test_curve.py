"""The width-error curve: the uniform networks, supernet errors with BN recalibration, retraining,
atomic CSV/PNG, and `widthnas curve`."""
import json

import pytest

from helpers import read_curve, train_config, width_table, write_inputs
from widthnas.nas.curve import supernet_curve, uniform_networks, write_curve


@pytest.fixture(scope="module")
def sup_run(tmp_path_factory, tiny):
    from widthnas.nas.train import train

    d = write_inputs(tmp_path_factory.mktemp("curve"), tiny, 256, 64, seed=4)
    t = train(train_config(d, epochs=1, lr=0.05, seed=0), d / "sup", progress=False, log=lambda *_: None)
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
    judged, real_accuracy = [], ev.accuracy  # the networks whose error the curve reports
    monkeypatch.setattr(ev, "accuracy", lambda net, *a, **k: (judged.append(net), real_accuracy(net, *a, **k))[1])
    rows = supernet_curve(t.model, tiny, t.splits, "test", 128, LinearTable(tiny), log=lambda *_: None)
    assert len(calls) == len(rows) == len(judged) == len(uniform_networks(tiny))
    assert all(0 <= r["supernet_error"] <= 1 for r in rows)
    assert [r["predicted_ms"] for r in rows] == sorted(r["predicted_ms"] for r in rows)
    # the widest network, recalibrated and judged here without the package's evaluation code: its BatchNorm
    # statistics are those of the 128 calibration images (a seeded permutation of the training images) in
    # one batch, then top-1 error on the whole test split. This supernet's predictions hardly depend on the
    # image yet, so the statistics and the logits are compared too, not only the error
    import torch

    assert rows[-1]["widths"] == tiny.max_widths
    norm = lambda x: (x.float() / 255 - t.splits.mean[None, :, None, None]) / t.splits.std[None, :, None, None]  # noqa: E731
    xtr, (xte, yte) = t.splits.train[0], t.splits.test
    calib = xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[:128]]
    net = t.model.materialize(tiny.max_widths)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: over one batch, that batch's mean and unbiased variance
    with torch.no_grad():
        net.train()(norm(calib))
        logits = net.eval()(norm(xte))
        theirs = judged[-1].eval()(norm(xte))
    err = (logits.argmax(1) != yte).float().mean().item()
    assert rows[-1]["supernet_error"] == pytest.approx(err, abs=1e-9)
    got = [m for m in judged[-1].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(got) == len(bns)
    for a, b in zip(got, bns):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs, logits, rtol=1e-4, atol=1e-5)
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


def test_curve_cli_on_a_graph_run_with_a_profile(graph_toy, tmp_path, capsys):
    """A graph-space supernet and a graph-space profile: given as --profile, and as the profile a
    `widthnas run` directory recorded; every uniform network's latency is the profile's prediction."""
    from widthnas.nas.cli import main
    from widthnas.nas.train import train

    write_inputs(tmp_path, graph_toy, 128, 32, seed=5)
    run = tmp_path / "run"  # laid out as `widthnas run` leaves it: supernet/ and run_state.json naming the profile
    train(train_config(tmp_path, epochs=1, seed=0), run / "supernet", progress=False, log=lambda *_: None)
    table = width_table(graph_toy, out_weight=2)
    prof = tmp_path / "graph_profile.json"
    table.save(prof)
    (run / "run_state.json").write_text(json.dumps({"profile": {"path": str(prof)}}))
    want = [table.predict(w) for _, w in uniform_networks(graph_toy)]
    assert want == sorted(want) and len(set(want)) == len(want) >= 3
    for extra in (["--profile", str(prof)], []):  # given, then read from run_state.json
        out = tmp_path / f"curve{len(extra)}.csv"
        assert main(["curve", "--run", str(run), *extra, "--no-measure", "--calib-images", "64",
                     "--out", str(out)]) == 0, capsys.readouterr().err
        rows = read_curve(out)
        assert [r["widths"] for r in rows] == [w for _, w in uniform_networks(graph_toy)]
        assert [r["predicted_ms"] for r in rows] == pytest.approx(want, rel=1e-6)
        assert all(r["measured_ms"] is None and 0 <= r["supernet_error"] <= 1 for r in rows)
    assert "multiplier only" not in capsys.readouterr().out


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
