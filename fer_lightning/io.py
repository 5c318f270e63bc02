"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and a run killed mid-write leaves only a stray
``.tmp`` file, never a truncated result under the real name.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``keep_suffix`` keeps the extension (writers that pick a format by it need it); without it
    the temporary name ends in ``.tmp``, so that globs such as ``*.ckpt`` never see it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tail = f".tmp{path.suffix}" if keep_suffix else f"{path.suffix}.tmp"
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{tail}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None and err.errno in WRITE_ERRNOS:  # a failed write names no file: name it
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# what a full, read-only or forbidden output folder raises
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def probe_write(folder: str | Path, size: int = 1 << 20) -> OSError | None:
    """The OSError that writing ``size`` bytes into ``folder`` raises (disk full, read-only,
    forbidden), or None when it can be written. For libraries whose own writers fail with a
    message that names neither the cause nor the file (torch.save: "unexpected pos")."""
    probe = Path(folder) / f".write-probe.{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        return err
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return None


def write_error_sentence(err: BaseException) -> str | None:
    """One sentence for an output that could not be written (what, where, what to do), or None
    when ``err`` is no such error."""
    if not isinstance(err, OSError) or err.errno not in WRITE_ERRNOS:
        return None
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EROFS: "the file system is read-only"}.get(err.errno, "permission denied")
    where = f" {err.filename}" if err.filename else ""
    return (f"cannot write{where}: {why}. Free space or choose another output folder (--out, --output, --run_root), "
            "then run the command again (preprocess and a fit with --ckpt_path last resume)")
