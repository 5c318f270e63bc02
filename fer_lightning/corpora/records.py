"""What a dataset adapter hands to the clip layer: one record per video, labels per frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_lightning.media.video import ReaderCache


@dataclass
class VideoRecord:
    """One video with everything known about each of its frames.

    Arrays have one row per video frame. ``values`` holds continuous targets (NaN where a
    frame has no valid label) and ``labels`` categorical ones (-1 where invalid); an adapter
    fills whichever its corpus has. ``boxes`` are face boxes in frame pixels (x0, y0, x1, y1),
    NaN where ``has_face`` is false. ``frames`` is where the frames come from when they are not
    the video file at ``path``: a list of images read as a video (image corpora, see
    :mod:`fer_lightning.media.images`), with a ``read(indices)`` giving uint8 (N, H, W, 3).
    """

    video_id: str
    path: Path
    subject: str
    split: str
    fps: float
    num_frames: int
    has_face: np.ndarray
    boxes: np.ndarray
    values: np.ndarray | None = None
    labels: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    frames: object | None = None

    def __post_init__(self) -> None:
        n = self.num_frames
        for name in ("has_face", "boxes", "values", "labels"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(
                    f"{self.video_id}: {name} has {len(arr)} rows but the video has {n} frames"
                )


def record_frames(rec: VideoRecord, readers: ReaderCache, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` of ``rec`` as uint8 (N, H, W, 3): from the record's own frame source
    (a list of images), else decoded from its video with ``readers``."""
    if rec.frames is not None:
        return rec.frames.read(indices)
    return readers.read(rec.path, indices)
