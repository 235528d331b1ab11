"""Negative flips when a deployed model is replaced, and positive-congruent training against them.

A negative flip is a test sample the old model classifies correctly and the new one gets wrong; the
negative flip rate (NFR) is their share of all samples (Yan et al., "Positive-Congruent Training",
CVPR 2021). An average-accuracy gain can hide many of them. Focal distillation toward the old model,
weighted to the samples the old model gets right, reduces them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from widthnas._io import atomic_write_text

from .data import normalize
from .device import device_of
from .evaluate import calibrated_network


class PreviousModel:
    """A deployed classifier, as ONNX, that takes uint8 images (N, C, H, W) and returns logits.

    It normalises inputs with the statistics its own training used when its sidecar JSON records
    them (`normalization`), else with the ones it is given: exported widthnas models expect
    normalised inputs, and a model trained on another subset used slightly different statistics.
    """

    def __init__(self, path: str | Path, mean: torch.Tensor, std: torch.Tensor, batch: int = 512):
        from widthnas.latency.standalone_runner import ort_session

        self.path = Path(path)
        try:  # 1 thread: a teacher beside training, kept off the other core
            self.sess = ort_session(str(self.path))
        except Exception as e:
            raise ValueError(f"previous model {self.path} cannot be loaded by onnxruntime ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); give an .onnx file from `widthnas export` or "
                             "`widthnas run`") from None
        inp = self.sess.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape[1:])
        self.num_classes = self.sess.get_outputs()[0].shape[-1]
        side = self.path.with_suffix(".json")
        norm = json.loads(side.read_text()).get("normalization") if side.exists() else None
        self.mean, self.std = (torch.tensor(norm["mean"]), torch.tensor(norm["std"])) if norm else (mean, std)
        self.own_normalization = norm is not None
        self.batch = batch

    def check_fits(self, shape: tuple[int, ...], num_classes: int) -> None:
        if [int(s) for s in self.input_shape] != list(shape):
            raise ValueError(f"previous model {self.path} takes {'x'.join(map(str, self.input_shape))} inputs but "
                             f"the data is {'x'.join(map(str, shape))}; compare models of the same dataset")
        if isinstance(self.num_classes, int) and self.num_classes != num_classes:
            raise ValueError(f"previous model {self.path} has {self.num_classes} classes, the new one "
                             f"{num_classes}; compare models of the same task")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch):
            x = normalize(images[i:i + self.batch], self.mean, self.std).numpy().astype(np.float32)
            out.append(torch.from_numpy(self.sess.run(None, {self.input_name: x})[0]))
        return torch.cat(out)


def resolve_previous(path: str | Path) -> Path:
    """An .onnx file, or a `widthnas run` directory (its model.onnx); clear errors otherwise."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.onnx").exists():
            return p / "model.onnx"
        if (p / "checkpoint.pt").exists():
            raise ValueError(f"{p} is a supernet training directory, not a deployed model; export one first: "
                             f"`widthnas export --run {p} --config config.json --out old.onnx`")
        raise ValueError(f"{p} holds no model.onnx; give a finished `widthnas run` directory or an .onnx file")
    if not p.exists():
        raise ValueError(f"previous model {p} not found; give an .onnx file or a `widthnas run` directory")
    if p.suffix != ".onnx":
        raise ValueError(f"previous model {p} is not an .onnx file; export it with `widthnas export` first")
    return p


def load_previous(path: str | Path, splits, space=None) -> PreviousModel:
    """The previous model, checked against the data (and the space's classes when given)."""
    old = PreviousModel(resolve_previous(path), splits.mean, splits.std)
    classes = space.num_classes if space is not None else old.num_classes
    old.check_fits(tuple(splits.test[0].shape[1:]), classes)
    return old


@torch.no_grad()
def torch_predictions(net: torch.nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                      batch: int = 128) -> torch.Tensor:
    """Class indices (int64). batch 128, as nas.evaluate.accuracy: fine-tuning's test accuracy comes from these."""
    was = net.training
    net.eval()
    dev = device_of(net)
    out = torch.cat([net(normalize(images[i:i + batch], mean, std).to(dev)).argmax(1).cpu()
                     for i in range(0, len(images), batch)])
    net.train(was)
    return out


def flip_report(y: torch.Tensor, old_pred: torch.Tensor, new_pred: torch.Tensor, num_classes: int) -> dict:
    """Both accuracies, negative / positive flip rates (shares of all samples), and per class."""
    y, old_pred, new_pred = (torch.as_tensor(t).long().cpu() for t in (y, old_pred, new_pred))
    if not len(y) == len(old_pred) == len(new_pred):
        raise ValueError(f"flip report needs one prediction per label ({len(y)}, {len(old_pred)}, {len(new_pred)})")
    old_ok, new_ok = old_pred == y, new_pred == y
    neg, pos = old_ok & ~new_ok, ~old_ok & new_ok
    n = max(1, len(y))
    per_class = []
    for c in range(num_classes):
        m = y == c
        d = max(1, int(m.sum()))  # a class without samples has every rate 0
        per_class.append({"class": c, "n": int(m.sum()), "nfr": float(neg[m].sum()) / d, "pfr": float(pos[m].sum()) / d,
                          "old_accuracy": float(old_ok[m].sum()) / d, "new_accuracy": float(new_ok[m].sum()) / d})
    return {"n": len(y), "old_accuracy": float(old_ok.sum()) / n, "new_accuracy": float(new_ok.sum()) / n,
            "nfr": float(neg.sum()) / n, "pfr": float(pos.sum()) / n, "negative_flips": int(neg.sum()),
            "positive_flips": int(pos.sum()),
            "nfr_of_old_correct": float(neg.sum()) / max(1, int(old_ok.sum())), "per_class": per_class}


def format_flips(r: dict, old_name: str = "old", new_name: str = "new") -> str:
    lines = [f"accuracy: {old_name} {r['old_accuracy']:.4f}, {new_name} {r['new_accuracy']:.4f} ({r['n']} images)",
             f"negative flip rate {r['nfr']:.2%} ({r['negative_flips']} images right before, wrong now; "
             f"{r['nfr_of_old_correct']:.2%} of those {old_name} got right), positive flip rate {r['pfr']:.2%} "
             f"({r['positive_flips']})",
             "per class: " + ", ".join(f"{c['class']}: {c['nfr']:.1%}" for c in r["per_class"] if c["n"])]
    return "\n".join(lines)


def focal_distillation(new_logits: torch.Tensor, old_logits: torch.Tensor, y: torch.Tensor,
                       temperature: float = 1.0, alpha: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Mean over the batch of (alpha + beta * [old model right]) * KL(old || new) at `temperature`.

    With alpha 0 the term only pulls the new model toward the old one where the old one was right:
    it protects those samples without copying the old model's mistakes.
    """
    t = temperature
    weight = alpha + beta * (old_logits.argmax(1) == y).float()
    kl = F.kl_div((new_logits / t).log_softmax(1), (old_logits / t).log_softmax(1), log_target=True,
                  reduction="none").sum(1) * t * t
    return (weight * kl).mean()


def congruent_loss(old: Callable[[torch.Tensor], torch.Tensor], weight: float) -> Callable:
    """loss(logits, y, raw uint8 images) = cross-entropy + weight * focal distillation toward `old`."""
    if not weight > 0:
        raise ValueError(f"congruent weight {weight}: use a value > 0 (e.g. 1), or leave out --congruent")

    def loss(logits: torch.Tensor, y: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        old_logits = old(images).to(logits.device)
        return F.cross_entropy(logits, y) + weight * focal_distillation(logits, old_logits, y)

    return loss


def compare_with_previous(supernet, space, widths, splits, split: str, calib_images: int, against: str,
                          json_out: str | None = None, log=print) -> dict:
    """`widthnas evaluate --against`: the configuration (BN recalibrated) against a deployed model."""
    old = load_previous(against, splits, space)
    net = calibrated_network(supernet, widths, splits, calib_images)
    x, y = getattr(splits, split)
    r = flip_report(y, old(x).argmax(1), torch_predictions(net, x, splits.mean, splits.std), space.num_classes)
    r.update({"split": split, "previous": str(old.path), "widths": list(widths),
              "previous_normalization": "its sidecar" if old.own_normalization else "this run's"})
    log(format_flips(r, f"previous ({old.path.name})", "this configuration"))
    if json_out:
        atomic_write_text(json_out, json.dumps(r, indent=1))
    return r


def flips_markdown(y: torch.Tensor, olds: dict[str, torch.Tensor], new_pred: torch.Tensor,
                   num_classes: int) -> tuple[dict, list[str]]:
    """Flip reports of the new predictions against each old model's, and a report.md section."""
    reports = {name: flip_report(y, old, new_pred, num_classes) for name, old in olds.items()}
    lines = ["## Negative flips", "",
             "Test images the old model classified correctly and the chosen network gets wrong (NFR), and the "
             "reverse (PFR), as shares of all test images.", "",
             "| chosen network against | old accuracy | chosen accuracy | NFR | PFR | worst class NFR |",
             "|---|---|---|---|---|---|"]
    for name, r in reports.items():
        worst = max(r["per_class"], key=lambda c: c["nfr"])
        lines.append(f"| {name} | {r['old_accuracy']:.4f} | {r['new_accuracy']:.4f} | {r['nfr']:.2%} | "
                     f"{r['pfr']:.2%} | class {worst['class']}: {worst['nfr']:.2%} |")
    return reports, lines + [""]
