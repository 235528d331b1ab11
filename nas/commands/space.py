"""`widthnas space`: show a search space, or trace your model into one (--from-model)."""
from __future__ import annotations

import json
from pathlib import Path

from widthnas._io import atomic_write_text

from ..checks import UserError, check_outputs
from .options import add_space_options, space_file, space_from_args


def add_parser(sub) -> None:
    q = sub.add_parser("space", help="show a search space, its channel groups and their width choices")
    add_space_options(q, "C,H,W to override the space's input shape (with --from-model: the shape the model "
                      "is traced on, required)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--from-model", metavar="PKG.MODULE:FACTORY", help="trace your own nn.Module into a graph "
                   "space: a function or class (called without arguments) in an importable module or a .py file, "
                   "e.g. mymodels:make_resnet or path/to/models.py:make_resnet")
    q.add_argument("--name", help="--from-model: the space's name (default: the factory's)")
    q.add_argument("--fixed", help="layers kept at their own width: module paths, comma-separated (a block's path "
                   "fixes every conv in it), e.g. conv1,layer4")
    q.add_argument("--tie", action="append", metavar="A,B[,...]", help="give the listed layers' output channels one "
                   "width (merge their groups by hand); repeatable")
    q.add_argument("--max-mult", type=float, help="--from-model: widest choice as a multiple of the model's own "
                   "widths (default 1.0: the model is the widest network, so its weights slice to every choice)")
    q.add_argument("--levels", type=int, help="--from-model: width levels per group between 0.2x and --max-mult "
                   "(default 14, as the shipped spaces; fewer: a quicker profile fit and search)")
    q.add_argument("--out", help="write the space JSON here (refused if it exists, unless --force)")
    q.add_argument("--force", action="store_true", help="let --out replace an existing file")


def run(args) -> int:
    mod = (args.from_model or "").split(":")[0]  # --from-model path/to/models.py:factory, or pkg.module:factory
    model_files = [f for f in (mod, mod.replace(".", "/") + ".py") if mod and Path(f).is_file()]
    check_outputs({"--out": args.out}, {"--space": space_file(args.space), "--from-model": model_files})
    if args.from_model:
        space = _traced_space(args)
    else:
        if args.max_mult is not None or args.levels is not None:
            raise UserError("--max-mult and --levels set the width choices of a traced model: use them with "
                            "--from-model")
        space = space_from_args(args)
        if args.fixed or args.tie:
            from widthnas.models.trace import apply_constraints

            space = apply_constraints(space, _names(args.fixed), [_names(t) for t in args.tie or ()])
    if args.out and Path(args.out).exists() and not args.force:
        raise UserError(f"{Path(args.out)} exists; choose another --out, or pass --force to replace it")
    _print_space(space)
    if args.json:
        print(json.dumps(space.to_dict(), indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(space.to_dict(), indent=1))
        print(f"space written to {args.out}; use it with --space {args.out} in profile, train, run, export")
    return 0


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _traced_space(args):
    """`--from-model package.module:factory --input-shape C,H,W`: the user's model traced (models/trace.py)."""
    from widthnas.models.trace import load_factory, parse_input_shape, trace_model

    if args.space:
        raise UserError("give --from-model (trace your model) or --space (a shipped space or file), not both")
    if not args.input_shape:
        raise UserError("--from-model needs --input-shape C,H,W (one image, e.g. 3,32,32): the model is run once "
                        "on it to know every tensor's shape")
    shape = parse_input_shape(args.input_shape)
    model, spec = load_factory(args.from_model)
    name = args.name or spec.split(":")[1]
    return trace_model(model, shape, name, spec, _names(args.fixed), [_names(t) for t in args.tie or ()],
                       1.0 if args.max_mult is None else args.max_mult, 14 if args.levels is None else args.levels)


def _print_space(space) -> None:
    """Groups (the search variables), their choices, and the costed ops each one's channels enter or leave
    (for a traced space: the model's layers whose output each group is)."""
    touches = space.touches()
    print(f"{space.name}  input {space.input_shape}  classes {space.num_classes}  fingerprint {space.fingerprint}  "
          f"{len(space.free_groups)} free groups, {len(space.graph.ops)} ops, "
          f"{space.macs(space.base_widths) / 1e6:.1f} M MACs at base widths")
    if space.source is not None:
        from widthnas.models.trace import format_groups

        print(f"traced from {space.source.factory}; channel groups (one width each):")
        print("\n".join(format_groups(space)))
        return
    for g in space.groups:
        what = "fixed" if g.fixed else f"base {g.base:5d}  choices {list(g.choices)}"
        print(f"  {g.name:12s} {what}")
        print(f"  {'':12s} ops: {', '.join(touches[g.name])}")
