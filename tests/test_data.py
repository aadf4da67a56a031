"""Tests of nanoae.fashion.data: IDX parsing, the search order, verification and downloads.

No test touches the network: an autouse fixture replaces the module's URL opener with one
that fails the test, and points the user cache and the system directory into tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from helpers.idx_helpers import FAKE_NAMES, idx_bytes, make_fake_fashion, write_idx

from nanoae.errors import DatasetError
from nanoae.fashion import data

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


def _no_network(url, timeout=None):
    raise AssertionError(f"a test tried to open {url}")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep the real user cache, /usr/share and the network out of every test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NANOAE_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setattr(data, "_urlopen", _no_network)
    return tmp_path


class FakeResponse(io.BytesIO):
    """A urlopen() result serving ``payload``; raises ``exc`` once ``fail_after`` bytes are read."""

    def __init__(self, payload: bytes, fail_after: int | None = None, exc: BaseException | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}
        self.fail_after, self.exc = fail_after, exc

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.exc
        limit = n if self.fail_after is None else min(n, self.fail_after - self.tell())
        return super().read(limit)


def fake_opener(payloads: dict[str, bytes], calls: list | None = None, **kw):
    """urlopen stand-in: serves payloads[url]; unknown URLs fail like a 404."""
    def opener(url, timeout=None):
        assert timeout is not None, "downloads must use a timeout"
        if calls is not None:
            calls.append(url)
        if url not in payloads:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(payloads[url], **kw)
    return opener


def _labels_gz(n=10, seed=1):
    raw = idx_bytes(np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8))
    return raw, gzip.compress(raw)


# --- constants -----------------------------------------------------------------------

def test_public_constants():
    assert data.CLASS_NAMES[0] == "T-shirt/top" and data.CLASS_NAMES[9] == "Ankle boot"
    assert len(data.CLASS_NAMES) == 10
    assert data.FILES["test"] == ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    assert data.MIRRORS[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert "googleapis" in data.MIRRORS[1] and "githubusercontent" in data.MIRRORS[2]
    assert data.CHECKSUMS["t10k-labels-idx1-ubyte"][0] == 10008
    assert data.COUNTS == {"train": 60000, "test": 10000}


# --- loading synthetic files ---------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip(tmp_path, split, gz):
    written = make_fake_fashion(tmp_path / "d", gz=gz)
    images, labels = data.load_fashion_mnist(split, tmp_path / "d", download=False, verify=False)
    want_x, want_y = written[split]
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.shape == (len(want_y), 28, 28) and labels.shape == (len(want_y),)
    assert images.flags.c_contiguous and labels.flags.c_contiguous
    np.testing.assert_array_equal(images, want_x)
    np.testing.assert_array_equal(labels, want_y)


def test_load_idx_pair_custom_names_are_not_checksummed(tmp_path):
    x = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    y = np.array([0, 9, 4], dtype=np.uint8)
    images, labels = data.load_idx_pair(write_idx(tmp_path / "x.gz", x), write_idx(tmp_path / "y", y, gz=False),
                                        expect_count=3)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    images[0, 0, 0] = 7  # callers may normalise in place


def test_invalid_split():
    with pytest.raises(ValueError, match="validation"):
        data.load_fashion_mnist("validation", download=False)


# --- broken files --------------------------------------------------------------------

def _load_test(d, **kw):
    return data.load_fashion_mnist("test", d, download=False, verify=False, **kw)


def test_truncated_gz(tmp_path):
    make_fake_fashion(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="truncated or corrupt gzip") as err:
        _load_test(tmp_path)
    assert str(path) in str(err.value)


def test_truncated_raw_payload(tmp_path):
    make_fake_fashion(tmp_path, n_test=10, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"truncated: expected 7840 bytes of data, found 7740") as err:
        _load_test(tmp_path)
    assert str(path) in str(err.value)


def test_wrong_magic(tmp_path):
    make_fake_fashion(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(10, np.uint8))  # a labels file
    with pytest.raises(DatasetError, match=r"wrong magic number: expected 2051.*found 2049"):
        _load_test(tmp_path)


def test_wrong_item_shape(tmp_path):
    make_fake_fashion(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 27, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"expected items of shape \(28, 28\), found \(27, 28\)"):
        _load_test(tmp_path)


def test_count_mismatch_names_both_files(tmp_path):
    make_fake_fashion(tmp_path, n_test=10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DatasetError, match="10 images") as err:
        _load_test(tmp_path)
    msg = str(err.value)
    assert "9 labels" in msg and "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg


def test_label_out_of_range(tmp_path):
    make_fake_fashion(tmp_path, n_test=10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3, 12, 0, 0, 0, 0, 10, 0], np.uint8))
    with pytest.raises(DatasetError, match=r"expected labels 0\.\.9, found 2 out of range \(first: 12 at index 3\)"):
        _load_test(tmp_path)


def test_checksum_mismatch_with_verify(tmp_path):
    make_fake_fashion(tmp_path)
    with pytest.raises(DatasetError) as err:
        data.load_fashion_mnist("test", tmp_path, download=False)  # verify=True is the default
    msg = str(err.value)
    expected_size, expected_sha = data.CHECKSUMS["t10k-images-idx3-ubyte"]
    found_sha = hashlib.sha256(gzip.decompress((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())).hexdigest()
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in msg
    assert expected_sha in msg and found_sha in msg and str(expected_size) in msg


# --- parse_idx -----------------------------------------------------------------------

@pytest.mark.parametrize("blob, kw, pattern", [
    (b"\x00\x00", {}, "expected at least 4 bytes, found 2"),
    (b"\x1f\x8b\x08\x00rest", {}, "looks like gzip"),
    (b"\x00\x00\x0d\x01" + bytes(8), {}, r"expected 0x08 \(unsigned byte\), found 0x0d"),
    (b"\x00\x00\x08\x00", {}, "expected 1 to 4 dimensions.*found 0"),
    (b"\x00\x00\x08\x05" + bytes(20), {}, "expected 1 to 4 dimensions.*found 5"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", {}, "truncated header: 3 dims need 16 bytes, found 8"),
    (idx_bytes(np.zeros(3, np.uint8)) + b"xy", {}, "2 trailing bytes after the expected 3 bytes"),
    (idx_bytes(np.zeros(3, np.uint8)), {"expect_count": 4}, "expected 4 items, found 3"),
])
def test_parse_idx_errors_name_the_file(blob, kw, pattern):
    with pytest.raises(DatasetError, match=pattern) as err:
        data.parse_idx(blob, name="some-file", **kw)
    assert str(err.value).startswith("some-file: ")


def test_parse_idx_accepts_empty_and_4d():
    assert data.parse_idx(idx_bytes(np.zeros((0, 28, 28), np.uint8)), name="e").shape == (0, 28, 28)
    x = np.arange(120, dtype=np.uint8).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(data.parse_idx(memoryview(idx_bytes(x)), name="x"), x)


def test_parse_idx_fuzz():
    rng = np.random.default_rng(1234)
    for _ in range(300):
        blob = rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8).tobytes()
        if rng.random() < 0.5 and len(blob) >= 4:  # make the header plausible more often
            blob = b"\x00\x00\x08" + bytes([int(rng.integers(0, 6))]) + blob[4:]
        try:
            data.parse_idx(blob, name="fuzz", expect_magic=0x0803, expect_shape=(28, 28))
        except DatasetError:
            pass
    valid = idx_bytes(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8))
    for cut in rng.integers(0, len(valid), 200):
        with pytest.raises(DatasetError):
            data.parse_idx(valid[:cut], name="cut", expect_magic=0x0803)


# --- search order --------------------------------------------------------------------

def test_default_cache_dir(monkeypatch, tmp_path):
    assert data.default_cache_dir() == tmp_path / "xdg" / "nanoae" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "nanoae" / "fashion-mnist"


def test_search_dirs_order(monkeypatch, tmp_path):
    cache, system = data.default_cache_dir(), Path(data.SYSTEM_DIR)
    assert data.search_dirs() == [cache, system]
    monkeypatch.setenv("NANOAE_DATA_DIR", str(tmp_path / "env"))
    assert data.search_dirs(tmp_path / "x") == [tmp_path / "x"]  # a named place is used alone
    assert data.search_dirs() == [tmp_path / "env"]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_named_dir_is_used_alone_and_missing_there_is_an_error_naming_it(monkeypatch, tmp_path, how):
    make_fake_fashion(tmp_path / "system", seed=5)  # a good copy the old search fell back to
    make_fake_fashion(data.default_cache_dir(), seed=6)
    for place, problem in ((tmp_path / "typo", "which is not a directory"),
                           (tmp_path / "empty", "which holds no t10k-images-idx3-ubyte.gz and no "
                                                "t10k-labels-idx1-ubyte.gz")):
        place.parent.mkdir(exist_ok=True)
        if place.name == "empty":
            place.mkdir()
        if how == "environment":
            monkeypatch.setenv("NANOAE_DATA_DIR", str(place))
        with pytest.raises(data.DataDirError) as err:
            data.load_fashion_mnist("test", place if how == "argument" else None, verify=False)
        named = "--data-dir" if how == "argument" else "NANOAE_DATA_DIR"
        assert f"{named} names {place}, {problem}" in str(err.value)


def test_a_named_dir_missing_one_file_names_that_file(tmp_path):
    make_fake_fashion(tmp_path / "mine", seed=3)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataDirError, match=r"holds no t10k-labels-idx1-ubyte.gz \(gzipped or raw\)"):
        data.load_fashion_mnist("test", tmp_path / "mine", verify=False)


def test_env_dir_honoured(monkeypatch, tmp_path):
    written = make_fake_fashion(tmp_path / "env", seed=3)
    monkeypatch.setenv("NANOAE_DATA_DIR", str(tmp_path / "env"))
    _, labels = data.load_fashion_mnist("test", download=False, verify=False)
    np.testing.assert_array_equal(labels, written["test"][1])


def test_explicit_dir_beats_env(monkeypatch, tmp_path):
    make_fake_fashion(tmp_path / "env", seed=3)
    explicit = make_fake_fashion(tmp_path / "explicit", seed=4)
    monkeypatch.setenv("NANOAE_DATA_DIR", str(tmp_path / "env"))
    images, _ = data.load_fashion_mnist("test", tmp_path / "explicit", download=False, verify=False)
    np.testing.assert_array_equal(images, explicit["test"][0])


def test_system_dir_is_searched_last(tmp_path):
    system = make_fake_fashion(tmp_path / "system", seed=5)
    cached = make_fake_fashion(data.default_cache_dir(), seed=6)
    images, _ = data.load_fashion_mnist("train", download=False, verify=False)
    np.testing.assert_array_equal(images, cached["train"][0])
    for f in data.default_cache_dir().iterdir():
        f.unlink()
    images, _ = data.load_fashion_mnist("train", download=False, verify=False)
    np.testing.assert_array_equal(images, system["train"][0])


def test_corrupt_first_copy_falls_through_to_good_one(tmp_path):
    make_fake_fashion(data.default_cache_dir(), seed=7)
    bad = data.default_cache_dir() / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:50])
    good = make_fake_fashion(tmp_path / "system", seed=7)
    with pytest.warns(UserWarning, match="ignored invalid copies") as rec:
        images, labels = data.load_fashion_mnist("test", download=False, verify=False)
    assert str(bad) in str(rec[0].message)
    np.testing.assert_array_equal(images, good["test"][0])
    np.testing.assert_array_equal(labels, good["test"][1])


def test_missing_everywhere_without_download(tmp_path):
    data.default_cache_dir().mkdir(parents=True)  # there but empty; the system dir is absent
    with pytest.raises(DatasetError) as err:
        data.load_fashion_mnist("test", download=False)
    msg = str(err.value)
    for place in (data.default_cache_dir(), tmp_path / "system"):
        assert f"{place}: " in msg
    assert "no such directory" in msg and "no t10k-images-idx3-ubyte.gz or t10k-images-idx3-ubyte" in msg
    assert "download: disabled" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "NANOAE_DATA_DIR" in msg and "--data-dir" in msg


def test_bad_cached_file_is_named_in_the_fix(tmp_path):
    cache = data.default_cache_dir()
    make_fake_fashion(cache)
    (cache / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="remove or replace the invalid file") as err:
        data.load_fashion_mnist("test", download=False, verify=False)
    assert f"remove or replace the invalid file(s): {cache / 't10k-images-idx3-ubyte.gz'}" in str(err.value)


# --- downloads -----------------------------------------------------------------------

def test_download_file_success(monkeypatch, tmp_path):
    raw, gz = _labels_gz()
    monkeypatch.setattr(data, "_urlopen", fake_opener({"http://m/f.gz": gz}))
    dest = tmp_path / "cache" / "sub" / "f.gz"
    out = data.download_file("http://m/f.gz", dest, expected_sha256=hashlib.sha256(raw).hexdigest(),
                             expected_size=len(raw), progress=False)
    assert out == dest and dest.read_bytes() == gz
    assert os.listdir(dest.parent) == ["f.gz"]


@pytest.mark.parametrize("exc", [ConnectionResetError("connection reset by peer"), KeyboardInterrupt()],
                         ids=["network", "ctrl-c"])
def test_download_failing_halfway_leaves_nothing(monkeypatch, tmp_path, exc):
    raw, gz = _labels_gz(n=5000)
    monkeypatch.setattr(data, "_urlopen", fake_opener({"http://m/f.gz": gz}, fail_after=len(gz) // 2, exc=exc))
    dest = tmp_path / "cache" / "f.gz"
    with pytest.raises((DatasetError, KeyboardInterrupt)) as err:
        data.download_file("http://m/f.gz", dest, expected_sha256=hashlib.sha256(raw).hexdigest())
    assert isinstance(err.value, type(exc) if isinstance(exc, KeyboardInterrupt) else DatasetError)
    assert os.listdir(dest.parent) == []


def test_download_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path):
    raw, gz = _labels_gz()
    monkeypatch.setattr(data, "_urlopen", fake_opener({"http://m/f.gz": gz}))
    dest = tmp_path / "cache" / "f.gz"
    with pytest.raises(DatasetError, match="does not match") as err:
        data.download_file("http://m/f.gz", dest, expected_sha256="0" * 64, expected_size=len(raw))
    assert "0" * 64 in str(err.value) and hashlib.sha256(raw).hexdigest() in str(err.value)
    assert os.listdir(dest.parent) == []


def test_download_truncated_gzip_leaves_nothing(monkeypatch, tmp_path):
    _, gz = _labels_gz(n=5000)
    monkeypatch.setattr(data, "_urlopen", fake_opener({"http://m/f.gz": gz[:-30]}))
    with pytest.raises(DatasetError, match="http://m/f.gz: truncated or corrupt gzip"):
        data.download_file("http://m/f.gz", tmp_path / "f.gz")
    assert os.listdir(tmp_path) == []


def test_unwritable_cache_dir_is_reported(tmp_path):
    (tmp_path / "file").write_text("a file where a directory should be")
    with pytest.raises(DatasetError, match="cannot create the cache directory"):
        data.download_file("http://m/f.gz", tmp_path / "file" / "cache" / "f.gz")


def _serve_fake_fashion(monkeypatch, tmp_path, mirror):
    """Fake files on one mirror, with CHECKSUMS patched to their content."""
    make_fake_fashion(tmp_path / "src")
    payloads = {}
    for name in FAKE_NAMES["test"]:
        gz = (tmp_path / "src" / (name + ".gz")).read_bytes()
        raw = gzip.decompress(gz)
        monkeypatch.setitem(data.CHECKSUMS, name, (len(raw), hashlib.sha256(raw).hexdigest()))
        payloads[mirror + name + ".gz"] = gz
    return payloads


def test_load_downloads_into_cache_then_reuses_it(monkeypatch, tmp_path):
    payloads = _serve_fake_fashion(monkeypatch, tmp_path, data.MIRRORS[1])
    calls = []
    monkeypatch.setattr(data, "_urlopen", fake_opener(payloads, calls))  # mirror 0 answers 404
    images, labels = data.load_fashion_mnist("test", progress=False)
    assert images.shape == (10, 28, 28) and labels.shape == (10,)
    assert calls[:2] == [data.MIRRORS[0] + "t10k-images-idx3-ubyte.gz", data.MIRRORS[1] + "t10k-images-idx3-ubyte.gz"]
    assert sorted(os.listdir(data.default_cache_dir())) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    monkeypatch.setattr(data, "_urlopen", _no_network)
    again, _ = data.load_fashion_mnist("test")
    np.testing.assert_array_equal(again, images)


def test_download_replaces_corrupt_cached_copy(monkeypatch, tmp_path):
    payloads = _serve_fake_fashion(monkeypatch, tmp_path, data.MIRRORS[0])
    monkeypatch.setattr(data, "_urlopen", fake_opener(payloads))
    cache = data.default_cache_dir()
    cache.mkdir(parents=True)
    (cache / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.warns(UserWarning, match="ignored invalid copies"):
        images, _ = data.load_fashion_mnist("test")
    assert images.shape == (10, 28, 28)
    assert (cache / "t10k-images-idx3-ubyte.gz").read_bytes() == payloads[data.MIRRORS[0] + "t10k-images-idx3-ubyte.gz"]


def test_all_mirrors_fail(monkeypatch, tmp_path):
    def opener(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(data, "_urlopen", opener)
    with pytest.raises(DatasetError) as err:
        data.load_fashion_mnist("train")
    msg = str(err.value)
    for mirror in data.MIRRORS:
        assert f"download from {mirror}train-images-idx3-ubyte.gz: download failed" in msg
    assert "Name or service not known" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert os.listdir(data.default_cache_dir()) == []


# --- the real data -------------------------------------------------------------------

@pytest.mark.slow
def test_real_test_split():
    if not all((REAL_DIR / n).is_file() for n in data.FILES["test"]):
        pytest.skip(f"{REAL_DIR} lacks the Fashion-MNIST test files (apt-get install dataset-fashion-mnist)")
    images, labels = data.load_fashion_mnist("test", REAL_DIR, download=False, verify=True)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10


# --- every message in full, and the checksum's two conditions ------------------------------

@pytest.mark.parametrize("blob, kw, message", [
    (b"\x00\x00\x08", {}, "f: too short for an IDX header: expected at least 4 bytes, found 3"),
    (b"\x1f\x8b\x08\x00", {}, "f: not an IDX file: expected bytes 00 00 at offset 0, found 1f 8b "
                             "(this looks like gzip data: decompress it first)"),
    (b"\x1f\x00\x08\x01", {}, "f: not an IDX file: expected bytes 00 00 at offset 0, found 1f 00"),
    (b"\x00\x8b\x08\x01", {}, "f: not an IDX file: expected bytes 00 00 at offset 0, found 00 8b"),
    (b"\x00\x00\x09\x01", {}, "f: unsupported IDX data type: expected 0x08 (unsigned byte), found 0x09"),
    (b"\x00\x00\x08\x00", {}, "f: expected 1 to 4 dimensions in the IDX header, found 0"),
    (b"\x00\x00\x08\x05", {}, "f: expected 1 to 4 dimensions in the IDX header, found 5"),
    (idx_bytes(np.zeros(3, np.uint8)), {"expect_magic": 0x0803},
     "f: wrong magic number: expected 2051 (0x00000803, 3 dims), found 2049 (0x00000801, 1 dims)"),
    (b"\x00\x00\x08\x02" + bytes(7), {}, "f: truncated header: 2 dims need 12 bytes, found 11"),
    (idx_bytes(np.zeros((2, 3), np.uint8)), {"expect_count": 3}, "f: expected 3 items, found 2"),
    (idx_bytes(np.zeros((2, 3), np.uint8)), {"expect_shape": (4,)},
     "f: expected items of shape (4,), found (3,)"),
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], {}, "f: truncated: expected 6 bytes of data, found 5"),
    (idx_bytes(np.zeros((2, 3), np.uint8)) + b"z", {},
     "f: 1 trailing bytes after the expected 6 bytes of data"),
])
def test_parse_idx_says_what_was_expected_and_found(blob, kw, message):
    with pytest.raises(DatasetError) as err:
        data.parse_idx(blob, name="f", **kw)
    assert str(err.value) == message


def test_parse_idx_reads_big_endian_dims_and_returns_a_writable_copy():
    x = np.arange(2 * 300, dtype=np.uint32).astype(np.uint8).reshape(2, 300)
    blob = idx_bytes(x)
    assert blob[:4] == b"\x00\x00\x08\x02" and blob[8:12] == (300).to_bytes(4, "big")
    out = data.parse_idx(blob, name="x", expect_magic=0x0802, expect_count=2, expect_shape=(300,))
    np.testing.assert_array_equal(out, x)
    out[0, 0] = 7  # writable
    assert data.parse_idx(idx_bytes(np.zeros((1, 4), np.uint8)), name="x", expect_shape=[4]).shape == (1, 4)
    for ndim in (1, 4):
        assert data.parse_idx(idx_bytes(np.zeros((1,) * ndim, np.uint8)), name="x").ndim == ndim


def test_content_checks_name_the_file_the_official_figures_and_the_found_ones(tmp_path, monkeypatch):
    size, sha = data.CHECKSUMS["t10k-labels-idx1-ubyte"]
    same_size = idx_bytes(np.zeros(size - 8, np.uint8))
    found = hashlib.sha256(same_size).hexdigest()
    with pytest.raises(DatasetError) as err:
        data._check_content(same_size, "t10k-labels-idx1-ubyte", "L")
    assert str(err.value) == (f"L: content does not match the official t10k-labels-idx1-ubyte: expected "
                              f"{size} bytes with sha256 {sha}, found {size} bytes with sha256 {found}")
    monkeypatch.setitem(data.CHECKSUMS, "t10k-labels-idx1-ubyte", (size + 1, found))  # the sha alone
    with pytest.raises(DatasetError, match=f"found {size} bytes with sha256 {found}"):
        data._check_content(same_size, "t10k-labels-idx1-ubyte", "L")
    monkeypatch.setitem(data.CHECKSUMS, "t10k-labels-idx1-ubyte", (size, found))
    data._check_content(same_size, "t10k-labels-idx1-ubyte", "L")  # both match: accepted
    # through the loader: an official name is verified unless verify=False
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)))
    with pytest.raises(DatasetError, match=f"^{path}: content does not match the official "):
        data._load_one(path, labels=True, verify=True)
    assert data._load_one(path, labels=True, verify=False).tolist() == list(range(10))
    with pytest.raises(DatasetError, match=f"^{path}: wrong magic number: expected 2051"):
        data._load_one(path, labels=False, verify=False)  # images: the images' magic
    with pytest.raises(DatasetError, match=f"^{path}: expected 9 items, found 10"):
        data._load_one(path, labels=True, verify=False, expect_count=9)


def test_images_and_labels_must_agree(tmp_path):
    images, labels = np.zeros((3, 28, 28), np.uint8), np.array([1, 2], np.uint8)
    with pytest.raises(DatasetError) as err:
        data._check_pair(images, labels, "I", "L")
    assert str(err.value) == "I holds 3 images but L holds 2 labels: expected the same count"
    with pytest.raises(DatasetError) as err:
        data._check_pair(images[:3], np.array([9, 10, 11], np.uint8), "I", "L")
    assert str(err.value) == "L: expected labels 0..9, found 2 out of range (first: 10 at index 1)"
    data._check_pair(images, np.array([0, 9, 5], np.uint8), "I", "L")
    data._check_pair(images[:0], np.array([], np.uint8), "I", "L")
    write_idx(tmp_path / "i", np.zeros((2, 28, 28), np.uint8), gz=False)
    write_idx(tmp_path / "l", np.array([3, 4], np.uint8), gz=False)
    i, lab = data.load_idx_pair(tmp_path / "i", tmp_path / "l", expect_count=2)
    assert i.shape == (2, 28, 28) and lab.tolist() == [3, 4]
    with pytest.raises(DatasetError, match="expected 3 items, found 2"):
        data.load_idx_pair(tmp_path / "i", tmp_path / "l", expect_count=3)


def test_reading_says_which_file_and_why(tmp_path):
    with pytest.raises(DatasetError) as err:
        data._read_bytes(tmp_path, label="D")
    assert str(err.value).startswith("D: cannot read: [Errno 21] Is a directory")
    (tmp_path / "x.gz").write_bytes(b"plain")
    with pytest.raises(DatasetError, match=r"^.*x\.gz: truncated or corrupt gzip stream \("):
        data._read_bytes(tmp_path / "x.gz")
    assert data._read_bytes(tmp_path / "x.gz", gz=False) == b"plain"
    (tmp_path / "y").write_bytes(gzip.compress(b"z"))
    assert data._read_bytes(tmp_path / "y", gz=True) == b"z"


def test_the_cache_directory_problems_say_how_to_fix_them(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError) as err:
        data._prepare_dir(tmp_path / "file" / "cache")
    assert str(err.value).startswith(f"cannot create the cache directory {tmp_path / 'file' / 'cache'}: ")
    assert str(err.value).endswith("; set XDG_CACHE_HOME to a writable place, or pass --data-dir / set "
                                   "NANOAE_DATA_DIR")
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    with pytest.raises(DatasetError) as err:
        data._prepare_dir(tmp_path / "ok")
    assert str(err.value) == (f"cannot write to the cache directory {tmp_path / 'ok'} (permission denied); "
                              "set XDG_CACHE_HOME to a writable place, or pass --data-dir / set NANOAE_DATA_DIR")
    assert (tmp_path / "ok").is_dir()


def test_a_named_directory_and_where_nanoae_looks_otherwise(tmp_path, monkeypatch):
    fix = (f"put the Fashion-MNIST files there, or name another directory; without --data-dir, nanoae "
           f"looks in {data.default_cache_dir()} and {data.SYSTEM_DIR}, then downloads")
    with pytest.raises(data.DataDirError) as err:
        data._check_named_dir(tmp_path / "nope", "--data-dir", ("a.gz", "b.gz"))
    assert str(err.value) == f"--data-dir names {tmp_path / 'nope'}, which is not a directory; {fix}"
    (tmp_path / "b").write_bytes(b"")  # raw is as good as gzipped
    with pytest.raises(data.DataDirError) as err:
        data._check_named_dir(tmp_path, "--data-dir", ("a.gz", "b.gz", "c.gz"))
    assert str(err.value) == (f"--data-dir names {tmp_path}, which holds no a.gz and no c.gz (gzipped or raw); "
                              f"{fix}")
    (tmp_path / "a.gz").mkdir()  # a directory is not a file
    with pytest.raises(data.DataDirError, match="holds no a.gz and no c.gz"):
        data._check_named_dir(tmp_path, "--data-dir", ("a.gz", "b.gz", "c.gz"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.named_dir("~/d") == (tmp_path / "home" / "d", "--data-dir")
    monkeypatch.setenv("NANOAE_DATA_DIR", "~/e")
    assert data.named_dir() == (tmp_path / "home" / "e", "NANOAE_DATA_DIR")
    monkeypatch.setenv("NANOAE_DATA_DIR", "")
    assert data.named_dir() is None
    with pytest.raises(ValueError, match=r"^split must be one of \['test', 'train'\], got 'val'$"):
        data.load_fashion_mnist("val")


def test_the_full_report_when_no_copy_is_found(tmp_path, monkeypatch):
    cache = data.default_cache_dir()
    cache.mkdir(parents=True)
    (cache / "t10k-labels-idx1-ubyte").write_bytes(b"junk")
    monkeypatch.setattr(data, "MIRRORS", ("http://a/",))
    with pytest.raises(DatasetError) as err:
        data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[cache, tmp_path / "system"],
                   download=False, progress=False, verify=False)
    assert str(err.value) == (
        "no valid copy of Fashion-MNIST file t10k-labels-idx1-ubyte.gz found. Looked at:\n"
        f"  - {cache / 't10k-labels-idx1-ubyte'}: not an IDX file: expected bytes 00 00 at offset 0, "
        "found 6a 75\n"
        f"  - {tmp_path / 'system'}: no such directory\n"
        "  - download: disabled (download=False / --no-download)\n"
        "To fix:\n"
        f"  - {data._INSTALL_HINT}\n"
        f"  - remove or replace the invalid file(s): {cache / 't10k-labels-idx1-ubyte'}\n"
        "  - or allow downloading (drop download=False / --no-download)\n")
    (tmp_path / "system").mkdir()
    monkeypatch.setattr(data, "_urlopen", fake_opener({}))
    with pytest.raises(DatasetError) as err:
        data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[tmp_path / "system"], download=True,
                   progress=False, verify=True)
    assert str(err.value) == (
        "no valid copy of Fashion-MNIST file t10k-labels-idx1-ubyte.gz found. Looked at:\n"
        f"  - {tmp_path / 'system'}: no t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte\n"
        "  - download from http://a/t10k-labels-idx1-ubyte.gz: download failed: HTTP Error 404: Not Found\n"
        "To fix:\n"
        f"  - {data._INSTALL_HINT}\n")


def test_a_good_copy_after_a_broken_one_warns_naming_both(tmp_path):
    (tmp_path / "a").mkdir()
    write_idx(tmp_path / "a" / "t10k-labels-idx1-ubyte.gz", np.array([1, 2], np.uint8))
    (tmp_path / "a" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    good = tmp_path / "a" / "t10k-labels-idx1-ubyte.gz"
    bad = tmp_path / "a" / "t10k-labels-idx1-ubyte"
    (tmp_path / "b").mkdir()
    write_idx(tmp_path / "b" / "t10k-labels-idx1-ubyte", np.array([5], np.uint8), gz=False)
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing broken on the way: no warning
        path, labels = data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[tmp_path / "b", tmp_path / "a"],
                                  download=False, progress=False, verify=False)
    assert path == tmp_path / "b" / "t10k-labels-idx1-ubyte" and labels.tolist() == [5]
    (tmp_path / "b" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.warns(UserWarning) as rec:
        path, labels = data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[tmp_path / "b", tmp_path / "a"],
                                  download=False, progress=False, verify=False)
    assert path == good and labels.tolist() == [1, 2]  # the .gz before the raw in a directory
    assert [str(w.message) for w in rec] == [
        f"ignored invalid copies of t10k-labels-idx1-ubyte.gz: {tmp_path / 'b' / 't10k-labels-idx1-ubyte'}: "
        f"truncated header: 1 dims need 8 bytes, found 4; using {good}"]
    del bad


def test_download_messages_in_full(monkeypatch, tmp_path):
    import tempfile  # noqa: PLC0415

    raw, gz = _labels_gz()
    sha = hashlib.sha256(raw).hexdigest()
    monkeypatch.setattr(data, "_urlopen", fake_opener({"http://m/f.gz": gz}))
    with pytest.raises(DatasetError) as err:
        data.download_file("http://m/f.gz", tmp_path / "f.gz", expected_sha256=sha, expected_size=len(raw) + 1)
    assert str(err.value) == (f"http://m/f.gz: downloaded content does not match: expected {len(raw) + 1} bytes "
                              f"with sha256 {sha}, found {len(raw)} bytes with sha256 {sha}")
    with pytest.raises(DatasetError, match=f"^http://m/f.gz: downloaded content does not match: expected None "
                                           f"bytes with sha256 {'1' * 64}, found"):
        data.download_file("http://m/f.gz", tmp_path / "f.gz", expected_sha256="1" * 64)
    assert data.download_file("http://m/f.gz", tmp_path / "f.gz") == tmp_path / "f.gz"  # nothing expected
    assert (tmp_path / "f.gz").read_bytes() == gz
    (tmp_path / "f.gz").unlink()
    assert data.download_file("http://m/f.gz", tmp_path / "f", expected_sha256=hashlib.sha256(gz).hexdigest(),
                              expected_size=len(gz)).read_bytes() == gz  # not .gz: the bytes as they came
    with pytest.raises(DatasetError) as err:
        data.download_file("http://m/missing.gz", tmp_path / "g.gz")
    assert str(err.value) == "http://m/missing.gz: download failed: HTTP Error 404: Not Found"
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(DatasetError) as err:
        data.download_file("http://m/f.gz", tmp_path / "h.gz")
    assert str(err.value) == f"cannot write to the cache directory {tmp_path}: [Errno 28] No space"
    assert sorted(os.listdir(tmp_path)) == ["f"]


# --- the download's progress bar and temporary file, load_idx_pair's checks ------------------

class _RecordingBar:
    """tqdm stand-in: records its keyword arguments and every update."""

    made: list = []

    def __init__(self, **kw):
        self.kw, self.updates = kw, []
        _RecordingBar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.updates.append(n)


class _WatchedResponse(FakeResponse):
    """A FakeResponse that records the sizes asked for and what the destination folder held."""

    def __init__(self, payload, folder, headers):
        super().__init__(payload)
        self.headers, self.folder, self.asked, self.seen = headers, folder, [], []

    def read(self, n=-1):
        self.asked.append(n)
        self.seen.append(sorted(os.listdir(self.folder)))
        return super().read(n)


@pytest.mark.parametrize("headers, total", [({"Content-Length": "150000"}, 150000), ({}, None),
                                            ({"Content-Length": "about 1 MB"}, None),
                                            ({"Content-Length": ""}, None)])
@pytest.mark.parametrize("progress, disable", [(None, None), (True, False), (False, True)])
def test_the_download_bar_counts_the_bytes_of_each_chunk(monkeypatch, tmp_path, headers, total,
                                                         progress, disable):
    payload = bytes(range(256)) * 585 + b"xyz"  # 149,763 bytes: two whole chunks of 64 KiB and a part
    dest = tmp_path / "cache" / "f"
    responses = []

    def opener(url, timeout=None):
        responses.append(_WatchedResponse(payload, dest.parent, headers))
        return responses[-1]

    monkeypatch.setattr(data, "_urlopen", opener)
    monkeypatch.setattr(data, "tqdm", _RecordingBar)
    _RecordingBar.made = []
    assert data.download_file("http://m/f", dest, progress=progress) == dest
    (bar,) = _RecordingBar.made
    assert bar.kw == {"total": total, "unit": "B", "unit_scale": True, "desc": "f", "disable": disable}
    assert bar.updates == [65536, 65536, 149763 - 2 * 65536]
    assert responses[0].asked == [65536] * 4  # the last read finds the end
    (part,) = responses[0].seen[0]  # the temporary file, beside the destination
    assert part.startswith(".f.") and part.endswith(".part") and len(part) > len(".f..part")
    assert dest.read_bytes() == payload and os.listdir(dest.parent) == ["f"]


def test_load_idx_pair_verifies_official_names_and_checks_each_files_count(tmp_path):
    official = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(official, np.zeros((2, 28, 28), np.uint8), gz=False)
    write_idx(tmp_path / "l2", np.array([3, 4], np.uint8), gz=False)
    with pytest.raises(DatasetError, match=f"^{official}: content does not match the official"):
        data.load_idx_pair(official, tmp_path / "l2")  # verified by default
    official_labels = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(official_labels, np.array([3, 4], np.uint8), gz=False)
    with pytest.raises(DatasetError, match=f"^{official_labels}: content does not match the official"):
        data.load_idx_pair(write_idx(tmp_path / "i2", np.zeros((2, 28, 28), np.uint8), gz=False), official_labels)
    images, labels = data.load_idx_pair(official, official_labels, verify=False)
    assert images.shape == (2, 28, 28) and labels.tolist() == [3, 4]
    write_idx(tmp_path / "i3", np.zeros((3, 28, 28), np.uint8), gz=False)
    write_idx(tmp_path / "l3", np.array([1, 2, 3], np.uint8), gz=False)
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'i3'}: expected 2 items, found 3$"):
        data.load_idx_pair(tmp_path / "i3", tmp_path / "l3", expect_count=2)  # the images' count
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'l3'}: expected 2 items, found 3$"):
        data.load_idx_pair(official, tmp_path / "l3", expect_count=2, verify=False)  # the labels' count
    with pytest.raises(DatasetError) as err:
        data.load_idx_pair(tmp_path / "i3", tmp_path / "l2")
    assert str(err.value) == (f"{tmp_path / 'i3'} holds 3 images but {tmp_path / 'l2'} holds 2 labels: "
                              "expected the same count")


def test_the_idx_header_is_read_whole_and_each_file_by_its_own_magic(tmp_path):
    big = bytes([0, 0, 8, 1]) + (2 ** 24 + 5).to_bytes(4, "big")  # a count that needs the dim's first byte
    with pytest.raises(DatasetError, match=r"^B: expected 1 items, found 16777221$"):
        data.parse_idx(big, name="B", expect_count=1)
    images = write_idx(tmp_path / "i", np.zeros((2, 28, 28), np.uint8), gz=False)
    with pytest.raises(DatasetError, match=f"^{images}: wrong magic number: expected 2049 "):
        data._load_one(images, labels=True, verify=False)  # an images file where labels belong
    with pytest.raises(DatasetError) as err:
        data._check_pair(np.zeros((2, 28, 28), np.uint8), np.array([0, 10], np.uint8), "I", "L")
    assert str(err.value) == "L: expected labels 0..9, found 1 out of range (first: 10 at index 1)"


def test_the_loader_searches_downloads_and_reports_as_asked(monkeypatch, tmp_path):
    """The bar shown or not as asked, for both files; what the cache keeps and the messages say."""
    payloads = _serve_fake_fashion(monkeypatch, tmp_path, data.MIRRORS[0])
    monkeypatch.setattr(data, "_urlopen", fake_opener(payloads))
    monkeypatch.setattr(data, "tqdm", _RecordingBar)
    cache = data.default_cache_dir()
    cache.mkdir(parents=True)
    (cache / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")  # a broken raw copy, ignored
    for progress, disable in ((True, False), (False, True)):
        _RecordingBar.made = []
        for name in FAKE_NAMES["test"]:
            (cache / (name + ".gz")).unlink(missing_ok=True)
        with pytest.warns(UserWarning) as rec:
            data.load_fashion_mnist("test", progress=progress)
        assert [bar.kw["disable"] for bar in _RecordingBar.made] == [disable, disable]  # images, labels
        assert str(rec[0].message).endswith(f"; using {cache / 't10k-images-idx3-ubyte.gz'}")


def test_a_download_of_the_wrong_content_is_refused_and_not_kept(monkeypatch, tmp_path):
    size, sha = data.CHECKSUMS["t10k-labels-idx1-ubyte"]
    wrong = idx_bytes(np.zeros(size - 8, np.uint8))  # the official size, not the official bytes
    found = hashlib.sha256(wrong).hexdigest()
    monkeypatch.setattr(data, "_urlopen", fake_opener({m + "t10k-labels-idx1-ubyte.gz": gzip.compress(wrong)
                                                       for m in data.MIRRORS}))
    with pytest.raises(DatasetError) as err:
        data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[], download=True, progress=False, verify=True)
    assert (f"  - download from {data.MIRRORS[2]}t10k-labels-idx1-ubyte.gz: downloaded content does not match: "
            f"expected {size} bytes with sha256 {sha}, found {size} bytes with sha256 {found}\n") in str(err.value)
    assert os.listdir(data.default_cache_dir()) == []


def test_an_uncreatable_cache_and_two_broken_copies_are_all_reported(tmp_path):
    (tmp_path / "xdg").write_text("")  # the cache cannot be made under a file
    d = tmp_path / "d"
    d.mkdir()
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(DatasetError) as err:
        data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[d], download=True, progress=False, verify=False)
    msg = str(err.value)
    assert f"  - download: cannot create the cache directory {data.default_cache_dir()}: " in msg
    assert (f"  - remove or replace the invalid file(s): {d / 't10k-labels-idx1-ubyte.gz'} "
            f"{d / 't10k-labels-idx1-ubyte'}\n") in msg
    good = tmp_path / "good"
    good.mkdir()
    write_idx(good / "t10k-labels-idx1-ubyte", np.array([4], np.uint8), gz=False)
    with pytest.warns(UserWarning) as rec:
        data._find("t10k-labels-idx1-ubyte.gz", labels=True, dirs=[d, good], download=False, progress=False,
                   verify=False)
    problems = str(rec[0].message).split("; ")  # each broken copy and what is wrong with it, then the one used
    assert problems[0].startswith(f"ignored invalid copies of t10k-labels-idx1-ubyte.gz: {d / 't10k-labels-idx1-ubyte.gz'}: ")
    assert problems[1].startswith(f"{d / 't10k-labels-idx1-ubyte'}: truncated header")
    assert problems[-1] == f"using {good / 't10k-labels-idx1-ubyte'}"


def test_the_default_split_is_train_and_labels_are_verified_too(monkeypatch, tmp_path):
    written = make_fake_fashion(tmp_path / "d", n_train=7)
    images, labels = data.load_fashion_mnist(data_dir=tmp_path / "d", verify=False)
    assert images.shape == (7, 28, 28) and labels.tolist() == written["train"][1].tolist()
    raw = gzip.decompress((tmp_path / "d" / "t10k-images-idx3-ubyte.gz").read_bytes())
    monkeypatch.setitem(data.CHECKSUMS, "t10k-images-idx3-ubyte", (len(raw), hashlib.sha256(raw).hexdigest()))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: content does not match the official"):
        data.load_fashion_mnist("test", tmp_path / "d")  # the images verify, the labels do not


def test_an_idx_header_reads_every_dim_whole():
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (1, 1, 65536))
    with pytest.raises(DatasetError, match=r"expected items of shape \(28, 28\), found \(1, 65536\)$"):
        data.parse_idx(header, name="H", expect_shape=(28, 28))
