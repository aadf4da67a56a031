"""A full disk without root: files that take ``room`` bytes, then fail with ENOSPC.

``fill_up(room)`` returns a stand-in for ``os.fdopen``; patched in (``monkeypatch.setattr(os,
"fdopen", fill_up(1000))``), every file opened for writing through it accepts ``room`` bytes and
then raises ``OSError(ENOSPC)`` as a full file system does, part way through the save.
"""

from __future__ import annotations

import errno
import os

_real_fdopen = os.fdopen


class FillsUp:
    """A binary file that writes its first ``room`` bytes, then raises ENOSPC."""

    def __init__(self, file, room: int):
        self._file, self.room = file, room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            self._file.write(memoryview(data)[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self._file.write(data)

    def __getattr__(self, name):  # tell, seek, flush, fileno, close: the real file's
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False


def fill_up(room: int):
    """A replacement for ``os.fdopen`` whose files for writing hold ``room`` bytes at most."""
    def fdopen(fd, mode="r", *args, **kwargs):
        file = _real_fdopen(fd, mode, *args, **kwargs)
        return FillsUp(file, room) if "w" in mode else file
    return fdopen
