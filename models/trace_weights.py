"""A user's trained weights on a traced space: load, check, slice to chosen widths, seed a supernet.

The traced space records, per conv, bn and linear op, the module path the weights live under
(`GraphSpace.source`), so a state_dict of the user's model maps onto the ops by name.

A narrower width keeps the same channels in every op of a channel group (a residual stage's convs,
BNs and adds; a depthwise conv's input and output): the most important ones (`importance`), not the
first k, in their original order, so slicing to the model's own widths gives back the model exactly.
A supernet (which always slices the first k channels) is seeded instead with each group's channels
*sorted* by importance, so its first k are the k most important. A group of b blocks (a grouped conv's,
`Graph.blocks`) keeps the same number in every block, the most important of each (a block's channels
only ever feed that block's convolution); sorting likewise stays inside each block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .net import GraphNet, Widths, channel_index, module_key, tensor_index
from .space import GraphSpace

_BN = ("weight", "bias", "running_mean", "running_var")


class WeightsError(ValueError):
    """Weights that do not fit the traced space; the message names the keys."""


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict saved with torch.save (or a checkpoint holding one under 'state_dict' or 'model')."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"--weights {path}: file not found")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"--weights {path} cannot be read as a torch state_dict ({type(e).__name__}: "
                           f"{str(e).splitlines()[0]}); save it with torch.save(model.state_dict(), path)") from None
    if isinstance(d, dict) and not any(isinstance(v, torch.Tensor) for v in d.values()):
        d = next((d[k] for k in ("state_dict", "model", "model_state_dict") if isinstance(d.get(k), dict)), d)
    if not isinstance(d, dict) or not d or not all(isinstance(v, torch.Tensor) for v in d.values()):
        raise WeightsError(f"--weights {path} holds {type(d).__name__}, not a state_dict of tensors; save it with "
                           "torch.save(model.state_dict(), path)")
    return d


def _source(space: GraphSpace) -> dict[str, str]:
    if space.source is None:
        raise WeightsError(f"space {space.name!r} was not traced from a model, so no module paths map a state_dict "
                           "onto its ops; --weights needs a space from `widthnas space --from-model`")
    return space.source.module_of


def expected_keys(space: GraphSpace) -> dict[str, tuple[tuple[int, ...] | None, bool]]:
    """The user's state_dict keys the traced ops read -> (shape at the base widths, required: conv and linear
    biases may be absent)."""
    # the model's own widths, choices or not (traced with --max-mult < 1 they are above every choice)
    src, a, ch = _source(space), {s.name: s.base for s in space.groups}, space.graph.channels
    out = {}
    for op in space.graph.ops:
        if op.kind not in ("conv", "bn", "linear"):
            continue
        p, c_in, c_out = src[op.name], ch(op.inputs[0], a), ch(op.name, a)
        if op.kind == "conv":
            per_group = 1 if op.depthwise else c_in // op.conv_groups  # input channels each output reads
            out[f"{p}.weight"] = ((c_out, per_group, op.kernel, op.kernel), True)
            out[f"{p}.bias"] = ((c_out,), op.bias)  # its own (no BN after it), or folded into the BN's running mean
        elif op.kind == "bn":
            out.update({f"{p}.{k}": ((c_out,), True) for k in _BN})
            out[f"{p}.num_batches_tracked"] = (None, False)
        else:
            out[f"{p}.weight"] = ((c_out, c_in), True)
            out[f"{p}.bias"] = ((c_out,), False)
    return out


def _as_linear(t: torch.Tensor, shape) -> tuple:
    """A tensor's shape as the op reads it: a 1x1 conv classifier's weight (classes, C, 1, 1) as the linear's
    (classes, C); a hidden Linear's (out, C) as the 1x1 conv's (out, C, 1, 1) it is in the space, and VGG's
    first head Linear on a flattened H x H map, (out, C*H*H), as the H x H conv's (out, C, H, H)."""
    sh = tuple(t.shape)
    if len(sh) == 4 and sh[2:] == (1, 1) and len(shape) == 2:
        return sh[:2]
    if len(sh) == 2 and len(shape) == 4 and sh[0] == shape[0] and sh[1] == shape[1] * shape[2] * shape[3]:
        return tuple(shape)
    return sh


def check_state(space: GraphSpace, sd: Mapping[str, torch.Tensor], what: str = "--weights",
                allow_unexpected: bool = False) -> dict[str, torch.Tensor]:
    """Refuse missing keys, unexpected keys and wrong shapes, naming them; returns the state_dict
    (a DataParallel 'module.' prefix removed)."""
    exp = expected_keys(space)
    if sd and all(k.startswith("module.") for k in sd) and not any(k in exp for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    missing = [k for k, (_, req) in exp.items() if req and k not in sd]
    unused = set(space.source.unused_keys)  # layers the traced forward never calls: ignored
    unexpected = [] if allow_unexpected else [k for k in sd if k not in exp and k not in unused]
    if missing or unexpected:
        found = [f"{kind} keys {ks[:12]}{' ...' if len(ks) > 12 else ''}"
                 for kind, ks in (("missing", missing), ("unexpected", unexpected)) if ks]
        raise WeightsError(f"{what} do not match the traced model of space {space.name!r}: {'; '.join(found)}. "
                           f"Give the state_dict of the model the space was traced from ({space.source.factory}), "
                           "saved with torch.save(model.state_dict(), path)")
    bad = [f"{k}: {tuple(sd[k].shape)}, the space needs {shape}" for k, (shape, _) in exp.items()
           if k in sd and shape is not None and _as_linear(sd[k], shape) != shape]
    if bad:
        raise WeightsError(f"{what}: shapes differ from the traced model's: {bad[:8]}; were these weights saved "
                           "from another configuration of the model?")
    return dict(sd)


CRITERIA = ("bn", "magnitude", "tp")
IMPORTANCE = "magnitude"  # the default criterion (see `importance`)


def importance(space: GraphSpace, sd: Mapping[str, torch.Tensor], criterion: str = IMPORTANCE) -> dict[str, torch.Tensor]:
    """Free group -> (base,) channel importance.

    bn: sum over the group's BNs of |gamma| / mean |gamma| (the channel's scale after BN, as network
        slimming reads it), and over its convs without a BN of their output channels' L1 norm / its mean
        (what a channel puts out);
    magnitude (the default): that, plus what reads the channel: every conv and linear taking the group as
        input votes with its input channel's L1 norm / its mean (each layer one equal vote whatever its
        scale). Fine-tuned at equal widths, its channels did better than bn's and as well as tp's
        (docs/RESULTS.md §9);
    tp: Torch-Pruning's group L1 magnitude (MagnitudeImportance(p=1)): the mean over the group's layers of
        their raw L1 norms (conv outputs, BN |gamma|, inputs of what reads it), divided by its mean. The same
        channels as Torch-Pruning's on networks of dense convs, BNs and linears (tested on a ResNet); its rules
        for depthwise and grouped convs (which it ranks by the mean over blocks) are not reproduced."""
    if criterion not in CRITERIA:
        raise ValueError(f"importance criterion {criterion!r}: choose one of {CRITERIA}")
    free = {s.name: torch.zeros(s.base, dtype=torch.float64) for s in space.free_groups}
    votes = {n: 0 for n in free}
    with_bn = {op.inputs[0] for op in space.graph.ops if op.kind == "bn"}
    tensors = _op_tensors(space, sd)

    base, lay = {s.name: s.base for s in space.groups}, space.graph.layout

    def vote(tensor: str, v: torch.Tensor) -> None:
        """v: (channels of `tensor`,): one vote for each of its groups (a concatenation's segments in turn)."""
        off = 0
        for group in lay[tensor]:
            if group in free:
                p = v[off:off + base[group]].detach().double()
                free[group] += p if criterion == "tp" else p / p.mean().clamp_min(1e-12)
                votes[group] += 1
            off += base[group]

    for op in space.graph.ops:
        go, gi = op.name, op.inputs[0]  # tensors: vote() spreads a vote over a concatenation's groups
        if op.kind == "bn":
            vote(go, tensors[op.name]["weight"].abs())
        elif op.kind == "conv":
            w = tensors[op.name]["weight"].abs()  # (out, in / groups, k, k)
            # what it puts out: its BN says it when it has one (but for 'tp'); a depthwise conv's filter is also
            # all it reads, one vote ('bn' leaves it out); a grouped conv with a BN votes only as a reader below
            puts_out = {"bn": op.name not in with_bn and not op.keeps_group,
                        "magnitude": op.name not in with_bn or op.depthwise, "tp": True}[criterion]
            if puts_out:
                vote(go, w.flatten(1).sum(1))
            if criterion != "bn" and not op.keeps_group:  # what it reads
                vote(gi, w.sum((0, 2, 3)))
            elif criterion != "bn" and op.conv_groups > 1:  # a grouped conv reads each block's inputs
                b = op.conv_groups
                vote(gi, w.sum((2, 3)).reshape(b, w.shape[0] // b, -1).sum(1).reshape(-1))
        elif op.kind == "linear" and criterion != "bn":
            vote(gi, tensors[op.name]["weight"].abs().sum(0))
    if criterion == "tp":  # the mean over layers, then normalised by its mean
        free = {n: (v / max(votes[n], 1)) / (v / max(votes[n], 1)).mean().clamp_min(1e-12) for n, v in free.items()}
    return free


def keep_channels(space: GraphSpace, sd: Mapping[str, torch.Tensor], widths: Widths, criterion: str = IMPORTANCE
                  ) -> dict[str, torch.Tensor]:
    """Group -> indices of the channels kept at `widths` (the most important, in their original
    order); fixed groups keep all."""
    a = space.assignment(widths)
    imp = importance(space, sd, criterion)
    out = {}
    for s in space.groups:
        k = a[s.name]
        if k > s.base:
            raise WeightsError(f"group {s.name!r}: width {k} is wider than the model's {s.base} channels, so the "
                               "model's weights cannot fill it; choose widths up to the model's own (trace with "
                               "--max-mult 1.0), or train without --weights")
        out[s.name] = (torch.arange(s.base) if s.name not in imp or k == s.base
                       else torch.sort(_ranked(imp[s.name], space.graph.blocks.get(s.name, 1), k)).values)
    return out


def _ranked(imp: torch.Tensor, blocks: int, k: int | None = None) -> torch.Tensor:
    """Indices of the k most important channels (all when None), most important first, in blocks: the
    k / blocks most important of each block, block by block. Stable: equal importance keeps the earlier
    channel."""
    per = imp.numel() // blocks
    k = imp.numel() if k is None else k
    return torch.cat([j * per + torch.sort(-imp[j * per:(j + 1) * per], stable=True).indices[:k // blocks]
                      for j in range(blocks)])


def _op_tensors(space: GraphSpace, sd: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """op name -> its tensors at base widths under GraphNet's names, the conv biases folded into the BNs."""
    src, out = _source(space), {}
    for op in space.graph.ops:
        p = src.get(op.name)
        if op.kind == "conv":
            w = sd[f"{p}.weight"]
            # a hidden Linear's (out, C): a 1x1 conv's; VGG's (out, C*H*H) on a flattened map: an H x H conv's
            w = w.reshape(w.shape[0], -1, op.kernel, op.kernel) if w.dim() == 2 else w
            out[op.name] = {"weight": w, **({"bias": sd[f"{p}.bias"]} if op.bias else {})}
        elif op.kind == "bn":
            t = {k: sd[f"{p}.{k}"] for k in _BN}
            conv_bias = sd.get(f"{src[op.inputs[0]]}.bias") if op.name in space.graph.folded_bns else None
            if conv_bias is not None:  # BN(conv(x) + b) == BN'(conv(x)) with running_mean' = running_mean - b
                t["running_mean"] = t["running_mean"] - conv_bias
            if f"{p}.num_batches_tracked" in sd:
                t["num_batches_tracked"] = sd[f"{p}.num_batches_tracked"]
            out[op.name] = t
        elif op.kind == "linear":
            w = sd[f"{p}.weight"]
            w = w.flatten(1) if w.dim() == 4 else w  # a 1x1 conv classifier's (classes, C, 1, 1)
            out[op.name] = {"weight": w, "bias": sd.get(f"{p}.bias", torch.zeros(w.shape[0]))}
    return out


def sliced_state(space: GraphSpace, sd: Mapping[str, torch.Tensor], widths: Widths,
                 keep: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state_dict of `GraphNet(space, widths)` cut from the user's weights: every op of a group
    takes the same channels (`keep`, default `keep_channels`)."""
    keep = keep_channels(space, sd, widths) if keep is None else keep
    base, out = {s.name: s.base for s in space.groups}, {}
    for name, tensors in _op_tensors(space, sd).items():
        op = space.graph.by_name[name]
        ki, ko = (tensor_index(space, t, keep, base) for t in (op.inputs[0], op.name))
        for k, t in tensors.items():
            t = t.detach().float() if t.is_floating_point() else t.detach()
            if op.kind == "conv" and op.conv_groups > 1 and k == "weight":
                t = _grouped_rows(t, ko, op.conv_groups)
            elif op.kind == "conv":
                t = t[ko] if op.depthwise or k == "bias" else t[ko][:, ki]
            elif op.kind == "bn" and t.dim() == 1:
                t = t[ko]
            elif op.kind == "linear" and k == "weight":
                t = t[:, ki]
            out[f"layers.{module_key(op)}.{k}"] = t.clone()
    return out


def _grouped_rows(w: torch.Tensor, keep: torch.Tensor, blocks: int) -> torch.Tensor:
    """A grouped conv's weight (C, C / blocks, k, k) cut to the kept channels `keep` (the same number in
    every block, listed block by block, in any order inside one): a kept output of block j reads the kept
    inputs of block j, at their positions inside it, in the same order."""
    per = w.shape[0] // blocks
    rows = []
    for j in range(blocks):
        mine = keep[(keep >= j * per) & (keep < (j + 1) * per)]
        rows.append(w[mine][:, mine - j * per])
    return torch.cat(rows)


def user_network(space: GraphSpace, sd: Mapping[str, torch.Tensor], widths: Widths | None = None,
                 what: str = "--weights", allow_unexpected: bool = False, criterion: str = IMPORTANCE):
    """A plain `GraphNet` at `widths` (default: the model's own widths) holding the user's weights,
    sliced by importance (see above; `criterion`: `importance`'s)."""
    if widths is None:  # the model's own widths, in a space holding them even when its choices stop below them
        widths = space.base_widths  # (--max-mult < 1)
        space = GraphSpace.from_graph(space.name, space.graph, {g.name: (g.base,) for g in space.free_groups},
                                      space.source)
    sd = check_state(space, sd, what, allow_unexpected)
    net = GraphNet(space, widths)
    state = sliced_state(space, sd, widths, keep_channels(space, sd, widths, criterion))
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # a bug here, not the user's: every key was checked above
        raise RuntimeError(f"sliced weights do not fit GraphNet: missing {missing}, unexpected {unexpected}")
    return net


def seed_supernet(sup, sd: Mapping[str, torch.Tensor], what: str = "--weights") -> dict[str, int]:
    """Copy the user's weights into a `SlimmableGraphNet`, every group's channels sorted by importance
    (so the supernet's first k channels are the k most important) into its first `base` channels;
    channels beyond the model's (when choices exceed it) keep their initialisation. Returns
    {group: channels copied}."""
    space, widest = sup.space, sup.full.assignment
    narrow = [f"{s.name} ({widest[s.name]} < {s.base})" for s in space.groups if widest[s.name] < s.base]
    if narrow:
        raise WeightsError(f"{what}: the supernet's widest choices are narrower than the model in groups "
                           f"{narrow[:6]}, so the model's weights do not fit in it; trace with --max-mult 1.0 or more "
                           "(the model's own width is then a choice), or train without --weights")
    sd = check_state(space, sd, what)
    imp, blocks = importance(space, sd), space.graph.blocks
    order = {s.name: (_ranked(imp[s.name], blocks.get(s.name, 1)) if s.name in imp else torch.arange(s.base))
             for s in space.groups}
    small = sliced_state(space, sd, space.base_widths, keep=order)  # base widths, channels permuted
    # where the model's channels go in the supernet: its first `base` (of a group of blocks: the first
    # base / b of every block of widest / b)
    at = {s.name: channel_index(space, s.name, s.base, widest[s.name]) for s in space.groups}
    full = sup.full.state_dict()
    with torch.no_grad():
        for op in space.graph.ops:
            for name in ("weight", "bias", *_BN[2:], "num_batches_tracked"):
                key = f"layers.{module_key(op)}.{name}"
                if key not in small:
                    continue
                t, dst = small[key], full[key]
                if dst.dim() == 0 or (op.kind == "linear" and name == "bias"):  # a count; the classes, fixed
                    dst.copy_(t)
                    continue
                rows, cols = (tensor_index(space, x, at, widest) for x in (op.name, op.inputs[0]))
                if op.kind == "linear":
                    dst[:, cols] = t
                elif op.kind == "conv" and name == "weight":
                    cols = slice(0, t.shape[1]) if op.keeps_group else cols
                    sub = dst[rows]
                    sub[:, cols] = t
                    dst[rows] = sub
                else:
                    dst[rows] = t
    sup.full.load_state_dict(full)
    return {s.name: s.base for s in space.groups}
