"""What every real-corpus adapter builds: a record whose face box is the whole frame (the
corpus's videos and their facts come from :class:`~fer_lightning.corpora.context.AdapterContext`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_lightning.corpora.records import VideoRecord
from fer_lightning.store.read import whole_crop_boxes


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
