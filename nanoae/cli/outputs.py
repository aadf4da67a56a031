"""Before a command works for minutes: can it write where its output goes?

``check_output_dir`` is what every command that writes calls first (``train-ae``,
``train-classifier``, ``tsne``, ``demo`` and their ``--watch`` files): a run that
could never be saved is refused in the first second, not after its training.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from nanoae.errors import UsageError

__all__ = ["check_free_space", "check_output_dir"]

PROBE_BYTES = 64 * 1024  # what the probe writes: less than any checkpoint, more than a full disk takes


def _nearest_existing(directory: Path) -> Path:
    """``directory`` or, if it does not exist yet, the deepest of its parents that does."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def check_free_space(directory, needs: int, option: str, what: str) -> None:
    """UsageError (one line, exit 2) when the disk of ``directory`` has fewer than ``needs`` bytes free.

    needs: a lower bound of what will be written (the arrays, not the file's metadata), so
    that a run is never refused for want of space it would not have used. The space can
    still run out later (other programs write too): the save then fails with its own message.
    """
    existing = _nearest_existing(Path(directory))
    free = shutil.disk_usage(existing).free
    if free < needs:
        raise UsageError(f"{option}: {existing} has {free:,} bytes free, and {what} needs at least "
                         f"{needs:,}; free some space there or choose another place")


def check_output_dir(directory, option: str = "--out") -> None:
    """UsageError (one line, exit 2) unless files can be written in ``directory``.

    The directory may not exist yet: then its nearest existing ancestor must be
    a directory we can write in, as creating the missing ones needs. The test
    is a real one, not a guess from permission bits (which say nothing of a
    read-only file system, and are all yes for root): a probe file of
    ``PROBE_BYTES`` is written there and removed at once (a full disk refuses
    it, where it would take an empty file). Nothing is created or left behind, so a
    command refused later (bad data, say) leaves no empty folder either.

    option: how the user named the place, for the message ("--out runs/ae.npz").
    """
    directory = Path(directory)
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        raise UsageError(f"{option}: cannot create the directory {directory}: {existing} is a "
                         "file; choose another place")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".nanoae-probe-")
        try:  # some bytes, not an empty file: a full disk still takes an empty one
            if os.write(fd, bytes(PROBE_BYTES)) < PROBE_BYTES:  # a short write: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = "write in" if existing == directory else f"create {directory} in"
        remedy = "free some space there or choose another place" if exc.errno == errno.ENOSPC \
            else "choose a place you can write to"
        raise UsageError(f"{option}: cannot {where} {existing} ({reason}); {remedy}") from exc
