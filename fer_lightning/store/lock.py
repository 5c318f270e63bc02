"""One writer per face store: ``preprocess`` holds an exclusive lock on ``<store>/.lock`` while
it writes. Two runs at once would each rewrite ``index.csv`` from what they alone did (a good
video recorded as failed, or the wrong face video under an id). The lock is the kernel's
(``flock``), so a killed run never leaves a stale one."""

from __future__ import annotations

import errno
import fcntl
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fer_lightning.errors import UserInputError


class StoreBusyError(UserInputError):
    """Another process is writing the face store."""


@contextmanager
def store_writer(store: str | Path) -> Iterator[None]:
    """Hold the store's writer lock for the block, or raise :class:`StoreBusyError` at once,
    naming the process that holds it."""
    path = Path(store) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(path, "a+")
    except PermissionError:  # another user's lock file in a shared store: a read-only handle locks too
        fh = open(path)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise StoreBusyError(f"the face store {store} is being written by {holder}; wait for that preprocess to "
                                 "finish (a rerun then resumes where it stopped), or write into another store") from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            warnings.warn(f"{store}: this file system offers no locks ({err.strerror}); make sure no other preprocess "
                          "writes this store at the same time", stacklevel=3)
            yield
            return
        writable = fh.writable()
        if writable:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {os.uname().nodename}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            fh.flush()
        yield
        if writable:
            fh.seek(0)
            fh.truncate()  # a finished run leaves the store as it found it (an empty lock file)
    finally:
        fh.close()  # closing releases the lock
