"""Torch threads per stage are measured on the stage's own work (nas/threads.py): the faster count wins,
fewer threads only by a clear margin, and the count is restored afterwards."""
import time

import pytest
import torch

from widthnas.nas.threads import describe, fastest_threads, using_threads


def _job(seconds_by_threads):
    """A job whose time depends on torch's thread count, as a small network's does here."""
    def job():
        time.sleep(seconds_by_threads[torch.get_num_threads()])
    return job


@pytest.mark.parametrize("times,best", [
    ({1: 0.02, 2: 0.06}, 1),  # one thread 3 x faster: it wins
    ({1: 0.06, 2: 0.02}, 2),  # every core faster: it stays
    ({1: 0.050, 2: 0.052}, 2),  # one thread faster by less than the margin: all cores stay
])
def test_the_faster_thread_count_wins_and_a_near_tie_keeps_every_core(times, best):
    before = torch.get_num_threads()
    got, med = fastest_threads(_job(times), counts=[1, 2], reps=3)
    assert got == best and set(med) == {1, 2}
    assert med[1] == pytest.approx(times[1], abs=0.01) and med[2] == pytest.approx(times[2], abs=0.01)
    assert torch.get_num_threads() == before


def test_using_threads_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with using_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("stage failed")
    assert torch.get_num_threads() == before


def test_describe_says_how_much_faster():
    assert describe(1, {1: 0.041, 2: 0.074}) == "1 thread (1.80 x faster than 2: 41 ms against 74 ms per call)"
    assert describe(2, {1: 0.074, 2: 0.041}).startswith("2 threads (1 thread: 74 ms against 41 ms")


def test_each_stage_probe_runs_its_kind_of_work_and_leaves_the_real_networks_alone(tiny):
    from widthnas.nas.threads import evaluation_probe, finetune_probe, training_probe
    from widthnas.nas.train import build_plain_network, make_supernet

    training_probe(tiny, 8)()  # a sandwich step of its own supernet
    sup = make_supernet(tiny).train()
    before = {k: v.clone() for k, v in sup.state_dict().items()}
    evaluation_probe(sup, 16)()
    assert sup.training and all(torch.equal(v, before[k]) for k, v in sup.state_dict().items())  # BN stats too
    net = build_plain_network(tiny, tiny.max_widths)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    job = finetune_probe(net, 8)
    job(), job()
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_a_run_times_its_stages_threads_when_torch_has_more_than_one(tiny, monkeypatch, tmp_path):
    """--time-threads, with two thread counts to choose from: the train stage's record says which it ran on
    and how long each took."""
    from widthnas.nas import run as nas_run

    monkeypatch.setattr("widthnas.nas.threads.thread_counts", lambda: [1, 2])
    r = nas_run.Run.__new__(nas_run.Run)  # only what _stage_threads reads
    r.cfg, r.space, r.state, r.log = nas_run.RunConfig(batch_size=8), tiny, {}, (lambda *_: None)
    assert r._stage_threads("train") is None  # torch's default unless asked to time it
    r.cfg = nas_run.RunConfig(batch_size=8, time_threads=True)
    th = r._stage_threads("train")
    assert th["how"] == "measured" and th["threads"] in (1, 2) and set(th["median_s"]) == {"1", "2"}
    assert r._stage_threads("profile") is None and r._stage_threads("report") is None  # nothing searched yet
    r.cfg = nas_run.RunConfig(threads=1)
    assert r._stage_threads("train") == {"threads": 1, "how": "--threads"}
