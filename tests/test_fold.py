"""MobileNet-v1 as a graph family: the same spaces, profiles and search answers as the chain path had.

Oracles: the chain-format profiles as shipped before 0.2 (tests/data/chain_profiles, summed block by
block here, as the chain table did), and the chain solvers' answers recorded at 63b3525 on the same
unaries (tests/data/chain_solutions.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from widthnas.latency import ProfileError, load_profile
from widthnas.latency.legacy_profile import convert
from widthnas.models import GraphError, GraphSpace, get_space
from widthnas.mrf import build_mrf, solve
from widthnas.mrf.unaries import from_arrays

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
OLD = sorted((DATA / "chain_profiles").glob("*.json"))


def chain_predict(d: dict, widths: np.ndarray) -> np.ndarray:
    """The chain table's prediction, summed from the old file's blocks: stem, blocks, head (ms)."""
    blocks = d["blocks"]
    out = np.full(len(widths), float(d["intercept_ms"]))
    for r, w in enumerate(widths):
        out[r] += blocks[0]["ms"][0][blocks[0]["c_out"].index(int(w[0]))]
        for k in range(1, len(w)):
            b = blocks[k]
            out[r] += b["ms"][b["c_in"].index(int(w[k - 1]))][b["c_out"].index(int(w[k]))]
        out[r] += blocks[-1]["ms"][blocks[-1]["c_in"].index(int(w[-1]))][0]
    return out


@pytest.mark.parametrize("old", OLD, ids=lambda p: p.stem)
def test_converted_profiles_predict_as_the_chain_tables_did(old):
    d = json.loads(old.read_text())
    shipped = load_profile(ROOT / "hw_profiles" / old.name)
    assert shipped.keying == "op" and shipped.space.fingerprint == get_space(d["space"]["name"]).fingerprint
    assert [list(c) for c in shipped.space.choices] == [l["choices"] for l in d["space"]["def"]["layers"]]
    rng = np.random.default_rng(0)
    space = shipped.space
    W = [space.min_widths, space.max_widths, space.reference_widths]
    W += [r["widths"] for r in (d["fit"].get("ref_ladder") or {}).get("rungs", [])]
    W += [[int(rng.choice(c)) for c in space.choices] for _ in range(2000)]
    W = np.asarray(W)
    want = chain_predict(d, W)
    np.testing.assert_allclose(shipped.predict_many(W), want, rtol=0, atol=1e-9)
    # the conversion is reproducible from the old file, and keeps its fit, ladder and validation
    again = convert(d, str(old))
    np.testing.assert_array_equal(again.costs, shipped.costs)
    assert shipped.validation == d["validation"] and shipped.reference_ms == d["reference_ms"]
    assert shipped.fit.get("ref_ladder") == d["fit"].get("ref_ladder")


def test_old_chain_files_are_refused_with_what_to_do(tmp_path):
    old = json.loads(OLD[0].read_text())
    p = tmp_path / "old_profile.json"
    p.write_text(json.dumps(old))
    with pytest.raises(ProfileError, match=r"chain format of widthnas before 0\.2; convert it exactly with "
                                           r"`python -m widthnas\.latency\.legacy_profile"):
        load_profile(p)
    s = tmp_path / "old_space.json"
    s.write_text(json.dumps(old["space"]["def"]))
    with pytest.raises(GraphError, match=r"chain format of widthnas before 0\.2.*widthnas space --space mobilenet_v1"):
        get_space(str(s))
    # converting writes a new file and never over its input
    from widthnas.latency.legacy_profile import main

    assert main([str(p), str(p)]) == 2 and json.loads(p.read_text()) == old
    assert main([str(p), str(tmp_path / "new.json")]) == 0
    assert isinstance(load_profile(tmp_path / "new.json").space, GraphSpace)


CASES = json.loads((DATA / "chain_solutions.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{Path(c['profile']).stem[-20:]}-s{c['seed']}-{c['budget_ms']:.3f}")
def test_the_graph_search_gives_the_chain_solvers_answers(case):
    table = load_profile(ROOT / case["profile"])
    u = from_arrays(table.space, [np.array(x) for x in case["loss"]], [np.array(x) for x in case["count"]])
    mrf = build_mrf(table, u)
    for method in ("exact", "lagrangian"):
        sol, want = solve(mrf, case["budget_ms"], method), case[method]
        assert sol.widths == want["widths"], method
        assert sol.score == pytest.approx(want["score"], abs=1e-9)
        assert sol.latency == pytest.approx(want["latency"], abs=1e-9)
