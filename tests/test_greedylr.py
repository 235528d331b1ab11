"""GreedyLR: each rule against a scripted loss sequence, bounds, options, and bit-identical resume."""
import pytest
import torch

from helpers import train_config, write_inputs
from widthnas.nas.greedylr import GreedyLR, GreedyOptions


def sched(lr=0.1, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return GreedyLR(opt, GreedyOptions(**kw)), opt


def run(s, losses):
    return [s.step(l)[0] for l in losses]


def test_rises_on_improvement_and_falls_on_worsening():
    s, opt = sched(factor=0.5, patience=0, threshold=0.0, min_lr=1e-6, max_lr=10)
    lrs = run(s, [1.0, 0.9, 0.8, 0.9])
    assert lrs == pytest.approx([0.1, 0.2, 0.4, 0.2])  # first reading: nothing to compare with
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)  # written into the optimizer


def test_patience_waits_for_that_many_readings():
    s, _ = sched(factor=0.5, patience=2, threshold=0.0, min_lr=1e-6, max_lr=10)
    lrs = run(s, [1.0, 1.1, 1.2, 1.3, 1.4])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])  # acts on the 3rd worse reading, then counts anew
    s, _ = sched(factor=0.5, patience=1, threshold=0.0, min_lr=1e-6, max_lr=10)
    assert run(s, [1.0, 1.1, 1.0, 1.1, 1.2]) == pytest.approx([0.1] * 4 + [0.05])  # an improvement breaks the streak


def test_threshold_counts_small_changes_as_no_change():
    s, _ = sched(factor=0.5, patience=0, threshold=0.05, min_lr=1e-6, max_lr=10)
    lrs = run(s, [1.0, 1.04, 1.0, 0.97, 1.2])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])
    assert s.last_action == "fall"
    s, _ = sched(factor=0.5, patience=1, threshold=0.05, min_lr=1e-6, max_lr=10)
    # a flat reading neither extends nor breaks a streak: worse, flat, worse -> fall
    assert run(s, [1.0, 1.1, 1.11, 1.3]) == pytest.approx([0.1, 0.1, 0.1, 0.05])


def test_smoothing_window_uses_the_rolling_mean():
    # raw 1.0, 2.0, 0.5, 2.0; window 2 means 1.0, 1.5, 1.25, 1.25: worse, better, then no change
    # (raw readings alone would have fallen again on the last one)
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, window=2, min_lr=1e-6, max_lr=10)
    assert run(s, [1.0, 2.0, 0.5, 2.0]) == pytest.approx([0.1, 0.05, 0.1, 0.1])
    # noise of period 3 around 1.0: a window of 3 sees it once (entering the window), then holds steady;
    # raw readings move the rate at every step
    noisy = [1.0, 1.0, 1.0, 1.3, 0.7, 1.0, 1.3, 0.7, 1.0]
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, window=3, min_lr=1e-6, max_lr=10)
    assert run(s, noisy) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1])
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, window=1, min_lr=1e-6, max_lr=10)
    assert run(s, noisy) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.1, 0.05, 0.025, 0.05, 0.025])


def test_cooldown_keeps_falling_and_warmup_keeps_rising():
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, cooldown=2, min_lr=1e-6, max_lr=10)
    lrs = run(s, [1.0, 1.1, 0.5, 0.4, 0.3])
    assert lrs == pytest.approx([0.1, 0.05, 0.025, 0.0125, 0.025])  # two more falls despite improving, then rises
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, warmup=1, min_lr=1e-6, max_lr=10)
    assert run(s, [1.0, 0.9, 2.0, 3.0]) == pytest.approx([0.1, 0.2, 0.4, 0.2])


def test_bounds_hold():
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, min_lr=0.03, max_lr=0.3)
    assert run(s, [1.0, 0.9, 0.8, 0.7]) == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert run(s, [0.8, 0.9, 1.0, 1.1, 1.2]) == pytest.approx([0.15, 0.075, 0.0375, 0.03, 0.03])
    s, _ = sched(lr=1.0, factor=0.5, min_lr=0.0, max_lr=0.5)
    assert s.get_last_lr() == [0.5]  # a start above the bound is clipped
    s, _ = sched(lr=0.1)  # default bounds relative to the start: 1/1000 and 2x
    assert (s.opts.min_lr, s.opts.max_lr) == pytest.approx((1e-4, 0.2))


def test_nan_reads_as_worse():
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, min_lr=1e-6, max_lr=10)
    assert run(s, [1.0, float("nan")]) == pytest.approx([0.1, 0.05])


def test_every_n_steps_reads_the_mean_training_loss():
    s, _ = sched(factor=0.5, patience=0, threshold=0.0, every=2, min_lr=1e-6, max_lr=10)
    assert not s.after_epoch(5.0) and s.last_epoch == 0  # per-epoch readings are off
    lrs = []
    for loss in [1.0, 1.2, 0.8, 0.8, 2.0, 2.0, 0.1]:  # readings: 1.1, 0.8 (better), 2.0 (worse); 0.1 pending
        s.after_batch(loss)
        lrs.append(s.get_last_lr()[0])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1])
    assert s.last_epoch == 3 and s.pending == [0.1] and s.state_dict()["pending"] == [0.1]
    s0, _ = sched()
    assert s0.after_epoch(1.0) and s0.last_epoch == 1


def test_state_dict_resume_is_bit_identical():
    losses = [1.0, 0.9, 0.95, 1.2, 0.7, 0.71, 0.69, 0.8, 0.9, 0.5, 0.4, 0.45]
    opts = dict(factor=0.7, patience=1, threshold=0.01, window=3, cooldown=1, warmup=1)
    s, _ = sched(**opts)
    straight = run(s, losses)
    a, _ = sched(**opts)
    first = run(a, losses[:5])
    state = torch.load(_roundtrip(a.state_dict()), weights_only=True)  # as a checkpoint holds it
    b, opt = sched(lr=0.5, **opts)  # a fresh optimizer with another rate: the state decides
    b.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == first[-1]
    assert first + run(b, losses[5:]) == straight  # exact equality, not approx
    assert b.state_dict() == s.state_dict()


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("text, msg", [("factor=1.5", "between 0 and 1"), ("patience=-1", "whole number"),
                                       ("window=0", ">= 1"), ("threshold=-0.1", ">= 0"),
                                       ("min_lr=0.5,max_lr=0.1", "min_lr <= max_lr"), ("speed=2", "key one of"),
                                       ("patience=1.5", "whole number"), ("factor", "key=value")])
def test_bad_options_are_named(text, msg):
    with pytest.raises(ValueError, match=msg):
        GreedyOptions.parse(text)


def test_options_parse():
    o = GreedyOptions.parse("factor=0.8, patience=2,window=3,min-lr=1e-5")
    assert (o.factor, o.patience, o.window, o.min_lr) == (0.8, 2, 3, 1e-5)
    assert GreedyOptions.parse("") == GreedyOptions()


# ---- wired into training -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory, tiny):
    return write_inputs(tmp_path_factory.mktemp("greedy"), tiny, 256, 64, seed=0)


def _cfg(d, **kw):
    return train_config(d, **{"epochs": 3, "lr": 0.05, "seed": 3, "schedule": "greedy",
                              "greedy": "factor=0.5,threshold=0,patience=0", **kw})


def test_supernet_training_with_greedy_resumes_bit_identically(tiny_inputs, tmp_path):
    from widthnas.nas.train import train

    quiet = dict(progress=False, log=lambda *_: None)
    full = train(_cfg(tiny_inputs), tmp_path / "full", **quiet)
    train(_cfg(tiny_inputs), tmp_path / "cut", stop_after=1, **quiet)
    resumed = train(_cfg(tiny_inputs), tmp_path / "cut", resume=True, **quiet)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert full.sched.state_dict() == resumed.sched.state_dict()
    h = full.history
    assert all(r["lr_action"] in ("rise", "fall", "hold") for r in h)
    # the rate each epoch trained at is the one the previous epoch's reading chose
    for prev, now in zip(h, h[1:]):
        assert now["lr"] == pytest.approx(prev["next_lr"])
    assert [r["lr"] for r in h] == [r["lr"] for r in resumed.history]


def test_supernet_greedy_every_n_steps_resumes_bit_identically(tiny_inputs, tmp_path):
    """7 steps per epoch, a reading every 3: a reading's steps straddle the checkpoint."""
    from widthnas.nas.train import train

    quiet = dict(progress=False, log=lambda *_: None)
    cfg = lambda: _cfg(tiny_inputs, epochs=2, greedy="factor=0.5,threshold=0,every=3")  # noqa: E731
    full = train(cfg(), tmp_path / "full", **quiet)
    cut = train(cfg(), tmp_path / "cut", stop_after=1, **quiet)
    assert cut.sched.pending  # the half-collected reading is part of the checkpoint
    resumed = train(cfg(), tmp_path / "cut", resume=True, **quiet)
    assert full.sched.last_epoch == full.step // 3 and full.sched.state_dict() == resumed.sched.state_dict()
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)


def test_train_plain_steps_greedy_on_validation_loss(tiny_inputs, tiny):
    from widthnas.models.net import build_network as build_network
    from widthnas.nas.data import load_dataset, split
    from widthnas.nas.finetune import train_plain

    sp = split(load_dataset("npz", str(tiny_inputs / "data.npz")), 0.1, 0)
    torch.manual_seed(0)
    net = build_network(tiny, tiny.max_widths)
    hist = train_plain(net, sp, 3, lr=0.05, schedule="greedy", log=lambda *_: None, device="cpu",
                       greedy=GreedyOptions(factor=0.5, threshold=0.0, min_lr=1e-6, max_lr=1.0))
    ref = GreedyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05),
                   GreedyOptions(factor=0.5, threshold=0.0, min_lr=1e-6, max_lr=1.0))
    assert [h["next_lr"] for h in hist] == pytest.approx([ref.step(h["val_loss"])[0] for h in hist])
    with pytest.raises(ValueError, match="choose one of"):
        train_plain(net, sp, 1, schedule="step", log=lambda *_: None)
    # stepped on the training loss every 2 steps, it needs no validation pass (the compress benchmark's widthnas_glr)
    with pytest.raises(ValueError, match="every N steps"):
        train_plain(net, sp, 1, schedule="greedy", log=lambda *_: None, validate_each_epoch=False)
    opts = GreedyOptions(factor=0.5, threshold=0.0, min_lr=1e-6, max_lr=1.0, every=2)
    hist = train_plain(net, sp, 2, lr=0.05, batch_size=8, schedule="greedy", log=lambda *_: None, device="cpu",
                       greedy=opts, validate_each_epoch=False)
    assert hist[0]["val_acc"] is None and hist[1]["val_acc"] is not None
    assert hist[-1]["next_lr"] != 0.05  # it moved within the run, on training losses alone


def test_cli_refuses_bad_greedy_options(tiny_inputs, tmp_path, capsys):
    from widthnas.nas.cli import main

    rc = main(["train", "--out", str(tmp_path / "r"), "--space", str(tiny_inputs / "space.json"), "--dataset", "npz",
               "--data", str(tiny_inputs / "data.npz"), "--schedule", "greedy", "--greedy", "factor=2", "--quiet"])
    assert rc == 2 and "between 0 and 1" in capsys.readouterr().err
