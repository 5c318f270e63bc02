"""What every real-corpus adapter needs: the corpus's videos, their facts, whole-frame boxes.

With a face store (``data.face_store``), its index answers for the raw videos: their frame
rates and counts, and, where the corpus folder holds no videos (a compute node that got the
store and the labels only), which videos there are. No raw video is opened then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from fer_lightning.corpora.records import VideoRecord
from fer_lightning.media.video import open_video
from fer_lightning.store.read import StoreIndex, whole_crop_boxes

# a face store's index, set while a corpus with a face store is loaded: no raw video is opened
_KNOWN: ContextVar[StoreIndex | None] = ContextVar("known_videos", default=None)


@contextmanager
def known_videos(index: StoreIndex | None) -> Iterator[None]:
    """Inside the block, :func:`video_info` and :func:`corpus_videos` answer from a face store's
    index (:func:`fer_lightning.store.read.load_index`) for the videos it holds."""
    token = _KNOWN.set(index)
    try:
        yield
    finally:
        _KNOWN.reset(token)


def video_info(path: str | Path) -> tuple[float, int, int, int]:
    """(fps, frame count, width, height) of a video: from the face store's index when one is
    known (:func:`known_videos`; the frames it decoded), else read with decord."""
    index = _KNOWN.get()
    if index is not None and (known := index.info(path)):
        return known
    reader = open_video(path)
    h, w = reader[0].shape[:2]
    return float(reader.get_avg_fps()), len(reader), w, h


def corpus_videos(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> list[Path]:
    """The video files (``suffixes``, lower case) in ``folder``, or below it with ``recursive``,
    sorted. Where the folder holds none and a face store's index is known, the store's sources
    stand for them (:meth:`~fer_lightning.store.read.StoreIndex.stand_ins`): the raw corpus need
    not be on the machine that trains."""
    if folder.is_dir():
        found = sorted(p for p in (folder.rglob("*") if recursive else folder.glob("*"))
                       if p.suffix.lower() in suffixes and p.is_file())
        if found:
            return found
    index = _KNOWN.get()
    return index.stand_ins(folder, suffixes, recursive) if index is not None else []


def whole_frame_record(video_id: str, path: Path, subject: str, split: str, values: np.ndarray | None,
                       fps: float, num_frames: int, width: int, height: int, labels: np.ndarray | None = None,
                       **extra) -> VideoRecord:
    """A record whose face box is the whole frame: real corpora get their faces from a face
    store (``data.face_store``, made by ``fer-lightning preprocess``), which replaces path,
    boxes and has_face; without one, clips show the whole frame."""
    return VideoRecord(video_id=video_id, path=path, subject=subject, split=split, fps=fps,
                       num_frames=num_frames, has_face=np.ones(num_frames, bool),
                       boxes=whole_crop_boxes(width, height, num_frames),
                       values=values, labels=labels, extra={"face_margin": 0.0, **extra})
