"""Fashion-MNIST: find, verify, parse and (if need be) download the four IDX files.

Where the files are looked for, for each of the two files a split needs (images, labels):

* A directory the user names, ``data_dir`` (the ``--data-dir`` flag) or else
  ``$NANOAE_DATA_DIR``, is used alone: no other place is searched and nothing is
  downloaded, so a typo cannot silently train on another copy. If it does not
  exist or lacks a file, :class:`DataDirError` says so, naming it.
* Otherwise, in order: the user cache, ``${XDG_CACHE_HOME:-~/.cache}/nanoae/fashion-mnist``;
  :data:`SYSTEM_DIR`, where Debian's ``dataset-fashion-mnist`` installs the files; and a
  download into the user cache, trying each of :data:`MIRRORS` in order.

In each directory the file may be gzipped (``name.gz``) or raw (``name``). The first copy
that verifies wins. A copy that exists but is broken does not stop the search: it is
remembered, and if no good copy turns up the :class:`DatasetError` lists every place
looked at and what was wrong with each.

We hash the *decompressed* bytes, not the ``.gz``: Debian recompressed the files (without
the stored file name), so their ``.gz`` bytes and md5 differ from upstream's while the
content is identical. Hashing the content accepts any faithful copy, gzipped or not.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nanoae.errors import (  # DataDirError: importable from here too
    DataDirError,
    DatasetError,
)

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# split -> (images file, labels file), with upstream's names.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
COUNTS = {"train": 60000, "test": 10000}

# Decompressed file name -> (bytes, sha256) of the official content.
CHECKSUMS = {
    "train-images-idx3-ubyte": (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SHAPE = (28, 28)
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801  # uint8 with 3 dims / with 1 dim
TIMEOUT_S = 30

# Tests replace this with a fake, so no test ever touches the network.
_urlopen = urllib.request.urlopen

_INSTALL_HINT = ("install Debian's copy: sudo apt-get install dataset-fashion-mnist; or put the "
                 "four files in a directory and pass --data-dir DIR (or set NANOAE_DATA_DIR=DIR)")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nanoae/fashion-mnist``, else ``~/.cache/nanoae/fashion-mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nanoae" / "fashion-mnist"


def named_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """The directory the user named and how (``data_dir`` first, then the environment), or None."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("NANOAE_DATA_DIR")
    return (Path(env).expanduser(), "NANOAE_DATA_DIR") if env else None


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched, in order (see the module docstring): a named one alone."""
    named = named_dir(data_dir)
    return [named[0]] if named else [default_cache_dir(), Path(SYSTEM_DIR)]


def _check_named_dir(directory: Path, how: str, names) -> None:
    """Raise DataDirError, naming ``directory``, unless it holds each of ``names`` (.gz or raw)."""
    fix = (f"put the Fashion-MNIST files there, or name another directory; without {how}, "
           f"nanoae looks in {default_cache_dir()} and {SYSTEM_DIR}, then downloads")
    if not directory.is_dir():
        raise DataDirError(f"{how} names {directory}, which is not a directory; {fix}")
    missing = [n for n in names if not any((directory / m).is_file() for m in (n, n.removesuffix(".gz")))]
    if missing:
        raise DataDirError(f"{how} names {directory}, which holds no {' and no '.join(missing)} "
                           f"(gzipped or raw); {fix}")


def parse_idx(data: bytes, *, name: str, expect_magic: int | None = None,
              expect_count: int | None = None, expect_shape: tuple | None = None) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes into a writable uint8 array.

    Header (big-endian): two zero bytes, a type code (0x08 = uint8), the number of dims
    (1..4), then one uint32 per dim. The payload must hold exactly prod(dims) bytes.
    ``expect_shape`` is the shape of one item (the dims after the count), e.g. (28, 28).
    Every failure raises :class:`DatasetError` naming ``name``, what was expected and found.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    n = len(data)
    if n < 4:
        raise DatasetError(f"{name}: too short for an IDX header: expected at least 4 bytes, found {n}")
    if data[0] != 0 or data[1] != 0:
        hint = " (this looks like gzip data: decompress it first)" if data[:2] == b"\x1f\x8b" else ""
        raise DatasetError(f"{name}: not an IDX file: expected bytes 00 00 at offset 0, "
                           f"found {data[0]:02x} {data[1]:02x}{hint}")
    if data[2] != 0x08:
        raise DatasetError(f"{name}: unsupported IDX data type: expected 0x08 (unsigned byte), "
                           f"found 0x{data[2]:02x}")
    ndim = data[3]
    if not 1 <= ndim <= 4:
        raise DatasetError(f"{name}: expected 1 to 4 dimensions in the IDX header, found {ndim}")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DatasetError(f"{name}: wrong magic number: expected {expect_magic} (0x{expect_magic:08x}, "
                           f"{expect_magic & 0xFF} dims), found {magic} (0x{magic:08x}, {ndim} dims)")
    header = 4 + 4 * ndim
    if n < header:
        raise DatasetError(f"{name}: truncated header: {ndim} dims need {header} bytes, found {n}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expect_count is not None and dims[0] != expect_count:
        raise DatasetError(f"{name}: expected {expect_count} items, found {dims[0]}")
    if expect_shape is not None and dims[1:] != tuple(expect_shape):
        raise DatasetError(f"{name}: expected items of shape {tuple(expect_shape)}, found {dims[1:]}")
    need, have = math.prod(dims), n - header
    if have < need:
        raise DatasetError(f"{name}: truncated: expected {need} bytes of data, found {have}")
    if have > need:
        raise DatasetError(f"{name}: {have - need} trailing bytes after the expected {need} bytes of data")
    # frombuffer over bytes is read-only; copy so callers may normalise in place.
    return np.frombuffer(data, dtype=np.uint8, count=need, offset=header).reshape(dims).copy()


def _read_bytes(path: Path, label: str | None = None, gz: bool | None = None) -> bytes:
    """The file's content, gunzipped when ``gz`` (by default: when its name ends in .gz)."""
    label = label or str(path)
    gz = path.name.endswith(".gz") if gz is None else gz
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise DatasetError(f"{label}: cannot read: {e}") from e
    if not gz:
        return blob
    try:
        return gzip.decompress(blob)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DatasetError(f"{label}: truncated or corrupt gzip stream ({e})") from e


def _check_content(raw: bytes, official: str, label: str) -> None:
    size, sha = CHECKSUMS[official]
    found = hashlib.sha256(raw).hexdigest()
    if len(raw) != size or found != sha:
        raise DatasetError(f"{label}: content does not match the official {official}: expected "
                           f"{size} bytes with sha256 {sha}, found {len(raw)} bytes with sha256 {found}")


def _load_one(path: Path, *, labels: bool, verify: bool, expect_count: int | None = None) -> np.ndarray:
    raw = _read_bytes(path)
    official = path.name.removesuffix(".gz")
    if verify and official in CHECKSUMS:
        _check_content(raw, official, str(path))
    if labels:
        return parse_idx(raw, name=str(path), expect_magic=LABELS_MAGIC, expect_count=expect_count)
    return parse_idx(raw, name=str(path), expect_magic=IMAGES_MAGIC, expect_count=expect_count,
                     expect_shape=IMAGE_SHAPE)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path, labels_path) -> None:
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                           f"{len(labels)} labels: expected the same count")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        bad = np.flatnonzero(labels >= len(CLASS_NAMES))
        raise DatasetError(f"{labels_path}: expected labels 0..9, found {bad.size} out of range "
                           f"(first: {labels[bad[0]]} at index {bad[0]})")


def load_idx_pair(images_path, labels_path, *, expect_count: int | None = None,
                  verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one images file and its labels file (each gzipped or raw).

    Checks that both parse, that their counts agree (and equal ``expect_count`` if given),
    and that labels are in 0..9. Files with an official Fashion-MNIST name are also checked
    against the official size and sha256 unless ``verify=False``.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _load_one(images_path, labels=False, verify=verify, expect_count=expect_count)
    labels = _load_one(labels_path, labels=True, verify=verify, expect_count=expect_count)
    _check_pair(images, labels, images_path, labels_path)
    return images, labels


def _prepare_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the cache directory {directory}: {e}; set XDG_CACHE_HOME "
                           f"to a writable place, or pass --data-dir / set NANOAE_DATA_DIR") from e
    if not os.access(directory, os.W_OK):
        raise DatasetError(f"cannot write to the cache directory {directory} (permission denied); set "
                           f"XDG_CACHE_HOME to a writable place, or pass --data-dir / set NANOAE_DATA_DIR")


def download_file(url: str, dest: Path, *, expected_sha256: str | None = None,
                  expected_size: int | None = None, progress: bool | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking the (decompressed) content.

    The bytes go to a temporary file beside ``dest``; only a verified download is renamed
    onto ``dest``. On any failure, including Ctrl-C, the temporary file is removed, so no
    partial file is ever left where the loader would find it. ``expected_size`` and
    ``expected_sha256`` describe the content after gunzip when ``dest`` ends in .gz.
    ``progress=None`` shows a bar only on a terminal.
    """
    dest = Path(dest)
    _prepare_dir(dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DatasetError(f"cannot write to the cache directory {dest.parent}: {e}") from e
    try:
        try:
            with os.fdopen(fd, "wb") as f, _urlopen(url, timeout=TIMEOUT_S) as resp:
                length = str(resp.headers.get("Content-Length") or "")
                with tqdm(total=int(length) if length.isdigit() else None, unit="B", unit_scale=True,
                          desc=dest.name, disable=None if progress is None else not progress) as bar:
                    while chunk := resp.read(1 << 16):
                        f.write(chunk)
                        bar.update(len(chunk))
        # HTTPError and URLError are OSErrors; IncompleteRead (cut connection) is not.
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise DatasetError(f"{url}: download failed: {e}") from e
        raw = _read_bytes(Path(tmp), label=url, gz=dest.name.endswith(".gz"))
        found = hashlib.sha256(raw).hexdigest()
        if (expected_size is not None and len(raw) != expected_size) or \
                (expected_sha256 is not None and found != expected_sha256):
            raise DatasetError(f"{url}: downloaded content does not match: expected {expected_size} bytes "
                               f"with sha256 {expected_sha256}, found {len(raw)} bytes with sha256 {found}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _find(name: str, *, labels: bool, dirs: list[Path], download: bool, progress: bool | None,
          verify: bool) -> tuple[Path, np.ndarray]:
    """Search ``dirs`` (then the mirrors) for the first valid copy of one file."""
    raw_name = name.removesuffix(".gz")
    problems: list[str] = []
    bad: list[Path] = []

    def found(path: Path, array: np.ndarray) -> tuple[Path, np.ndarray]:
        # A broken copy earlier in the order is worth knowing about even when we recover.
        if bad:
            warnings.warn(f"ignored invalid copies of {name}: " + "; ".join(problems)
                          + f"; using {path}", stacklevel=4)
        return path, array

    for d in dirs:
        hits = [d / n for n in (name, raw_name) if os.path.isfile(d / n)]
        if not hits:
            problems.append(f"{d}: " + (f"no {name} or {raw_name}" if d.is_dir() else "no such directory"))
        for path in hits:
            try:
                return found(path, _load_one(path, labels=labels, verify=verify))
            except DatasetError as e:
                problems.append(str(e))
                bad.append(path)
    if not download:
        problems.append("download: disabled (download=False / --no-download)")
    else:
        cache = default_cache_dir()
        size, sha = CHECKSUMS[raw_name]
        try:
            _prepare_dir(cache)
        except DatasetError as e:
            problems.append(f"download: {e}")
        else:
            for mirror in MIRRORS:
                try:
                    path = download_file(mirror + name, cache / name, expected_sha256=sha,
                                         expected_size=size, progress=progress)
                    return found(path, _load_one(path, labels=labels, verify=verify))
                except DatasetError as e:
                    problems.append(f"download from {e}")
    fixes = [_INSTALL_HINT]
    if bad:
        fixes.append("remove or replace the invalid file(s): " + " ".join(str(p) for p in bad))
    if not download:
        fixes.append("or allow downloading (drop download=False / --no-download)")
    raise DatasetError(f"no valid copy of Fashion-MNIST file {name} found. Looked at:\n"
                       + "".join(f"  - {p}\n" for p in problems)
                       + "To fix:\n" + "".join(f"  - {f}\n" for f in fixes))


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = True, progress: bool | None = None, *,
                       verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one split as C-contiguous uint8 arrays.

    images: (N, 28, 28), pixels 0..255; labels: (N,), 0..9 (see :data:`CLASS_NAMES`);
    N is 60000 for "train" and 10000 for "test". The files are searched in the order of
    the module docstring and downloaded into the user cache if missing (unless
    ``download=False``, or a directory is named: then only it is used, and
    :class:`DataDirError` names it if it does not exist or lacks a file). ``verify=False`` skips only the comparison with the official
    size and sha256, for users with their own files under the official names; the IDX
    structure, the counts and the label range are always checked.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    dirs = search_dirs(data_dir)
    images_name, labels_name = FILES[split]
    named = named_dir(data_dir)
    if named:  # the user's place, alone: no fallback, no download
        _check_named_dir(*named, FILES[split])
        download = False
    images_path, images = _find(images_name, labels=False, dirs=dirs, download=download,
                                progress=progress, verify=verify)
    labels_path, labels = _find(labels_name, labels=True, dirs=dirs, download=download,
                                progress=progress, verify=verify)
    _check_pair(images, labels, images_path, labels_path)
    return images, labels
