"""Convert a MobileNet-v1 profile of widthnas before 0.2 (chain format 'widthnas-profile/1') exactly.

Keyed per op, each block's (c_in, c_out) grid of ms (depthwise + pointwise, stem, pool + classifier)
sits on its pointwise conv, the stem conv or the classifier, the depthwise convs and the pool at 0 ms:
every prediction is unchanged (tests/test_fold.py).

    python -m widthnas.latency.legacy_profile OLD.json NEW.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from widthnas.models.graph import GraphBuilder
from widthnas.models.space import GraphSpace

from .entries import EntryKey, GraphEntries
from .table import CHAIN_FORMAT, LatencyTable, ProfileError


def chain_space_as_graph(d: dict) -> GraphSpace:
    """The graph space of a chain space definition ('widthnas-space/1'): group i = layer i, named as
    the layer; the shipped MobileNet-v1 spaces come out with today's fingerprints."""
    layers = d["layers"]
    b = GraphBuilder(tuple(d["input_shape"]), int(d["num_classes"]))
    x = b.conv_bn(layers[0]["name"], "input", int(layers[0]["base"]), 3, int(layers[0]["stride"]))
    for l in layers[1:]:
        x = b.conv_bn(f"{l['name']}.dw", x, kernel=3, stride=int(l["stride"]), depthwise=True)
        x = b.conv_bn(l["name"], x, int(l["base"]), 1)
    b.head(x)
    return GraphSpace.from_graph(d["name"], b.build(), {l["name"]: [int(c) for c in l["choices"]] for l in layers})


def convert(d: dict, where: str = "profile") -> LatencyTable:
    """The chain profile dict `d` as a LatencyTable keyed per op, with the same predictions."""
    if d.get("format") != CHAIN_FORMAT:
        raise ProfileError(f"{where}: format {d.get('format')!r}; only chain profiles ({CHAIN_FORMAT}) convert")
    try:
        sd = d["space"]["def"]
        space = chain_space_as_graph(sd)
        layers = [l["name"] for l in sd["layers"]]
        blocks = d["blocks"]
        if len(blocks) != len(layers) + 1:
            raise ProfileError(f"{where}: {len(blocks)} blocks for {len(layers)} layers; expected one more (the head)")
        entries = GraphEntries(space, "op")
        costs = np.zeros(entries.E)  # the depthwise convs and the pool: 0 ms, their cost is in the block's entry
        sig = {fc.factor.op: entries.key_of(fc.factor) for fc in entries.factors}
        ops = [layers[0]] + layers[1:] + ["fc"]  # the op that carries block k's ms
        for k, (blk, op) in enumerate(zip(blocks, ops)):
            ms = np.asarray(blk["ms"], float)
            if ms.shape != (len(blk["c_in"]), len(blk["c_out"])) or not np.isfinite(ms).all():
                raise ProfileError(f"{where}: block {k} has a malformed or non-finite table")
            for i, a in enumerate(blk["c_in"]):
                for j, c in enumerate(blk["c_out"]):
                    costs[entries.index[EntryKey(sig[op], int(a), int(c))]] = ms[i, j]
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProfileError):
            raise
        raise ProfileError(f"{where}: not a well-formed chain profile ({type(e).__name__}: {e})") from None
    fit = dict(d.get("fit") or {})
    fit["converted_from"] = CHAIN_FORMAT
    table = LatencyTable(space, costs, float(d["intercept_ms"]), float(d["reference_ms"]), d.get("device", {}),
                              fit, d.get("validation", {}), d.get("name", ""), "op")
    return LatencyTable.from_dict(table.to_dict(), where)  # the checks every profile passes at load


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    if dst.exists() or dst.resolve() == src.resolve():
        print(f"{dst} exists; give a new file name (the input is never overwritten)", file=sys.stderr)
        return 2
    try:
        table = convert(json.loads(src.read_text()), str(src))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table.save(dst)
    print(f"wrote {dst}: {table.entries.E} entries keyed per op, predictions unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
