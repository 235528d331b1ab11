"""Datasets as in-memory uint8 tensors: Fashion-MNIST, CIFAR-10, ImageFolder and .npz arrays.

All loaders return a `Dataset` with train and test images (N, C, H, W) uint8 and labels; a
seeded validation split is carved from train, and the test split is never used for search
decisions (only by `widthnas evaluate --split test` and the final report).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_path

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of the *decompressed* idx files (robust to recompression, e.g. Debian's package)
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


class DatasetError(ValueError):
    """A dataset that is missing or does not fit the search space."""


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) uint8
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


@dataclass
class Splits:
    """Train / validation (from train) / test, with per-channel normalisation from train."""
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    mean: torch.Tensor  # (C,) in [0, 1] units
    std: torch.Tensor


# ---- Fashion-MNIST -------------------------------------------------------------------
def _read_idx(raw: bytes) -> np.ndarray:
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_file(name: str, root: Path | None, cache: Path, download: bool) -> bytes:
    candidates = [p for p in (root, DEBIAN_FASHION, cache) if p is not None]
    for d in candidates:
        f = Path(d) / name
        if f.exists():
            raw = gzip.decompress(f.read_bytes())
            if hashlib.sha256(raw).hexdigest() != FASHION_FILES[name]:
                raise DatasetError(f"{f} is corrupt (checksum mismatch); delete it and rerun to fetch it again")
            return raw
    if root is not None and not download:
        raise DatasetError(f"Fashion-MNIST file {name} not found in {root}; point --data at the directory with the "
                           f"four idx .gz files, or `apt-get install dataset-fashion-mnist` on Debian")
    if not download:
        raise DatasetError(f"Fashion-MNIST not found in {DEBIAN_FASHION} or {cache}; "
                           "`apt-get install dataset-fashion-mnist` (Debian) or allow the download")
    with atomic_path(cache / name, suffix=".part") as tmp:  # appears only whole and checked
        try:
            urllib.request.urlretrieve(FASHION_URL + name, tmp)
        except OSError as e:
            raise DatasetError(f"could not download {FASHION_URL + name} ({e}); install dataset-fashion-mnist or "
                               f"place the idx files in {cache}")
        raw = gzip.decompress(tmp.read_bytes())
        if hashlib.sha256(raw).hexdigest() != FASHION_FILES[name]:
            raise DatasetError(f"downloaded {name} fails its checksum; try again later")
    return raw


def fashion_mnist(root: str | None = None, download: bool = True) -> Dataset:
    cache = Path(os.environ.get("WIDTHNAS_CACHE", Path.home() / ".cache" / "widthnas")) / "fashion-mnist"
    r = Path(root) if root else None
    if r is not None and not r.exists():
        raise DatasetError(f"dataset path {r} does not exist")
    get = lambda n: _read_idx(_fashion_file(n, r, cache, download))  # noqa: E731
    xtr, ytr = get("train-images-idx3-ubyte.gz"), get("train-labels-idx1-ubyte.gz")
    xte, yte = get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz")
    t = lambda x: torch.from_numpy(x.copy())[:, None]  # noqa: E731  (N, 1, 28, 28)
    return Dataset("fashion_mnist", t(xtr), torch.from_numpy(ytr.astype(np.int64)), t(xte),
                   torch.from_numpy(yte.astype(np.int64)), 10)


# ---- CIFAR-10 python batches ---------------------------------------------------------
def cifar10(root: str) -> Dataset:
    r = Path(root)
    if (r / "cifar-10-batches-py").is_dir():
        r = r / "cifar-10-batches-py"
    files = [r / f"data_batch_{i}" for i in range(1, 6)] + [r / "test_batch"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DatasetError(f"CIFAR-10 python batches missing in {r}: {missing}; "
                           "unpack cifar-10-python.tar.gz there")

    def load(f):
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"], np.int64)

    parts = [load(f) for f in files[:5]]
    xte, yte = load(files[5])
    return Dataset("cifar10", torch.from_numpy(np.concatenate([p[0] for p in parts])),
                   torch.from_numpy(np.concatenate([p[1] for p in parts])), torch.from_numpy(xte),
                   torch.from_numpy(yte), 10)


# ---- ImageFolder -----------------------------------------------------------------------
def image_folder(root: str, size: tuple[int, int] | None = None, channels: int = 3) -> Dataset:
    """root/train/<class>/*.png|jpg and root/test/<class>/... (or root/val/...)."""
    from PIL import Image

    r = Path(root)
    test_dir = next((r / d for d in ("test", "val") if (r / d).is_dir()), None)
    if not (r / "train").is_dir() or test_dir is None:
        raise DatasetError(f"ImageFolder {r} needs train/<class>/ and test/<class>/ (or val/) subdirectories")
    classes = sorted(d.name for d in (r / "train").iterdir() if d.is_dir())
    if not classes:
        raise DatasetError(f"ImageFolder {r / 'train'} has no class directories")

    def load(split: Path):
        xs, ys = [], []
        for c, name in enumerate(classes):
            for f in sorted((split / name).glob("*")):
                if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
                    continue
                im = Image.open(f).convert("L" if channels == 1 else "RGB")
                if size:
                    im = im.resize((size[1], size[0]))
                a = np.asarray(im, np.uint8)
                xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                ys.append(c)
        if not xs:
            raise DatasetError(f"no images in {split}")
        shapes = {x.shape for x in xs}
        if len(shapes) > 1:
            raise DatasetError(f"images in {split} differ in size {sorted(shapes)[:3]}; pass a size to resize them")
        return torch.from_numpy(np.stack(xs)), torch.tensor(ys)

    xtr, ytr = load(r / "train")
    xte, yte = load(test_dir)
    return Dataset(f"imagefolder:{r.name}", xtr, ytr, xte, yte, len(classes))


# ---- .npz ------------------------------------------------------------------------------
def npz(path: str) -> Dataset:
    """Arrays x_train, y_train, x_test, y_test; images (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or [0,1] floats."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"dataset file {p} does not exist")
    with np.load(p) as d:
        keys = {"x_train", "y_train", "x_test", "y_test"}
        if not keys <= set(d.files):
            raise DatasetError(f"{p} must hold arrays {sorted(keys)}; it has {sorted(d.files)}")
        arrs = {k: d[k] for k in keys}

    def img(x):
        if x.dtype != np.uint8:
            x = np.clip(np.round(x * 255 if x.max() <= 1.0 else x), 0, 255).astype(np.uint8)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(x))

    ytr = arrs["y_train"].astype(np.int64)
    return Dataset(f"npz:{p.stem}", img(arrs["x_train"]), torch.from_numpy(ytr), img(arrs["x_test"]),
                   torch.from_numpy(arrs["y_test"].astype(np.int64)), int(max(ytr.max(), arrs["y_test"].max()) + 1))


def load_dataset(name: str, path: str | None = None, download: bool = True) -> Dataset:
    """By name: fashion_mnist (default), cifar10, imagefolder, npz; or a path ending in .npz."""
    if name in ("fashion_mnist", "fashion-mnist", "fmnist"):
        return fashion_mnist(path, download)
    if path is None and name.endswith(".npz"):
        return npz(name)
    if path is None:
        raise DatasetError(f"dataset {name!r} needs --data PATH")
    if not Path(path).exists():
        raise DatasetError(f"dataset path {path} does not exist")
    if name == "cifar10":
        return cifar10(path)
    if name == "imagefolder":
        return image_folder(path)
    if name == "npz":
        return npz(path)
    raise DatasetError(f"unknown dataset {name!r}; choose fashion_mnist, cifar10, imagefolder or npz")


def check_fits(ds: Dataset, space) -> None:
    """Refuse a dataset whose images or classes do not fit the search space."""
    if ds.shape != tuple(space.input_shape):
        c, h, w = ds.shape
        raise DatasetError(f"dataset {ds.name} has {c}x{h}x{w} images but space {space.name} expects "
                           f"{'x'.join(map(str, space.input_shape))}; pass --input-shape {c},{h},{w} "
                           "(a new fingerprint: profile and train for it)")
    if ds.num_classes > space.num_classes:
        raise DatasetError(f"dataset {ds.name} has {ds.num_classes} classes, space {space.name} {space.num_classes}")


def split(ds: Dataset, val_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> Splits:
    """Seeded validation split from train; `limit` keeps only that many training images (for quick runs)."""
    n = len(ds.y_train)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * val_fraction)))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    if limit:
        tr_idx = tr_idx[:limit]
        val_idx = val_idx[: max(1, min(len(val_idx), limit // 5))]
    x = ds.x_train[tr_idx].float() / 255
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return Splits((ds.x_train[tr_idx], ds.y_train[tr_idx]), (ds.x_train[val_idx], ds.y_train[val_idx]),
                  (ds.x_test, ds.y_test), mean, std)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float, standardised per channel."""
    return (x.float() / 255 - mean[None, :, None, None]) / std[None, :, None, None]


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random-shift crop (zero padding) and horizontal flip, batched, on uint8 images."""
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, c, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, c, h, w)
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if flip:
        f = torch.rand(n, generator=g) < 0.5
        out[f] = out[f].flip(-1)
    return out
