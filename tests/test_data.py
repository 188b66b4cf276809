"""Tests for jaxnets.data: digits, Fashion-MNIST IDX files, CIFAR-10 python batches.

File-based loaders are tested on small files written here in exactly the standard formats
(the writers below are independent of the library's own ``write_idx``/``write_cifar10_batch``).
The real Fashion-MNIST is used only when present (``$JAXNETS_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from jaxnets import data

REPO_ROOT = Path(__file__).resolve().parents[1]
FASHION_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# --------------------------------------------------------------------------- helpers


def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding: big-endian magic 0x000008<ndim>, big-endian dims, raw uint8."""
    a = np.asarray(a, dtype=np.uint8)
    magic = (0x0800 | a.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_fashion(folder: Path, n_train=30, n_test=12, *, gz=True, seed=0, overrides=None):
    """Write the four Fashion-MNIST files; ``overrides[name] = raw bytes`` replaces one."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        FASHION_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FASHION_NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FASHION_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FASHION_NAMES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    overrides = overrides or {}
    for name, a in arrays.items():
        raw = overrides.get(name, idx_bytes(a))
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


def write_batch(path: Path, x: np.ndarray, labels) -> None:
    """Standard CIFAR-10 python batch: bytes keys, uint8 (n, 3072) data, list labels."""
    obj = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(x, dtype=np.uint8).reshape(len(labels), 3072),
        b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
    }
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(folder: Path, n_per_batch=8, n_batches=5, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, n_batches + 1):
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch)
        write_batch(folder / f"data_batch_{i}", x, y)
        xs.append(x)
        ys.append(y)
    xt = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test)
    write_batch(folder / "test_batch", xt, yt)
    return np.concatenate(xs), np.concatenate(ys), xt, yt


def check_split(s, image_shape, num_classes):
    assert list(s) == list(data.SPLIT_KEYS)
    for part in ("train", "val", "test"):
        X, y = s[f"X_{part}"], s[f"y_{part}"]
        assert X.dtype == np.float32 and y.dtype == np.int32
        assert X.shape[1:] == image_shape and X.shape[0] == y.shape[0] and y.ndim == 1
        if len(y):
            assert y.min() >= 0 and y.max() < num_classes


# --------------------------------------------------------------------------- validate


class TestValidate:
    def test_ok(self):
        data.validate_images_labels(np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1, 2]), 3)
        data.validate_images_labels(np.zeros((3, 4), np.uint8), np.array([0, 5, 7]))

    @pytest.mark.parametrize(
        "X, y, k, exc, words",
        [
            (np.array([[np.nan, 1.0]]), np.array([0]), None, ValueError, ["X", "NaN"]),
            (np.array([[np.inf, 1.0]]), np.array([0]), None, ValueError, ["X", "inf"]),
            (np.zeros((0, 4)), np.zeros(0, int), None, ValueError, ["X", "non-empty"]),
            (np.zeros((2, 4)), np.array([0.0, 1.0]), None, TypeError, ["y", "integer", "float64"]),
            (np.zeros((2, 4)), np.array([[0], [1]]), None, ValueError, ["y", "1-D", "(2, 1)"]),
            (np.zeros((2, 4)), np.array([0, 1, 2]), None, ValueError, ["X and y", "2", "3"]),
            (np.zeros((2, 4)), np.array([0, 10]), 10, ValueError, ["y", "[0, 10)", "max 10"]),
            (np.zeros((2, 4)), np.array([-1, 0]), None, ValueError, ["y", "min -1"]),
            (np.array([["a"]]), np.array([0]), None, TypeError, ["X", "dtype"]),
            (np.zeros((2, 4)), np.array([0, 1]), 0, ValueError, ["num_classes"]),
        ],
    )
    def test_errors(self, X, y, k, exc, words):
        with pytest.raises(exc) as info:
            data.validate_images_labels(X, y, num_classes=k)
        for w in words:
            assert w in str(info.value)


# --------------------------------------------------------------------------- digits


class TestDigits:
    def test_shapes_dtypes_ranges(self):
        s = data.load_digits()
        check_split(s, (1, 8, 8), 10)
        n = sum(len(s[f"y_{p}"]) for p in ("train", "val", "test"))
        assert n == 1797
        assert len(s["y_test"]) == round(0.2 * 1797) and len(s["y_val"]) == round(0.1 * 1797)
        X = np.concatenate([s["X_train"], s["X_val"], s["X_test"]])
        assert X.min() == 0.0 and X.max() == 1.0
        # scaling is pixel / 16: every value is a multiple of 1/16
        np.testing.assert_array_equal(X * 16, np.round(X * 16))

    def test_splits_disjoint_and_complete(self):
        from sklearn.datasets import load_digits

        ref = load_digits().data.reshape(-1, 64) / 16
        s = data.load_digits(seed=3)
        X = np.concatenate([s["X_train"], s["X_val"], s["X_test"]]).reshape(-1, 64)
        # same multiset of images (rows), no row used twice
        key = lambda a: np.array(sorted(map(bytes, (a * 16).astype(np.uint8))))
        np.testing.assert_array_equal(key(X), key(ref))

    def test_stratified(self):
        s = data.load_digits(seed=1)
        overall = np.bincount(np.concatenate([s["y_train"], s["y_val"], s["y_test"]])) / 1797
        for part in ("train", "val", "test"):
            frac = np.bincount(s[f"y_{part}"], minlength=10) / len(s[f"y_{part}"])
            # stratification keeps each class share within one example of the overall share
            assert np.all(np.abs(frac - overall) <= 1.0 / len(s[f"y_{part}"]) + 1e-9), part

    def test_seed_reproducible(self):
        a, b, c = data.load_digits(seed=5), data.load_digits(seed=5), data.load_digits(seed=6)
        for k in data.SPLIT_KEYS:
            np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a["y_train"], c["y_train"])

    def test_binary_subset(self):
        s = data.load_digits(binary=True)
        check_split(s, (1, 8, 8), 2)
        ys = np.concatenate([s["y_train"], s["y_val"], s["y_test"]])
        assert set(ys.tolist()) == {0, 1} and len(ys) == 178 + 182
        for part in ("train", "val", "test"):
            assert set(s[f"y_{part}"].tolist()) == {0, 1}

    def test_zero_val_fraction(self):
        s = data.load_digits(val_fraction=0.0)
        assert s["X_val"].shape == (0, 1, 8, 8) and s["y_val"].dtype == np.int32

    @pytest.mark.parametrize(
        "kw, exc, word",
        [
            ({"val_fraction": 1.5}, ValueError, "val_fraction"),
            ({"test_fraction": -0.1}, ValueError, "test_fraction"),
            ({"val_fraction": 0.5, "test_fraction": 0.5}, ValueError, "val_fraction \\+ test"),
            ({"val_fraction": "0.1"}, TypeError, "val_fraction"),
            ({"seed": -1}, ValueError, "seed"),
        ],
    )
    def test_bad_args(self, kw, exc, word):
        with pytest.raises(exc, match=word):
            data.load_digits(**kw)

    def test_returned_arrays_are_fresh(self):
        a = data.load_digits()
        a["X_train"][:] = -1
        assert data.load_digits()["X_train"].min() == 0.0


# --------------------------------------------------------------------------- Fashion-MNIST


class TestFashionSynthetic:
    def test_loads(self, tmp_path):
        arrays = write_fashion(tmp_path, n_train=30, n_test=12)
        s = data.load_fashion_mnist(tmp_path, val_size=10, seed=None)
        check_split(s, (1, 28, 28), 10)
        assert [len(s[f"y_{p}"]) for p in ("train", "val", "test")] == [20, 10, 12]
        x_tr = arrays[FASHION_NAMES[0]]
        # seed=None: the last val_size training images are the validation split
        np.testing.assert_allclose(s["X_val"][:, 0], x_tr[20:] / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_allclose(s["X_train"][:, 0], x_tr[:20] / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(s["y_test"], arrays[FASHION_NAMES[3]])
        assert 0.0 <= s["X_train"].min() and s["X_train"].max() <= 1.0

    def test_seeded_random_val(self, tmp_path):
        write_fashion(tmp_path, n_train=40)
        a = data.load_fashion_mnist(tmp_path, val_size=10, seed=0)
        b = data.load_fashion_mnist(tmp_path, val_size=10, seed=0)
        c = data.load_fashion_mnist(tmp_path, val_size=10, seed=1)
        np.testing.assert_array_equal(a["X_val"], b["X_val"])
        assert not np.array_equal(a["X_val"], c["X_val"])

        # train and val partition the 40 training images
        def rows(X):
            return {bytes(r) for r in (X * 255).round().astype(np.uint8).reshape(len(X), -1)}

        assert len(rows(a["X_train"]) | rows(a["X_val"])) == 40

    def test_uncompressed_and_parent_folder(self, tmp_path):
        write_fashion(tmp_path / "fashion-mnist", gz=False)
        s = data.load_fashion_mnist(tmp_path, val_size=5)  # parent holding fashion-mnist/
        assert s["X_train"].shape == (25, 1, 28, 28)

    def test_env_var(self, tmp_path, monkeypatch):
        write_fashion(tmp_path / "fashion-mnist")
        monkeypatch.setenv("JAXNETS_DATA", str(tmp_path))
        s = data.load_fashion_mnist(val_size=5)
        assert s["X_test"].shape == (12, 1, 28, 28)

    def test_load_dataset(self, tmp_path, monkeypatch):
        monkeypatch.delenv("JAXNETS_DATA", raising=False)
        write_fashion(tmp_path / "fashion-mnist", n_train=5010)  # default val_size is 5000
        s = data.load_dataset("fashion-mnist", data_dir=tmp_path, seed=0)
        assert [len(s[f"y_{p}"]) for p in ("train", "val", "test")] == [10, 5000, 12]

    def test_val_size_too_large(self, tmp_path):
        write_fashion(tmp_path, n_train=30)
        with pytest.raises(ValueError, match="val_size.*30.*got 30"):
            data.load_fashion_mnist(tmp_path, val_size=30)

    def test_bad_magic(self, tmp_path):
        bad = idx_bytes(np.zeros((30, 28, 28)), magic=0x00000801)
        write_fashion(tmp_path, overrides={FASHION_NAMES[0]: bad})
        with pytest.raises(ValueError) as info:
            data.load_fashion_mnist(tmp_path, val_size=5)
        msg = str(info.value)
        assert FASHION_NAMES[0] in msg and "0x00000803" in msg and "0x00000801" in msg

    def test_wrong_image_dims(self, tmp_path):
        write_fashion(tmp_path, overrides={FASHION_NAMES[2]: idx_bytes(np.zeros((12, 27, 28)))})
        with pytest.raises(ValueError, match=r"t10k-images.*\(N, 28, 28\)"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_truncated(self, tmp_path):
        full = idx_bytes(np.zeros((30, 28, 28)))
        write_fashion(tmp_path, overrides={FASHION_NAMES[0]: full[:-100]})
        with pytest.raises(ValueError) as info:
            data.load_fashion_mnist(tmp_path, val_size=5)
        msg = str(info.value)
        assert FASHION_NAMES[0] in msg and "truncated" in msg
        assert str(len(full)) in msg and str(len(full) - 100) in msg

    def test_truncated_header(self, tmp_path):
        write_fashion(tmp_path, overrides={FASHION_NAMES[1]: b"\x00\x00\x08"})
        with pytest.raises(ValueError, match="train-labels.*truncated"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_corrupt_gzip(self, tmp_path):
        write_fashion(tmp_path)
        p = tmp_path / (FASHION_NAMES[0] + ".gz")
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])  # cut the gzip stream in half
        with pytest.raises(ValueError, match="train-images.*gzip"):
            data.load_fashion_mnist(tmp_path, val_size=5)
        p.write_bytes(raw[:10] + b"\xff" * 50 + raw[60:])  # garbage in the deflate data
        with pytest.raises(ValueError, match="train-images.*gzip"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_gz_name_but_not_gzip(self, tmp_path):
        write_fashion(tmp_path)
        (tmp_path / (FASHION_NAMES[3] + ".gz")).write_bytes(b"not gzip at all")
        with pytest.raises(ValueError, match="t10k-labels.*gzip"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_label_out_of_range(self, tmp_path):
        labels = (np.arange(30) % 10).astype(np.uint8)
        labels[7] = 10
        write_fashion(tmp_path, overrides={FASHION_NAMES[1]: idx_bytes(labels)})
        with pytest.raises(ValueError, match=r"train-labels.*0\.\.9.*10 at index 7"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_count_mismatch(self, tmp_path):
        labels = (np.arange(11) % 10).astype(np.uint8)
        write_fashion(tmp_path, overrides={FASHION_NAMES[3]: idx_bytes(labels)})
        with pytest.raises(ValueError, match="t10k-labels.*12 labels.*got 11"):
            data.load_fashion_mnist(tmp_path, val_size=5)

    def test_missing_lists_places(self, tmp_path, monkeypatch):
        monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "nowhere"))
        with pytest.raises(FileNotFoundError) as info:
            data.load_fashion_mnist(download=False)
        msg = str(info.value)
        assert str(tmp_path / "nowhere" / "fashion-mnist") in msg
        assert "/usr/share/datasets/fashion-mnist" in msg
        assert "apt-get install dataset-fashion-mnist" in msg
        assert "zalandoresearch/fashion-mnist" in msg and "--data-dir" in msg

    def test_missing_one_file(self, tmp_path):
        write_fashion(tmp_path)
        (tmp_path / (FASHION_NAMES[2] + ".gz")).unlink()
        with pytest.raises(FileNotFoundError) as info:
            data.load_fashion_mnist(tmp_path, download=False)
        msg = str(info.value)
        assert f"{tmp_path}: missing t10k-images-idx3-ubyte" in msg
        assert str(tmp_path / "fashion-mnist") in msg

    def test_read_write_idx_roundtrip(self, tmp_path):
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
            p = data.write_idx(tmp_path / name, a)
            np.testing.assert_array_equal(data.read_idx(p), a)
            assert p.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")


def _real_fashion_dir() -> Path | None:
    candidates = []
    if os.environ.get("JAXNETS_DATA"):
        candidates.append(Path(os.environ["JAXNETS_DATA"]) / "fashion-mnist")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "fashion-mnist")
    for c in candidates:
        if all((c / (n + ".gz")).is_file() or (c / n).is_file() for n in FASHION_NAMES):
            return c
    return None


def test_fashion_mnist_real_data():
    folder = _real_fashion_dir()
    if folder is None:
        pytest.skip("real Fashion-MNIST not found ($JAXNETS_DATA/fashion-mnist or ../shared/data)")
    s = data.load_fashion_mnist(folder)
    check_split(s, (1, 28, 28), 10)
    assert [len(s[f"y_{p}"]) for p in ("train", "val", "test")] == [55000, 5000, 10000]
    np.testing.assert_array_equal(np.bincount(s["y_test"]), np.full(10, 1000))
    np.testing.assert_array_equal(
        np.bincount(s["y_train"], minlength=10) + np.bincount(s["y_val"], minlength=10),
        np.full(10, 6000),
    )
    assert s["X_train"].min() == 0.0 and s["X_train"].max() == 1.0
    assert 0.25 < float(s["X_test"].mean()) < 0.35  # the data set's mean pixel is ~0.286


# --------------------------------------------------------------------------- CIFAR-10


class TestCifar:
    def test_split_nchw_mean(self, tmp_path):
        x_tr, y_tr, x_te, y_te = write_cifar(tmp_path, n_per_batch=8, n_batches=5, n_test=6)
        s = data.load_cifar10(tmp_path, num_train=30, num_val=10, num_test=5)
        check_split(s, (3, 32, 32), 10)
        assert [len(s[f"y_{p}"]) for p in ("train", "val", "test")] == [30, 10, 5]
        img = x_tr.reshape(-1, 3, 32, 32).astype(np.float64)  # row = R(1024) G(1024) B(1024)
        mean = img[:30].mean(axis=0)
        np.testing.assert_allclose(s["X_train"], img[:30] - mean, atol=1e-3)
        np.testing.assert_allclose(s["X_val"], img[30:40] - mean, atol=1e-3)
        np.testing.assert_allclose(s["X_test"], x_te[:5].reshape(-1, 3, 32, 32) - mean, atol=1e-3)
        np.testing.assert_array_equal(s["y_train"], y_tr[:30])
        np.testing.assert_array_equal(s["y_val"], y_tr[30:40])
        np.testing.assert_array_equal(s["y_test"], y_te[:5])
        np.testing.assert_allclose(s["X_train"].mean(axis=0), 0.0, atol=1e-3)

    def test_channel_layout(self, tmp_path):
        # one image: red plane 1, green plane 2, blue plane 3 -> NCHW channels 1, 2, 3
        row = np.repeat(np.array([1, 2, 3], np.uint8), 1024)[None]
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        write_batch(folder / "data_batch_1", np.repeat(row, 2, 0), [3, 4])
        write_batch(folder / "test_batch", row, [5])
        s = data.load_cifar10(tmp_path, num_train=1, num_val=1, num_test=1, subtract_mean=False)
        for c in range(3):
            assert np.all(s["X_train"][0, c] == c + 1)
        assert s["y_val"].tolist() == [4] and s["y_test"].tolist() == [5]

    def test_fewer_batches_ok_and_too_few_images(self, tmp_path):
        write_cifar(tmp_path, n_per_batch=8, n_batches=2, n_test=4)
        s = data.load_cifar10(tmp_path, num_train=12, num_val=4, num_test=4)
        assert s["X_train"].shape == (12, 3, 32, 32)
        with pytest.raises(ValueError) as info:
            data.load_cifar10(tmp_path, num_train=15, num_val=4, num_test=4)
        msg = str(info.value)
        assert "num_train" in msg and "num_val" in msg and "16" in msg and "data_batch_3" in msg
        with pytest.raises(ValueError, match="num_test.*4.*got num_test=5"):
            data.load_cifar10(tmp_path, num_train=4, num_val=4, num_test=5)

    def test_default_sizes_on_small_folder(self, tmp_path):
        write_cifar(tmp_path, n_per_batch=4)
        with pytest.raises(ValueError, match="num_train=49000"):
            data.load_cifar10(tmp_path)

    def test_missing_files(self, tmp_path):
        write_cifar(tmp_path, n_batches=5)
        (tmp_path / "test_batch").unlink()
        with pytest.raises(FileNotFoundError) as info:
            data.load_cifar10(tmp_path, num_train=4, num_val=0, num_test=1)
        msg = str(info.value)
        assert "test_batch" in msg and str(tmp_path) in msg and "cifar-10-python.tar.gz" in msg

    def test_gap_in_batches(self, tmp_path):
        write_cifar(tmp_path, n_batches=3)
        (tmp_path / "data_batch_2").unlink()
        with pytest.raises(FileNotFoundError, match="data_batch_2"):
            data.load_cifar10(tmp_path, num_train=4, num_val=0, num_test=1)

    def test_missing_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="data_batch_1.*test_batch"):
            data.load_cifar10(tmp_path / "nope", download=False)

    def test_corrupt_pickle(self, tmp_path):
        write_cifar(tmp_path, n_batches=2)
        p = tmp_path / "data_batch_2"
        p.write_bytes(p.read_bytes()[:200])
        with pytest.raises(ValueError, match="data_batch_2.*corrupt"):
            data.load_cifar10(tmp_path, num_train=4, num_val=0, num_test=1)
        p.write_bytes(b"garbage")
        with pytest.raises(ValueError, match="data_batch_2.*corrupt"):
            data.load_cifar10(tmp_path, num_train=4, num_val=0, num_test=1)

    def test_disallowed_global(self, tmp_path):
        write_cifar(tmp_path, n_batches=1)
        with open(tmp_path / "test_batch", "wb") as f:
            pickle.dump({b"data": os.getcwd, b"labels": []}, f, protocol=2)
        with pytest.raises(ValueError, match="test_batch.*not allowed"):
            data.load_cifar10(tmp_path, num_train=4, num_val=0, num_test=1)

    def test_old_numpy_core_pickle(self, tmp_path):
        # the real batches name numpy.core.multiarray (numpy 1.x); they must still load
        write_cifar(tmp_path, n_batches=1)
        p = tmp_path / "data_batch_1"
        raw = p.read_bytes()
        if b"numpy._core.multiarray" in raw:
            p.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        s = data.load_cifar10(tmp_path, num_train=4, num_val=4, num_test=1)
        assert s["X_train"].shape == (4, 3, 32, 32)

    def test_bad_label(self, tmp_path):
        write_cifar(tmp_path, n_per_batch=4, n_batches=1)
        write_batch(tmp_path / "test_batch", np.zeros((3, 3072), np.uint8), [0, 10, 1])
        with pytest.raises(ValueError, match=r"test_batch.*0\.\.9.*10 at index 1"):
            data.load_cifar10(tmp_path, num_train=2, num_val=0, num_test=1)

    @pytest.mark.parametrize(
        "obj, words",
        [
            ({b"labels": [0]}, ["b'data'"]),
            ({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}, ["uint8", "float32"]),
            ({b"data": np.zeros((1, 3071), np.uint8), b"labels": [0]}, ["(n, 3072)", "(1, 3071)"]),
            ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, ["b'labels'", "2"]),
            ([1, 2, 3], ["dict", "list"]),
        ],
    )
    def test_bad_content(self, tmp_path, obj, words):
        write_cifar(tmp_path, n_per_batch=4, n_batches=1)
        with open(tmp_path / "data_batch_1", "wb") as f:
            pickle.dump(obj, f, protocol=2)
        with pytest.raises(ValueError) as info:
            data.load_cifar10(tmp_path, num_train=1, num_val=0, num_test=1)
        msg = str(info.value)
        assert "data_batch_1" in msg
        for w in words:
            assert w in msg

    def test_load_dataset_cifar(self, tmp_path, monkeypatch):
        monkeypatch.delenv("JAXNETS_DATA", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        with pytest.raises(FileNotFoundError, match="JAXNETS_DATA"):
            data.load_dataset("cifar10", download=False)
        # default sizes (49000/1000/1000) need the full data set, so small files fail clearly
        write_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=2)
        with pytest.raises(ValueError, match="num_train"):
            data.load_dataset("cifar10", data_dir=tmp_path)

    def test_library_writer_matches_format(self, tmp_path):
        x = np.arange(2 * 3072).reshape(2, 3072) % 256
        data.write_cifar10_batch(tmp_path / "b", x, [1, 2])
        with open(tmp_path / "b", "rb") as f:
            d = pickle.load(f, encoding="bytes")
        assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (2, 3072)
        assert d[b"labels"] == [1, 2] and isinstance(d[b"labels"], list)


# --------------------------------------------------------------------------- dispatch


def test_load_dataset_digits():
    a = data.load_dataset("digits", seed=2)
    b = data.load_digits(seed=2)
    for k in data.SPLIT_KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert set(data.load_dataset("digits-01")["y_train"].tolist()) == {0, 1}


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError) as info:
        data.load_dataset("svhn")
    msg = str(info.value)
    assert "'svhn'" in msg
    for name in data.DATASETS:
        assert name in msg
