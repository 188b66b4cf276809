"""Data sets as NCHW numpy arrays: sklearn digits, MNIST and Fashion-MNIST (IDX files), CIFAR-10.

Every loader returns a **split**: a plain dict with exactly the keys in :data:`SPLIT_KEYS`::

    {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test"}

where each ``X_*`` is a float32 array of shape ``(N, C, H, W)`` and each ``y_*`` an int32
array of shape ``(N,)``. A validation split may be empty (``N == 0``) when asked for.

Digits ship with scikit-learn. MNIST, Fashion-MNIST and CIFAR-10 are read from files the user
already has (a path argument, ``$JAXNETS_DATA``, Debian's folder, the per-user cache); when none
holds them they are downloaded on first use (:mod:`jaxnets.download`: checksum-verified, written
atomically), unless ``download=False``.
All functions are pure (no global RNG; randomness comes from an explicit ``seed``).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import InputError, InputTypeError

__all__ = [
    "SPLIT_KEYS",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "Split",
    "validate_images_labels",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_cifar10",
    "load_dataset",
    "read_idx",
    "write_idx",
    "write_cifar10_batch",
]

#: Keys of the dict every loader returns, in order.
SPLIT_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")

#: A split: ``{"X_train": (N, C, H, W) float32, "y_train": (N,) int32, ...}``.
Split = dict[str, np.ndarray]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "digits-01", "mnist", "fashion-mnist", "cifar10")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_ENV_VAR = "JAXNETS_DATA"
_DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim
_CIFAR_DIRNAME = "cifar-10-batches-py"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_FASHION_HOWTO = (
    "Get the four files with `apt-get install dataset-fashion-mnist` (Debian; installs "
    f"{_DEBIAN_FASHION_DIR}) or from the upstream release (github.com/zalandoresearch/"
    "fashion-mnist, folder data/fashion), then pass their folder with --data-dir / the "
    f"path argument, or set {_ENV_VAR} to a folder containing fashion-mnist/."
)
_MNIST_HOWTO = (
    "Get the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ (the MNIST release's "
    "mirror), then pass their folder with --data-dir / the path argument, or set "
    f"{_ENV_VAR} to a folder containing mnist/."
)
#: Per IDX data set: display name, extra system folder searched, how to get the files by hand.
_IDX_SETS = {
    "fashion-mnist": ("Fashion-MNIST", _DEBIAN_FASHION_DIR, _FASHION_HOWTO),
    "mnist": ("MNIST", None, _MNIST_HOWTO),
}
_CIFAR_HOWTO = (
    "Download the CIFAR-10 python version (cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html), extract it, and pass the "
    f"{_CIFAR_DIRNAME} folder (or its parent) with --data-dir / the path argument, or set "
    f"{_ENV_VAR} to its parent folder."
)


# --------------------------------------------------------------------------- validation


def validate_images_labels(X: Any, y: Any, num_classes: int | None = None) -> None:
    """Check that ``X`` is a finite, non-empty batch and ``y`` its integer labels in range.

    Args:
        X: images or features, shape ``(N, ...)`` (e.g. ``(N, C, H, W)`` or ``(N, D)``),
            any real numeric dtype; numpy or jax arrays.
        y: labels, shape ``(N,)``, integer dtype.
        num_classes: when given, labels must lie in ``[0, num_classes)``; otherwise they
            only need to be non-negative.

    Returns:
        None. Raises on the first problem found.

    Raises:
        TypeError: ``X`` is not real-valued numeric, or ``y`` is not an integer dtype, or
            ``num_classes`` is not a positive int.
        ValueError: ``X`` is empty or 0-d, holds NaN/inf; ``y`` is not 1-D; lengths differ;
            labels are out of range.

    >>> import numpy as np
    >>> validate_images_labels(np.zeros((2, 1, 8, 8)), np.array([0, 9]), num_classes=10)
    >>> validate_images_labels(np.zeros((2, 4)), np.array([0, 10]), num_classes=10)
    Traceback (most recent call last):
    ...
    jaxnets.errors.InputError: y: labels must lie in [0, 10); got min 0, max 10
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
        raise InputTypeError(f"X: expected a real numeric (integer or float) dtype; got {X.dtype}")
    if X.ndim < 1:
        raise InputError(f"X: expected shape (N, ...) with at least 1 dim; got shape {X.shape}")
    if X.size == 0:
        raise InputError(f"X: expected a non-empty array; got shape {X.shape}")
    if np.issubdtype(X.dtype, np.floating):
        finite = np.isfinite(X)
        if not finite.all():
            n_nan = int(np.isnan(X).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise InputError(f"X: expected finite values; got {n_nan} NaN and {n_inf} inf entries (shape {X.shape})")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputTypeError(f"y: expected an integer dtype; got {y.dtype}")
    if y.ndim != 1:
        raise InputError(f"y: expected a 1-D array of shape (N,); got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise InputError(
            f"X and y: expected the same number of examples; got X with {X.shape[0]} "
            f"(shape {X.shape}) and y with {y.shape[0]}"
        )
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise InputTypeError(f"num_classes: expected a positive int; got {num_classes!r}")
        if num_classes < 1:
            raise InputError(f"num_classes: expected a positive int; got {num_classes}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
        raise InputError(f"y: labels must lie in {bound}; got min {lo}, max {hi}")


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a float in [0, 1); got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise InputError(f"{name}: expected a float in [0, 1); got {value}")
    return value


def _check_count(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}: expected an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise InputError(f"{name}: expected an int >= {minimum}; got {value}")
    return int(value)


def _split(X_train, y_train, X_val, y_val, X_test, y_test) -> Split:
    arrays = (X_train, y_train, X_val, y_val, X_test, y_test)
    out = {}
    for key, a in zip(SPLIT_KEYS, arrays, strict=False):
        dtype = np.float32 if key.startswith("X") else np.int32
        out[key] = np.ascontiguousarray(a, dtype=dtype)
    return out


# --------------------------------------------------------------------------- digits


def load_digits(
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    binary: bool = False,
) -> Split:
    """scikit-learn's bundled 8x8 digits, ``x = pixel / 16``, stratified train/val/test.

    The 1797 images (10 classes) ship with scikit-learn, so this works offline. Both
    fractions are of the whole set: the test part is split off first, then the validation
    part from the rest, each stratified by class (``train_test_split(stratify=y)``).

    Args:
        val_fraction: share of all examples used for validation, in ``[0, 1)``; 0 gives
            empty ``(0, 1, 8, 8)`` validation arrays.
        test_fraction: share of all examples used for testing, in ``[0, 1)``.
        seed: integer seed of the (deterministic) shuffles.
        binary: keep only classes 0 and 1 (360 images, the "digits-01" task); labels
            stay 0/1.

    Returns:
        A split dict (see :data:`SPLIT_KEYS`): ``X_*`` float32 ``(N, 1, 8, 8)`` in
        ``[0, 1]``, ``y_*`` int32 ``(N,)``.

    Raises:
        TypeError / ValueError: a fraction is not a number in ``[0, 1)``, or
            ``val_fraction + test_fraction >= 1``.

    >>> s = load_digits(seed=0)
    >>> s["X_train"].shape, s["X_val"].shape, s["X_test"].shape
    ((1258, 1, 8, 8), (180, 1, 8, 8), (359, 1, 8, 8))
    >>> s["X_train"].dtype, s["y_train"].dtype, float(s["X_train"].max())
    (dtype('float32'), dtype('int32'), 1.0)
    >>> sorted(set(load_digits(binary=True)["y_test"].tolist()))
    [0, 1]
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise InputError(
            "val_fraction + test_fraction: expected < 1 so that training data remains; "
            f"got {val_fraction} + {test_fraction} = {val_fraction + test_fraction}"
        )
    seed = _check_count("seed", seed)

    bunch = _sk_load_digits()
    X = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int32)
    if binary:
        keep = y <= 1
        X, y = X[keep], y[keep]

    n_total = len(y)

    def take(X, y, fraction, rng):
        """Split round(fraction * n_total) examples off (X, y), stratified by class."""
        n = int(round(fraction * n_total))
        if n == 0:
            return X, y, X[:0], y[:0]
        X_a, X_b, y_a, y_b = train_test_split(X, y, test_size=n, stratify=y, random_state=rng)
        return X_a, y_a, X_b, y_b

    rng = np.random.RandomState(seed)  # one seeded stream drives both splits
    X_rest, y_rest, X_test, y_test = take(X, y, test_fraction, rng)
    X_train, y_train, X_val, y_val = take(X_rest, y_rest, val_fraction, rng)
    return _split(X_train, y_train, X_val, y_val, X_test, y_test)


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzip'd when it starts with the gzip signature).

    Format: big-endian int32 magic ``0x000008DD`` (``08`` = uint8, ``DD`` = number of dims),
    one big-endian int32 per dim, then ``prod(dims)`` raw bytes.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz`` or its uncompressed twin.
        expected_magic: when given, the magic number the header must hold
            (``0x00000803`` for images, ``0x00000801`` for labels).

    Returns:
        uint8 array with the header's shape, e.g. ``(N, 28, 28)`` or ``(N,)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: corrupt gzip stream, wrong magic number, or a byte count that does not
            match the header (the message names the file, expected and received bytes).

    >>> import tempfile, os, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_idx(os.path.join(d, "labels-idx1-ubyte.gz"), np.array([3, 1], np.uint8))
    ...     read_idx(p, expected_magic=0x00000801)
    array([3, 1], dtype=uint8)
    """
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError propagates with the path in it
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: corrupt gzip data ({type(e).__name__}: {e}); re-download the file") from e
    elif path.suffix == ".gz":
        raise InputError(
            f"{path}: expected gzip data (signature 1f 8b) for a .gz file; got first bytes "
            f"{raw[:4].hex(' ') or '(empty file)'}"
        )
    if len(raw) < 4:
        raise InputError(f"{path}: truncated IDX header: expected at least 4 bytes; received {len(raw)}")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08 or not 1 <= (magic & 0xFF) <= 4:
        want = f"0x{expected_magic:08x}" if expected_magic is not None else "0x000008DD"
        raise InputError(f"{path}: bad IDX magic number: expected {want} (unsigned-byte IDX); got 0x{magic:08x}")
    if expected_magic is not None and magic != expected_magic:
        raise InputError(f"{path}: bad IDX magic number: expected 0x{expected_magic:08x}; got 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header: expected {header} bytes; received {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing data in"
        raise InputError(
            f"{path}: {what} IDX file: header says dims {dims}, so expected {expected} bytes "
            f"(decompressed); received {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | os.PathLike, array: Any) -> Path:
    """Write a uint8 array as an IDX file (gzip'd when ``path`` ends in ``.gz``).

    Meant for tests and small examples; it is the inverse of :func:`read_idx`.

    Args:
        path: destination file.
        array: uint8-compatible values, shape ``(d1, ..., dk)`` with ``1 <= k <= 4``.

    Returns:
        ``Path(path)``.

    >>> import tempfile, os, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_idx(os.path.join(d, "x-idx3-ubyte"), np.zeros((2, 28, 28), np.uint8))
    ...     read_idx(p).shape
    (2, 28, 28)
    """
    a = np.asarray(array)
    if not 1 <= a.ndim <= 4:
        raise InputError(f"array: expected 1 to 4 dims; got shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise InputError(f"array: expected values in [0, 255]; got [{a.min()}, {a.max()}]")
    header = (0x00000800 | a.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    payload = header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _idx_candidates(name: str, path: str | os.PathLike | None) -> list[Path]:
    """Folders searched, in order: ``path`` and ``path/<name>``; else ``$JAXNETS_DATA/<name>``,
    the system folder, then the download cache."""
    from jaxnets import download

    if path is not None:
        p = Path(path).expanduser()
        return [p, p / name]
    out = []
    env = os.environ.get(_ENV_VAR)
    if env:
        out.append(Path(env).expanduser() / name)
    system = _IDX_SETS[name][1]
    if system:
        out.append(Path(system))
    cached = download.cache_dir() / name
    if cached not in out:
        out.append(cached)
    return out


def _idx_files_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four IDX files found in ``folder`` (``.gz`` preferred) and the stems missing."""
    found, missing = {}, []
    for key, stem in _FASHION_FILES.items():
        for fname in (stem + ".gz", stem):
            if (folder / fname).is_file():
                found[key] = folder / fname
                break
        else:
            missing.append(stem)
    return found, missing


def _download_target(name: str, path: str | os.PathLike | None) -> Path:
    """Where a download of set ``name`` goes: ``path`` itself when it is the set's folder (named so,
    or already holding some of its files), else ``<data root>/<name>``."""
    from jaxnets import download

    if path is not None:
        p = Path(path).expanduser()
        if p.name == name or _idx_files_in(p)[0]:
            return p
    return download.data_root(path) / name


def _find_idx_files(
    name: str, path: str | os.PathLike | None, *, download: bool = False, progress: bool | None = None
) -> dict[str, Path]:
    title, _, howto = _IDX_SETS[name]
    looked = []
    for folder in _idx_candidates(name, path):
        found, missing = _idx_files_in(folder)
        if not missing:
            return found
        if not folder.is_dir():
            looked.append(f"  {folder}: no such folder")
        else:
            looked.append(f"  {folder}: missing {', '.join(m + '[.gz]' for m in missing)}")
    if download:
        from jaxnets import download as dl

        target = _download_target(name, path)
        dl.fetch_files(name, target, [m + ".gz" for m in _idx_files_in(target)[1]], progress=progress)
        return _idx_files_in(target)[0]
    env_note = "" if path is not None or os.environ.get(_ENV_VAR) else f" ({_ENV_VAR} is not set)"
    raise FileNotFoundError(
        f"{title}: expected the four files "
        + ", ".join(s + "[.gz]" for s in _FASHION_FILES.values())
        + f" in one folder; looked in{env_note}:\n"
        + "\n".join(looked)
        + "\n"
        + howto
        + " (Or let jaxnets download them: drop --no-download / pass download=True.)"
    )


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, expected_magic=_IDX_IMAGES_MAGIC)
    if images.shape[1:] != (28, 28):
        raise InputError(f"{images_path}: expected image dims (N, 28, 28); got {images.shape}")
    labels = read_idx(labels_path, expected_magic=_IDX_LABELS_MAGIC)
    if labels.shape[0] != images.shape[0]:
        raise InputError(
            f"{labels_path}: expected {images.shape[0]} labels to match the images in "
            f"{images_path.name}; got {labels.shape[0]}"
        )
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise InputError(
            f"{labels_path}: expected labels in 0..9; got {int(labels[bad])} at index {bad} (max {int(labels.max())})"
        )
    return images, labels


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
    *,
    val_size: int = 5000,
    seed: int | None = 0,
    download: bool = True,
    progress: bool | None = None,
) -> Split:
    """Fashion-MNIST from its four IDX files, ``x = pixel / 255``, as NCHW arrays.

    Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzip'd (``.gz``) or not.
    Searched in ``path`` (or ``path/fashion-mnist``) when given; otherwise in
    ``$JAXNETS_DATA/fashion-mnist``, then ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist``), then the download cache (``~/.cache/jaxnets/fashion-mnist``).
    When no folder holds all four and ``download`` is on, the missing ``.gz`` files are fetched
    and verified (:mod:`jaxnets.download`) into ``path`` (when it holds some of them or is named
    ``fashion-mnist``), else ``path/fashion-mnist``, ``$JAXNETS_DATA/fashion-mnist`` or the cache.
    The 60000 training images are split into train and validation; the test split is the
    10000 ``t10k`` images.

    Args:
        path: folder holding the four files (or its parent holding ``fashion-mnist/``).
        val_size: number of training images moved to the validation split, in
            ``[0, N_train)``.
        seed: int: a seeded random ``val_size`` subset is validation; None: the last
            ``val_size`` training images are. Remaining images keep their file order.
        download: fetch missing files from upstream (or ``$JAXNETS_MIRROR``).
        progress: download progress bar on stderr; None: only on a terminal.

    Returns:
        A split dict (see :data:`SPLIT_KEYS`): ``X_*`` float32 ``(N, 1, 28, 28)`` in
        ``[0, 1]``, ``y_*`` int32 ``(N,)`` in ``0..9`` (names in
        :data:`FASHION_MNIST_CLASSES`). With the full data: 55000 / 5000 / 10000.

    Raises:
        FileNotFoundError: ``download=False`` and no folder holds all four files; the
            message lists every place looked and how to get the files.
        jaxnets.download.DownloadError: a download failed or a file's checksum differs
            (nothing unverified is kept).
        ValueError: a file is corrupt (bad gzip, bad magic, byte count not matching its
            header, image/label counts differ, labels outside 0..9), or ``val_size`` is out
            of range.

    >>> import tempfile, os, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for prefix, n in [("train", 20), ("t10k", 10)]:
    ...         x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    ...         _ = write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), x)
    ...         _ = write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), np.arange(n) % 10)
    ...     s = load_fashion_mnist(d, val_size=5)
    >>> s["X_train"].shape, s["X_val"].shape, s["X_test"].shape, s["y_test"].dtype
    ((15, 1, 28, 28), (5, 1, 28, 28), (10, 1, 28, 28), dtype('int32'))
    """
    return _load_idx_split("fashion-mnist", path, val_size=val_size, seed=seed, download=download, progress=progress)


def load_mnist(path: str | os.PathLike | None = None, **options: Any) -> Split:
    """MNIST handwritten digits from their four IDX files, ``x = pixel / 255``, as NCHW arrays.

    The same files, format, search order, download and split as :func:`load_fashion_mnist`,
    with ``mnist`` in place of ``fashion-mnist`` (and no system folder).

    Args:
        path: folder holding the four files (or its parent holding ``mnist/``).
        options: keyword-only, with :func:`load_fashion_mnist`'s defaults:
        val_size: number of training images moved to the validation split.
        seed: int: a seeded random validation subset; None: the last ``val_size`` images.
        download: fetch missing files from upstream (or ``$JAXNETS_MIRROR``).
        progress: download progress bar on stderr; None: only on a terminal.

    Returns:
        A split dict: ``X_*`` float32 ``(N, 1, 28, 28)`` in ``[0, 1]``, ``y_*`` int32 digits
        ``0..9``. With the full data: 55000 / 5000 / 10000.

    Raises:
        FileNotFoundError / DownloadError / ValueError: as :func:`load_fashion_mnist`.

    >>> import tempfile, os, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for prefix, n in [("train", 12), ("t10k", 4)]:
    ...         _ = write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), np.zeros((n, 28, 28)))
    ...         _ = write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), np.arange(n) % 10)
    ...     s = load_mnist(d, val_size=2, download=False)
    >>> s["X_train"].shape, s["X_val"].shape, s["X_test"].shape
    ((10, 1, 28, 28), (2, 1, 28, 28), (4, 1, 28, 28))
    """
    return _load_idx_split("mnist", path, **options)


def _load_idx_split(name, path, *, val_size=5000, seed=0, download=True, progress=None) -> Split:
    val_size = _check_count("val_size", val_size)
    if seed is not None:
        seed = _check_count("seed", seed)
    if not isinstance(download, bool):
        raise InputTypeError(f"download: expected True or False; got {download!r}")
    files = _find_idx_files(name, path, download=download, progress=progress)
    X_tr, y_tr = _read_idx_pair(files["train_images"], files["train_labels"])
    X_te, y_te = _read_idx_pair(files["test_images"], files["test_labels"])
    n = X_tr.shape[0]
    if val_size >= n:
        raise InputError(
            f"val_size: expected fewer than the {n} training images in {files['train_images']}; got {val_size}"
        )
    if seed is None:
        is_val = np.arange(n) >= n - val_size
    else:
        is_val = np.zeros(n, dtype=bool)
        is_val[np.random.default_rng(seed).permutation(n)[:val_size]] = True

    def to_float(x):
        return (x.astype(np.float32) / np.float32(255.0))[:, None, :, :]

    return _split(
        to_float(X_tr[~is_val]),
        y_tr[~is_val],
        to_float(X_tr[is_val]),
        y_tr[is_val],
        to_float(X_te),
        y_te,
    )


# --------------------------------------------------------------------------- CIFAR-10


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches: only the globals numpy arrays need may load.

    A pickle can run arbitrary code on load; the standard batches only reference these.
    """

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 home, no warning
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file -> (uint8 (n, 3, 32, 32), int64 (n,))."""
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # any unpickling failure means the file is not a valid batch
        raise InputError(
            f"{path}: corrupt CIFAR-10 batch, could not unpickle it "
            f"({type(e).__name__}: {e}); re-extract cifar-10-python.tar.gz"
        ) from e
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a pickled dict; got {type(obj).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise InputError(
            f"{path}: expected keys b'data' and b'labels'; missing "
            f"{', '.join('b' + repr(k) for k in missing)} (got keys {sorted(map(str, d))})"
        )
    data = d["data"]
    if not isinstance(data, np.ndarray):
        raise InputError(f"{path}: expected b'data' to be a numpy array; got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise InputError(f"{path}: expected b'data' of dtype uint8; got {data.dtype}")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(f"{path}: expected b'data' of shape (n, 3072); got {data.shape}")
    labels = np.asarray(d["labels"])
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise InputError(
            f"{path}: expected b'labels' with {data.shape[0]} entries (one per row of "
            f"b'data'); got shape {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: expected integer b'labels'; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.argmax((labels < 0) | (labels > 9)))
        raise InputError(f"{path}: expected b'labels' in 0..9; got {int(labels[bad])} at index {bad}")
    # rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32: that is NCHW
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not (p / _CIFAR_TEST_FILE).exists() and (p / _CIFAR_DIRNAME).is_dir():
        return p / _CIFAR_DIRNAME
    return p


def write_cifar10_batch(path: str | os.PathLike, data: Any, labels: Any, batch_label: bytes = b"batch") -> Path:
    """Write a batch in the standard CIFAR-10 python format (for tests and examples).

    The dict has bytes keys ``b'batch_label'``, ``b'labels'`` (list of int), ``b'data'``
    (uint8 ``(n, 3072)``) and ``b'filenames'`` (list of bytes), pickled with protocol 2.

    Args:
        path: destination file, e.g. ``.../cifar-10-batches-py/data_batch_1``.
        data: uint8 values of shape ``(n, 3072)`` or ``(n, 3, 32, 32)``.
        labels: ints in ``0..9``, shape ``(n,)``.
        batch_label: stored under ``b'batch_label'``.

    Returns:
        ``Path(path)``.

    >>> import tempfile, os, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_cifar10_batch(os.path.join(d, "b"), np.zeros((2, 3072), np.uint8), [0, 1])
    ...     os.path.getsize(p) > 6144
    True
    """
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3072)
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    obj = {
        b"batch_label": batch_label,
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
    }
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def load_cifar10(
    path: str | os.PathLike | None = None,
    *,
    num_train: int = 49000,
    num_val: int = 1000,
    num_test: int = 1000,
    subtract_mean: bool = True,
    download: bool = True,
    progress: bool | None = None,
) -> Split:
    """CIFAR-10 with the course's preprocessing: ``x = pixel - mean_train_image``, NCHW.

    Reads ``data_batch_1..5`` and ``test_batch`` from the standard ``cifar-10-batches-py``
    folder (``path`` may be that folder or its parent). Training images are concatenated in
    batch order; train = the first ``num_train``, val = the next ``num_val``, test = the
    first ``num_test`` of ``test_batch``. Pixels stay on the 0..255 scale (as float32) and,
    with ``subtract_mean``, the mean image of the *training* split is subtracted from all
    three splits. A folder with fewer batches is accepted as long as they are
    ``data_batch_1..k`` without gaps and hold enough images. When the folder does not exist
    (or is empty) and ``download`` is on, ``cifar-10-python.tar.gz`` is fetched, verified and
    extracted there (:func:`jaxnets.download.fetch_cifar10`).

    Pickles can run code on load; this reader only lets the globals numpy arrays need
    through, but still read only files you trust.

    Args:
        path: the ``cifar-10-batches-py`` folder or its parent; None: ``$JAXNETS_DATA``, else
            the download cache (``~/.cache/jaxnets``).
        num_train: training images, ``>= 1``.
        num_val: validation images, ``>= 0``.
        num_test: test images, ``>= 1``.
        subtract_mean: subtract the training mean image ``(3, 32, 32)``.
        download: fetch the data when the folder is absent or empty.
        progress: download progress bar on stderr; None: only on a terminal.

    Returns:
        A split dict (see :data:`SPLIT_KEYS`): ``X_*`` float32 ``(N, 3, 32, 32)``, ``y_*``
        int32 ``(N,)`` in ``0..9`` (names in :data:`CIFAR10_CLASSES`).

    Raises:
        FileNotFoundError: ``test_batch`` or ``data_batch_1`` (or a batch before a present
            one) is missing and no download was made; the message names them and how to get
            the data.
        jaxnets.download.DownloadError: the download failed or its checksum differs.
        ValueError: a corrupt pickle or unexpected content (names the file), or fewer
            images than ``num_train + num_val`` / ``num_test``.

    >>> import tempfile, os, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ["data_batch_1", "test_batch"]:
    ...         x = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
    ...         _ = write_cifar10_batch(os.path.join(d, name), x, np.arange(10))
    ...     s = load_cifar10(d, num_train=8, num_val=2, num_test=5)
    >>> s["X_train"].shape, s["X_val"].shape, s["X_test"].shape
    ((8, 3, 32, 32), (2, 3, 32, 32), (5, 3, 32, 32))
    >>> bool(np.allclose(s["X_train"].mean(axis=0), 0, atol=1e-4))
    True
    """
    num_train = _check_count("num_train", num_train, minimum=1)
    num_val = _check_count("num_val", num_val)
    num_test = _check_count("num_test", num_test, minimum=1)
    if not isinstance(download, bool):
        raise InputTypeError(f"download: expected True or False; got {download!r}")
    from jaxnets import download as dl

    folder = _cifar_folder(dl.data_root(path))
    has_batches = any((folder / n).is_file() for n in (*_CIFAR_TRAIN_FILES, _CIFAR_TEST_FILE))
    if download and not has_batches:
        target = folder if folder.name == _CIFAR_DIRNAME else folder / _CIFAR_DIRNAME
        if not (target.is_dir() and any(target.iterdir())):  # never mix a download into other files
            folder = dl.fetch_cifar10(target, progress=progress)
    present = [n for n in _CIFAR_TRAIN_FILES if (folder / n).is_file()]
    k = len(present)
    gap = present != list(_CIFAR_TRAIN_FILES[:k])
    missing_required = [n for n in ("data_batch_1", _CIFAR_TEST_FILE) if not (folder / n).is_file()]
    if missing_required or gap:
        absent = [n for n in (*_CIFAR_TRAIN_FILES, _CIFAR_TEST_FILE) if not (folder / n).is_file()]
        where = f"{folder}" + ("" if folder.is_dir() else " (no such folder)")
        if folder.name != _CIFAR_DIRNAME:
            where += f" (nor a {_CIFAR_DIRNAME} folder inside it)"
        raise FileNotFoundError(
            f"CIFAR-10: missing {', '.join(absent)} in {where}; expected {_CIFAR_TEST_FILE} "
            f"and data_batch_1..k (k <= 5, no gaps; found {', '.join(present) or 'none'}). "
            f"{_CIFAR_HOWTO}" + ("" if download else " (Or drop --no-download / pass download=True.)")
        )

    xs, ys = zip(*(_load_cifar_batch(folder / n) for n in present), strict=False)
    X_all, y_all = np.concatenate(xs), np.concatenate(ys)
    X_test, y_test = _load_cifar_batch(folder / _CIFAR_TEST_FILE)

    have = X_all.shape[0]
    if num_train + num_val > have:
        note = f" (files {', '.join(present)}; absent {', '.join(_CIFAR_TRAIN_FILES[k:])})" if k < 5 else ""
        raise InputError(
            f"num_train + num_val: expected at most the {have} training images in {folder}"
            f"{note}; got num_train={num_train} + num_val={num_val} = {num_train + num_val}"
        )
    if num_test > X_test.shape[0]:
        raise InputError(
            f"num_test: expected at most the {X_test.shape[0]} images in "
            f"{folder / _CIFAR_TEST_FILE}; got num_test={num_test}"
        )

    X_train = X_all[:num_train].astype(np.float32)
    X_val = X_all[num_train : num_train + num_val].astype(np.float32)
    X_test = X_test[:num_test].astype(np.float32)
    if subtract_mean:
        # float64 accumulation so the mean of 49000 images is exact to float32 precision
        mean_image = X_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        X_train -= mean_image
        X_val -= mean_image
        X_test -= mean_image
    return _split(
        X_train,
        y_all[:num_train],
        X_val,
        y_all[num_train : num_train + num_val],
        X_test,
        y_test[:num_test],
    )


# --------------------------------------------------------------------------- dispatch


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    download: bool = True,
    progress: bool | None = None,
) -> Split:
    """Load a data set by name: ``"digits"``, ``"digits-01"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: where file-based sets live: the set's own folder or a parent holding
            ``mnist/``, ``fashion-mnist/`` or ``cifar-10-batches-py/``. None: ``$JAXNETS_DATA``
            (and, for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist``), then the
            per-user cache ``~/.cache/jaxnets`` (``$XDG_CACHE_HOME/jaxnets``). Ignored for
            digits.
        seed: seed of the train/val(/test) shuffle for digits, MNIST and Fashion-MNIST;
            CIFAR-10 uses the course's fixed split.
        download: fetch a file-based set's missing files on first use (checksum-verified);
            False: only read files already there.
        progress: download progress bar on stderr; None: only on a terminal.

    Returns:
        A split dict (see :data:`SPLIT_KEYS`), NCHW float32 images and int32 labels.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
        FileNotFoundError: the files of a file-based set were not found (``download=False``).
        jaxnets.download.DownloadError: a download failed or a checksum differs.

    >>> s = load_dataset("digits-01", seed=1)
    >>> s["X_train"].shape[1:], sorted(set(s["y_train"].tolist()))
    ((1, 8, 8), [0, 1])
    """
    if name == "digits":
        return load_digits(seed=seed)
    if name == "digits-01":
        return load_digits(seed=seed, binary=True)
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, seed=seed, download=download, progress=progress)
    if name == "mnist":
        return load_mnist(data_dir, seed=seed, download=download, progress=progress)
    if name == "cifar10":
        return load_cifar10(data_dir, download=download, progress=progress)
    raise InputError(f"name: expected one of {', '.join(map(repr, DATASETS))}; got {name!r}")
