"""Checkpoints: a model's weights and its optimizer's state in one ``.npz`` file.

File layout (a plain, uncompressed NumPy ``.npz``, i.e. a zip of ``.npy`` files)::

    param/<key>   one array per ``model.state_dict()`` entry ("param/0.W", "param/0.b", ...)
    optim/<key>   one array per array in ``optimizer.state_dict()`` ("optim/m", "optim/v")
    extra/<key>   the caller's own arrays (``fit`` keeps the best epoch's weights there)
    meta          a JSON document, stored as a 1-D uint8 array of its UTF-8 bytes:
                  format_version, architecture (``repr(model)``), optimizer (class
                  name or null), optimizer_state (its scalars: t, lr, betas...),
                  nanoae and numpy versions, a UTC timestamp, and "user" (the
                  caller's ``meta`` dict)

No pickle, anywhere: the file is read with ``numpy.load(..., allow_pickle=False)``
and holds no object arrays, so opening a checkpoint from a stranger cannot run
code. It also stays readable by any NumPy, with or without nanoae.

Writes are atomic: the file is written to a temporary file in the same
directory, flushed to disk, then renamed over the target (``os.replace``, atomic
on POSIX and Windows). A crash or kill mid-write therefore leaves the previous
checkpoint intact; at worst a ``.<name>.*.tmp`` file is left behind. A write that
fails (disk full, quota, a file system gone read-only) removes the temporary file
and raises ``CheckpointError``, chained to the ``OSError``, in one line: the file,
the error, for a full disk the bytes the checkpoint needs and those free, and
whether a checkpoint saved there before is intact. The file
gets the permissions the user's umask gives any new file (0644 under the usual 022).

Loading checks everything before writing anything: a mismatched or corrupt
file raises ``CheckpointError`` and leaves the model and optimizer as they were.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy

from nanoae.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "read_checkpoint_meta",
           "read_checkpoint_extra"]

FORMAT_VERSION = 1

# Everything that parsing untrusted bytes can raise (zip structure, npy headers,
# JSON). Any of them means "not a valid checkpoint", never a bug to propagate.
# (zipfile raises RuntimeError/NotImplementedError for flipped encryption or
# compression flags; a corrupt npy header can claim a huge shape: MemoryError.)
_CORRUPT = (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, KeyError,
            IndexError, TypeError, OverflowError, struct.error, NotImplementedError,
            RuntimeError, MemoryError)


def save_checkpoint(path, model, optimizer=None, *, meta=None, extra=None) -> Path:
    """Write ``model`` (and ``optimizer``'s state) to ``path`` atomically; returns the Path.

    ``path`` is used exactly as given: no ``.npz`` is appended when it has no
    suffix (``numpy.savez`` would, so we write through a file object). The parent
    directory is created if missing. ``meta``: a JSON-serialisable dict stored
    under "user"; a value that is not raises TypeError naming its key.
    ``extra``: a dict of host arrays stored beside the weights (read them back
    with ``read_checkpoint_extra``).
    Raises CheckpointError (chained to the OSError) when writing fails; the file
    already at ``path``, if any, is then unchanged.
    """
    path = Path(path)
    arrays = {f"param/{k}": numpy.ascontiguousarray(v) for k, v in model.state_dict().items()}
    arrays.update({f"extra/{k}": numpy.ascontiguousarray(v) for k, v in (extra or {}).items()})
    state = optimizer.state_dict() if optimizer is not None else {}
    arrays.update({f"optim/{k}": v for k, v in state.items() if isinstance(v, numpy.ndarray)})
    scalars = {k: v for k, v in state.items() if not isinstance(v, numpy.ndarray)}
    doc = {
        "format_version": FORMAT_VERSION,
        "architecture": repr(model),
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer_state": scalars if optimizer is not None else None,
        "nanoae_version": _nanoae_version(),
        "numpy_version": numpy.__version__,
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "user": _check_user_meta(meta),
    }
    text = json.dumps(doc)  # user meta checked above; optimizer scalars are numbers
    arrays["meta"] = numpy.frombuffer(text.encode("utf-8"), dtype=numpy.uint8)
    objects = [key for key, value in arrays.items() if value.dtype.hasobject]
    if objects:  # they would need pickle to store, and to load
        raise TypeError(f"save_checkpoint: {objects} are object arrays; refusing to pickle")

    existed = path.is_file()
    try:
        _write_atomically(path, arrays)
    except OSError as exc:  # disk full, quota, read-only: say which file, why, and what is safe
        raise CheckpointError(_save_failed(path, exc, arrays, existed)) from exc
    return path


def _write_atomically(path: Path, arrays: dict) -> None:
    """``numpy.savez`` into a temporary file beside ``path``, then rename it over ``path``.

    Until the rename, the file at ``path`` (if any) is untouched; a failure at any
    point removes the temporary file and re-raises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode any new file gets here
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written temp file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


# The errors that mean "the disk has no room for it": a full file system, or a full quota.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def _save_failed(path: Path, exc: OSError, arrays: dict, existed: bool) -> str:
    """The one-line message of a save that failed: the file, the error, for a full disk the
    bytes the file needs and the bytes free, and what became of the file already there."""
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else str(exc)
    text = f"could not save the checkpoint {path}: {reason}"  # (str(exc) may name the .tmp file)
    if exc.errno in _NO_ROOM:
        text += f"; it needs {_encoded_size(arrays):,} bytes"
        free = _free_bytes(path.parent)
        if free is not None:
            text += f" and {path.parent} has {free:,} free"
    if existed:
        return text + "; the checkpoint saved there before is intact (nothing was written over it)"
    return text + "; no file was left there"


class _ByteCounter:
    """A file that keeps no bytes, only how far they reach: ``numpy.savez`` into it gives the
    exact size of the checkpoint file, without needing the room to write it."""

    def __init__(self):
        self.position = self.size = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.position += n
        self.size = max(self.size, self.position)
        return n

    def read(self, n=-1):  # numpy.savez takes any object with read and write for a file
        raise io.UnsupportedOperation("write-only")

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:  # zipfile goes back to fill in headers
        self.position = (offset, self.position + offset, self.size + offset)[whence]
        return self.position

    def flush(self) -> None:
        pass


def _encoded_size(arrays: dict) -> int:
    """The size in bytes of the .npz file ``arrays`` make (they are encoded again, unwritten)."""
    counter = _ByteCounter()
    numpy.savez(counter, **arrays)
    return counter.size


def _free_bytes(directory: Path):
    """Bytes an unprivileged user may still write in ``directory``'s file system (None: unknown)."""
    try:
        stats = os.statvfs(directory)
    except (OSError, AttributeError):  # AttributeError: Windows has no statvfs
        return None
    return stats.f_bavail * stats.f_frsize


def load_checkpoint(path, model=None, optimizer=None) -> dict:
    """Load a checkpoint into ``model`` and/or ``optimizer``; returns its metadata dict.

    Raises CheckpointError, changing nothing, when the file is missing, corrupt,
    from a newer format, or does not match the model (architecture, keys,
    shapes, dtypes) or the optimizer (class, state shapes). With neither
    argument it only validates the file and returns the metadata.
    """
    path = Path(path)
    meta, arrays = _read(path, with_arrays=True)
    if model is not None and meta.get("architecture") != repr(model):
        raise CheckpointError(
            f"{path} holds a different architecture:\n  checkpoint: {meta.get('architecture')}\n"
            f"  model:      {model!r}\nbuild the model the checkpoint describes, then load it"
        )
    optim_state = _check_optimizer(path, meta, arrays, optimizer) if optimizer is not None else None
    if model is not None:
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        try:
            model.load_state_dict(params)  # checks every key/shape/dtype before writing
        except ValueError as exc:
            raise CheckpointError(f"{path} does not match the model: {exc}") from exc
    if optim_state is not None:
        try:
            optimizer.load_state_dict(optim_state)  # pre-checked above, so this cannot fail halfway
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot load optimizer state: {exc}") from exc
    return meta


def read_checkpoint_meta(path) -> dict:
    """Only the metadata of the checkpoint at ``path`` (reads no weights)."""
    return _read(Path(path), with_arrays=False)[0]


def read_checkpoint_extra(path) -> dict:
    """The ``extra`` arrays saved with the checkpoint at ``path`` ({} if none)."""
    arrays = _read(Path(path), with_arrays=True)[1]
    return {k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")}


# -- helpers ------------------------------------------------------------------

def _member(npz, name: str):
    """``npz[name]``, which must be an array: NumPy hands back the raw bytes of a member that
    is not a .npy file, and those would fail later with an unrelated error."""
    value = npz[name]
    if not isinstance(value, numpy.ndarray):
        raise ValueError(f"member {name!r} is not a .npy array")
    return value


def _read(path: Path, *, with_arrays: bool):
    """Read and decode ``path`` fully into memory: (metadata dict, {name: array})."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    arrays = {}
    # A checkpoint is a zip archive; say so plainly instead of letting numpy.load
    # guess another format (it would call a garbage file "pickled data").
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not is_zip:
        raise CheckpointError(f"{path} is not a valid nanoae checkpoint: not an .npz (zip) "
                              "archive; the file is corrupt, truncated, or another kind of file")
    try:
        npz = numpy.load(path, allow_pickle=False)
        if not isinstance(npz, numpy.lib.npyio.NpzFile):
            raise ValueError("it is a single .npy array, not an .npz archive")
        with npz:
            if "meta" not in npz.files:
                raise KeyError("no 'meta' entry")
            raw = _member(npz, "meta")
            if raw.dtype != numpy.uint8 or raw.ndim != 1:
                raise ValueError(f"'meta' is {raw.dtype} of shape {raw.shape}, expected 1-D uint8")
            meta = json.loads(raw.tobytes().decode("utf-8"))
            if with_arrays:  # read every member now: a corrupt one fails here, before any write
                arrays = {name: _member(npz, name) for name in npz.files if name != "meta"}
    except _CORRUPT as exc:
        raise CheckpointError(f"{path} is not a valid nanoae checkpoint (corrupt or truncated): "
                              f"{type(exc).__name__}: {exc}") from exc
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path} has an unknown checkpoint format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written in checkpoint format {version}, newer than "
                              f"this nanoae ({_nanoae_version()}) reads (up to {FORMAT_VERSION}); "
                              "upgrade nanoae to load it")
    return meta, arrays


def _check_optimizer(path: Path, meta: dict, arrays: dict, optimizer) -> dict:
    """The optimizer state from the file, after checking it fits ``optimizer`` (writes nothing)."""
    name = type(optimizer).__name__
    saved = meta.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{path} holds no optimizer state, but a {name} was given to load")
    scalars = meta.get("optimizer_state")
    if saved != name:
        raise CheckpointError(f"{path} holds {saved} state, but the optimizer is a {name}")
    if not isinstance(scalars, dict):
        raise CheckpointError(f"{path}: optimizer_state is missing from the metadata")
    state = dict(scalars)
    state.update({k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
    # Optimizer.load_state_dict writes its buffers before reading t and lr, and the
    # model is loaded before it: check everything here, so a failure changes nothing.
    for key, mine in optimizer.state_dict().items():
        if key not in state:
            raise CheckpointError(f"{path}: optimizer state has no {key!r}")
        value = state[key]
        if isinstance(mine, numpy.ndarray):
            shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", type(value))
            if shape != mine.shape or dtype != mine.dtype:
                raise CheckpointError(
                    f"{path}: optimizer {key} expected shape {mine.shape} dtype {mine.dtype}, "
                    f"got shape {shape} dtype {dtype} (was it built on the same parameters?)")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointError(f"{path}: optimizer {key} is {value!r}, expected a number")
    return state


def _check_user_meta(meta):
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise TypeError(f"save_checkpoint: meta must be a dict, got {type(meta).__name__}")
    for key, value in meta.items():
        if not isinstance(key, str):  # JSON would turn 1 into "1": it would not round-trip
            raise TypeError(f"save_checkpoint: meta key {key!r} is not a str")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"save_checkpoint: meta[{key!r}] is not JSON-serialisable "
                            f"({type(value).__name__}): {exc}") from exc
    return dict(meta)


def _umask() -> int:
    """The process's umask. POSIX can only read it by setting it, so it is set back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; best effort (Windows cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _nanoae_version() -> str:
    from nanoae import __version__  # noqa: PLC0415  (late: the package imports its modules first)

    return __version__
