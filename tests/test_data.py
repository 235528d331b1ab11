"""Dataset loaders on generated files (never downloads), and the Debian Fashion-MNIST when present."""
import gzip
import pickle

import numpy as np
import pytest

from widthnas.nas.data import DEBIAN_FASHION, DatasetError, augment, cifar10, fashion_mnist, image_folder, load_dataset, npz, split


def test_npz_layouts(tmp_path):
    x = np.random.default_rng(0).random((20, 8, 8, 3)).astype(np.float32)  # NHWC floats in [0, 1]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 4, x_test=x[:5], y_test=np.arange(5) % 4)
    ds = npz(str(tmp_path / "d.npz"))
    assert ds.shape == (3, 8, 8) and ds.x_train.dtype.is_floating_point is False and ds.num_classes == 4
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(DatasetError, match="must hold arrays"):
        npz(str(tmp_path / "bad.npz"))


def test_cifar10_python_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    ds = cifar10(str(tmp_path))
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.y_test.tolist() == [0, 1, 2, 3]
    (d / "test_batch").unlink()
    with pytest.raises(DatasetError, match="test_batch"):
        cifar10(str(tmp_path))


def test_image_folder(tmp_path):
    from PIL import Image

    for split_ in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split_ / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(tmp_path / split_ / c / f"{i}.png")
    ds = image_folder(str(tmp_path))
    assert ds.x_train.shape == (6, 3, 12, 12) and ds.num_classes == 2 and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]


def test_missing_and_corrupt_fashion_mnist(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("fashion_mnist", str(tmp_path / "nope"))
    (tmp_path / "fm").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "fm" / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    with pytest.raises(DatasetError, match="corrupt"):
        fashion_mnist(str(tmp_path / "fm"), download=False)


@pytest.mark.skipif(not DEBIAN_FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_debian_fashion_mnist_and_split():
    ds = fashion_mnist(download=False)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    sp = split(ds, 0.1, seed=0)
    assert len(sp.train[0]) == 54000 and len(sp.val[0]) == 6000
    assert 0.2 < float(sp.mean) < 0.4
    sp2 = split(ds, 0.1, seed=0)
    assert (sp.val[1] == sp2.val[1]).all()  # the validation split is reproducible


def test_augment_keeps_shape_and_content():
    import torch

    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 3:5, 3:5] = 200
    out = augment(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert (out.sum(dim=(1, 2, 3)) == x.sum(dim=(1, 2, 3))).all()  # a 2-px shift keeps the centre square


def test_data_files_are_the_files_each_loader_reads(tmp_path, monkeypatch):
    """data_files (what the overwrite checks protect) names exactly what the loaders open: an image
    folder's images (val/ as its test split, a non-image file left out), CIFAR-10's batches in
    cifar-10-batches-py/, the .npz; Fashion-MNIST's idx files in --data, else where each one is found."""
    from pathlib import Path

    from PIL import Image

    from widthnas.nas import data

    r = tmp_path / "imgs"
    for split_ in ("train", "val"):
        for c in ("cat", "dog"):
            (r / split_ / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((6, 6, 3), 50 * i, np.uint8)).save(r / split_ / c / f"{i}.png")
    (r / "train" / "cat" / "notes.txt").write_text("not an image")
    opened, real_open = [], Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a, **k: (opened.append(Path(f)), real_open(f, *a, **k))[1])
    load_dataset("imagefolder", str(r))
    assert data.data_files("imagefolder", str(r)) == opened and len(opened) == 8
    assert data.data_files("imagefolder", str(tmp_path / "nothing")) == []  # never raises

    cifar = tmp_path / "c" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in data.CIFAR_FILES:
        with open(cifar / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    read = []
    monkeypatch.setattr(data, "open", lambda f, *a, **k: (read.append(Path(f)), open(f, *a, **k))[1], raising=False)
    cifar10(str(tmp_path / "c"))
    assert data.data_files("cifar10", str(tmp_path / "c")) == read and len(read) == 6

    assert data.data_files("npz", str(tmp_path / "d.npz")) == [tmp_path / "d.npz"]
    assert data.data_files(str(tmp_path / "d.npz")) == [tmp_path / "d.npz"]  # --dataset FILE.npz, no --data
    assert data.data_files("fashion_mnist", str(tmp_path / "fm")) == [tmp_path / "fm" / n for n in data.FASHION_FILES]
    debian, cache = tmp_path / "debian", tmp_path / "cache"
    names = list(data.FASHION_FILES)
    debian.mkdir()
    (cache / "fashion-mnist").mkdir(parents=True)
    (debian / names[0]).write_bytes(b"x")
    (cache / "fashion-mnist" / names[1]).write_bytes(b"x")
    monkeypatch.setattr(data, "DEBIAN_FASHION", debian)
    monkeypatch.setenv("WIDTHNAS_CACHE", str(cache))
    assert data.data_files("fashion_mnist") == [debian / names[0], *(cache / "fashion-mnist" / n for n in names[1:])]
