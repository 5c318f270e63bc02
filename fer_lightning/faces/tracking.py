"""From sparse detections to one face track per subject, with a box on every frame.

Preprocessing is offline, so it can look ahead: the detector runs on every ``k``-th frame,
detections are linked into tracks by box overlap (IoU), boxes of frames in between are
interpolated from the two detections around them, and where a track appears or disappears
between two sampled frames the frames in between are detected one by one, so the edge of a
face/no-face change lands on the right frame. Smoothing never crosses a gap: a frame without
a face keeps its place with ``has_face = false``.

This module holds the pieces preprocessing runs (track linking, face runs, grouping a face's
tracks); :class:`~fer_lightning.faces.stream.StreamingTracker` does the rest in one pass, and
the tests hold it to a whole-video reference written out step by step (tests/tracking_reference.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fer_lightning.faces.detect import Detection


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """Detections of one face over time, keyed by frame index (ascending)."""

    track_id: int
    detections: dict[int, Detection] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.detections)

    def last(self) -> tuple[int, Detection]:
        f = next(reversed(self.detections))  # detections are added in ascending frame order
        return f, self.detections[f]

    def span(self) -> tuple[int, int]:
        """First and last frame with a detection."""
        return next(iter(self.detections)), next(reversed(self.detections))

    def median_box(self) -> np.ndarray:
        return np.median(np.stack([d.box for d in self.detections.values()]), axis=0)

    def presence(self) -> float:
        """Main-subject score: frames seen times median box area (large and persistent wins)."""
        areas = [d.area for d in self.detections.values()]
        return len(areas) * float(np.median(areas))


class TrackLinker:
    """Greedy IoU linking of per-frame detections into tracks, fed one frame at a time in
    ascending frame order (so it runs online, as frames stream past).

    A detection joins the open track whose last box overlaps it most (IoU above
    ``iou_threshold``), provided that track was last seen at most ``max_gap`` frames ago;
    otherwise it starts a new track.
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int = 10) -> None:
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self.tracks: list[Track] = []

    def add(self, frame: int, detections: Sequence[Detection]) -> None:
        open_tracks = [t for t in self.tracks if frame - t.last()[0] <= self.max_gap and t.last()[0] < frame]
        taken: set[int] = set()
        for det in sorted(detections, key=lambda d: -d.score):
            best, best_iou = None, self.iou_threshold
            for t in open_tracks:
                if t.track_id in taken:
                    continue
                o = iou(t.last()[1].box, det.box)
                if o > best_iou:
                    best, best_iou = t, o
            if best is None:
                best = Track(track_id=len(self.tracks))
                self.tracks.append(best)
            best.detections[frame] = det
            taken.add(best.track_id)


def group_tracks(tracks: Sequence[Track], max_shift: float = 1.0) -> list[list[Track]]:
    """Tracks that are one face, most present face first.

    The linker starts a new track whenever a face is lost for longer than its gap (a head turned
    away, a hand over the face), so one subject can leave several tracks. Taking tracks by
    presence, a track joins an earlier group when it overlaps none of that group's tracks in
    time and its median box centre lies within ``max_shift`` median box widths of the group's
    first (most present) track; otherwise it starts a group of its own. Groups are ordered by
    their summed presence. Identities across gaps are a heuristic here, not face recognition.
    """
    groups: list[list[Track]] = []
    for t in sorted(tracks, key=lambda t: -t.presence()):
        lo, hi = t.span()
        centre = t.median_box().reshape(2, 2).mean(axis=0)
        for g in groups:
            ref = g[0].median_box()
            near = np.linalg.norm(centre - ref.reshape(2, 2).mean(axis=0)) <= max_shift * (ref[2] - ref[0])
            if near and all(hi < u.span()[0] or lo > u.span()[1] for u in g):
                g.append(t)
                break
        else:
            groups.append([t])
    return sorted(groups, key=lambda g: -sum(t.presence() for t in g))
