"""The unknowns of a graph space's latency model, and where every op of a network finds its own.

An entry is (op signature, c_in, c_out): one costed op's ms given what its latency depends on. Ops with
equal signatures share entries, so a stage's repeated blocks are one set of unknowns; under
`keying="op"` each op has its own (the signature carries its name). All is derived from
`GraphSpace.factor_structure()`. For the fit a network is a design-matrix row (counts of its entries);
for the MRF an op is a factor whose table is read from the same column indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from widthnas.models.space import GraphSpace, OpFactor, OpSignature


KEYINGS = ("signature", "op")  # entries shared by ops of one signature, or one set per op


class EntryKey(NamedTuple):
    signature: OpSignature
    c_in: int  # channels
    c_out: int  # channels


@dataclass(frozen=True)
class FactorColumns:
    """One costed op: the entry column it uses for every choice of the free groups in its scope."""

    factor: OpFactor
    scope_pos: tuple[int, ...]  # positions of the scope's groups in space.free_groups
    cols: np.ndarray  # int entry indices: (K_in, K_out), (K,) or () for 2, 1 or 0 free groups in scope


def signature_to_dict(s: OpSignature) -> dict:
    return {"kind": s.kind, "kernel": s.kernel, "stride": s.stride, "groups": s.groups,
            "resolution": list(s.resolution), **({"op": s.op} if s.op else {})}


def signature_from_dict(d: dict) -> OpSignature:
    return OpSignature(str(d["kind"]), int(d["kernel"]), int(d["stride"]), str(d["groups"]),
                       (int(d["resolution"][0]), int(d["resolution"][1])), str(d.get("op", "")))


def check_keying(keying: str, where: str = "keying") -> str:
    if keying not in KEYINGS:
        raise ValueError(f"{where} {keying!r}: choose 'signature' (ops of one signature share entries) or 'op' "
                         "(entries per op)")
    return keying


class GraphEntries:
    """The entries of one graph space (E of them, ordered by signature, c_in, c_out) and, per op,
    its column table."""

    def __init__(self, space: GraphSpace, keying: str = "signature"):
        self.space, self.keying = space, check_keying(keying)
        fs = space.factor_structure()
        choices = {g.name: g.choices for g in fs.groups}  # fixed groups: their one channel count
        free = [g.name for g in space.free_groups]
        pos = {n: k for k, n in enumerate(free)}
        sig_order: dict[OpSignature, int] = {}  # signatures in order of first appearance
        keys: set[EntryKey] = set()
        for f in fs.factors:
            sig_order.setdefault(self.key_of(f), len(sig_order))
            for a in choices[f.in_group]:
                for b in choices[f.out_group]:
                    if f.in_group != f.out_group or a == b:  # an op inside one group keeps its channels
                        keys.add(EntryKey(self.key_of(f), a, b))
        self.keys: list[EntryKey] = sorted(keys, key=lambda k: (sig_order[k.signature], k.c_in, k.c_out))
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.E = len(self.keys)
        self.signatures = list(sig_order)
        self.factors: list[FactorColumns] = []
        for f in fs.factors:
            ci, co = choices[f.in_group], choices[f.out_group]
            col = np.array([[self.index.get(EntryKey(self.key_of(f), a, b), -1) for b in co] for a in ci])
            if not f.scope:
                cols = np.array(col[0, 0])  # () both groups fixed: a constant op
            elif f.in_group == f.out_group:
                cols = np.diagonal(col).copy()  # (K,) over the one group
            elif len(f.scope) == 2:
                cols = col  # (K_in, K_out)
            elif f.scope == (f.in_group,):
                cols = col[:, 0]  # (K_in,) the output group is fixed
            else:
                cols = col[0, :]  # (K_out,) the input group is fixed
            assert (cols >= 0).all()
            self.factors.append(FactorColumns(f, tuple(pos[g] for g in f.scope), cols))

    def key_of(self, f: OpFactor) -> OpSignature:
        """The signature an op's entries are keyed by: its own, or with its name under keying 'op'."""
        return f.signature._replace(op=f.op) if self.keying == "op" else f.signature

    def indices(self, widths: np.ndarray) -> np.ndarray:
        """(n, groups) channels -> (n, groups) choice indices; WidthError names a width not chosen."""
        widths = np.atleast_2d(np.asarray(widths))
        out = np.empty(widths.shape, int)
        for g, c in enumerate(self.space.choices):
            c = np.asarray(c)
            i = np.minimum(np.searchsorted(c, widths[:, g]), len(c) - 1)
            bad = c[i] != widths[:, g]
            if bad.any():
                self.space.validate(widths[np.argmax(bad)])  # raises with the group and its choices
            out[:, g] = i
        return out

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """(n, groups) choice indices -> (n, ops) the entry column of every costed op."""
        idx = np.asarray(idx)
        return np.stack([fc.cols[tuple(idx[:, p] for p in fc.scope_pos)] if fc.scope_pos
                         else np.full(len(idx), fc.cols.item()) for fc in self.factors], axis=1)

    def design(self, widths: Sequence[Sequence[int]] | np.ndarray) -> sp.csr_matrix:
        """(n, E) counts of every entry in each network: a shared entry counts once per op using it."""
        cols = self.columns(self.indices(widths))
        n = len(cols)
        return sp.csr_matrix((np.ones(cols.size), (np.repeat(np.arange(n), cols.shape[1]), cols.ravel())),
                             shape=(n, self.E))  # duplicates sum

    def by_signature(self) -> dict[OpSignature, np.ndarray]:
        """Signature -> the indices of its entries (contiguous, ascending c_in then c_out)."""
        out: dict[OpSignature, list[int]] = {}
        for i, k in enumerate(self.keys):
            out.setdefault(k.signature, []).append(i)
        return {s: np.asarray(v) for s, v in out.items()}

    def ops_of(self) -> dict[OpSignature, list[str]]:
        """Signature -> the ops sharing its entries (for the profile file, and people reading it)."""
        out: dict[OpSignature, list[str]] = {}
        for fc in self.factors:
            out.setdefault(self.key_of(fc.factor), []).append(fc.factor.op)
        return out

    def diagonal(self, signature: OpSignature) -> bool:
        """True when every op of this signature keeps its channels (depthwise or grouped conv, add, pooling)."""
        return all(fc.factor.in_group == fc.factor.out_group for fc in self.factors
                   if self.key_of(fc.factor) == signature)
