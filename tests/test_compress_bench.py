"""The compression benchmark's pieces (benchmarks/compress.py): its models trace and reproduce
themselves, Torch-Pruning is used as its users use it, and results merge and resume per setting."""
from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest
import torch

from widthnas.benchmarks import compress as cb
from widthnas.benchmarks.compress_models import MODELS, classifier
from widthnas.models.trace import check_against_model, load_factory, trace_model


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_benchmark_models_trace_and_slice_to_a_multiplier(model):
    from widthnas.models.trace_weights import user_network

    torch.manual_seed(0)
    net = load_factory(MODELS[model])[0].eval()
    for m in net.modules():  # trained-looking BN statistics, so a wrong slice shows in the outputs
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    space = trace_model(net, (1, 28, 28), model)
    assert check_against_model(space, net) < 1e-4
    sd = net.state_dict()
    whole = user_network(space, sd).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(whole(x), net(x), atol=1e-4)
    dense = space.with_dense_choices(8)
    half = user_network(dense, sd, dense.multiplier_widths(0.5)).eval()
    with torch.no_grad():
        assert half(x).shape == (4, 10)
    assert sum(p.numel() for p in half.parameters()) < 0.5 * sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("method", ["tp_uniform", "tp_global"])
def test_torch_pruning_keeps_the_classifier_rounds_to_8_and_prunes_more_at_a_higher_ratio(tmp_path, method):
    pytest.importorskip("torch_pruning")
    b = cb.Bench(cb.Setup(model="resnet"), tmp_path, log=lambda *_: None)
    torch.manual_seed(0)
    net = cb.make_model(b.s)
    b.base_state = lambda: net.state_dict()  # no training here: the pruning is what is tested
    sizes = []
    for ratio in (0.2, 0.5, 0.8):
        pruned = b._pruned(method, ratio).eval()
        convs = cb._conv_channels(pruned)
        assert all(c % 8 == 0 for c in convs), convs
        assert classifier(pruned).out_features == 10
        with torch.no_grad():
            assert pruned(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        sizes.append(sum(p.numel() for p in pruned.parameters()))
    assert sizes[0] > sizes[1] > sizes[2]
    if method == "tp_uniform":  # one ratio everywhere: every conv of the stem's group shrinks alike
        assert len(set(cb._conv_channels(b._pruned(method, 0.5))[:3])) == 1


def test_settings_name_their_results_and_the_csv_keeps_other_models(tmp_path):
    s = cb.Setup()
    assert s.key("ft_epochs") != replace(s, ft_epochs=3).key("ft_epochs")
    assert s.key("model") == replace(s, ft_epochs=3).key("model")  # fine-tuning does not move the base model
    other = replace(s, importance="bn")  # the channels widthnas keeps name its starts and uniform8's, not Torch-Pruning's
    for m in ("widthnas", cb.EQUAL, "uniform8", cb.CURVE):
        assert s.key(*cb._START_FIELDS[m]) != other.key(*cb._START_FIELDS[m])
    assert s.key(*cb._START_FIELDS["tp_global"]) == other.key(*cb._START_FIELDS["tp_global"])
    row = {f: "" for f in cb.FIELDS}
    path = tmp_path / "compress.csv"
    cb._merge_csv(path, [{**row, "model": "resnet", "method": "a"}], "resnet")
    cb._merge_csv(path, [{**row, "model": "mbv2", "method": "b"}], "mbv2")
    cb._merge_csv(path, [{**row, "model": "resnet", "method": "c"}], "resnet")
    got = sorted((r["model"], r["method"]) for r in csv.DictReader(io.StringIO(path.read_text())))
    assert got == [("mbv2", "b"), ("resnet", "c")]


def test_fine_tuning_on_a_subset_keeps_the_whole_splits_normalisation():
    from widthnas.nas.data import Splits

    x = torch.randint(0, 255, (10, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(10)
    sp = Splits((x, y), (x[:2], y[:2]), (x[:2], y[:2]), torch.tensor([0.3]), torch.tensor([0.2]))
    sub = cb.first(sp, 4)
    assert torch.equal(sub.train[1], y[:4]) and sub.mean is sp.mean and sub.std is sp.std
    assert cb.first(sp, None) is sp


def test_the_cli_refuses_bad_numbers(capsys):
    with pytest.raises(SystemExit):
        cb.main(["--seeds", "0"])
    assert "--seeds 0" in capsys.readouterr().err


def test_widthnas_at_equal_compute_fine_tunes_on_what_its_selection_leaves(tmp_path):
    from widthnas.nas.data import Splits

    s = cb.Setup(seeds=2, budgets=(60,), ft_limit=None)
    b = cb.Bench(s, tmp_path, log=lambda *_: None)
    x, y = torch.zeros(1000, 1, 4, 4, dtype=torch.uint8), torch.zeros(1000, dtype=torch.long)
    b._splits = Splits((x, y), (x[:2], y[:2]), (x[:2], y[:2]), torch.tensor([0.3]), torch.tensor([0.2]))
    select = {"uniform8": 0.5, "tp_uniform": 1.0, "tp_global": 1.5, "widthnas": 10.0, cb.EQUAL: 1.0}  # CPU min
    b.start = lambda m, pct: {"select_cpu_min": select[m], "budget_met": True}
    ft = {"uniform8": 100.0, "tp_uniform": 110.0, "tp_global": 120.0, "widthnas": 200.0}  # CPU s per 1000 images
    done = {(m, 60, seed): {"cpu_s": ft[m] + seed} for m in cb.BASELINES for seed in (0, 1)}
    assert b.equal_images(60, done) is None  # widthnas's own fine-tuning gives the rate: not there yet
    done.update({("widthnas", 60, seed): {"cpu_s": 200.0} for seed in (0, 1)})
    target = sum(ft[m] + seed + 60 * select[m] for m in cb.BASELINES for seed in (0, 1)) / 6  # 170.5 CPU s
    n = b.equal_images(60, done)
    assert 60 * select[cb.EQUAL] + n * 0.2 <= target < 60 * select[cb.EQUAL] + (n + 1) * 0.2  # 0.2 CPU s per image
    select[cb.EQUAL] = 5.0  # a selection dearer than the baselines' whole budget leaves nothing
    assert b.equal_images(60, done) == 0


def test_widthnas_sup_starts_from_the_supernets_network_at_widthnas_widths(tmp_path):
    """widthnas_sup: the chosen widths cut from the supernet widthnas trained (BN recalibrated), its measurement
    and widths widthnas's, its cost widthnas's selection plus its own; fine-tuned for every budget and seed."""
    from widthnas.nas.data import Splits
    from widthnas.nas.train import CKPT, make_supernet, save_checkpoint

    s = cb.Setup(seeds=2, budgets=(60,))
    b = cb.Bench(s, tmp_path, log=lambda *_: None)
    space = b.space()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (600, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (600,), generator=g)
    b._splits = Splits((x, y), (x[:50], y[:50]), (x[:50], y[:50]), torch.tensor([0.3]), torch.tensor([0.2]))
    sup = make_supernet(space)
    d = tmp_path / f"supernet_60_{s.key(*cb._START_FIELDS['widthnas'])}"
    d.mkdir()
    save_checkpoint(d / CKPT, {"model": sup.state_dict(), "space_fingerprint": space.fingerprint})
    widths = space.min_widths
    wn = {"widths": widths, "select_cpu_min": 7.0, "verdict": {"verdict": "within", "mean_ms": 0.3},
          "budget_ms": 0.4}
    real_start = b.start
    b.start = lambda m, pct: wn if m == "widthnas" else real_start(m, pct)
    b.budgets = lambda: {"budget_ms": {"60": 0.4}}
    b.verdict = lambda *a: pytest.fail("widthnas_sup must not be timed: it is widthnas's network")
    rec = b.start(cb.SUPER, 60)
    assert rec["widths"] == widths and rec["verdict"] == wn["verdict"] and rec["select_cpu_min"] >= 7.0
    net = torch.load(rec["module"], weights_only=False)
    want = sup.materialize(widths)
    assert [p.shape for p in net.parameters()] == [p.shape for p in want.parameters()]
    for k, v in want.state_dict().items():  # the supernet's weights; BN statistics recalibrated on training images
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(net.state_dict()[k], v)
    assert [j for j in b.jobs() if j[0] == cb.SUPER] == [(cb.SUPER, 60, 0), (cb.SUPER, 60, 1)]


def test_variants_fine_tune_widthnas_start_and_every_budget_gets_greedylr(tmp_path):
    s = cb.Setup(seeds=2, budgets=(60, 25))
    b = cb.Bench(s, tmp_path, log=lambda *_: None)
    b.start = lambda m, pct: {"method": m, "pct": pct}
    assert b.start_of(cb.GREEDY_LR, 25) == {"method": "widthnas", "pct": 25}
    assert b.start_of(cb.CONGRUENT, 60) == {"method": "widthnas", "pct": 60}
    assert b.start_of(cb.SUPER, 60) == {"method": cb.SUPER, "pct": 60}  # its own start: the supernet's weights
    jobs = b.jobs()
    assert sorted(j for j in jobs if j[0] == cb.GREEDY_LR) == [(cb.GREEDY_LR, p, x) for p in (25, 60) for x in (0, 1)]
    assert [j for j in jobs if j[0] == cb.CONGRUENT] == [(cb.CONGRUENT, 60, 0), (cb.CONGRUENT, 60, 1)]  # the middle


def test_a_method_that_cannot_meet_the_budget_is_recorded_and_never_fine_tuned(tmp_path):
    """uniform8 on a network bound by operator overhead: no multiplier fits. The failure is a result, kept
    on disk (a resumed run does not retry it), and no fine-tuning is spent on it."""
    from widthnas.nas.uniform8 import NoMultiplierFits

    s = cb.Setup(seeds=2, budgets=(40,), curve=())
    b = cb.Bench(s, tmp_path, log=lambda *_: None)
    b.budgets = lambda: {"budget_ms": {"40": 0.05}}
    b._uniform8 = lambda budget, pct: (_ for _ in ()).throw(NoMultiplierFits("narrowest 0.07 ms"))
    rec = b.start("uniform8", 40)
    assert rec["budget_met"] is False and rec["module"] is None and "0.07" in rec["failure"]
    b._uniform8 = lambda budget, pct: pytest.fail("a recorded failure is not retried")
    assert b.start("uniform8", 40) == rec and not b.met("uniform8", 40)
    b.start = lambda m, pct: {"budget_met": False, "module": None, "select_cpu_min": 0.0}  # nothing meets 40 %
    done = b.finetune_all()  # no worker pool: every job is skipped
    assert set(done) == set(b.jobs()) and all("skipped" in r for r in done.values())


def test_the_best_baseline_is_one_within_the_budget_and_the_pooled_test_pairs_only_those(tmp_path):
    s = cb.Setup(seeds=3, budgets=(60, 40), curve=(), secondary=False)
    b = cb.Bench(s, tmp_path, log=lambda *_: None)
    over = {("uniform8", 40), ("tp_uniform", 40), ("tp_global", 40)}  # at 40 % no baseline has a network within
    b.start = lambda m, pct: {"budget_met": (m, pct) not in over, "measured_ms": 0.1, "budget_ms": 0.1,
                              "select_cpu_min": 1.0, "module": "x"}
    acc = {"uniform8": 0.80, "tp_uniform": 0.95, "tp_global": 0.85, "widthnas": 0.90, cb.EQUAL: 0.88}
    res = {}
    for m, pct, seed in b.jobs():
        res[(m, pct, seed)] = ({"skipped": "over"} if (m, pct) in over else
                               {"test_acc": acc[m] + 0.01 * seed, "nfr": 0.0, "cpu_s": 60.0})
    b.finetune_all = lambda: res
    b.base = lambda: {"test_acc": 0.93, "minutes": 1.0, "cpu_min": 2.0}
    b.budgets = lambda: {"base_ms": 0.2, "budget_ms": {"60": 0.12, "40": 0.08}}
    b._plot = lambda *a: None
    rows = {(r["budget_pct"], r["method"]): r for r in b.report()}
    assert rows[(60, "widthnas")]["best_baseline"] == "tp_uniform"
    assert rows[(60, "widthnas")]["diff_vs_best_baseline"] == pytest.approx(-0.05)
    assert rows[(40, "uniform8")]["acc_mean"] == "" and rows[(40, "uniform8")]["budget_met"] is False
    assert rows[(40, "widthnas")]["best_baseline"] == "none within" and rows[(40, "widthnas")]["diff_vs_best_baseline"] == ""
    summary = cb.read_json(tmp_path / "summary.json", "summary")
    assert summary["pooled_vs_best_baseline"]["n"] == 3  # 60 % only: 40 % has nothing to pair with
    assert summary["unpaired_budgets"] == [{"budget_pct": 40, "widthnas_met": True, "baselines_met": []}]
    assert not [j for j in b.jobs() if j[0] in (cb.CONGRUENT, cb.SUPER, cb.GREEDY_LR)]


def test_a_subset_of_budgets_keeps_every_start_name_and_runs_only_its_jobs(tmp_path, capsys):
    """--budgets 60 re-runs one budget (longer fine-tuning) against the same budget file and starts."""
    s = cb.Setup(seeds=2)
    only = replace(s, only=(60,), curve=())
    for m in cb.METHODS + (cb.EQUAL, cb.CURVE):
        assert s.key(*cb._START_FIELDS[m]) == only.key(*cb._START_FIELDS[m])
    jobs = cb.Bench(replace(only, secondary=False), tmp_path, log=lambda *_: None).jobs()
    assert {j[1] for j in jobs} == {60} and len(jobs) == (len(cb.METHODS) + 1) * 2
    with pytest.raises(SystemExit):
        cb.main(["--budgets", "50"])
    assert "[50] not among" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cb.main(["--budgets", "sixty"])
    assert "integers" in capsys.readouterr().err


def test_a_subset_of_methods_fine_tunes_only_those_and_compares_with_their_best(tmp_path, capsys):
    """--methods widthnas,tp_global: every start is still made (same names); only those two are fine-tuned,
    and the best baseline is tp_global, the only one fine-tuned, though another would have scored higher."""
    s = cb.Setup(seeds=2, budgets=(60,), curve=(), secondary=False)
    sub = replace(s, methods=("widthnas", "tp_global"))
    for m in cb.METHODS + (cb.EQUAL,):
        assert s.key(*cb._START_FIELDS[m]) == sub.key(*cb._START_FIELDS[m])
    b = cb.Bench(sub, tmp_path, log=lambda *_: None)
    assert sorted(b.jobs()) == sorted((m, 60, x) for m in ("widthnas", "tp_global") for x in (0, 1))
    b.start = lambda m, pct: {"budget_met": True, "measured_ms": 0.1, "budget_ms": 0.1, "select_cpu_min": 1.0,
                              "module": "x"}
    acc = {"uniform8": 0.99, "tp_uniform": 0.99, "tp_global": 0.85, "widthnas": 0.90}
    b.finetune_all = lambda: {(m, 60, x): {"test_acc": acc[m] + 0.01 * x, "nfr": 0.0, "cpu_s": 60.0}
                              for m, _, x in b.jobs()}
    b.base = lambda: {"test_acc": 0.93, "minutes": 1.0, "cpu_min": 2.0}
    b.budgets = lambda: {"base_ms": 0.2, "budget_ms": {"60": 0.12}}
    b._plot = lambda *a: None
    rows = {r["method"]: r for r in b.report() if r["budget_pct"] == 60}
    assert set(rows) == {"widthnas", "tp_global"}
    assert rows["widthnas"]["best_baseline"] == "tp_global"
    assert rows["widthnas"]["diff_vs_best_baseline"] == pytest.approx(0.05)
    for bad in ("widthnas,tp_magic", "tp_global", "widthnas"):
        with pytest.raises(SystemExit):
            cb.main(["--methods", bad])
        assert "give widthnas and at least one baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # its compute is the mean of every baseline's
        cb.main(["--methods", f"widthnas,tp_global,{cb.EQUAL}"])
    assert "list all of" in capsys.readouterr().err
    # the CSV keeps what this run left out: the other methods' rows of the same model and budget
    csvp = tmp_path / "c.csv"
    row = lambda m, acc: {**{f: "" for f in cb.FIELDS}, "model": "mbv2", "budget_pct": 60, "method": m, "acc_mean": acc}  # noqa: E731
    cb._merge_csv(csvp, [row("uniform8", 0.5), row("widthnas", 0.5)], "mbv2")
    cb._merge_csv(csvp, [row("widthnas", 0.9)], "mbv2", partial=True)
    got = {r["method"]: r["acc_mean"] for r in cb.csv.DictReader(cb.io.StringIO(csvp.read_text()))}
    assert got == {"uniform8": "0.5", "widthnas": "0.9"}


def test_a_start_of_another_search_is_not_reused_but_its_supernet_is(tmp_path):
    """Starts made before the search re-aimed (search_version 1) keep their names; widthnas's new starts get
    new ones, the baselines' stay, and the supernet directory (named by the supernet's settings) is shared."""
    old, new = cb.Setup(search_version=1), cb.Setup()
    b_old, b_new = cb.Bench(old, tmp_path, log=lambda *_: None), cb.Bench(new, tmp_path, log=lambda *_: None)
    for m in cb.SEARCHED:
        assert b_old.start_key(m) != b_new.start_key(m)
    for m in cb.BASELINES + (cb.CURVE,):
        assert b_old.start_key(m) == b_new.start_key(m)
    assert old.key(*cb._START_FIELDS["widthnas"]) == new.key(*cb._START_FIELDS["widthnas"])  # the supernet's name

