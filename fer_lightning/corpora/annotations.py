"""A record's annotations as its challenge scores them: one row per annotation, not per frame.

Per-frame corpora (Aff-Wild2, AFEW-VA, the synthetic corpus, manifests with per-frame labels)
have one annotation per row of the label file: row ``k`` describes frame ``k``, including rows
beyond the frames the video decodes to (kept by the adapter in ``extra["label_rows"]``).
Corpora annotated in time (RECOLA, SEWA, timed manifests) have one per annotation time; the
annotation at ``t`` describes the moment ``t - delay`` of the video (the adapter's label delay),
located between the frames' own times (the face store's, where there is one), so an annotation
between two frames and one before the first frame are both placed exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fer_lightning.corpora.records import VideoRecord
from fer_lightning.evaluation.final import Annotations


def frame_times(record: VideoRecord) -> np.ndarray:
    """Each frame's time in seconds: the face store's decoded times where it gave them, else
    ``index / fps``."""
    times = record.extra.get("frame_times")
    if times is not None and len(times) == record.num_frames:
        return np.asarray(times, np.float64)
    return np.arange(record.num_frames) / float(record.fps)


def _columns(record: VideoRecord, names: Sequence[str]) -> list[int]:
    have = list(record.extra.get("value_names", ("valence", "arousal")))
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"{record.video_id}: no annotations of {missing} (it has {have})")
    return [have.index(n) for n in names]


def _frame_position(t: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """Fractional frame index of moments ``t`` between frames at ``times``, extended at ``fps``
    beyond the first and the last frame."""
    index = np.arange(len(times), dtype=np.float64)
    pos = np.interp(t, times, index)
    pos = np.where(t < times[0], (t - times[0]) * fps, pos)
    return np.where(t > times[-1], index[-1] + (t - times[-1]) * fps, pos)


def annotations_of(record: VideoRecord, names: Sequence[str]) -> Annotations | None:
    """The annotations of ``record`` for targets ``names`` (see the module docs); None for a
    record without continuous labels."""
    if record.values is None or record.num_frames == 0:
        return None
    cols = _columns(record, names)
    fps = float(record.fps)
    if not fps > 0:
        raise ValueError(f"{record.video_id}: frame rate {record.fps}: annotations cannot be put on its frames")
    timed = record.extra.get("timed_labels")
    if timed is not None:
        # to the microsecond: two files of one 40 ms grid that differ in the 9th digit are one grid
        columns = [(np.round(np.asarray(t, np.float64), 6), np.asarray(v, np.float64))
                   for t, v in (timed.columns[c] for c in cols)]
        times = np.unique(np.concatenate([t for t, _ in columns]))
        values = np.full((len(times), len(columns)), np.nan)
        annotated = np.zeros((len(times), len(columns)), bool)
        for d, (t, v) in enumerate(columns):
            values[np.searchsorted(times, t), d] = v
            annotated[np.searchsorted(times, t), d] = True
        position = _frame_position(times - timed.delay, frame_times(record), fps)
        # annotations per second over the span (an irregular merge of two grids included)
        rate = (len(times) - 1) / float(times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else fps
        return Annotations(values=values, position=position, time=times, rate=rate, timed=True,
                           annotated=None if annotated.all() else annotated)
    rows = np.asarray(record.extra.get("label_rows", record.values), np.float64)[:, cols]
    if len(rows) < record.num_frames:  # a label file short of the video: its last frames are unlabelled
        rows = np.concatenate([rows, np.full((record.num_frames - len(rows), len(cols)), np.nan)])
    position = np.arange(len(rows), dtype=np.float64)
    known = frame_times(record)  # rows beyond the decoded frames continue at the video's rate
    times = np.concatenate([known, known[-1] + np.arange(1, len(rows) - len(known) + 1) / fps])[: len(rows)]
    return Annotations(values=rows, position=position, time=times, rate=fps, timed=False)
