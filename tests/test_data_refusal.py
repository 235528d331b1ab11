"""A --data that holds nothing the dataset reads is refused with what was found and what is expected,
before anything is trained; nothing falls back to another source (never a download in these tests)."""
import gzip
import pickle

import numpy as np
import pytest

from widthnas.nas import data
from widthnas.nas.cli import main
from widthnas.nas.data import DatasetError, load_dataset


@pytest.fixture(autouse=True)
def no_other_source(tmp_path, monkeypatch):
    """No download, an empty cache, and a 'Debian copy' of wrong bytes: a loader that fell back to one
    of them would fail differently (or reach the network and fail the test)."""
    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(data.urllib.request, "urlretrieve", no_download)
    monkeypatch.setenv("WIDTHNAS_CACHE", str(tmp_path / "cache"))
    debian = tmp_path / "debian"
    debian.mkdir()
    for name in data.FASHION_FILES:
        (debian / name).write_bytes(gzip.compress(b"not the Debian copy"))
    monkeypatch.setattr(data, "DEBIAN_FASHION", debian)


def bad_paths(tmp_path) -> dict:
    """What a user may point --data at by mistake."""
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes\n")
    wrong_npz = tmp_path / "other.npz"
    np.savez(wrong_npz, images=np.zeros((2, 4, 4)))
    three = tmp_path / "three_of_four"  # Fashion-MNIST without its test labels
    three.mkdir()
    for name in list(data.FASHION_FILES)[:3]:
        (three / name).write_bytes(gzip.compress(b"\x00"))
    no_test = tmp_path / "folder_no_test"
    (no_test / "train" / "cat").mkdir(parents=True)
    return {"empty": empty, "text": text, "wrong_npz": wrong_npz, "three": three, "no_test": no_test,
            "missing": tmp_path / "nowhere"}


@pytest.mark.parametrize("dataset, bad, found, expected", [
    ("fashion_mnist", "empty", "an empty directory", "four Fashion-MNIST idx files"),
    ("fashion_mnist", "text", "text beginning 'these are my notes'", "four Fashion-MNIST idx files"),
    ("fashion_mnist", "wrong_npz", "a zip archive", "give --dataset npz"),
    ("fashion_mnist", "three", "t10k-labels-idx1-ubyte.gz", "four Fashion-MNIST idx files"),
    ("fashion_mnist", "missing", "does not exist", "four Fashion-MNIST idx files"),
    ("npz", "empty", "an empty directory", "x_train, y_train, x_test, y_test"),
    ("npz", "text", "not an .npz archive", "x_train, y_train, x_test, y_test"),
    ("npz", "wrong_npz", "it has ['images']", "x_train, y_train, x_test, y_test"),
    ("npz", "missing", "does not exist", "x_train, y_train, x_test, y_test"),
    ("imagefolder", "empty", "an empty directory", "train/<class>/ and test/<class>/"),
    ("imagefolder", "text", "not a directory", "train/<class>/ and test/<class>/"),
    ("imagefolder", "no_test", "a directory holding train/", "train/<class>/ and test/<class>/"),
    ("cifar10", "empty", "an empty directory", "CIFAR-10 python batches"),
    ("cifar10", "text", "text beginning", "CIFAR-10 python batches"),
])
def test_bad_data_is_refused_with_what_was_found(tmp_path, dataset, bad, found, expected):
    p = bad_paths(tmp_path)[bad]
    with pytest.raises(DatasetError) as e:
        load_dataset(dataset, str(p))
    msg = str(e.value)
    assert isinstance(e.value, ValueError)  # the CLI prints it as one line, exit code 2
    assert str(p) in msg and found in msg and "expected" in msg and expected in msg, msg


def test_fashion_mnist_never_falls_back_to_another_copy(tmp_path):
    """--data DIR lacking a file: refused, even where the Debian copy, the cache or a download has it."""
    d = tmp_path / "fm"
    d.mkdir()
    for name in list(data.FASHION_FILES)[1:]:
        (d / name).write_bytes(gzip.compress(b"\x00"))
    for download in (True, False):
        with pytest.raises(DatasetError, match="missing train-images-idx3-ubyte.gz") as e:
            data.fashion_mnist(str(d), download=download)
        assert str(d) in str(e.value) and "not the Debian copy" not in str(e.value)
    (d / "train-images-idx3-ubyte.gz").write_text("plain text, not gzip")  # every file present, one not gzip
    with pytest.raises(DatasetError, match="not a whole gzip file"):
        data.fashion_mnist(str(d))


def test_image_folder_contents(tmp_path):
    """A test class train/ lacks (its images would be left out), no images, a file that is no image."""
    from PIL import Image

    r = tmp_path / "imgs"
    for split in ("train", "test"):
        (r / split / "cat").mkdir(parents=True)
    (r / "train" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images in"):
        load_dataset("imagefolder", str(r))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(r / "train" / "cat" / "0.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(r / "test" / "cat" / "0.png")
    (r / "test" / "dog").mkdir()
    with pytest.raises(DatasetError, match=r"classes that .* lacks: \['dog'\]"):
        load_dataset("imagefolder", str(r))
    (r / "test" / "dog").rmdir()
    (r / "train" / "cat" / "1.png").write_text("not an image")
    with pytest.raises(DatasetError, match="1.png cannot be read as an image.*text beginning"):
        load_dataset("imagefolder", str(r))


def test_cifar10_batch_that_is_no_pickle(tmp_path):
    for name in data.CIFAR_FILES:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    assert load_dataset("cifar10", str(tmp_path)).x_train.shape == (10, 3, 32, 32)
    (tmp_path / "test_batch").write_text("a text file")
    with pytest.raises(DatasetError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset("cifar10", str(tmp_path))


def test_npz_of_object_arrays(tmp_path):
    p = tmp_path / "o.npz"
    obj = np.array([None, 1], dtype=object)
    np.savez(p, x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(DatasetError, match="cannot be read.*plain numeric arrays"):
        load_dataset("npz", str(p))


def test_unknown_dataset_and_missing_path():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", "/nowhere")
    with pytest.raises(DatasetError, match="needs --data PATH"):
        load_dataset("imagefolder")


@pytest.mark.parametrize("dataset, bad", [("fashion_mnist", "empty"), ("npz", "text"), ("imagefolder", "empty"),
                                          ("cifar10", "text")])
def test_train_and_run_refuse_bad_data_before_anything(tmp_path, capsys, monkeypatch, dataset, bad):
    import widthnas.nas.run as nas_run
    import widthnas.nas.train as tr

    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(nas_run, "Run", lambda *a, **k: pytest.fail("the run started"))
    p = bad_paths(tmp_path)[bad]
    for cmd in ("train", "run"):
        out = tmp_path / f"{cmd}_out"
        assert main([cmd, "--out", str(out), "--dataset", dataset, "--data", str(p)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --data") and str(p) in err and "found" in err and "expected" in err, err
        assert not out.exists()  # nothing written
