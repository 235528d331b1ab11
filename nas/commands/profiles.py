"""`widthnas profiles`: list the shipped device profiles."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    sub.add_parser("profiles", help="list shipped device profiles")


def run(args) -> int:
    from widthnas.latency.registry import shipped_profiles

    for p in shipped_profiles():
        d = json.loads(p.read_text())
        dev, v = d.get("device", {}), d.get("validation", {}).get("table", {})
        acc = f"held-out ±10% {v['within_10']:.1%}, NRMSE {v['nrmse']:.2%}" if v else "not validated"
        floor = d.get("validation", {}).get("noise_floor")
        if isinstance(floor, dict) and isinstance(floor.get("nrmse"), (int, float)):
            acc += f", re-measured NRMSE {floor['nrmse']:.2%}"
        lad = (d.get("fit") or {}).get("ref_ladder")
        acc += f", ladder of {len(lad['rungs'])} rungs" if isinstance(lad, dict) and isinstance(lad.get("rungs"), list) \
            else ", no ladder"
        print(f"{p.stem:40s} {d['space']['name']:20s} {dev.get('backend')}/{dev.get('provider')} "
              f"{dev.get('threads')}T b{dev.get('batch')} {dev.get('isa') or 'ISA not recorded'} ref {d['reference_ms']:.3f} ms  {acc}")
    return 0
