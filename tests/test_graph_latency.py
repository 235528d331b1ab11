"""Latency on graph spaces: entries shared by signature, the design matrix against an independent
ground truth, per-factor tables for the MRF, profile files, and a tiny real profile through the CLI.
(MobileNet-v1's converted chain profiles: tests/test_fold.py.)"""
import json
import zlib

import numpy as np
import pytest

from helpers import SYNTHETIC, random_costs
from helpers import draw_widths as draw
from widthnas.latency.fit import FitSettings
from widthnas.latency.entries import GraphEntries
from widthnas.latency.fit import System, fit_table
from widthnas.latency.table import LatencyTable, ProfileError
from widthnas.latency.samples import Samples
from widthnas.models.families import mobilenet_v2_small
from widthnas.models.space import WidthError

QUICK = FitSettings(lams=(1e-8,), mus=(0.0,), folds=3)  # near-exact data: almost no ridge


@pytest.fixture(scope="module")
def mbv2s():
    return mobilenet_v2_small()


def _u(key, lo: float, hi: float) -> float:
    """A fixed pseudo-random number per key, the same in every process (str hashes are salted)."""
    return float(np.random.default_rng(zlib.crc32(repr(key).encode())).uniform(lo, hi))


def true_latency(space, widths, seed=0):
    """Ground truth written independently of latency/: walk the ops, key each costed op by what it
    is (kind, kernel, stride, depthwise, input size) and its channels, and look up a random cost
    (ms) per key; the same key always costs the same, whichever op has it."""
    a, g, sizes = space.assignment(widths), space.graph.group_of, space.graph.sizes
    total = 0.1  # ms, the part of every network no op carries
    for op in space.graph.ops:
        if op.kind in ("bn", "act"):
            continue
        key = (op.kind, op.kernel if op.kind in ("conv", "maxpool") else 1, op.stride if op.kind in ("conv", "maxpool")
               else 1, op.depthwise, sizes[op.inputs[0]], a[g[op.inputs[0]]], a[g[op.name]], seed)
        total += _u(key, 0.01, 0.1)
    return total


def smooth_latency(space, widths):
    """A device whose ops cost about their work (bilinear in channels), each key off by up to 5 %."""
    a, g, sizes, total = space.assignment(widths), space.graph.group_of, space.graph.sizes, 0.05
    for op in space.graph.ops:
        if op.kind in ("bn", "act"):
            continue
        ci, co, (h, w) = a[g[op.inputs[0]]], a[g[op.name]], sizes[op.inputs[0]]
        work = 1e-6 * h * w * (9 * ci if op.depthwise else ci * co / (1 if op.kind == "linear" else 8))
        total += (work + 2e-4 * (ci + co)) * (1 + _u((op.kind, op.kernel, op.stride, op.depthwise, h, ci, co), -.05, .05))
    return total


def samples_of(space, widths, truth=true_latency):
    y = np.array([truth(space, w) for w in widths])
    return Samples({"device": {"cpu": "synthetic"}}, np.asarray(widths), y, y, np.ones(len(y)), 0)


# ---- entries and the design matrix ---------------------------------------------------------
def test_identical_ops_share_entries_and_each_op_finds_its_own(mbv2s):
    e = GraphEntries(mbv2s)
    fs = mbv2s.factor_structure()
    assert [fc.factor for fc in e.factors] == list(fs.factors)  # the factor structure is the one source
    by_op = {fc.factor.op: fc for fc in e.factors}
    ch = {g.name: g.choices for g in fs.groups}
    for fc in e.factors:  # every cell of an op's table is the entry of its own signature and channels
        f = fc.factor
        for pos in np.ndindex(fc.cols.shape):
            c = dict(zip(f.scope, (ch[g][i] for g, i in zip(f.scope, pos))))
            c_in, c_out = c.get(f.in_group, ch[f.in_group][0]), c.get(f.out_group, ch[f.out_group][0])
            assert e.keys[fc.cols[pos]] == (f.signature, c_in, c_out)
    # ops of one signature on different groups (1x1 expands at 4x4) share the entries of equal channels
    a_, b_ = by_op["s4.b0.expand"], by_op["s4.b1.expand"]
    assert a_.factor.signature == b_.factor.signature and a_.factor.in_group != b_.factor.in_group
    s3, s4, ma, mb = ch["s3"], ch["s4"], ch["s4.b0.mid"], ch["s4.b1.mid"]
    pairs = [(c, m) for c in set(s3) & set(s4) for m in set(ma) & set(mb)]
    assert pairs and all(a_.cols[s3.index(c), ma.index(m)] == b_.cols[s4.index(c), mb.index(m)] for c, m in pairs)
    # shapes: a depthwise conv is a unary on its group, the stem a unary on its output, an expand a pair
    K = {g.name: len(g.choices) for g in mbv2s.free_groups}
    assert by_op["s1.b0.dw"].cols.shape == (K["s1.b0.mid"],)
    assert by_op["stem"].cols.shape == (K["stem"],)
    assert by_op["fc"].cols.shape == (K["head"],)
    assert by_op["s1.b1.expand"].cols.shape == (K["s1"], K["s1.b1.mid"])
    # a network's row, built by hand from the ops: one count per costed op in the entry of its channels
    w = draw(mbv2s, "uniform", 1, 3)[0]
    a = mbv2s.assignment(w)
    row = e.design([w]).toarray()[0]
    want = np.zeros(e.E)
    for f in fs.factors:
        want[e.index[(f.signature, a[f.in_group], a[f.out_group])]] += 1
    np.testing.assert_array_equal(row, want)
    assert row.sum() == len(fs.factors)


def test_entries_shared_in_stage_repeats():
    """s2.b1 and s2.b2 of MobileNet-v2 (published) are identical ops on groups with equal choices."""
    from widthnas.models.families import mobilenet_v2

    e = GraphEntries(mobilenet_v2())
    by_op = {fc.factor.op: fc for fc in e.factors}
    for kind in ("expand", "dw", "project"):
        np.testing.assert_array_equal(by_op[f"s2.b1.{kind}"].cols, by_op[f"s2.b2.{kind}"].cols)
    assert not np.array_equal(by_op["s2.b0.dw"].cols, by_op["s2.b1.dw"].cols)  # stride 2 differs


def test_anchors_and_monotonicity_pairs_stay_inside_a_signature(mbv2s):
    sys_ = System(mbv2s)
    k = sys_.entries.keys
    for a, b in sys_.pairs:  # (fewer channels, more channels) neighbours of one signature
        assert k[a].signature == k[b].signature
        assert (k[a].c_in, k[a].c_out) < (k[b].c_in, k[b].c_out) and k[a].c_in <= k[b].c_in and k[a].c_out <= k[b].c_out
    B = sys_.B.tocsc()
    for p in range(sys_.P):  # each bilinear coefficient belongs to one signature
        assert len({k[i].signature for i in B[:, p].indices}) == 1
    dw = next(s for s in sys_.entries.signatures if s.groups == "dw")
    assert sum(1 for a, _ in sys_.pairs if k[a].signature == dw) == len(sys_.entries.by_signature()[dw]) - 1


def test_fit_recovers_an_independent_ground_truth(toy):
    """Arbitrary (not bilinear) per-key costs and exact latencies: held-out networks are predicted to
    floating-point accuracy, and the recovered entries are the truth's up to what the sums fix."""
    train = samples_of(toy, draw(toy, "coverage", 150, 1))
    test = samples_of(toy, draw(toy, "uniform", 100, 2))
    table = fit_table(toy, train, QUICK, log=lambda *_: None)
    rel = table.predict_many(test.widths) / test.norm - 1
    assert np.abs(rel).max() < 1e-4
    assert table.predict(toy.max_widths) == pytest.approx(true_latency(toy, toy.max_widths), rel=1e-4)


def test_fit_of_a_bilinear_device_with_quirks_generalises(mbv2s):
    """mobilenet_v2_small has 915 entries; 300 coverage-sampled networks and the per-signature bilinear
    anchor predict uniform held-out networks within 2 % (the FLOPs proxy does worse)."""
    from widthnas.latency.fit import fit_flops_proxy
    from widthnas.latency.validate import metrics

    train = samples_of(mbv2s, draw(mbv2s, "coverage", 300, 1), smooth_latency)
    test = samples_of(mbv2s, draw(mbv2s, "uniform", 100, 2), smooth_latency)
    table = fit_table(mbv2s, train, FitSettings(lams=(1e-2, 1.0), mus=(0.0,), folds=3), log=lambda *_: None)
    m = metrics(table.predict_many(test.widths), test.norm)
    assert m["rmspe"] < 0.02 and m["within_5"] == 1.0
    proxy = fit_flops_proxy(mbv2s, train)
    assert metrics(proxy.predict_many(mbv2s, test.widths), test.norm)["rmspe"] > m["rmspe"]


def test_coverage_sampling_measures_more_entries_than_uniform(mbv2s):
    e = GraphEntries(mbv2s)
    seen = lambda W: int((e.design(W).sum(axis=0) > 0).sum())  # noqa: E731
    assert seen(draw(mbv2s, "coverage", 60, 0)) > 1.1 * seen(draw(mbv2s, "uniform", 60, 0))


# ---- the MRF's view and files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(mbv2s):
    """A table with arbitrary entries (ms), standing in for a fit."""
    costs = random_costs(mbv2s, seed=1)
    return LatencyTable(mbv2s, costs, 0.07, 1.3, SYNTHETIC, {"entries": len(costs)}, {}, "t")


def check_mrf_view(table, widths) -> None:
    """Per-op factor tables, and the MRF terms, read at the widths' choices and summed, are predict()."""
    space = table.space
    names = [g.name for g in space.free_groups]
    terms = table.mrf_terms()
    for w in widths:
        idx = {n: space.free_groups[k].choices.index(c) for k, (n, c) in enumerate(zip(names, w))}
        total = table.intercept + sum(float(t.ms[tuple(idx[g] for g in t.scope)]) for t in table.factor_tables())
        assert total == pytest.approx(table.predict(w), rel=1e-12)
        x = [idx[n] for n in names]
        mrf = terms.intercept + sum(u[i] for u, i in zip(terms.unary, x)) + sum(p[x[i], x[j]] for i, j, p in terms.pairs)
        assert mrf == pytest.approx(table.predict(w), rel=1e-12)


def test_factor_tables_sum_to_the_prediction(fitted, mbv2s):
    check_mrf_view(fitted, draw(mbv2s, "uniform", 20, 9))
    K = {g.name: len(g.choices) for g in mbv2s.free_groups}
    t = {x.op: x for x in fitted.factor_tables()}
    assert t["s2.b1.expand"].ms.shape == (K["s2"], K["s2.b1.mid"]) and t["s2.b1.expand"].scope == ("s2", "s2.b1.mid")
    assert t["s2.b1.dw"].scope == ("s2.b1.mid",) and t["fc"].scope == ("head",) and t["fc"].ms.shape == (K["head"],)
    terms = fitted.mrf_terms()
    assert len(terms.pairs) == sum(len(x.scope) == 2 for x in t.values()) and len(terms.unary) == len(K)
    w = mbv2s.uniform(0.5)
    assert fitted.predict(dict(zip(K, w))) == pytest.approx(fitted.predict(w))  # a {group: channels} mapping too
    with pytest.raises(WidthError, match="group s2: width 7 is not a choice"):
        fitted.predict_many(np.array([[7 if g == "s2" else c for g, c in zip(K, w)]]))


def test_profile_round_trip_and_bad_files(fitted, mbv2s, tmp_path):
    from widthnas.latency.registry import load_profile

    p = tmp_path / "g.json"
    fitted.save(p)
    back = load_profile(p)
    W = draw(mbv2s, "uniform", 10, 4)
    np.testing.assert_allclose(back.predict_many(W), fitted.predict_many(W), rtol=1e-5)
    d = fitted.to_dict()

    def refused(mut, match, exc=ProfileError):
        dd = json.loads(json.dumps(d))
        mut(dd)
        p.write_text(json.dumps(dd))
        with pytest.raises(exc, match=match):
            LatencyTable.load(p)

    refused(lambda x: x.update(format="widthnas-graph-profile/0"), "expected 'widthnas-graph-profile/1'")
    refused(lambda x: x.update(format="widthnas-profile/1"), "chain format of widthnas before 0.2")
    refused(lambda x: x["space"].update(fingerprint="0" * 16), "fingerprint", ValueError)
    refused(lambda x: x["signatures"][3]["entries"].pop(), "1 of the space's .* entries are missing")
    refused(lambda x: x["signatures"][3]["entries"].append([8, 8000, 0.1]), "c_out 8000 is not one the space")
    refused(lambda x: x["signatures"][3]["entries"].append(list(x["signatures"][3]["entries"][0])), "listed twice")
    refused(lambda x: x["signatures"][0]["entries"][0].__setitem__(2, float("nan")), "finite")
    refused(lambda x: x.pop("intercept_ms"), "graph profile schema")
    refused(lambda x: x["space"]["def"]["ops"].pop(3), "not a valid graph space.*topological")
    p.write_text(json.dumps(d)[:-20])
    with pytest.raises(ProfileError, match="is corrupt"):
        LatencyTable.load(p)


# ---- a tiny real profile, end to end through the CLI -----------------------------------------
def test_tiny_real_profile_fit_predict(tmp_path, mbv2s, capsys):
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.registry import load_profile
    from widthnas.nas.cli import main

    samples, prof = tmp_path / "s.jsonl", tmp_path / "p.json"
    # --no-guard: on a busy machine the load guard may leave a re-measurement out as disturbed, and the
    # count checked below would then depend on the machine (test_noise_floor.py tests the guard's path)
    assert main(["profile", "--space", "mobilenet_v2_small", "--out", str(samples), "-n", "12", "--rounds", "2",
                 "--round-ms", "1", "--quiet", "--no-guard"]) == 0
    header, recs, bad = sr.read_samples(str(samples))
    assert header["space"]["fingerprint"] == mbv2s.fingerprint and header["space"]["def"] == mbv2s.to_dict()
    assert len(recs) == 12 and bad == 0 and all(len(r["widths"]) == len(mbv2s.free_groups) for r in recs)
    assert main(["fit", "--samples", str(samples), "--out", str(prof), "--folds", "3", "--heldout", str(samples),
                 "--remeasure", "0"]) == 0
    table = load_profile(prof)
    assert table.validation["table"]["n"] == 12 and "flops_proxy" in table.validation
    assert isinstance(table, LatencyTable) and table.space.fingerprint == mbv2s.fingerprint
    meas = table.measured_ms(np.array([r["norm"] for r in recs]),
                             np.array([r["ref_ms"]["median"] for r in recs]))  # ms at the profile's speed
    pred = table.predict_many(np.array([r["widths"] for r in recs]))
    assert np.all(np.isfinite(pred)) and np.median(np.abs(pred / meas - 1)) < 0.2  # its own training networks
    assert table.predict(mbv2s.min_widths) < table.predict(mbv2s.max_widths)
    check_mrf_view(table, [r["widths"] for r in recs[:3]])
    assert main(["validate", "--profile", str(prof), "--samples", str(samples), "--remeasure", "3"]) == 0
    out = capsys.readouterr().out
    assert "within ±5%" in out and "re-measured  n=3" in out and "limits: " in out  # graph networks timed again
    # the samples of one space are refused for another
    assert main(["fit", "--space", "mobilenet_v1_small", "--samples", str(samples), "--out", str(prof)]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_torch_backend_opens_graph_networks(mbv2s, monkeypatch):
    """The torch backend's call runs the graph network of the widths asked for, on a batch of the
    space's input, once per call."""
    import torch

    from widthnas.latency.backends import make_backend
    from widthnas.models import net

    built, runs = [], []
    real = net.build_network

    def spy(space, widths):
        net = real(space, widths)
        built.append(net)
        net.register_forward_hook(lambda m, i, o: runs.append((tuple(i[0].shape), o)))
        return net

    monkeypatch.setattr(net, "build_network", spy)
    be = make_backend(mbv2s, "torch", batch=2)
    run = be.open(mbv2s.min_widths)
    assert len(built) == 1 and runs == [] and not built[0].training  # opened in eval mode, not yet run
    convs = [op for op in mbv2s.graph.ops if op.kind == "conv"]
    a, g = mbv2s.assignment(mbv2s.min_widths), mbv2s.graph.group_of
    assert {k: m.out_channels for k, m in built[0].layers.items() if isinstance(m, torch.nn.Conv2d)} == \
        {net.module_key(op): a[g[op.name]] for op in convs}  # every conv at the narrowest widths
    assert sum(a[g[op.name]] for op in convs) < sum(mbv2s.group(g[op.name]).base for op in convs)
    run()
    run()
    assert len(runs) == 2 and runs[0][0] == (2, *mbv2s.input_shape)
    assert runs[0][1].shape == (2, mbv2s.num_classes) and torch.isfinite(runs[0][1]).all()
    assert be.device_info()["backend"] == "torch"


def test_bundle_of_graph_networks(mbv2s, tmp_path):
    """Edge-device bundles hold graph networks too; the manifest records the space as samples headers do."""
    import onnx

    from widthnas.latency.profile import write_bundle

    out = write_bundle(mbv2s, tmp_path / "b", 2, seed=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["space"]["fingerprint"] == mbv2s.fingerprint and len(manifest["networks"]) == 2
    for net in manifest["networks"]:
        model = onnx.load(out / net["file"])
        onnx.checker.check_model(model)
        conv_out = {i.name: i.dims[0] for i in model.graph.initializer if i.name.endswith(".w")}
        assert conv_out["stem.w"] == net["widths"][0]  # the first free group is the stem's output
