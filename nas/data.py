"""Datasets as in-memory uint8 tensors: Fashion-MNIST, CIFAR-10, ImageFolder and .npz arrays.

All loaders return a `Dataset` with train and test images (N, C, H, W) uint8 and labels; a
seeded validation split is carved from train, and the test split is never used for search
decisions (only by `widthnas evaluate --split test` and the final report).
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import pickle
import urllib.request
import zipfile
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


def _fashion_cache() -> Path:
    """Where a downloaded Fashion-MNIST is kept ($WIDTHNAS_CACHE, else ~/.cache/widthnas)."""
    return Path(os.environ.get("WIDTHNAS_CACHE", Path.home() / ".cache" / "widthnas")) / "fashion-mnist"


def _fashion_file(name: str, root: Path | None, cache: Path, download: bool) -> bytes:
    """One idx file: from --data `root` alone when given (never the Debian copy, the cache or a download
    instead), else from the Debian package, then the cache, else a checksummed download."""
    for d in [root] if root is not None else [DEBIAN_FASHION, cache]:
        f = Path(d) / name
        if f.exists():
            try:
                raw = gzip.decompress(f.read_bytes())
            except (OSError, EOFError) as e:  # not gzip, or cut short
                raise DatasetError(f"{f} is not a whole gzip file ({e}); expected Fashion-MNIST's {name} as "
                                   "published (gzip-compressed idx)") from None
            if hashlib.sha256(raw).hexdigest() != FASHION_FILES[name]:
                raise DatasetError(f"{f} is corrupt (checksum mismatch); delete it and rerun to fetch it again")
            return raw
    if root is not None:
        raise DatasetError(f"Fashion-MNIST file {name} not found in {root}; point --data at the directory with the "
                           f"four idx .gz files, or leave --data out to use the Debian package "
                           "(`apt-get install dataset-fashion-mnist`) or a download")
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
    cache = _fashion_cache()
    r = Path(root) if root else None
    if r is not None:
        check_data("fashion_mnist", str(r))
    get = lambda n: _read_idx(_fashion_file(n, r, cache, download))  # noqa: E731
    xtr, ytr, xte, yte = map(get, FASHION_FILES)  # train images, train labels, test images, test labels
    t = lambda x: torch.from_numpy(x.copy())[:, None]  # noqa: E731  (N, 1, 28, 28)
    return Dataset("fashion_mnist", t(xtr), torch.from_numpy(ytr.astype(np.int64)), t(xte),
                   torch.from_numpy(yte.astype(np.int64)), 10)


# ---- CIFAR-10 python batches ---------------------------------------------------------
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _cifar_dir(root: Path) -> Path:
    return root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root


def cifar10(root: str) -> Dataset:
    check_data("cifar10", root)
    r = _cifar_dir(Path(root))

    def load(f):
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"], np.int64)
        except Exception as e:  # not a pickle, or not one of CIFAR-10's batches
            raise DatasetError(f"{f} is not a CIFAR-10 python batch ({type(e).__name__}: {str(e)[:120]}); found "
                               f"{describe_path(f)}; unpack cifar-10-python.tar.gz there") from None

    parts = [load(r / f) for f in CIFAR_FILES]
    xte, yte = parts.pop()  # test_batch
    return Dataset("cifar10", torch.from_numpy(np.concatenate([p[0] for p in parts])),
                   torch.from_numpy(np.concatenate([p[1] for p in parts])), torch.from_numpy(xte),
                   torch.from_numpy(yte), 10)


# ---- ImageFolder -----------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_folder(root: str) -> Dataset:
    """root/train/<class>/*.png|jpg and root/test/<class>/... (or root/val/...), read as RGB."""
    from PIL import Image

    check_data("imagefolder", root)
    r = Path(root)
    classes, test_dir = _folder_layout(r)

    def load(split: Path):
        xs, ys = [], []
        for c, f in _split_images(split, classes):
            try:
                im = Image.open(f).convert("RGB")
            except Exception as e:  # a damaged image, or another kind of file under an image's name
                raise DatasetError(f"{f} cannot be read as an image ({type(e).__name__}); found "
                                   f"{describe_path(f)}; remove it or replace it with a whole image") from None
            xs.append(np.asarray(im, np.uint8).transpose(2, 0, 1))
            ys.append(c)
        if not xs:
            raise DatasetError(f"no images in {split}")
        shapes = {x.shape for x in xs}
        if len(shapes) > 1:
            raise DatasetError(f"images in {split} differ in size {sorted(shapes)[:3]}; resize them to one size")
        return torch.from_numpy(np.stack(xs)), torch.tensor(ys)

    xtr, ytr = load(r / "train")
    xte, yte = load(test_dir)
    return Dataset(f"imagefolder:{r.name}", xtr, ytr, xte, yte, len(classes))


def _folder_layout(r: Path) -> tuple[list[str], Path]:
    """(class names, the test split's directory: test/, else val/) of an image folder."""
    test_dir = next(r / d for d in ("test", "val") if (r / d).is_dir())
    return sorted(d.name for d in (r / "train").iterdir() if d.is_dir()), test_dir


def _split_images(split: Path, classes: list[str]) -> list[tuple[int, Path]]:
    """(class index, file) of every image of one split that `image_folder` reads, in its order."""
    return [(c, f) for c, name in enumerate(classes) for f in sorted((split / name).glob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES]


# ---- .npz ------------------------------------------------------------------------------
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def npz(path: str) -> Dataset:
    """Arrays x_train, y_train, x_test, y_test; images (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or [0,1] floats."""
    check_data("npz", path)
    p = Path(path)
    try:
        with np.load(p) as d:
            arrs = {k: d[k] for k in NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # a damaged member, or object arrays (pickles)
        raise DatasetError(f"{p}: its arrays cannot be read ({type(e).__name__}: {str(e)[:120]}); expected plain "
                           f"numeric arrays {', '.join(NPZ_KEYS)} (np.savez)") from None

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
    check_data(name, path)
    if name in FASHION_NAMES:
        return fashion_mnist(path, download)
    if path is None:  # a name ending in .npz
        return npz(name)
    return {"cifar10": cifar10, "imagefolder": image_folder, "npz": npz}[name](path)


def data_files(name: str, path: str | Path | None = None) -> list[Path]:
    """Every file `load_dataset(name, path)` reads: what no command may write over (comparing outputs with
    a --data directory alone would protect none of its files). Cheap (names and listings only) and never
    raises: for a path that holds nothing this dataset reads, the files it would look for."""
    if name in FASHION_NAMES:
        if path is not None:
            return [Path(path) / n for n in FASHION_FILES]
        cache = _fashion_cache()
        return [next((d / n for d in (DEBIAN_FASHION, cache) if (d / n).exists()), cache / n)
                for n in FASHION_FILES]
    if path is None:  # a name ending in .npz is the file itself; another name reads nothing
        return [Path(name)] if isinstance(name, str) and name.endswith(".npz") else []
    p = Path(path)
    if name == "cifar10":
        return [_cifar_dir(p) / n for n in CIFAR_FILES]
    if name == "imagefolder":
        try:
            classes, test_dir = _folder_layout(p)
        except (OSError, StopIteration):  # no train/ or test/ (val/): nothing it would read
            return []
        return [f for split_dir in (p / "train", test_dir) for _, f in _split_images(split_dir, classes)]
    return [p]  # npz (an unknown dataset: the path as given; check_data refuses the name)


# ---- what --data must hold, checked before anything is loaded or trained -------------------------
FASHION_NAMES = ("fashion_mnist", "fashion-mnist", "fmnist")
EXPECTED = {
    "fashion_mnist": f"a directory holding the four Fashion-MNIST idx files ({', '.join(FASHION_FILES)})",
    "cifar10": f"a directory holding the CIFAR-10 python batches ({', '.join(CIFAR_FILES)}), directly or in "
               "cifar-10-batches-py/ (unpack cifar-10-python.tar.gz)",
    "imagefolder": "a directory holding train/<class>/ and test/<class>/ (or val/) subdirectories of images "
                   f"({', '.join(IMAGE_SUFFIXES)})",
    "npz": f"a NumPy .npz file (np.savez) holding arrays {', '.join(NPZ_KEYS)}",
}


def check_data(name: str, path: str | None) -> None:
    """Refuse an unknown dataset, or a --data path that holds nothing this dataset reads, saying what was
    found and what is expected; nothing falls back to another source. Cheap: names, listings and the
    .npz's index are read, not the images. Without a path only fashion_mnist (checked as it loads) and a
    name ending in .npz are allowed."""
    if name in FASHION_NAMES:
        kind = "fashion_mnist"
    elif path is None and isinstance(name, str) and name.endswith(".npz"):
        kind, path = "npz", name
    elif name in EXPECTED:
        kind = name
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose fashion_mnist, cifar10, imagefolder or npz")
    if path is None:
        if kind != "fashion_mnist":
            raise DatasetError(f"dataset {name!r} needs --data PATH: {EXPECTED[kind]}")
        return
    p = Path(path)
    problem = _data_problem(kind, p)
    if problem is not None:
        hint = ""
        if kind != "npz" and p.is_file() and p.suffix.lower() == ".npz":
            hint = "; for a .npz file give --dataset npz"
        elif kind == "npz" and p.is_dir():
            hint = "; for a directory give --dataset fashion_mnist, cifar10 or imagefolder"
        found = f"; found {describe_path(p)}" if p.exists() else ""
        raise DatasetError(f"--data {p} for dataset {kind}: {problem}{found}; expected {EXPECTED[kind]}{hint}")


def _data_problem(kind: str, p: Path) -> str | None:
    """What is wrong with --data p for this dataset, or None."""
    if not p.exists():
        return "it does not exist"
    if kind == "npz":
        if not p.is_file():
            return "it is not a file"
        if not zipfile.is_zipfile(p):
            return "it is not an .npz archive"
        try:
            with np.load(p) as d:
                files = set(d.files)
        except Exception as e:  # a damaged archive
            return f"it cannot be read ({type(e).__name__}: {str(e)[:120]})"
        return None if files >= set(NPZ_KEYS) else f"it must hold arrays {list(NPZ_KEYS)}; it has {sorted(files)}"
    if not p.is_dir():
        return "it is not a directory"
    if kind == "fashion_mnist":
        missing = [n for n in FASHION_FILES if not (p / n).is_file()]
        return f"missing {', '.join(missing)}" if missing else None
    if kind == "cifar10":
        r = _cifar_dir(p)
        missing = [n for n in CIFAR_FILES if not (r / n).is_file()]
        return f"CIFAR-10 python batches missing in {r}: {missing}" if missing else None
    try:  # imagefolder
        classes, test = _folder_layout(p)
    except (OSError, StopIteration):
        return "no train/ and test/ (or val/) subdirectories"
    if not classes:
        return f"{p / 'train'} has no class directories"
    extra = sorted(d.name for d in test.iterdir() if d.is_dir() and d.name not in classes)
    if extra:  # their images would be left out without a word
        return f"{test} has classes that {p / 'train'} lacks: {extra[:5]}"
    empty = next((d for d in (p / "train", test) if not _split_images(d, classes)), None)
    return None if empty is None else f"no images in {empty}/<class>/"


def describe_path(p: Path) -> str:
    """What is at p, in a few words, for a message."""
    if not p.exists():
        return "nothing there"
    if p.is_dir():
        names = sorted(x.name + ("/" if x.is_dir() else "") for x in itertools.islice(p.iterdir(), 101))
        if not names:
            return "an empty directory"
        more = "" if len(names) <= 6 else f" and {len(names) - 6} more" if len(names) <= 100 else " and 95+ more"
        return f"a directory holding {', '.join(names[:6])}{more}"
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(512)
    kinds = ((b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "gzip-compressed"), (b"\x93NUMPY", "a NumPy .npy array"),
             (b"\x80", "a Python pickle"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8", "a JPEG image"))
    kind = next((k for magic, k in kinds if head.startswith(magic)), None)
    if kind is None:
        text = head.decode("utf-8", errors="replace")
        if "\ufffd" in text[:-3] or "\x00" in text:
            kind = "binary data"
        else:
            kind = f"text beginning {text.strip()[:40].splitlines()[0]!r}" if text.strip() else "blank text"
    return "an empty file" if size == 0 else f"a file of {size} bytes ({kind})"


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
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
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


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random-shift crop (zero padding) and horizontal flip, batched, on uint8 images."""
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, c, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, c, h, w)
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    f = torch.rand(n, generator=g) < 0.5
    out[f] = out[f].flip(-1)
    return out
