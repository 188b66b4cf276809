"""Data that fetches itself: downloads from a mirror on 127.0.0.1 (never the internet).

A ``http.server`` in a thread serves a temporary folder laid out like ``$JAXNETS_MIRROR``
(``<data set>/<upstream file name>``): the real Fashion-MNIST files when present
(``$JAXNETS_DATA`` or ``../shared/data`` beside the repository) and synthetic MNIST / CIFAR-10
files in the upstream formats, whose checksums the tests put into ``download.CHECKSUMS``.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jaxnets import cli, data, download, presets

REPO_ROOT = Path(__file__).resolve().parents[1]
FASHION = tuple(n + ".gz" for n in data._FASHION_FILES.values())  # upstream order


def _real_fashion_dir() -> Path | None:
    candidates = []
    if os.environ.get("JAXNETS_DATA"):
        candidates.append(Path(os.environ["JAXNETS_DATA"]) / "fashion-mnist")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "fashion-mnist")
    for c in candidates:
        if all((c / n).is_file() for n in FASHION):
            return c
    return None


REAL_FASHION = _real_fashion_dir()  # looked up before any test changes $JAXNETS_DATA


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def _serve(root: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror: returns (folder served, server); ``$JAXNETS_MIRROR`` points at it."""
    root = tmp_path / "mirror"
    root.mkdir()
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with _serve(root) as server:
        monkeypatch.setenv("JAXNETS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
        yield root, server


def _md5(payload: bytes) -> str:
    return "md5:" + hashlib.md5(payload).hexdigest()


def _idx_gz(array) -> bytes:
    a = np.asarray(array, dtype=np.uint8)
    header = (0x00000800 | a.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return gzip.compress(header + a.tobytes(), mtime=0)


def _publish_mnist(root: Path, monkeypatch, n_train=5100, n_test=50) -> dict[str, bytes]:
    """Synthetic MNIST (learnable: the label sets a bright row) served under mnist/, checksums patched in."""
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 2 * labels + 3, :] = 255
        files[f"{prefix}-images-idx3-ubyte.gz"] = _idx_gz(images)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = _idx_gz(labels)
    (root / "mnist").mkdir()
    for name, payload in files.items():
        (root / "mnist" / name).write_bytes(payload)
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {name: _md5(p) for name, p in files.items()})
    return files


def _cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    obj = {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    pickle.dump(obj, buf, protocol=2)
    return buf.getvalue()


def _cifar_tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _publish_cifar(root: Path, monkeypatch, members: dict[str, bytes] | None = None) -> bytes:
    if members is None:
        members = {f"cifar-10-batches-py/data_batch_{i}": _cifar_batch(4, i) for i in range(1, 6)}
        members["cifar-10-batches-py/test_batch"] = _cifar_batch(6, 9)
        members["cifar-10-batches-py/batches.meta"] = b"meta"
    payload = _cifar_tarball(members)
    (root / "cifar10").mkdir()
    (root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(payload)
    monkeypatch.setitem(download.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": _md5(payload)})
    return payload


def _train(args, capsys) -> tuple[int, str, str]:
    rc = cli.main(["train", "--quiet", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture
def fashion_mirror(mirror):
    real = REAL_FASHION
    if real is None:
        pytest.skip("the Fashion-MNIST files are not here ($JAXNETS_DATA/fashion-mnist or ../shared/data)")
    root, server = mirror
    (root / "fashion-mnist").mkdir()
    for name in FASHION:
        (root / "fashion-mnist" / name).symlink_to(real / name)
    return root, server, real


def test_fashion_download_into_empty_dir_then_train(fashion_mirror, tmp_path, capsys):
    root, server, real = fashion_mirror
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--data", "fashion-mnist", "--model", "linear-softmax", "--epochs", "1", "--batch-size", "1000"]
    rc, out, err = _train([*args, "--data-dir", str(empty), "--out", str(tmp_path / "run")], capsys)
    assert rc == 0, err
    assert sorted(server.requests) == sorted(f"/fashion-mnist/{n}" for n in FASHION)
    assert _all_files(empty) == ["fashion-mnist", *(f"fashion-mnist/{n}" for n in sorted(FASHION))]
    for name in FASHION:  # byte-identical to the published files: their md5s are the published ones
        got = hashlib.md5((empty / "fashion-mnist" / name).read_bytes()).hexdigest()
        assert "md5:" + got == download.CHECKSUMS["fashion-mnist"][name] == "md5:" + _file_md5(real / name)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"] == "fashion-mnist" and metrics["test_accuracy"] > 0.7


def _file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fashion_corrupt_file_exits_2_and_leaves_nothing(fashion_mirror, tmp_path, capsys):
    root, server, real = fashion_mirror
    bad = root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(bad.read_bytes())
    bad.unlink()
    payload[100] ^= 0xFF
    bad.write_bytes(bytes(payload))
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--data", "fashion-mnist", "--model", "linear-softmax", "--epochs", "1", "--data-dir", str(empty)]
    rc, out, err = _train([*args, "--out", str(tmp_path / "run")], capsys)
    assert rc == 2
    line = err.strip()
    assert "\n" not in line
    assert "checksum mismatch for t10k-labels-idx1-ubyte.gz" in line
    assert "expected md5 bb300cfdad3c16e7a12a480ee83cd310" in line
    assert str(empty / "fashion-mnist") in line and "Fetch by hand" in line
    left = _all_files(empty)
    assert not any("t10k-labels" in f for f in left)
    assert not any(Path(f).name.startswith(".") for f in left), left  # no temporary (partial) file
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------- MNIST


def test_mnist_download_train_then_cached_without_network(mirror, tmp_path, capsys, monkeypatch):
    root, server = mirror
    files = _publish_mnist(root, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--data", "mnist", "--model", "linear-softmax", "--epochs", "2", "--batch-size", "20"]
    rc, out, err = _train([*args, "--data-dir", str(empty), "--out", str(tmp_path / "run1")], capsys)
    assert rc == 0, err
    assert len(server.requests) == 4
    for name, payload in files.items():
        assert (empty / "mnist" / name).read_bytes() == payload
    # second run: the mirror is gone (a closed port); the cached files are used as they are
    monkeypatch.setenv("JAXNETS_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    rc, out, err = _train([*args, "--data-dir", str(empty), "--out", str(tmp_path / "run2")], capsys)
    assert rc == 0, err
    assert len(server.requests) == 4
    first = json.loads((tmp_path / "run1" / "metrics.json").read_text())
    second = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert first["test_accuracy"] == second["test_accuracy"] > 0.5


def test_mnist_only_missing_files_fetched_into_the_sets_own_folder(mirror, tmp_path, monkeypatch):
    root, server = mirror
    files = _publish_mnist(root, monkeypatch)
    own = tmp_path / "digits-here"
    own.mkdir()
    (own / "t10k-labels-idx1-ubyte.gz").write_bytes(files["t10k-labels-idx1-ubyte.gz"])
    s = data.load_mnist(own, val_size=100, progress=False)
    assert sorted(server.requests) == sorted(f"/mnist/{n}" for n in files if n != "t10k-labels-idx1-ubyte.gz")
    assert sorted(p.name for p in own.iterdir()) == sorted(files)
    assert s["X_train"].shape == (5000, 1, 28, 28) and s["y_test"].shape == (50,)


def test_cache_folder_when_no_data_dir(mirror, tmp_path, monkeypatch):
    root, server = mirror
    files = _publish_mnist(root, monkeypatch)
    s = data.load_dataset("mnist", progress=False)
    cached = tmp_path / "xdg-cache" / "jaxnets" / "mnist"
    assert download.cache_dir() == cached.parent
    assert sorted(p.name for p in cached.iterdir()) == sorted(files)
    assert s["X_test"].shape == (50, 1, 28, 28)
    data.load_dataset("mnist", progress=False)  # found in the cache: no second request
    assert len(server.requests) == 4


def test_jaxnets_data_is_the_download_root(mirror, tmp_path, monkeypatch):
    root, server = mirror
    _publish_mnist(root, monkeypatch)
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "store"))
    data.load_dataset("mnist", progress=False)
    assert len(list((tmp_path / "store" / "mnist").iterdir())) == 4


def test_mnist_corrupt_file_refused_nothing_left(mirror, tmp_path, monkeypatch, capsys):
    root, server = mirror
    _publish_mnist(root, monkeypatch)
    (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not the file")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _train(["--data", "mnist", "--model", "linear-softmax", "--data-dir", str(empty)], capsys)
    assert rc == 2
    assert "jaxnets: error: mnist: checksum mismatch for train-images-idx3-ubyte.gz" in err
    assert "the file was not saved" in err
    assert _all_files(empty) == []  # the folder the download made is gone too


def test_progress_bar_on_request(mirror, tmp_path, monkeypatch, capsys):
    root, server = mirror
    files = _publish_mnist(root, monkeypatch, n_train=20, n_test=10)
    download.fetch("mnist", "train-images-idx3-ubyte.gz", tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz:" in err and "B/s" in err  # a tqdm byte counter
    assert (tmp_path / "train-images-idx3-ubyte.gz").read_bytes() == files["train-images-idx3-ubyte.gz"]
    download.fetch("mnist", "train-labels-idx1-ubyte.gz", tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_no_download_flag_and_argument(mirror, tmp_path, monkeypatch, capsys):
    root, server = mirror
    _publish_mnist(root, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _train(["--data", "mnist", "--data-dir", str(empty), "--no-download"], capsys)
    assert rc == 2
    assert "MNIST: expected the four files" in err and "--no-download" in err
    with pytest.raises(FileNotFoundError, match="MNIST: expected the four files"):
        data.load_dataset("mnist", empty, download=False)
    with pytest.raises(TypeError, match="download: expected True or False; got 'no'"):
        data.load_mnist(empty, download="no")
    assert server.requests == [] and _all_files(empty) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_mirror_gives_offline_message_quickly(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    monkeypatch.setenv("JAXNETS_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    empty = tmp_path / "empty"
    empty.mkdir()
    t0 = time.perf_counter()
    rc, out, err = _train(["--data", "mnist", "--data-dir", str(empty)], capsys)
    elapsed = time.perf_counter() - t0
    assert rc == 2 and elapsed < 5
    line = err.strip()
    assert "\n" not in line
    assert line.startswith("jaxnets: error: mnist: could not download train-images-idx3-ubyte.gz from http://127.0.0.1")
    assert f"it belongs in {empty / 'mnist'}" in line
    assert "Fetch by hand: download https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in line
    assert _all_files(empty) == []


def test_stalled_server_times_out(tmp_path, monkeypatch):
    """A server that accepts but never answers counts as unreachable after ``timeout`` seconds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        monkeypatch.setenv("JAXNETS_MIRROR", f"http://127.0.0.1:{listener.getsockname()[1]}")
        t0 = time.perf_counter()
        with pytest.raises(download.DownloadError, match="could not download .*timed out"):
            download.fetch("mnist", "t10k-labels-idx1-ubyte.gz", tmp_path / "d", timeout=0.5, progress=False)
        assert time.perf_counter() - t0 < 5
    assert _all_files(tmp_path / "d") == []


def test_mirror_layout_and_upstream_urls(monkeypatch):
    monkeypatch.setenv("JAXNETS_MIRROR", "http://example.invalid/data/")
    assert download.urls("fashion-mnist", "t10k-labels-idx1-ubyte.gz") == [
        "http://example.invalid/data/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    ]
    assert download.urls("cifar10", "cifar-10-python.tar.gz") == [
        "http://example.invalid/data/cifar10/cifar-10-python.tar.gz"
    ]
    monkeypatch.delenv("JAXNETS_MIRROR")
    assert download.urls("cifar10", "cifar-10-python.tar.gz") == [
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ]
    with pytest.raises(ValueError, match="dataset: expected one of 'fashion-mnist', 'mnist', 'cifar10'; got 'svhn'"):
        download.urls("svhn", "x")
    assert "mnist" in data.DATASETS and "mnist" in presets.NUM_CLASSES


def test_published_fashion_checksums_match_the_shared_files():
    real = REAL_FASHION
    if real is None:
        pytest.skip("the Fashion-MNIST files are not here")
    for name in FASHION:
        assert download.CHECKSUMS["fashion-mnist"][name] == "md5:" + _file_md5(real / name)


# -------------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_download_extract_load(mirror, tmp_path, monkeypatch):
    root, server = mirror
    _publish_cifar(root, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    s = data.load_cifar10(empty, num_train=16, num_val=4, num_test=6, progress=False)
    assert s["X_train"].shape == (16, 3, 32, 32) and s["X_test"].shape == (6, 3, 32, 32)
    assert server.requests == ["/cifar10/cifar-10-python.tar.gz"]
    # the archive and the temporary extraction folder are gone; only the batches remain
    assert _all_files(empty) == ["cifar-10-batches-py"] + [
        f"cifar-10-batches-py/{n}"
        for n in sorted(["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))])
    ]
    data.load_cifar10(empty, num_train=16, num_val=4, num_test=6)  # cached
    assert len(server.requests) == 1


def test_cifar10_corrupt_archive_refused(mirror, tmp_path, monkeypatch):
    root, server = mirror
    _publish_cifar(root, monkeypatch)
    monkeypatch.setitem(download.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": "md5:" + "0" * 32})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(download.DownloadError, match="cifar10: checksum mismatch for cifar-10-python.tar.gz"):
        data.load_cifar10(empty, num_train=16, num_val=4, num_test=6, progress=False)
    assert _all_files(empty) == []


def test_cifar10_archive_with_unexpected_entries_refused(mirror, tmp_path, monkeypatch):
    root, server = mirror
    _publish_cifar(root, monkeypatch, members={"../evil": b"x", "cifar-10-batches-py/test_batch": _cifar_batch(2, 0)})
    target = tmp_path / "data"
    with pytest.raises(download.DownloadError, match=r"unexpected entries \(\.\./evil\)"):
        data.load_dataset("cifar10", target, progress=False)
    assert not target.exists() and not (tmp_path / "evil").exists()
