"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and a run killed mid-write leaves only a stray
``.tmp`` file, never a truncated result under the real name.
"""

from __future__ import annotations

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
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
