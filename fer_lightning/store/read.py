"""Reading a face store: a corpus's video records pointed at their aligned faces.

Two layouts are read. The face-clip store that ``fer-lightning preprocess`` writes (layout:
:mod:`fer_lightning.store.write`; ``meta/`` and ``videos/``), and a folder of per-video folders
of aligned face images numbered by frame from 1, a missing image meaning a frame without a face:
what the ABAW organisers ship as ``cropped_aligned/<video>/00001.jpg`` (``<video>_left/`` and
``<video>_right/`` for the two persons of a two-person video), read as it is, no detector run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import numpy as np

from fer_lightning.media.video import known_upright


class StoreIndex:
    """What a face store's ``index.csv`` and ``frames.parquet`` say, read once per process (every
    DDP rank reads them; none opens a raw video or a per-video file to rebuild them).

    It answers, for a raw video's path (which need not exist on this machine), which source of
    the store it is (:meth:`source_of`), its frame rate and decoded frame count (:meth:`info`),
    and lists the store's sources where a corpus folder is absent (:meth:`stand_ins`)."""

    def __init__(self, store: str | Path) -> None:
        import pandas as pd

        self.root = Path(store)
        table = pd.read_csv(self.root / "index.csv", dtype={c: str for c in ("video_id", "source_id", "source_rel", "source")},
                            keep_default_na=False,
                            na_values={"fps": [""], "num_frames": [""]})
        if "source_rel" not in table.columns:  # a store written before the index named paths
            table["source_rel"] = [Path(s).name for s in table["source"]]
        self.side = int(table["size"].iloc[0]) if "size" in table.columns and len(table) else _store_side(self.root)
        ok = table[(table["status"] == "ok") & table["fps"].notna()]
        self.videos = set(ok["video_id"])
        self.sources_of_videos = dict(zip(ok["video_id"], ok["source_id"], strict=True))  # face video -> source
        sources = ok.drop_duplicates("source_id")
        self.facts = {sid: (float(fps), int(n), self.side, self.side)
                      for sid, fps, n in zip(sources["source_id"], sources["fps"], sources["num_frames"], strict=True)}
        self.rel = dict(zip(sources["source_id"], sources["source_rel"], strict=True))
        # plain string operations below, not pathlib: these run once per video of corpora of
        # tens of thousands (pathlib was a third of setup's time there)
        self._by_path = dict(zip(sources["source"], sources["source_id"], strict=True))
        self._by_name: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for sid, rel in self.rel.items():
            parts = tuple(part for part in rel.split("/") if part)
            self._by_name.setdefault(parts[-1] if parts else "", []).append((sid, parts))
        self._frames: _FrameTable | None = None

    def source_of(self, path: str | Path) -> str | None:
        """The store's source id for a raw video's path: the source of that path, else the
        source with the same file name whose path under its input root shares the most trailing
        folders with ``path``; None when there is none, or two tie."""
        path = os.fspath(path)
        if (sid := self._by_path.get(path)) is not None:
            return sid
        candidates = self._by_name.get(os.path.basename(path), [])
        if len(candidates) <= 1:
            return candidates[0][0] if candidates else None
        parts = Path(path).parts

        def shared(rel: tuple[str, ...]) -> int:
            k = 0
            while k < min(len(rel), len(parts)) and rel[-1 - k] == parts[-1 - k]:
                k += 1
            return k

        scored = sorted(((shared(rel), sid) for sid, rel in candidates), reverse=True)
        return scored[0][1] if scored[0][0] > scored[1][0] else None

    def info(self, path: str | Path) -> tuple[float, int, int, int] | None:
        """(fps, decoded frames, side, side) of a raw video the store holds, else None."""
        sid = self.source_of(path)
        return self.facts.get(sid) if sid is not None else None

    def stand_ins(self, folder: Path, suffixes: tuple[str, ...], recursive: bool) -> list[Path]:
        """Paths under ``folder`` that stand for the store's sources with these suffixes: each
        source's file name directly in ``folder``, or with ``recursive`` its path under its
        input root; for adapters whose corpus folder is not on this machine."""
        rels = [Path(rel) for rel in self.rel.values() if Path(rel).suffix.lower() in suffixes]
        return sorted(folder / (rel if recursive else rel.name) for rel in rels)

    def face_video_id(self, record) -> str:
        """The store's face video for a record: its source's id, with the record's own suffix
        after the file name (``<video>_left``) kept; the record's id when no source matches."""
        sid = self.source_of(record.path)
        if sid is None:
            return record.video_id
        stem = os.path.splitext(os.path.basename(os.fspath(record.path)))[0]
        return sid + record.video_id[len(stem):] if record.video_id.startswith(stem) else sid

    def frames(self) -> _FrameTable | None:
        """Every face video's per-frame times and has-face flags (``frames.parquet``), read once;
        None for a store written before it existed."""
        if self._frames is None and (self.root / "frames.parquet").is_file():
            self._frames = _FrameTable(self.root / "frames.parquet")
        return self._frames


class _FrameTable:
    """``frames.parquet`` as contiguous arrays, each face video a slice of them (records take
    views, not copies)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        ids = table.column("video_id").combine_chunks()
        if hasattr(ids, "dictionary"):
            codes, names = ids.indices.to_numpy(zero_copy_only=False), ids.dictionary.to_pylist()
        else:
            names, codes = np.unique(ids.to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
            names = names.tolist()
        order = np.argsort(codes, kind="stable")  # written grouped by video: already in order, linear
        codes = codes[order]
        self.time_s = table.column("time_s").to_numpy()[order]
        self.has_face = table.column("has_face").to_numpy(zero_copy_only=False).astype(bool)[order]
        frame_index = table.column("frame_index").to_numpy()[order]
        present, first, count = np.unique(codes, return_index=True, return_counts=True)
        self.span = {names[c]: (int(a), int(a + n)) for c, a, n in zip(present, first, count, strict=True)}
        for c, a, n in zip(present, first, count, strict=True):
            if frame_index[a] != 0 or frame_index[a + n - 1] != n - 1:
                raise ValueError(f"{path}: the frames of {names[c]} are not numbered 0..{n - 1}; rerun "
                                 "`fer-lightning preprocess` on the store to rewrite its index")

    def get(self, video_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(time_s, has_face) of one face video, or None."""
        if (span := self.span.get(video_id)) is None:
            return None
        return self.time_s[span[0]:span[1]], self.has_face[span[0]:span[1]]


_INDEX_CACHE: dict[tuple, StoreIndex] = {}


def load_index(store: str | Path) -> StoreIndex | None:
    """The :class:`StoreIndex` of ``store`` (cached per process while its files are unchanged),
    or None for a store without ``index.csv`` (ABAW's ``cropped_aligned``)."""
    store = Path(store)
    index = store / "index.csv"
    if not index.is_file():
        return None
    stamp = tuple(f.stat().st_mtime_ns if f.is_file() else 0 for f in (index, store / "frames.parquet"))
    key = (str(store.resolve()), stamp)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()  # one store at a time: a million frames' arrays are not kept twice
        _INDEX_CACHE[key] = StoreIndex(store)
    return _INDEX_CACHE[key]


def attach_store(records: list, store: str | Path, tolerance: int = 5, strict: bool = False
                 ) -> tuple[list, list[tuple[str, str]]]:
    """Point video records at their aligned face videos in ``store``.

    Each record keeps its id and labels; its path becomes the store's face video (found through
    the store's index by the record's raw path, see :meth:`StoreIndex.face_video_id`), its box
    every frame's whole crop, and ``has_face`` what preprocessing found. Returns the updated
    records and ``(video_id, reason)`` for each video left out, which callers report as skipped:

    - not in the store (not preprocessed, or failed there);
    - a face video whose frame count differs from the corpus's by more than ``tolerance``
      frames (labels would no longer line up with frames: was the store made from another
      video?). With ``strict`` that is a ValueError instead.

    Within ``tolerance`` (a container that lists a few more frames than FFmpeg decodes, as
    decord's count can), the store's frames are the truth: labels are cut to them, or padded
    without a label (masked), and the record notes the difference in ``extra``. The store's
    per-frame times go into ``extra["frame_times"]`` (labels in time are put on them by
    :func:`fer_lightning.corpora.labels.labels_on_store_times`).

    The per-frame facts come from the store's ``frames.parquet``, read once; a store written
    before it existed is read from ``meta/<video>.csv``, one file per video.
    """
    store = Path(store)
    if not is_face_store(store) and is_image_folder_store(store):
        return attach_image_folders(records, store, tolerance, strict)
    index = load_index(store)
    table = index.frames() if index is not None else None
    side = index.side if index is not None else _store_side(store)
    out, left_out = [], []
    for rec in records:
        face_id = index.face_video_id(rec) if index is not None else rec.video_id
        video = store / "videos" / f"{face_id}.mp4"
        found = table.get(face_id) if table is not None else _read_meta(store / "meta" / f"{face_id}.csv")
        if found is None or (index is not None and face_id not in index.videos):
            left_out.append((rec.video_id, f"not in the face store {store}"))
            continue
        times, has_face = found
        n = len(has_face)
        if abs(n - rec.num_frames) > tolerance:
            _leave_out(left_out, rec.video_id, strict,
                       f"the face store holds {n} frames of {face_id} but the corpus has {rec.num_frames} (more than "
                       f"data.store_length_tolerance={tolerance} apart); was it made from another video?")
            continue
        boxes = whole_crop_boxes(side, side, n)
        extra = dict(rec.extra)
        extra.setdefault("source", str(rec.path))  # the raw video the store's face video stands for
        if times is not None and np.isfinite(times).any():  # each decoded frame's own time (variable rates too)
            extra["frame_times"] = times
        if rec.values is not None and n < len(rec.values) and "label_rows" not in extra:
            extra["label_rows"] = rec.values  # annotations of frames the store lacks: still scored
        if n != rec.num_frames:
            extra["frame_count_note"] = f"corpus {rec.num_frames} frames, face store {n}: labels fitted to the store"
        out.append(dataclasses.replace(rec, path=video, num_frames=n, boxes=boxes, has_face=has_face,
                                       values=_fit_rows(rec.values, n, np.nan),
                                       labels=_fit_rows(rec.labels, n, -1), extra=extra))
    known_upright(r.path for r in out)  # preprocess writes its face videos upright: no probe per video
    return out, left_out


def _read_meta(path: Path) -> tuple[np.ndarray | None, np.ndarray] | None:
    """(time_s, has_face) from one face video's ``meta/*.csv`` (a store without frames.parquet)."""
    import pandas as pd

    if not path.is_file():
        return None
    meta = pd.read_csv(path, usecols=lambda c: c in ("frame_index", "time_s", "has_face"))
    times = meta["time_s"].to_numpy(np.float64) if "time_s" in meta.columns else None
    return times, meta["has_face"].to_numpy(bool)


def is_face_store(store: str | Path) -> bool:
    """True for a store that ``fer-lightning preprocess`` wrote: its index (``frames.parquet``)
    or, from before the index held the frames, ``meta/``."""
    return (Path(store) / "frames.parquet").is_file() or (Path(store) / "meta").is_dir()


def is_image_folder_store(store: str | Path, probe: int = 20) -> bool:
    """True for a folder whose subfolders hold face images named by frame number (ABAW's
    ``cropped_aligned``); the first ``probe`` subfolders are looked at."""
    from fer_lightning.media.video import IMAGE_SUFFIXES

    store = Path(store)
    if not store.is_dir():
        return False
    with os.scandir(store) as entries:
        folders = [Path(e.path) for e in entries if e.is_dir()][:probe]
    for folder in folders:
        with os.scandir(folder) as files:
            for f in files:
                stem, suffix = os.path.splitext(f.name)
                if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit():
                    return True
    return False


def attach_image_folders(records: list, store: str | Path, tolerance: int = 5, strict: bool = False
                         ) -> tuple[list, list[tuple[str, str]]]:
    """Point records at ``store/<video_id>/`` folders of face images numbered by frame from 1
    (``00001.jpg`` is frame 0; a missing number is a frame without a face). Each record keeps
    its frame count and labels; ``has_face`` is where an image exists, the box the whole image.
    A record without a folder, or whose folder numbers images past its last frame by more than
    ``tolerance``, is left out with the reason (with ``strict``, the latter is a ValueError)."""
    import cv2

    from fer_lightning.media.video import IMAGE_SUFFIXES, frame_numbers

    store = Path(store)
    out, left_out = [], []
    for rec in records:
        folder = store / rec.video_id
        numbers = np.asarray(frame_numbers(folder), np.int64) if folder.is_dir() else np.zeros(0, np.int64)
        if len(numbers) == 0:
            left_out.append((rec.video_id, f"no face images in {folder} (cropped_aligned folder named as the video)"))
            continue
        if numbers[-1] > rec.num_frames + tolerance or numbers[0] < 1:
            _leave_out(left_out, rec.video_id, strict,
                       f"{folder} numbers face images {numbers[0]}..{numbers[-1]} but the video has {rec.num_frames} "
                       f"frames, numbered from 1 (more than data.store_length_tolerance={tolerance} apart)")
            continue
        first = next(f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and f.stem.isdigit())
        digits, suffix = len(first.stem), first.suffix
        image = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
        if image is None:
            left_out.append((rec.video_id, f"cannot read face image {first}"))
            continue
        h, w = image.shape[:2]
        has_face = np.zeros(rec.num_frames, bool)
        inside = numbers[numbers <= rec.num_frames]
        has_face[inside - 1] = True
        boxes = whole_crop_boxes(w, h, rec.num_frames)
        extra = dict(rec.extra, face_margin=0.0, face_store_layout="image folders")
        out.append(dataclasses.replace(rec, path=folder / f"%0{digits}d{suffix}", boxes=boxes, has_face=has_face,
                                       extra=extra))
    return out, left_out


@functools.lru_cache(maxsize=256)
def whole_crop_boxes(width: int, height: int, n: int) -> np.ndarray:
    """(n, 4) boxes that are each the whole ``width`` x ``height`` image: one row seen n times (a
    read-only view: 16 bytes per frame saved, 16 MB per million frames), shared by the videos of
    the same size and length."""
    return np.broadcast_to(np.array([0, 0, width, height], np.float32), (n, 4))


def _leave_out(left_out: list, video_id: str, strict: bool, reason: str) -> None:
    """A face store that does not fit its video: an error with ``strict``, else a skip with the reason."""
    if strict:
        raise ValueError(f"{video_id}: {reason}")
    left_out.append((video_id, reason))


def _fit_rows(array: np.ndarray | None, n: int, fill) -> np.ndarray | None:
    """``array`` cut to ``n`` rows, or padded with ``fill``."""
    if array is None or len(array) == n:
        return array
    if len(array) > n:
        return array[:n]
    pad = np.full((n - len(array), *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, pad])


def _store_side(store: Path) -> int:
    report = store / "report.json"
    if report.exists():
        return int(json.loads(report.read_text())["settings"]["size"])
    from fer_lightning.store.settings import PreprocessConfig

    return PreprocessConfig().size
