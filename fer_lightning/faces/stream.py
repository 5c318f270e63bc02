"""Faces tracked over a frame stream in one pass, with a short, bounded look-ahead.

:class:`StreamingTracker` takes decoded frames in order and hands each frame back, together
with every track's final (interpolated, smoothed) box and landmarks on it, as soon as no later
frame can change them. That happens ``every + smooth // 2`` frames after the last sampled
frame, so at most about ``2 * every + smooth // 2`` frames are held at once, whatever the
video's length: preprocessing decodes each source video once and never keeps it whole.

It computes what linking, interpolating and smoothing over the whole video would (the tests
hold it to that whole-video reference, step by step: ``link_tracks`` -> ``fill_track`` ->
``smooth_boxes``).

* The detector runs on every ``every``-th frame and on the last frame; where two sampled frames
  see different numbers of faces, each frame between them is detected too, so an appearance or
  a disappearance lands on the right frame.
* Detections are linked into tracks by IoU (:class:`~fer_lightning.faces.tracking.TrackLinker`);
  between two detections of a track at most ``every`` frames apart, box and landmarks are
  interpolated linearly; elsewhere the track has no face.
* Boxes and landmarks are averaged over a centred window of ``smooth`` frames that shrinks at
  the ends of each run of face frames, so nothing is pulled across a gap.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fer_lightning.faces.detect import Detection
from fer_lightning.faces.tracking import Track, TrackLinker

NO_MARKS = np.full((5, 2), np.nan, np.float32)


@dataclass(frozen=True)
class FaceOnFrame:
    """A track's final face on one frame: smoothed box (x0, y0, x1, y1) and landmarks (5, 2)."""

    box: np.ndarray
    landmarks: np.ndarray


class StreamingTracker:
    """Online sparse detection, IoU tracking, interpolation and smoothing (see module docs).

    Feed frames with :meth:`push`, then call :meth:`finish`; both yield
    ``(frame_index, frame, {track_id: FaceOnFrame})`` for frames whose faces are final, in
    order, each frame exactly once. After :meth:`finish`, :attr:`tracks` holds every track with
    its raw detections and :meth:`track_frames` its per-frame arrays.
    """

    def __init__(
        self,
        detect: Callable[[np.ndarray], list[Detection]],
        every: int = 5,
        smooth: int = 5,
        iou_threshold: float = 0.3,
    ) -> None:
        if every < 1 or smooth < 1:
            raise ValueError("every and smooth must be >= 1")
        self.detect = detect
        self.every = every
        self.half = smooth // 2
        self.linker = TrackLinker(iou_threshold, max_gap=every)
        self.num_frames = 0
        self.detector_calls = 0
        self._buffer: deque[tuple[int, np.ndarray]] = deque()  # frames not yet handed back
        self._pending: list[int] = []  # frames since the last sampled one
        self._last_sampled: int | None = None
        self._last_counts: int | None = None
        self._det_frames: dict[int, list[int]] = {}  # track id -> its detection frames, ascending
        self._out: dict[int, dict[int, FaceOnFrame]] = {}  # track id -> frame -> final face
        self._finished = False

    @property
    def tracks(self) -> list[Track]:
        return self.linker.tracks

    @property
    def held(self) -> int:
        """Frames held right now (bounded; see the module docs)."""
        return len(self._buffer)

    def push(self, frame: np.ndarray) -> Iterator[tuple[int, np.ndarray, dict[int, FaceOnFrame]]]:
        """Take the next frame of the stream; yield the frames that became final."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        i = self.num_frames
        self.num_frames += 1
        self._buffer.append((i, frame))
        if i % self.every:
            self._pending.append(i)
        else:
            self._sample(i, frame)
        yield from self._emit(self._last_sampled - self.every - self.half if self._last_sampled is not None else -1)

    def finish(self) -> Iterator[tuple[int, np.ndarray, dict[int, FaceOnFrame]]]:
        """End of stream: sample the last frame and yield every frame still held."""
        if self._pending:  # the last frame is always sampled
            i = self._pending.pop()
            self._sample(i, self._frame(i))
        self._finished = True
        yield from self._emit(self.num_frames - 1)

    def track_frames(self, track_id: int, num_frames: int | None = None) -> tuple[np.ndarray, ...]:
        """Dense per-frame arrays of one track: has_face (N,), boxes (N, 4), landmarks (N, 5, 2),
        scores (N,) where the detector ran, detected (N,); NaN where there is no value."""
        n = self.num_frames if num_frames is None else num_frames
        has = np.zeros(n, bool)
        boxes = np.full((n, 4), np.nan, np.float32)
        marks = np.full((n, 5, 2), np.nan, np.float32)
        scores = np.full(n, np.nan, np.float32)
        detected = np.zeros(n, bool)
        for f, face in self._out.get(track_id, {}).items():
            has[f], boxes[f], marks[f] = True, face.box, face.landmarks
        for f, d in self.tracks[track_id].detections.items():
            scores[f], detected[f] = d.score, True
        return has, boxes, marks, scores, detected

    # -- internals ---------------------------------------------------------------------------

    def _frame(self, i: int) -> np.ndarray:
        first = self._buffer[0][0]
        return self._buffer[i - first][1]

    def _link(self, i: int, dets: list[Detection]) -> None:
        self.linker.add(i, dets)
        for t in self.tracks:
            if i in t.detections:
                self._det_frames.setdefault(t.track_id, []).append(i)

    def _sample(self, i: int, frame: np.ndarray) -> None:
        dets = self.detect(frame)
        self.detector_calls += 1
        if self._last_counts is not None and self._last_counts != len(dets):
            for j in self._pending:
                self.detector_calls += 1
                self._link(j, self.detect(self._frame(j)))
        self._link(i, dets)
        self._pending, self._last_sampled, self._last_counts = [], i, len(dets)

    def _raw(self, track_id: int, g: int) -> Detection | tuple[np.ndarray, np.ndarray] | None:
        """A track's unsmoothed box and landmarks on frame ``g``: its detection there, or the
        interpolation between the detections around it when those are <= ``every`` apart."""
        t = self.tracks[track_id]
        if g in t.detections:
            d = t.detections[g]
            return d.box, (d.landmarks if d.landmarks is not None else NO_MARKS)
        frames = self._det_frames.get(track_id, [])
        k = bisect.bisect_left(frames, g)
        if k == 0 or k == len(frames):
            return None
        a, b = frames[k - 1], frames[k]
        if b - a > self.every:
            return None
        w = np.float32((g - a) / (b - a))
        da, db = t.detections[a], t.detections[b]
        ma = da.landmarks if da.landmarks is not None else NO_MARKS
        mb = db.landmarks if db.landmarks is not None else NO_MARKS
        return (1 - w) * da.box + w * db.box, (1 - w) * ma + w * mb

    def _smoothed(self, track_id: int, f: int) -> FaceOnFrame | None:
        here = self._raw(track_id, f)
        if here is None:
            return None
        window = [here]
        for step in (-1, 1):  # widen to both sides while the run of face frames lasts
            for g in range(f + step, f + step * (self.half + 1), step):
                if g < 0 or g >= self.num_frames:
                    break
                raw = self._raw(track_id, g)
                if raw is None:
                    break
                window.append(raw)
        box = np.mean(np.stack([w[0] for w in window]).astype(np.float64), axis=0).astype(np.float32)
        marks = np.mean(np.stack([w[1] for w in window]).astype(np.float64), axis=0).astype(np.float32)
        return FaceOnFrame(box, marks)

    def _emit(self, upto: int) -> Iterator[tuple[int, np.ndarray, dict[int, FaceOnFrame]]]:
        while self._buffer and self._buffer[0][0] <= upto:
            f, frame = self._buffer[0]
            faces = {}
            for t in self.tracks:
                face = self._smoothed(t.track_id, f)
                if face is not None:
                    faces[t.track_id] = face
                    self._out.setdefault(t.track_id, {})[f] = face
            self._buffer.popleft()
            yield f, frame, faces
