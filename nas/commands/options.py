"""Options several commands read the same way: the space (--space, --input-shape), the widths
(--widths, --config) and the settings of a configuration dataclass."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from widthnas._io import read_json
from widthnas.models.space import check_fingerprint


def add_space_options(q, shape_help: str | None = "C,H,W to override the space's input shape") -> None:
    """--space, and --input-shape with this help (None: no --input-shape)."""
    q.add_argument("--space", help="mobilenet_v1_small (default), mobilenet_v1, mobilenet_v2(_small), "
                   "resnet(_small), or a space JSON file (`widthnas space --json`, --from-model)")
    if shape_help:
        q.add_argument("--input-shape", help=shape_help)


def space_file(space: str | None) -> str | None:
    """--space when it names a file (a space JSON, an input), not a shipped space."""
    return space if space and Path(space).is_file() else None


def space_from_args(args, header_space: dict | None = None):
    """The space of --space, or else of a samples header's definition."""
    from widthnas.models.families import get_space
    from widthnas.models.space import GraphSpace

    if header_space is not None and not args.space:
        return GraphSpace.from_dict(header_space, "the samples header's space")
    space = get_space(args.space or "mobilenet_v1_small")
    if args.input_shape:
        space = space.with_input(args.input_shape)
    return space


def widths_arg(space, args, default=None) -> list[int]:
    """--widths ('8,16,...', a JSON list, 'x0.75') or --config (a chosen-configuration JSON, checked
    against the space's fingerprint)."""
    if args.widths:
        return space.parse_widths(args.widths)
    if args.config:
        d = read_json(args.config, "configuration", "make one with `widthnas search --out FILE`")
        if not isinstance(d, dict) or "widths" not in d:
            raise ValueError(f"configuration {args.config} has no \"widths\": it is not a chosen configuration; "
                             "make one with `widthnas search --out FILE`, or give --widths")
        fp = d.get("space", {}).get("fingerprint") if isinstance(d.get("space"), dict) else None
        if fp is not None:
            check_fingerprint(fp, space, f"configuration {args.config}")
        return space.validate(d["widths"])
    if default is None:
        raise ValueError("give --config (from `widthnas search`) or --widths")
    return default


def given_settings(args, config) -> dict:
    """The fields of the settings dataclass `config` given on the command line (options left out, None,
    are absent); a switch that sets a field has that field's name as its dest and default None."""
    return {f.name: getattr(args, f.name) for f in fields(config) if getattr(args, f.name, None) is not None}
