"""Settings of ``fer-lightning preprocess``, in a module of their own: the store's reader, the
command line (``--help`` without importing the writer) and predict's crops read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of a preprocessing run (written into report.json).

    Args:
        detect_every: run the face detector every K frames (tracking fills the frames between)
        size: side of the aligned face crop, pixels (even, >= 16)
        margin: extra context around the aligned face, as a fraction of its size
        smooth: box smoothing window, frames (1: off)
        detector: face detector, by name (mtcnn)
        min_face_size: smallest face searched, pixels
        crf: H.264 quality of the face videos (lower: better, larger)
        gop: H.264 keyframe interval of the face videos, frames (short: fast random access)
        faces: main: the main subject only (largest, most persistent face); all: one face video per
            face seen for min_track_seconds (<video>_left/_right for two, as Aff-Wild2 names them)
        min_track_seconds: with faces all: the shortest face kept, seconds
        max_track_writers: with faces all: face videos written at once
        two_person: the two-person videos (Aff-Wild2's): a folder searched for <video>_left.txt /
            <video>_right.txt annotation files, or a text file of video ids, one per line. Those
            videos get <video>_left and <video>_right (the two most persistent faces, left to
            right) and every other video keeps what faces says, so a stranger passing through a
            single-subject video renames nothing
    """

    detect_every: int = 5
    size: int = 112
    margin: float = 0.15
    smooth: int = 5
    detector: str = "mtcnn"
    min_face_size: int = 40
    crf: int = 18
    gop: int = 16
    faces: Literal["main", "all"] = "main"
    min_track_seconds: float = 1.0
    max_track_writers: int = 8
    two_person: str | None = None
