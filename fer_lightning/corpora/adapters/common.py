"""What every real-corpus adapter needs: video facts and whole-frame face boxes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from fer_lightning.corpora.records import VideoRecord
from fer_lightning.media.video import open_video

# (fps, frames, width, height) per source video id (file name without suffix), from a face
# store's index: set while a corpus with a face store is loaded, so that no raw video is opened
_KNOWN: ContextVar[Mapping[str, tuple[float, int, int, int]] | None] = ContextVar("known_videos", default=None)


@contextmanager
def known_videos(facts: Mapping[str, tuple[float, int, int, int]] | None) -> Iterator[None]:
    """Inside the block, :func:`video_info` answers from ``facts`` (a face store's index, see
    :func:`fer_lightning.store.read.source_facts`) for the videos they hold, without opening them."""
    token = _KNOWN.set(facts)
    try:
        yield
    finally:
        _KNOWN.reset(token)


def video_info(path: str | Path) -> tuple[float, int, int, int]:
    """(fps, frame count, width, height) of a video: from the face store's index when one is
    known (:func:`known_videos`; the frames it decoded), else read with decord."""
    facts = _KNOWN.get()
    if facts is not None and (known := facts.get(Path(path).stem if Path(path).suffix else Path(path).name)):
        return known
    reader = open_video(path)
    h, w = reader[0].shape[:2]
    return float(reader.get_avg_fps()), len(reader), w, h


def whole_frame_record(video_id: str, path: Path, subject: str, split: str, values: np.ndarray | None,
                       fps: float, num_frames: int, width: int, height: int, labels: np.ndarray | None = None,
                       **extra) -> VideoRecord:
    """A record whose face box is the whole frame: real corpora get their faces from a face
    store (``data.face_store``, made by ``fer-lightning preprocess``), which replaces path,
    boxes and has_face; without one, clips show the whole frame."""
    boxes = np.tile(np.array([[0, 0, width, height]], np.float32), (num_frames, 1))
    return VideoRecord(video_id=video_id, path=path, subject=subject, split=split, fps=fps,
                       num_frames=num_frames, has_face=np.ones(num_frames, bool), boxes=boxes,
                       values=values, labels=labels, extra={"face_margin": 0.0, **extra})
