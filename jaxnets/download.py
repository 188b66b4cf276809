"""Fetch a data set's upstream files on first use: checksum-verified, written atomically.

Each file streams from its upstream URL (or ``$JAXNETS_MIRROR/<data set>/<file name>``) into a
temporary file in the target folder while its digest is computed; only a file whose digest
matches the published one is renamed into place (:func:`jaxnets.files.atomic_write`), so a
failed, interrupted or corrupted download leaves nothing behind.

Where the data lives (:func:`data_root`): the ``data_dir`` argument, else ``$JAXNETS_DATA``, else
a per-user cache (``$XDG_CACHE_HOME/jaxnets``, default ``~/.cache/jaxnets``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from jaxnets.errors import InputError

__all__ = [
    "DownloadError",
    "UPSTREAM",
    "CHECKSUMS",
    "MIRROR_VAR",
    "cache_dir",
    "data_root",
    "urls",
    "fetch",
    "fetch_files",
    "fetch_cifar10",
]

#: Environment variable whose value replaces the upstream base URLs.
MIRROR_VAR = "JAXNETS_MIRROR"
_DATA_VAR = "JAXNETS_DATA"

#: Upstream base URLs per data set, tried in order (files are ``base + file name``).
UPSTREAM = {
    # zalandoresearch/fashion-mnist README: the release's own S3 bucket (http only)
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    # yann.lecun.com now refuses anonymous downloads; these hold the same bytes (same md5s)
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    # https://www.cs.toronto.edu/~kriz/cifar.html
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

#: Published checksums, ``"<algorithm>:<hex digest>"`` per upstream file name. The Fashion-MNIST
#: and CIFAR-10 md5s are those on the projects' pages; MNIST's are the ones torchvision checks.
CHECKSUMS = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a",
    },
}

_CIFAR_DIRNAME = "cifar-10-batches-py"
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A download failed (offline, HTTP error, bad checksum); nothing was left behind."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxnets``, else ``~/.cache/jaxnets`` (not created here).

    >>> cache_dir().name
    'jaxnets'
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jaxnets"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds the data sets' folders: ``data_dir``, else ``$JAXNETS_DATA``, else :func:`cache_dir`.

    >>> str(data_root("/tmp/d"))
    '/tmp/d'
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(_DATA_VAR)
    return Path(env).expanduser() if env else cache_dir()


def urls(dataset: str, filename: str) -> list[str]:
    """Where ``filename`` of ``dataset`` is fetched from, in order: the mirror if set, else upstream.

    >>> urls("mnist", "t10k-labels-idx1-ubyte.gz")[0]
    'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz'
    """
    if dataset not in UPSTREAM:
        raise InputError(f"dataset: expected one of {', '.join(map(repr, UPSTREAM))}; got {dataset!r}")
    mirror = os.environ.get(MIRROR_VAR)
    if mirror:
        return [f"{mirror.rstrip('/')}/{dataset}/{filename}"]
    return [base + filename for base in UPSTREAM[dataset]]


def _by_hand(dataset: str, filenames: list[str], folder: Path) -> str:
    upstream = ", ".join(UPSTREAM[dataset][0] + name for name in filenames)
    return f"Fetch by hand: download {upstream} into {folder} (or set {MIRROR_VAR} to a mirror)"


def fetch(
    dataset: str,
    filename: str,
    folder: str | os.PathLike,
    *,
    checksum: str | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Download ``filename`` of ``dataset`` into ``folder``; keep it only if its digest matches.

    Args:
        dataset: a key of :data:`UPSTREAM` (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``).
        filename: the upstream file name, e.g. ``"train-images-idx3-ubyte.gz"``.
        folder: destination folder (created if needed).
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; default the published one in :data:`CHECKSUMS`.
        timeout: seconds a connection or read may stall before the URL counts as unreachable.
        progress: show a tqdm bar on stderr; None: only when stderr is a terminal.

    Returns:
        The path of the verified file, ``folder / filename``.

    Raises:
        DownloadError: every URL failed (offline, HTTP error, timeout) or the digest differs; the
            one-line message says what failed, where the file belongs and how to fetch it by hand.
            No partial or unverified file is left in ``folder``.

    >>> import os, tempfile
    >>> saved = os.environ.get("JAXNETS_MIRROR")
    >>> os.environ["JAXNETS_MIRROR"] = "http://127.0.0.1:9"  # nothing listens on port 9
    >>> with tempfile.TemporaryDirectory() as d:
    ...     try:
    ...         fetch("mnist", "t10k-labels-idx1-ubyte.gz", d, timeout=2)
    ...     except DownloadError as e:
    ...         print(str(e)[:48], os.listdir(d))
    mnist: could not download t10k-labels-idx1-ubyte []
    >>> _ = os.environ.pop("JAXNETS_MIRROR") if saved is None else os.environ.update(JAXNETS_MIRROR=saved)
    """
    from tqdm import tqdm

    from jaxnets.files import atomic_write

    if checksum is None:
        checksum = CHECKSUMS[dataset][filename]
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in ("md5", "sha256") or not expected:
        raise InputError(f"checksum: expected 'md5:<hex>' or 'sha256:<hex>'; got {checksum!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    failures = []
    for url in urls(dataset, filename):
        digest = hashlib.new(algorithm)

        def write(f, url=url, digest=digest):
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total and total.isdigit() else None,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=filename,
                    file=sys.stderr,
                    disable=(None if progress is None else not progress),
                    leave=False,
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        f.write(chunk)
                        bar.update(len(chunk))
            got = digest.hexdigest()
            if got != expected.lower():
                raise DownloadError(
                    f"{dataset}: checksum mismatch for {filename} from {url}: expected {algorithm} {expected}, "
                    f"got {got}; the file was not saved in {folder}. {_by_hand(dataset, [filename], folder)}"
                )

        try:
            return atomic_write(target, write)
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a malformed mirror URL
            reason = getattr(e, "reason", None) or e
            failures.append(f"{url} ({type(e).__name__}: {reason})")
    raise DownloadError(
        f"{dataset}: could not download {filename} from {'; '.join(failures)}; "
        f"it belongs in {folder}. {_by_hand(dataset, [filename], folder)}"
    )


def fetch_files(
    dataset: str,
    folder: str | os.PathLike,
    filenames: list[str] | tuple[str, ...],
    *,
    checksums: dict[str, str] | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> list[Path]:
    """:func:`fetch` each of ``filenames`` into ``folder``; a folder this call created is removed on failure.

    Args:
        dataset: a key of :data:`UPSTREAM`.
        folder: destination folder.
        filenames: upstream file names to fetch.
        checksums: ``{file name: "md5:<hex>"}`` overriding :data:`CHECKSUMS` (for mirrors of other data).
        timeout: see :func:`fetch`.
        progress: see :func:`fetch`.

    Returns:
        The verified paths, in the order of ``filenames``.

    Raises:
        DownloadError: as :func:`fetch`; files verified before the failure stay (they are complete).
    """
    folder = Path(folder)
    created = _missing_dirs(folder)
    table = {**CHECKSUMS.get(dataset, {}), **(checksums or {})}
    try:
        return [
            fetch(dataset, name, folder, checksum=table[name], timeout=timeout, progress=progress) for name in filenames
        ]
    except BaseException:
        _remove_empty(created)
        raise


def fetch_cifar10(
    root: str | os.PathLike,
    *,
    checksums: dict[str, str] | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Download ``cifar-10-python.tar.gz``, verify it, and extract ``cifar-10-batches-py/`` into ``root``.

    The archive goes to a temporary folder inside ``root``; its members are checked (regular files
    under ``cifar-10-batches-py/`` only) and extracted there, then the folder is renamed into place
    and the archive deleted.

    Args:
        root: parent folder of ``cifar-10-batches-py`` (or that folder itself, empty).
        checksums: ``{"cifar-10-python.tar.gz": "md5:<hex>"}`` overriding :data:`CHECKSUMS`.
        timeout: see :func:`fetch`.
        progress: see :func:`fetch`.

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        DownloadError: download or checksum failed, or the archive is not the CIFAR-10 python
            version; nothing is left in ``root``.
    """
    root = Path(root)
    final = root if root.name == _CIFAR_DIRNAME else root / _CIFAR_DIRNAME
    parent = final.parent
    created = _missing_dirs(parent)
    archive = "cifar-10-python.tar.gz"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".cifar10-download.", dir=parent) as tmp:
            tar_path = fetch_files("cifar10", tmp, [archive], checksums=checksums, timeout=timeout, progress=progress)
            try:
                with tarfile.open(tar_path[0], "r:gz") as tar:
                    members = tar.getmembers()
                    bad = [
                        m.name
                        for m in members
                        if not (m.isfile() or m.isdir())
                        or Path(m.name).is_absolute()
                        or ".." in Path(m.name).parts
                        or Path(m.name).parts[:1] != (_CIFAR_DIRNAME,)
                    ]
                    if bad:
                        raise DownloadError(
                            f"cifar10: {archive} holds unexpected entries ({', '.join(bad[:3])}); expected only "
                            f"files under {_CIFAR_DIRNAME}/. {_by_hand('cifar10', [archive], root)} and extract it"
                        )
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, members=members, filter="data")
                    else:  # Python without extraction filters; members were checked above
                        tar.extractall(tmp, members=members)  # noqa: S202
            except (tarfile.TarError, EOFError, OSError) as e:
                if isinstance(e, DownloadError):
                    raise
                raise DownloadError(
                    f"cifar10: could not extract {archive} ({type(e).__name__}: {e}). "
                    f"{_by_hand('cifar10', [archive], root)} and extract it"
                ) from e
            extracted = Path(tmp) / _CIFAR_DIRNAME
            if final.is_dir():  # an empty folder the user made: move the files in one by one
                for f in extracted.iterdir():
                    os.replace(f, final / f.name)
            else:
                os.replace(extracted, final)
    except BaseException:
        _remove_empty(created)
        raise
    return final


def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    out = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        out.append(p)
    return out


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first
        try:
            d.rmdir()
        except OSError:  # not empty (or gone): leave it
            break
