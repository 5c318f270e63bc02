"""The whole-video form of face tracking, the reference the streaming tracker is held to:
link every detection into tracks, spread a track over every frame (interpolating between
detections), smooth boxes inside runs of face frames, pick the main subject. Written plainly,
one step after another, so that a test can trust it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_lightning.faces.detect import Detection
from fer_lightning.faces.tracking import Track, TrackLinker
from fer_lightning.metrics.faceless import face_runs


def link_tracks(
    detections: dict[int, list[Detection]], iou_threshold: float = 0.3, max_gap: int = 10
) -> list[Track]:
    """Link all detections of a video (frame index -> detections) into tracks; see :class:`TrackLinker`."""
    linker = TrackLinker(iou_threshold, max_gap)
    for f in sorted(detections):
        linker.add(f, detections[f])
    return linker.tracks


@dataclass
class FaceTrackFrames:
    """One track spread over every frame of a video."""

    track_id: int
    has_face: np.ndarray  # (N,) bool
    boxes: np.ndarray  # (N, 4) float32, NaN without a face
    landmarks: np.ndarray  # (N, 5, 2) float32, NaN without a face
    scores: np.ndarray  # (N,) float32, detector score; interpolated frames carry NaN
    detected: np.ndarray  # (N,) bool, true where the detector itself ran and found this face


def fill_track(track: Track, num_frames: int, max_step: int) -> FaceTrackFrames:
    """Per-frame boxes and landmarks: detections where present, linear interpolation between
    two detections at most ``max_step`` frames apart, and no face elsewhere."""
    n = num_frames
    has = np.zeros(n, bool)
    boxes = np.full((n, 4), np.nan, np.float32)
    marks = np.full((n, 5, 2), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    detected = np.zeros(n, bool)
    frames = track.frames
    for f in frames:
        d = track.detections[f]
        has[f], detected[f], boxes[f], scores[f] = True, True, d.box, d.score
        if d.landmarks is not None:
            marks[f] = d.landmarks
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        if 1 < b - a <= max_step:
            w = ((np.arange(a + 1, b) - a) / (b - a)).astype(np.float32)
            boxes[a + 1 : b] = (1 - w)[:, None] * boxes[a] + w[:, None] * boxes[b]
            marks[a + 1 : b] = (1 - w)[:, None, None] * marks[a] + w[:, None, None] * marks[b]
            has[a + 1 : b] = True
    return FaceTrackFrames(track.track_id, has, boxes, marks, scores, detected)


def smooth_boxes(boxes: np.ndarray, has_face: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average of boxes (or landmarks) inside each run of face frames.

    The window shrinks at a run's ends, so no value is pulled across a gap or from a frame
    without a face.
    """
    out = boxes.copy()
    if window <= 1:
        return out
    half = window // 2
    flat = boxes.reshape(len(boxes), -1)
    res = out.reshape(len(out), -1)
    for start, stop in face_runs(has_face):
        seg = flat[start:stop].astype(np.float64)
        csum = np.concatenate([np.zeros((1, seg.shape[1])), np.cumsum(seg, axis=0)])
        idx = np.arange(stop - start)
        lo = np.maximum(idx - half, 0)
        hi = np.minimum(idx + half + 1, stop - start)
        res[start:stop] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return out


def main_subject(tracks: Sequence[Track]) -> Track | None:
    """The track most likely to be the subject: the most persistent and largest face."""
    return max(tracks, key=lambda t: t.presence(), default=None)
