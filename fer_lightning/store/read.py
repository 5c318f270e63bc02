"""Reading a face store: a corpus's video records pointed at their aligned faces.

Two layouts are read. The face-clip store that ``fer-lightning preprocess`` writes (layout:
:mod:`fer_lightning.store.write`; ``meta/`` and ``videos/``), and a folder of per-video folders
of aligned face images numbered by frame from 1, a missing image meaning a frame without a face:
what the ABAW organisers ship as ``cropped_aligned/<video>/00001.jpg`` (``<video>_left/`` and
``<video>_right/`` for the two persons of a two-person video), read as it is, no detector run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np


def attach_store(records: list, store: str | Path, tolerance: int = 5, strict: bool = False
                 ) -> tuple[list, list[tuple[str, str]]]:
    """Point video records at their aligned face videos in ``store``.

    Each record keeps its labels; its path becomes the store's face video, its box every
    frame's whole crop, and ``has_face`` what preprocessing found. Returns the updated records
    and ``(video_id, reason)`` for each video left out, which callers report as skipped:

    - not in the store (not preprocessed, or failed there);
    - a face video whose frame count differs from the corpus's by more than ``tolerance``
      frames (labels would no longer line up with frames: was the store made from another
      video?). With ``strict`` that is a ValueError instead.

    Within ``tolerance`` (a container that lists a few more frames than FFmpeg decodes, as
    decord's count can), the store's frames are the truth: labels are cut to them, or padded
    without a label (masked), and the record notes the difference in ``extra``. The store's
    per-frame times go into ``extra["frame_times"]`` (labels in time are put on them by
    :func:`fer_lightning.corpora.labels.labels_on_store_times`).
    """
    import pandas as pd

    store = Path(store)
    if not (store / "meta").is_dir() and is_image_folder_store(store):
        return attach_image_folders(records, store, tolerance, strict)
    out, left_out = [], []
    for rec in records:
        meta_path = store / "meta" / f"{rec.video_id}.csv"
        video = store / "videos" / f"{rec.video_id}.mp4"
        if not (meta_path.exists() and video.exists()):
            left_out.append((rec.video_id, f"not in the face store {store}"))
            continue
        meta = pd.read_csv(meta_path, usecols=lambda c: c in ("frame_index", "time_s", "has_face"))
        n = len(meta)
        if abs(n - rec.num_frames) > tolerance:
            _leave_out(left_out, rec.video_id, strict,
                       f"the face store holds {n} frames but the corpus has {rec.num_frames} (more than "
                       f"data.store_length_tolerance={tolerance} apart); was {meta_path} made from another video?")
            continue
        side = _store_side(store)
        boxes = np.tile(np.array([[0, 0, side, side]], np.float32), (n, 1))
        extra = dict(rec.extra)
        if "time_s" in meta.columns:  # each decoded frame's own time (variable frame rates too)
            extra["frame_times"] = meta["time_s"].to_numpy(np.float64)
        if n != rec.num_frames:
            extra["frame_count_note"] = f"corpus {rec.num_frames} frames, face store {n}: labels fitted to the store"
        out.append(dataclasses.replace(rec, path=video, num_frames=n, boxes=boxes,
                                       has_face=meta["has_face"].to_numpy(bool),
                                       values=_fit_rows(rec.values, n, np.nan),
                                       labels=_fit_rows(rec.labels, n, -1), extra=extra))
    return out, left_out


def source_facts(store: str | Path) -> dict[str, tuple[float, int, int, int]] | None:
    """What an adapter needs to know of each source video, from the store's ``index.csv``
    (written once by preprocess): source id -> (fps, decoded frames, side, side), for the
    sources preprocessed without failure; None for a store without an index."""
    import pandas as pd

    index = Path(store) / "index.csv"
    if not index.is_file():
        return None
    table = pd.read_csv(index, usecols=["source_id", "fps", "num_frames", "status"], dtype={"source_id": str})
    table = table[(table["status"] == "ok") & table["fps"].notna()].drop_duplicates("source_id")
    side = _store_side(Path(store))
    return {sid: (float(fps), int(n), side, side)
            for sid, fps, n in zip(table["source_id"], table["fps"], table["num_frames"], strict=True)}


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
        boxes = np.tile(np.array([[0, 0, w, h]], np.float32), (rec.num_frames, 1))
        extra = dict(rec.extra, face_margin=0.0, face_store_layout="image folders")
        out.append(dataclasses.replace(rec, path=folder / f"%0{digits}d{suffix}", boxes=boxes, has_face=has_face,
                                       extra=extra))
    return out, left_out


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
    from fer_lightning.store.write import PreprocessConfig

    return PreprocessConfig().size
