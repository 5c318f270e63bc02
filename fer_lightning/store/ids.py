"""Video ids that do not collide: one id per source video, readable, stable across runs.

A video's id is its file name without suffix (``clip001``) while no other source shares that
name; sources that do share it are named by their path relative to their input root, folders
joined by ``__`` (``batch1__clip001``, ``batch2__clip001``), and with the suffix too where even
that collides (``a__x_mp4`` beside ``a__x_avi``). An id already given (a store's index) is kept,
so adding a clashing video later renames nothing that exists.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

SEPARATOR = "__"


def _stem(rel: str) -> str:
    name = posixpath.basename(rel.rstrip("/"))
    stem, _ = posixpath.splitext(name)
    return stem or name


def _path_id(rel: str, with_suffix: bool) -> str:
    p = PurePosixPath(rel)
    parts = list(p.parts)
    if not with_suffix and p.suffix:
        parts[-1] = p.stem
    elif with_suffix and p.suffix:
        parts[-1] = p.stem + "_" + p.suffix.lstrip(".")
    return SEPARATOR.join(part for part in parts if part not in ("", ".", "/"))


def video_ids(rels: Sequence[str], known: Sequence[str | None] | None = None,
              existing: Mapping[str, str] | None = None) -> list[str]:
    """One id per relative path in ``rels`` (POSIX, relative to its input root), in order.

    ``known[i]``, where given, is the id path ``i`` already has (a store's index): kept, and
    reserved against the others. ``existing`` maps the paths of other videos already named
    (the rest of a store) to their ids: reserved too, and a new video that shares a file name
    with one of them is named by its path. Linear in the number of paths; a path listed twice
    gets one id. Raises ValueError when two different paths would still share an id."""
    known = list(known) if known is not None else [None] * len(rels)
    out: dict[str, str] = {}
    taken: dict[str, str] = {vid: rel for rel, vid in (existing or {}).items()}
    stems_in_use = {_stem(rel) for rel in (existing or {})}
    for rel, vid in zip(rels, known, strict=True):
        if vid is not None and rel not in out:
            out[rel] = vid
            taken.setdefault(vid, rel)
    by_stem: dict[str, list[str]] = {}
    for rel in dict.fromkeys(rels):
        if rel not in out:
            by_stem.setdefault(_stem(rel), []).append(rel)
    for stem, group in by_stem.items():
        if len(group) == 1 and stem not in taken and stem not in stems_in_use:
            out[group[0]] = stem
            taken[stem] = group[0]
            continue
        ids = [_path_id(rel, with_suffix=False) for rel in group]
        if len(set(ids)) < len(ids) or any(i in taken for i in ids):
            ids = [_path_id(rel, with_suffix=True) for rel in group]
        for rel, vid in zip(group, ids, strict=True):
            if vid in taken and taken[vid] != rel:
                raise ValueError(f"video id {vid!r} would name both {taken[vid]} and {rel}; rename one of them")
            out[rel] = vid
            taken[vid] = rel
    return [out[rel] for rel in rels]


def source_id(path: Path) -> str:
    """A source's id in the store: the file name without suffix, or the folder's name."""
    return path.name if path.is_dir() else path.stem
