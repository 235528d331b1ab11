"""Selection that survives noise: estimate on one set of images, select on another.

An exact optimiser over noisy unaries returns the configuration whose noise flatters it most
(the winner's curse): the MRF's predicted gain over uniform is then not realised. Here the MRF
only *proposes* a few diverse candidates under the budget (its optimum at several strengths of
the smoothness prior), the uniform network and greedy slimming's choice join them, and the
supernet itself, after BN recalibration, judges them on validation images that were not used to
estimate the unaries. The smoothness weight is thereby chosen by validation too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from widthnas.latency.verdict import OVER, WITHIN, budget_verdict, describe
from widthnas.models.net import Activations, frontier, records_fit
from widthnas.models.space import check_fingerprint
from widthnas.mrf import GraphMRF, Solution, Unaries, build_mrf, exact, greedy, uniform
from widthnas.mrf.smoothness import with_smoothness

from .data import normalize
from .device import device_of
from .evaluate import accuracy, calibrated_network
from .unary_eval import measure_unaries

SMOOTH_RATIOS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)  # prior weight / mean per-layer score range
UNARY_IMAGES = 512  # validation images reserved for estimating the unaries
GREEDY_IMAGES = 256  # of those, the ones greedy slimming scores its ~1 000 steps on (cost: one forward each)
GREEDY_STEP = 2  # greedy narrows a layer by this many width choices per step (~10 % of its channels, as AutoSlim)
REAIM_SLACK = 0.02  # re-aim when the winner measures this fraction under its prediction (timing noise is ~1 %)


@dataclass
class Selection:
    widths: list[int]
    name: str  # the winning candidate, e.g. "mrf λ=0.1", "uniform", "greedy"
    table: list[dict] = field(default_factory=list)  # every candidate: name, widths, predicted ms, score, holdout acc
    reaimed_ms: float | None = None  # the second round's target (ms), when the first winner measured under its prediction

    def to_info(self) -> dict:
        return {"selected": self.name, "candidates": self.table,
                **({"reaimed_ms": self.reaimed_ms} if self.reaimed_ms is not None else {})}


def unary_image_count(splits) -> int:
    """Validation images that estimate the unaries: UNARY_IMAGES, or half of a smaller split."""
    return min(UNARY_IMAGES, len(splits.val[1]) // 2)


def holdout_split(splits, unary_images: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) validation images disjoint from those the unaries were estimated on."""
    x, y = splits.val
    unary_images = unary_image_count(splits) if unary_images is None else unary_images
    if len(y) - unary_images < 1 or unary_images < 1:
        raise ValueError(f"the validation split has {len(y)} images; {unary_images} estimate the unaries and "
                         "selection needs the others: train on more images (--limit) or a larger --val-fraction")
    return x[unary_images:], y[unary_images:]


@torch.no_grad()
def supernet_accuracy(supernet, widths: Sequence[int], splits, images: tuple[torch.Tensor, torch.Tensor],
                      calib_images: int = 1024, space=None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the sliced network on `images`, BN recalibrated on training images.
    space: for widths off the supernet's grid (uniform8's)."""
    net = calibrated_network(supernet, list(widths), splits, calib_images, space=space)  # the same images for all
    return accuracy(net, *images, splits.mean, splits.std)


class EstimationScorer:
    """Supernet accuracy (cross-entropy as tie-break) on the first unary-estimation images, batch
    statistics: what greedy slimming (AutoSlim) ranks its steps by. Never the selection images.

    Greedy tells it each network it moves to (`rebase`); a step's candidates differ from that one in one
    channel group, so the ops before that group's first tensor are taken from the kept pass, not computed
    again (the same tensors: the same scores). Kept while two passes' activations (the old record and the
    new) fit in models.net.KEEP_BYTES."""

    def __init__(self, supernet, splits, images: int | None = None):
        images = min(GREEDY_IMAGES if images is None else images, unary_image_count(splits))  # never selection's
        dev = device_of(supernet)
        self.net = supernet
        self.x = normalize(splits.val[0][:images], splits.mean, splits.std).to(dev)
        self.y = splits.val[1][:images].to(dev)
        self.base: Activations | None = None  # the pass of the network greedy stands on
        self.frontier = frontier(supernet.space)
        self.keep = records_fit(supernet.space, len(self.x), self.frontier, element_size=self.x.element_size())

    @torch.no_grad()
    def __call__(self, widths: list[int]) -> float:
        return self._pass(widths, None)

    @torch.no_grad()
    def rebase(self, widths: list[int]) -> None:
        """Keep the pass of `widths` for the candidates that follow (nothing, when it would not fit)."""
        if self.keep:
            kept = Activations(self.net.space, True, self.frontier)
            self._pass(widths, kept)
            self.base = kept

    def _pass(self, widths: list[int], keep: Activations | None) -> float:
        self.net.train()  # batch statistics, as in nas.unary_eval
        out = self.net(self.x, widths, update_bn_stats=False, reuse=self.base, keep=keep)
        y = self.y
        return float((out.argmax(1) == y).float().mean()) - 1e-3 * float(torch.nn.functional.cross_entropy(out, y))


def smoothness_weights(mrf: GraphMRF, ratios: Sequence[float] = SMOOTH_RATIOS) -> list[float]:
    """Prior weights on the scale of the unaries: ratio x the mean per-layer score range."""
    scale = float(np.mean([np.ptp(s) for s in mrf.score_unary])) or 1e-3
    return [r * scale for r in ratios]


def propose(mrf: GraphMRF, budget_ms: float, ratios: Sequence[float] = SMOOTH_RATIOS,
            greedy_widths: list[int] | None = None) -> dict[str, list[int]]:
    """Candidate networks under the budget, each under the first name that proposed it: the MRF optimum at
    each prior weight, uniform, greedy. greedy_widths: greedy slimming's answer computed elsewhere (one
    descent answers every budget); otherwise greedy runs here, scored by the MRF."""
    cands: dict[str, list[int]] = {}
    for r, w in zip(ratios, smoothness_weights(mrf, ratios)):
        cands[f"mrf smooth={r:g}"] = exact(with_smoothness(mrf, w), budget_ms, with_front=False).widths
    try:
        cands["uniform"] = uniform(mrf, budget_ms).widths
    except ValueError:  # no uniform multiplier fits this budget: the others still compete
        pass
    cands["greedy"] = greedy_widths or greedy(mrf, budget_ms, step=GREEDY_STEP).widths
    first: dict[tuple, str] = {}
    for name, w in cands.items():
        first.setdefault(tuple(w), name)
    return {name: cands[name] for name in first.values()}


def score_candidates(supernet, mrf: GraphMRF, cands: dict[str, list[int]], splits,
                     images: tuple[torch.Tensor, torch.Tensor], log=print) -> list[dict]:
    """One row per candidate: predicted ms, MRF score, held-out supernet accuracy and loss."""
    rows = []
    for name, w in cands.items():
        acc, loss = supernet_accuracy(supernet, w, splits, images)
        idx = mrf.indices(w)
        rows.append({"name": name, "widths": list(map(int, w)), "predicted_ms": mrf.latency(idx),
                     "mrf_score": mrf.score(idx), "holdout_acc": acc, "holdout_loss": loss})
        log(f"  candidate {name:18s} predicted {rows[-1]['predicted_ms']:.4f} ms, MRF score {rows[-1]['mrf_score']:+.4f}, "
            f"supernet held-out acc {acc:.4f} ({len(images[1])} images)")
    return rows


def _ranked(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (-r["holdout_acc"], r["holdout_loss"]))


def select(supernet, mrf: GraphMRF, cands: dict[str, list[int]], splits, unary_images: int | None = None,
           log=print, check: Callable[[list[int]], dict] | None = None) -> Selection:
    """The candidate with the highest held-out supernet accuracy (cross-entropy breaks ties).
    check(widths) -> a budget verdict (latency.verdict.budget_verdict): when given, candidates are
    measured on the device in order of accuracy, and the first one *measured* within the budget wins.
    The latency model is right to its validated error, not exactly: a candidate predicted just under
    the budget can measure over it (docs/RESULTS.md §0.7).
    """
    images = holdout_split(splits, unary_images)
    if len(images[1]) < 500:
        log(f"  note: selection on {len(images[1])} held-out images is noisy (±{100 / np.sqrt(len(images[1])):.0f} "
            "points); more training images (--limit) give a larger validation split")
    rows = score_candidates(supernet, mrf, cands, splits, images, log)
    best = _ranked(rows)[0] if check is None else _first_measured_within(_ranked(rows), check, log)
    return Selection(best["widths"], best["name"], rows)


def reaimed_target(target_ms: float, predicted_ms: float, measured_ms: float) -> float | None:
    """The target under which networks like the chosen one measure at `target_ms`, when the latency
    model over-predicts the chosen network by more than REAIM_SLACK (a fraction); None otherwise.

    The profile's error is shared by networks of similar widths, so one measurement corrects the aim
    for its neighbours; the margin under the budget stays, as cover for the measurement's noise.
    Never aims lower: a network measured over its prediction was already judged against the budget."""
    if not (np.isfinite(measured_ms) and measured_ms > 0 and predicted_ms > 0):
        return None
    if measured_ms >= predicted_ms * (1 - REAIM_SLACK):
        return None
    return target_ms * predicted_ms / measured_ms


def greedy_at(path: list | None, target_ms: float) -> list[int] | None:
    """Greedy slimming's answer at a looser target, read off its descent (widths, ms, score), widest first;
    None when the descent stopped short of it (greedy then answered with the fastest network)."""
    return next((list(widths) for widths, ms, _ in path or [] if ms <= target_ms), None)


def reaim(supernet, mrf: GraphMRF, sel: Selection, splits, target_ms: float, check: Callable[[list[int]], dict],
          unary_images: int | None = None, slim=None, log=print) -> Selection:
    """One more round when the winner measured well under its prediction: propose at the corrected
    target, judge the new candidates on the same held-out images, and keep the most accurate of all
    that *measures* within the budget (the first winner remains the fallback). slim: greedy slimming's
    Solution at target_ms, whose descent answers the looser target without another descent."""
    won = next(r for r in sel.table if r["name"] == sel.name)
    aim = reaimed_target(target_ms, won["predicted_ms"], won["measured_ms"]) if won.get("verdict") == WITHIN else None
    if aim is None:
        return sel
    log(f"  re-aim: {sel.name} measured {won['measured_ms']:.4f} ms, {1 - won['measured_ms'] / won['predicted_ms']:.1%} "
        f"under its prediction; proposing again at {aim:.4f} ms (was {target_ms:.4f})")
    seen = {tuple(r["widths"]) for r in sel.table}
    slimmed = None if slim is None else greedy_at(slim.info.get("path"), aim) or slim.widths
    new = {f"{name} re-aimed": w for name, w in propose(mrf, aim, greedy_widths=slimmed).items() if tuple(w) not in seen}
    if not new:
        return sel
    rows = sel.table + score_candidates(supernet, mrf, new, splits, holdout_split(splits, unary_images), log)
    best = _first_measured_within(_ranked(rows), check, log)
    return Selection(best["widths"], best["name"], rows, aim)


def _first_measured_within(ranked: list[dict], check: Callable[[list[int]], dict], log) -> dict:
    """The most accurate candidate whose measured latency is within the budget; failing that, one
    the measurement cannot place; failing that, the fastest measured, with a warning."""
    for r in ranked:
        if "verdict" not in r:  # rows measured in an earlier round keep their verdict
            v = check(r["widths"])
            r.update(measured_ms=v["mean_ms"], verdict=v["verdict"])
            log(f"  measured {r['name']} (ms at the profile's speed, as it predicts them): {describe(v)}")
        if r["verdict"] == WITHIN:
            return r
    unsure = [r for r in ranked if r["verdict"] != OVER]  # none within: every candidate was timed
    if unsure:
        log(f"  note: no candidate measured clearly within the budget; {unsure[0]['name']} cannot be told apart "
            "from it at this noise")
        return unsure[0]
    fastest = min(ranked, key=lambda r: r["measured_ms"])
    log(f"  WARNING: every candidate measured over the budget; choosing the fastest ({fastest['name']}, "
        f"{fastest['measured_ms']:.4f} ms). The latency model underestimates this device now: re-profile it, or "
        "give a larger --margin")
    return fastest


def cached_measured_unaries(supernet, splits, path, n_configs: int = 1000, batch: int | None = None, seed: int = 0,
                            log=print, progress: bool = False):
    """Post-training unaries of this supernet (nas.unary_eval, random design), kept at `path` and
    reused while they match the supernet's space."""
    path = Path(path)
    if path.exists():
        u = Unaries.load(path)
        check_fingerprint(u.space_fingerprint, supernet.space, f"unaries {path}")
        return u
    batch = unary_image_count(splits) if batch is None else batch
    u = measure_unaries(supernet, splits, n_configs, batch=batch, seed=seed, log=log, progress=progress)
    u.save(path)
    return u


def default_search(supernet, splits, table, unaries, target_ms: float, unary_images: int | None = None,
                   log=print, budget_ms: float | None = None,
                   measure: Callable[[list[int]], float] | None = None, slim_images: int | None = None):
    """The default of `widthnas search` and `widthnas run`: MRF candidates (several smoothness weights),
    uniform and greedy, judged by the supernet on held-out validation images. With measure(widths) -> ms
    at the profile's speed (nas.export.measure_exported) and budget_ms, the winner must also *measure*
    within the budget (select's `check`); when it measures well under its prediction, one more round aims
    at the corrected target (`reaim`), so a profile that over-predicts this machine leaves no budget unspent."""
    mrf = build_mrf(table, unaries)
    slim = greedy(mrf, target_ms, score_fn=EstimationScorer(supernet, splits, slim_images), step=GREEDY_STEP)
    cands = propose(mrf, target_ms, greedy_widths=slim.widths)
    check = None if measure is None or budget_ms is None else lambda w: budget_verdict(lambda: measure(w), budget_ms)
    sel = select(supernet, mrf, cands, splits, unary_images, log, check)
    if check is not None:
        sel = reaim(supernet, mrf, sel, splits, target_ms, check, unary_images, slim, log)
    idx = mrf.indices(sel.widths)
    return Solution(sel.widths, idx, mrf.score(idx), mrf.latency(idx), "select", target_ms, sel.to_info())
