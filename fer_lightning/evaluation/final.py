"""The final predictions: the one function whose output is both scored and written.

A challenge scores one prediction per annotation: ABAW one per row of a video's label file (one
per video frame), AVEC one per gold-standard time (RECOLA every 40 ms, SEWA every 100 ms),
whatever frames the video decodes to. :func:`final_predictions` turns the model's per-frame
outputs into exactly those predictions:

1. frames without a face are filled by the ``faceless`` rule (:mod:`fer_lightning.metrics.faceless`);
2. each annotation takes the prediction of the moment of the video it describes (its time less
   the label delay), interpolated linearly between the two frames around it, so annotations
   denser than the frames are each predicted; an annotation that describes a moment before the
   first frame (the first ``delay`` seconds) or after the last decoded frame takes that edge
   frame's prediction, and is counted;
3. the post-processing fitted on the development split (delay, smoothing, bias, scale) runs on
   the annotation series, as the AVEC baselines run it;
4. values are clipped to the corpus's label range.

Evaluation reports the scores of this output, and every prediction file is written from it, so a
file scored by the organisers' tools gives the number in the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from fer_lightning.evaluation.postprocess import PostProcessor, VideoTrace
from fer_lightning.metrics.faceless import fill_video

LABEL_RANGE = (-1.0, 1.0)  # every adapter puts labels on [-1, 1], the ABAW and AVEC range


@dataclass
class Annotations:
    """One video's annotations as its challenge scores them, one row each.

    ``values`` (M, D): the labels, NaN where a dimension is not annotated (each dimension is
    scored where it is valid); ``position`` (M,): the video frame each one describes, fractional
    (after the label delay; outside ``[0, frames - 1]`` for an annotation before the first or
    after the last decoded frame); ``time`` (M,): each annotation's own time in seconds, what the
    files carry; ``rate``: annotations per second; ``timed``: annotated in time (RECOLA, SEWA),
    else one row per video frame (Aff-Wild2, AFEW-VA)."""

    values: np.ndarray
    position: np.ndarray
    time: np.ndarray
    rate: float
    timed: bool = False
    annotated: np.ndarray | None = None  # (M, D): the row is on that dimension's own grid (None: all are)

    def rows_of(self, d: int) -> np.ndarray:
        """The rows dimension ``d`` annotates (what its own gold-standard file lists)."""
        return np.ones(len(self.time), bool) if self.annotated is None else self.annotated[:, d]

    def outside(self, num_frames: int) -> tuple[int, int]:
        """Annotations that describe a moment before the first frame, and after the last of
        ``num_frames`` decoded frames (more than half a frame away)."""
        tol = 1e-6  # a time exactly half a frame out is still the edge frame's
        return int((self.position < -0.5 - tol).sum()), int((self.position > num_frames - 0.5 + tol).sum())


@dataclass
class FramePredictions:
    """A model's outputs on the frames of one video: ``index`` (F,) the frames predicted
    (ascending), ``pred`` (F, D) and ``has_face`` (F,)."""

    index: np.ndarray
    pred: np.ndarray
    has_face: np.ndarray


def at_annotations(frames: FramePredictions, annotations: Annotations, faceless: str, subject: str = ""
                   ) -> VideoTrace:
    """Steps 1 and 2 of the module docs: the prediction of each annotation (unclipped, not
    post-processed), with its label and whether its nearest frame shows a face."""
    index = np.asarray(frames.index, np.int64)
    pred = np.asarray(frames.pred, np.float64)
    face = np.asarray(frames.has_face, bool)
    if faceless != "model":
        pred = fill_video(index, pred, face, faceless)
    x = index.astype(np.float64)
    out = np.stack([np.interp(annotations.position, x, pred[:, d]) for d in range(pred.shape[1])], axis=1)
    nearest = np.clip(np.searchsorted(x, annotations.position), 0, len(x) - 1)
    before = np.clip(nearest - 1, 0, len(x) - 1)
    nearest = np.where(np.abs(x[before] - annotations.position) <= np.abs(x[nearest] - annotations.position),
                       before, nearest)
    true = np.asarray(annotations.values, np.float64)
    return VideoTrace(pred=out, true=true, mask=np.isfinite(true).any(axis=1), fps=float(annotations.rate),
                      subject=subject, has_face=face[nearest])


def final_predictions(frames: Mapping[str, FramePredictions], annotations: Mapping[str, Annotations],
                      faceless: str, post: PostProcessor | None = None, subjects: Mapping[str, str] | None = None,
                      label_range: tuple[float, float] = LABEL_RANGE, upto: str = "scale") -> dict[str, VideoTrace]:
    """The final prediction of every annotation of every video (see the module docs), with its
    label: what evaluation scores and what every prediction file holds. ``post``: the
    post-processing fitted on the development split's raw final predictions (None: the raw
    ones), applied up to step ``upto``; its output is clipped again."""
    subjects = subjects or {}
    low, high = label_range
    for vid in sorted(frames):
        bad = ~np.isfinite(np.asarray(frames[vid].pred, np.float64)).all(axis=1)
        if bad.any():
            raise ValueError(f"{vid}: the model's output is not a number on {int(bad.sum())} frames (first: frame "
                             f"{int(np.asarray(frames[vid].index)[bad][0])}); nothing is scored or written")
    traces = {vid: at_annotations(frames[vid], annotations[vid], faceless, subjects.get(vid, ""))
              for vid in sorted(frames) if vid in annotations}
    traces = {vid: replace(t, pred=np.clip(t.pred, low, high)) for vid, t in traces.items()}
    if post is None:
        return traces
    return {vid: replace(t, pred=np.clip(t.pred, low, high)) for vid, t in post.apply(traces, upto).items()}


def videos_without_face(frames: Mapping[str, FramePredictions]) -> list[str]:
    """The videos in which no frame shows a face: every prediction of theirs is the model's
    output on black frames (no face frame to fill from), so reports name them."""
    return sorted(vid for vid, f in frames.items() if not np.asarray(f.has_face, bool).any())
