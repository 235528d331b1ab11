"""Which pytorchcv zoo architectures `widthnas space --from-model` traces, and why the others are refused
(the README's coverage table, issue 32). Each model is built untrained and traced at its own input size;
a traced space must reproduce the model's outputs, or tracing fails.

    python -m widthnas.benchmarks.zoo_coverage        # pytorchcv installed (make test installs it)
    python -m widthnas.benchmarks.zoo_coverage densenet121 squeezenet_v1_1   # some rows only
"""
from __future__ import annotations

import argparse
import importlib
import re
import time
import warnings

MODELS = [("proxylessnas", "proxylessnas_cpu"), ("proxylessnas", "proxylessnas_mobile"), ("mnasnet", "mnasnet_b1"),
          ("mnasnet", "mnasnet_a1"), ("mobilenetv3", "mobilenetv3_small_w7d20"), ("efficientnet", "efficientnet_b0"),
          ("vgg", "vgg11"), ("vgg", "bn_vgg11"), ("preresnet", "preresnet10"), ("resnext", "resnext14_16x4d"),
          ("regnet", "regnetx002"), ("densenet", "densenet121"), ("fdmobilenet", "fdmobilenet_w1"),
          ("mobilenet", "mobilenet_w1"), ("mobilenetv2", "mobilenetv2_w1"), ("resnet", "resnet18"),
          ("squeezenet", "squeezenet_v1_1"), ("shufflenetv2", "shufflenetv2_w1")]


def reason(msg: str) -> str:
    """The tracer's refusal, without the node and file: what it could not read."""
    m = re.search(r"\): (.*?)(?: What to do|$)", msg, re.S)
    return " ".join((m.group(1) if m else msg).split())[:140]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help=f"these models only, of {[n for _, n in MODELS]}")
    a = p.parse_args(argv)
    unknown = sorted(set(a.only) - {n for _, n in MODELS})
    if unknown:
        p.error(f"unknown models {unknown}; choose from {[n for _, n in MODELS]}")
    warnings.filterwarnings("ignore")
    from widthnas.models.trace import TraceError, trace_model

    print("| model | traces | free groups, or why it is refused |\n|---|---|---|")
    for module, name in MODELS:
        if a.only and name not in a.only:
            continue
        t0 = time.time()
        model = getattr(importlib.import_module(f"pytorchcv.models.{module}"), name)().eval()
        try:
            space = trace_model(model, (3, 224, 224), name, levels=4)
            print(f"| {name} | yes | {len(space.free_groups)} free groups ({time.time() - t0:.0f} s) |")
        except TraceError as e:
            print(f"| {name} | no | {reason(str(e))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
