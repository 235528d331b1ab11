"""Profiling: protocol, JSONL robustness, resume, bundle runner without torch, bad input."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import FAST_ROUNDS, draw_widths, fast_protocol, flat_costs
from widthnas.latency import standalone_runner as sr
from widthnas.latency.backends import make_backend
from widthnas.latency.profile import profile, write_bundle
from widthnas.latency.entries import GraphEntries
from widthnas.latency.samples import load_samples

# profile() without the load guard: these tests are about files and devices (helpers.FAST_ROUNDS)
PROFILE_FAST = dict(protocol=fast_protocol())


def test_measure_orders_networks_by_size(small):
    be = make_backend(small)
    ref = be.open(small.max_widths)
    narrow = sr.measure(be.open(small.min_widths), ref, **FAST_ROUNDS)
    big = sr.measure(be.open(small.max_widths), ref, **FAST_ROUNDS)
    assert 5 * narrow["ms"]["median"] < big["ms"]["median"]
    assert 0.8 < big["norm"] < 1.25  # the reference against itself
    assert narrow["ms"]["count"] >= 10 and narrow["ms"]["iqr"] >= 0


def test_torch_backend_times_too(tiny):
    be = make_backend(tiny, "torch", threads=1)
    rec = sr.measure(be.open(tiny.min_widths), be.open(tiny.max_widths), **FAST_ROUNDS)
    assert rec["ms"]["median"] > 0 and be.device_info()["backend"] == "torch"


def test_profile_resumes_without_losing_samples(tiny, tmp_path):
    out = tmp_path / "s.jsonl"
    be = make_backend(tiny)
    assert profile(tiny, out, 3, be, progress=False, **PROFILE_FAST) == 3
    # a killed run leaves a torn last line
    with open(out, "a") as f:
        f.write('{"type": "sample", "widths": [8, 8')
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        assert profile(tiny, out, 5, be, progress=False, **PROFILE_FAST) == 2
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        header, recs, bad = sr.read_samples(str(out))
    assert len(recs) == 5 and bad == 1
    assert sum(1 for line in out.read_text().splitlines() if '"header"' in line) == 1


def test_profile_refuses_another_space_or_device(tiny, small, tmp_path):
    out = tmp_path / "s.jsonl"
    profile(tiny, out, 1, make_backend(tiny), progress=False, **PROFILE_FAST)
    with pytest.raises(ValueError, match="search space"):
        profile(small, out, 2, make_backend(small), progress=False, **PROFILE_FAST)
    with pytest.raises(ValueError, match="other device settings"):
        profile(tiny, out, 2, make_backend(tiny, threads=2), progress=False, **PROFILE_FAST)


def test_unknown_provider_is_named():
    with pytest.raises(ValueError, match="NopeExecutionProvider.*offers"):
        sr.check_provider("NopeExecutionProvider")


def _covered(space, kind: str, n: int, seed: int) -> list[int]:
    """Entries measured after each of n networks drawn by the profiler's sampler."""
    e = GraphEntries(space)
    seen, out = set(), []
    for row in e.columns(e.indices(draw_widths(space, kind, n, seed))):
        seen |= set(row.tolist())
        out.append(len(seen))
    return out


def test_coverage_sampling_measures_every_entry_in_nearly_the_fewest_networks(tiny):
    """A network uses one entry of each op, so a signature of m entries shared by k ops needs at least
    m / k networks: coverage sampling measures all of tiny's entries within 2 networks of that bound;
    uniform sampling needs more than twice as many."""
    e = GraphEntries(tiny)
    ops = e.ops_of()
    bound = max(-(-len(idx) // len(ops[sig])) for sig, idx in e.by_signature().items())
    first = {kind: [next(i + 1 for i, c in enumerate(_covered(tiny, kind, 60, seed)) if c == e.E) for seed in range(5)]
             for kind in ("coverage", "uniform")}
    assert all(bound <= n <= bound + 2 for n in first["coverage"]), (bound, first)
    assert sum(first["uniform"]) > 2 * sum(first["coverage"]), first


def test_coverage_sampling_measures_more_of_mobilenet_v1_than_uniform(small):
    e = GraphEntries(small)
    n = 60
    for seed in range(3):
        cov, uni = _covered(small, "coverage", n, seed), _covered(small, "uniform", n, seed)
        assert cov[-1] <= min(e.E, n * len(e.factors))
        assert cov[-1] > 1.15 * uni[-1], (seed, cov[-1], uni[-1])


def test_load_samples_refuses_mixed_devices(tiny, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    profile(tiny, a, 1, make_backend(tiny), progress=False, **PROFILE_FAST)
    profile(tiny, b, 1, make_backend(tiny, threads=2), progress=False, **PROFILE_FAST)
    with pytest.raises(ValueError, match="another device"):
        load_samples([str(a), str(b)], tiny)


BLOCK_TORCH = textwrap.dedent("""
    import sys, runpy
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torch', 'widthnas', 'models', 'latency', 'nas', 'mrf'):
                raise ImportError('blocked in this test: ' + name)
    sys.meta_path.insert(0, Block())
    sys.argv = ['runner.py'] + sys.argv[1:]
    runpy.run_path('runner.py', run_name='__main__')
""")


def test_bundle_runner_needs_no_torch(tiny, tmp_path):
    bundle = write_bundle(tiny, tmp_path / "bundle", 3, seed=1)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["networks"]) == 3 and (bundle / "runner.py").exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-c", BLOCK_TORCH, "--out", "samples.jsonl", "--rounds", "2", "--round-ms", "1"]
    r = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    header, recs, bad = sr.read_samples(str(bundle / "samples.jsonl"))
    assert [x["widths"] for x in recs] == [n["widths"] for n in manifest["networks"]]
    s = load_samples(str(bundle / "samples.jsonl"), tiny)  # the host reads what the device wrote
    # ... leaving out what the device's load guard marked disturbed (a noisy host may mark one)
    n_disturbed = sum(x["disturbed"] for x in recs)
    assert len(s) == 3 - n_disturbed and len(s.disturbed) == n_disturbed and np.all(s.norm > 0)
    # rerunning continues: nothing left to do, nothing duplicated
    r = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and len(sr.read_samples(str(bundle / "samples.jsonl"))[1]) == 3
    # the device runs the same protocol, load guard included, and records it
    assert header["settings"]["guard"] == sr.Protocol().settings()["guard"] and header["settings"]["rounds"] == 2
    assert all(x["disturbed"] in (True, False) and x["remeasured"] >= 0 for x in recs)
    r = subprocess.run(cmd + ["--no-guard"], cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "another timing protocol" in r.stderr


def test_verification_timing_uses_the_load_guard(tiny, tmp_path):
    from widthnas.latency.onnx_graph import space_onnx
    from widthnas.latency.table import LatencyTable
    from widthnas.nas.export import measure_exported

    path = tmp_path / "m.onnx"
    path.write_bytes(space_onnx(tiny, tiny.min_widths).SerializeToString())
    table = LatencyTable(tiny, flat_costs(tiny), 0.0, 1.0, make_backend(tiny).device_info())
    logs = []
    guard = sr.LoadGuard(sr.GuardSettings(max_wait_s=1.0), log=logs.append)  # a noisy host: 1 s per wait, not 60
    recs = [measure_exported(path, table, **FAST_ROUNDS, guard=guard) for _ in range(2)]
    assert guard.baseline is not None and all(r["normalised_ms"] > 0 for r in recs)
    assert all(isinstance(r["disturbed"], bool) and r["remeasured"] >= 0 for r in recs)
    assert sum(r["remeasured"] for r in recs) == sum("machine disturbed" in x for x in logs)  # every repeat is said


def test_a_bundle_is_never_written_over(tiny, tmp_path, monkeypatch):
    """A bundle's networks may have been timed on the device already: a second write is refused, and
    the shipped profiles' directory is never a bundle."""
    from widthnas.latency import registry

    bundle = write_bundle(tiny, tmp_path / "bundle", 2, seed=1)
    before = (bundle / "manifest.json").read_text()
    with pytest.raises(ValueError, match="already holds a bundle"):
        write_bundle(tiny, bundle, 3, seed=2)
    assert (bundle / "manifest.json").read_text() == before
    monkeypatch.setattr(registry, "PROFILE_DIR", tmp_path / "hw")
    with pytest.raises(ValueError, match="shipped profiles' directory"):
        write_bundle(tiny, tmp_path / "hw", 2)


@pytest.mark.parametrize("flags,isa", [
    ("fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512dq", "avx512"),
    ("fpu sse4_2 avx avx2 fma avx512f", "avx2"),  # AVX-512 foundation alone is not the full set
    ("fpu sse4_2 avx", "avx"), ("fp asimd evtstrm sve", "sve"), ("fp asimd", "neon"),
    ("half thumb fastmult vfp edsp neon vfpv3", "neon"),  # 32-bit ARM says neon, not asimd
    ("fpu", "")])
def test_the_cpu_isa_is_read_from_its_flags(flags, isa, tmp_path):
    key = "Features" if flags.startswith(("fp ", "half")) else "flags"
    f = tmp_path / "cpuinfo"
    f.write_text(f"processor\t: 0\nmodel name\t: Some CPU\n{key}\t\t: {flags}\n")
    assert sr.cpu_isa(str(f)) == isa


@pytest.mark.parametrize("machine,isa", [("x86_64", ""), ("arm64", "neon"), ("aarch64", "neon")])
def test_without_cpuinfo_only_64_bit_arm_is_known(machine, isa, tmp_path, monkeypatch):
    monkeypatch.setattr(sr.platform, "machine", lambda: machine)  # macOS / Windows have no /proc/cpuinfo
    assert sr.cpu_isa(str(tmp_path / "missing")) == isa


@pytest.fixture
def avx512(monkeypatch):
    """This machine's device record, as on an AVX-512 CPU whatever the host (the tests must not depend on it)."""
    monkeypatch.setattr(sr, "cpu_isa", lambda *a: "avx512")


def test_a_profile_of_another_isa_is_not_chosen_and_one_without_it_only_when_nothing_matches(
        tiny, tmp_path, monkeypatch, avx512):
    """Two "AMD EPYC" machines ran a 224 px network 2x apart (RESULTS.md §2.2c): the ISA is in the key."""
    from widthnas.latency import registry

    here = make_backend(tiny).device_info()
    assert here["isa"] == "avx512"
    monkeypatch.setattr(registry, "PROFILE_DIR", tmp_path)
    prof = {"space": {"fingerprint": tiny.fingerprint}, "device": {**here, "isa": "avx2"}}
    (tmp_path / "c.json").write_text(json.dumps(prof))
    found, why = registry.find_profile(tiny, here)
    assert found is None and "c.json: isa: avx512 here, avx2 in the profile" in why
    unrecorded = {k: v for k, v in here.items() if k != "isa"}
    (tmp_path / "a.json").write_text(json.dumps({**prof, "device": unrecorded}))
    found, why = registry.find_profile(tiny, here)  # made before the ISA was recorded: taken, and said
    assert found == tmp_path / "a.json" and "does not record its isa" in why and "avx512" in why
    (tmp_path / "b.json").write_text(json.dumps({**prof, "device": here}))
    found, why = registry.find_profile(tiny, here)  # an exact match beats the earlier-sorted unrecorded one
    assert found == tmp_path / "b.json" and "does not record" not in why
    (tmp_path / "d.json").write_text(json.dumps({**prof, "device": here}))  # another machine behind the same key
    found, _ = registry.matching_profiles(tiny, here)  # all of them, for a run to choose by the reference's speed
    assert found == [tmp_path / "b.json", tmp_path / "d.json", tmp_path / "a.json"]
    assert sr.device_differences(here, {**here, "isa": "avx2"}) == {"isa": ("avx512", "avx2")}
    assert sr.device_differences({**here, "isa": ""}, {**here, "isa": "avx2"}) == {}


def _with_isa(src, dst, isa):
    """A copy of samples file src whose header records another ISA (None: not recorded)."""
    lines = src.read_text().splitlines()
    head = json.loads(lines[0])
    if isa is None:
        head["device"].pop("isa")
    else:
        head["device"]["isa"] = isa
    dst.write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    return str(dst)


def test_load_samples_refuses_mixed_isas_even_behind_an_unrecorded_file(tiny, tmp_path, avx512):
    a = tmp_path / "a.jsonl"
    profile(tiny, a, 1, make_backend(tiny), progress=False, **PROFILE_FAST)
    old = _with_isa(a, tmp_path / "old.jsonl", None)
    avx2 = _with_isa(a, tmp_path / "b.jsonl", "avx2")
    with pytest.raises(ValueError, match="isa: avx512 expected, avx2 in this file"):
        load_samples([str(a), avx2], tiny)
    with pytest.raises(ValueError, match="isa"):  # the first file records none: the second fixes it
        load_samples([old, str(a), avx2], tiny)
    s = load_samples([old, str(a)], tiny)
    assert s.header["device"]["isa"] == "avx512"  # so the fitted table records it
    assert "isa" not in json.loads(Path(old).read_text().splitlines()[0])["device"]  # the input is untouched


def test_resuming_a_samples_file_of_another_isa_names_it(tiny, tmp_path, avx512):
    a = tmp_path / "a.jsonl"
    profile(tiny, a, 1, make_backend(tiny), progress=False, **PROFILE_FAST)
    b = _with_isa(a, tmp_path / "b.jsonl", "avx2")
    before = Path(b).read_text()
    with pytest.raises(ValueError, match="isa: avx2 in the file, avx512 here.*another machine"):
        profile(tiny, b, 2, make_backend(tiny), progress=False, **PROFILE_FAST)
    assert Path(b).read_text() == before
