"""Putting annotations on video frames: resampling, delay, scale, validity, length policy.

Corpora annotate affect on their own clock (RECOLA every 40 ms, SEWA every 100 ms, Aff-Wild2
once per video frame), on their own scale, with their own invalid markers. Everything here
turns such annotations into one row per video frame, scaled to [-1, 1], NaN where a frame has
no valid label, and counts why frames lost their label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS = ("nearest", "linear")


@dataclass
class LabelCounts:
    """Why frames have or lack a label (one count per frame and target row)."""

    frames: int = 0
    labelled: int = 0
    invalid_marker: int = 0  # the corpus's own "no label" value (-5, NaN in the file)
    out_of_range: int = 0  # outside the corpus's scale
    not_annotated: int = 0  # no annotation near the frame's time (before, after or in a gap)
    length_mismatch: int = 0  # per-frame files: rows missing at the end (padded)

    def __iadd__(self, other: LabelCounts) -> LabelCounts:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class AlignedLabels:
    """Per-frame targets (N, D) float32 in [-1, 1], NaN where invalid, and the counts."""

    values: np.ndarray
    counts: LabelCounts = field(default_factory=LabelCounts)


def scale_to_unit(values: np.ndarray, low: float, high: float, invalid: float | None = None,
                  counts: LabelCounts | None = None) -> np.ndarray:
    """Map ``[low, high]`` linearly onto ``[-1, 1]``; the ``invalid`` marker, NaN and values
    outside the range (beyond rounding) become NaN and are counted."""
    v = np.array(values, dtype=np.float64, copy=True)
    marker = np.isnan(v) if invalid is None else (np.isnan(v) | (v == invalid))
    tol = 1e-6 * (high - low)
    outside = ~marker & ((v < low - tol) | (v > high + tol))
    v = 2.0 * (np.clip(v, low, high) - low) / (high - low) - 1.0
    v[marker | outside] = np.nan
    if counts is not None:
        counts.invalid_marker += int(marker.any(axis=-1).sum()) if v.ndim > 1 else int(marker.sum())
        counts.out_of_range += int(outside.any(axis=-1).sum()) if v.ndim > 1 else int(outside.sum())
    return v.astype(np.float32)


def align_to_frames(
    times: np.ndarray,
    values: np.ndarray,
    frame_times: np.ndarray,
    method: str = "nearest",
    delay: float = 0.0,
    tolerance: float | None = None,
) -> AlignedLabels:
    """Resample annotations taken at ``times`` (seconds, strictly increasing) onto ``frame_times``.

    Args:
        values: (M, D) annotations already on the [-1, 1] scale, NaN where invalid.
        method: ``nearest`` takes the annotation closest in time; ``linear`` interpolates
            between the two around the frame (NaN if either is NaN) where they are at most
            1.5 annotation steps apart, and takes the nearest one elsewhere.
        delay: annotation delay in seconds: raters react a few seconds after the face does, so
            the annotation at time ``t + delay`` describes the frame at ``t``.
        tolerance: how far (seconds) a frame may be from the annotation it takes (default:
            half the median annotation step); farther frames, e.g. before the first or after
            the last annotation or inside missing rows, get no label.
    """
    if method not in METHODS:
        raise ValueError(f"label resampling method must be one of {METHODS}, got {method!r}")
    times = np.asarray(times, np.float64) - delay
    values = np.asarray(values, np.float64).reshape(len(times), -1)
    frame_times = np.asarray(frame_times, np.float64)
    n, d = len(frame_times), values.shape[1]
    out = np.full((n, d), np.nan)
    counts = LabelCounts(frames=n)
    if len(times) == 0 or n == 0:
        counts.not_annotated = n
        return AlignedLabels(out.astype(np.float32), counts)
    if np.any(np.diff(times) <= 0):
        raise ValueError("annotation times must be strictly increasing")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    tol = (step / 2 if tolerance is None else tolerance) + 1e-9
    right = np.clip(np.searchsorted(times, frame_times), 0, len(times) - 1)  # first at or after
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(frame_times - times[left]) <= np.abs(times[right] - frame_times), left, right)
    near = np.abs(frame_times - times[nearest]) <= tol
    out[near] = values[nearest[near]]
    if method == "linear":
        span = times[right] - times[left]
        between = (times[left] <= frame_times) & (frame_times <= times[right]) & (span > 0) & (span <= 1.5 * step + 1e-9)
        w = np.divide(frame_times - times[left], span, out=np.zeros(n), where=span > 0)[:, None]
        # an exact hit takes that annotation alone: 0 * NaN would spread an invalid neighbour
        interp = np.where(w <= 0, values[left], np.where(w >= 1, values[right], (1 - w) * values[left] + w * values[right]))
        out[between] = interp[between]
        near |= between
    counts.not_annotated = int((~near).sum())
    counts.labelled = int(np.isfinite(out).all(axis=1).sum())
    return AlignedLabels(out.astype(np.float32), counts)


class LabelLengthError(ValueError):
    """A per-frame label file whose length differs from the video's beyond the tolerance."""


def match_length(values: np.ndarray, num_frames: int, video_id: str, tolerance: int,
                 counts: LabelCounts | None = None) -> np.ndarray:
    """Make per-frame labels as long as the video: truncate extra rows or pad missing ones
    with NaN when the difference is at most ``tolerance`` frames, else raise
    :class:`LabelLengthError` naming the video and both lengths."""
    diff = len(values) - num_frames
    if abs(diff) > tolerance:
        raise LabelLengthError(
            f"{video_id}: the label file has {len(values)} rows but the video has {num_frames} frames "
            f"(difference {diff:+d}, tolerance {tolerance})"
        )
    if diff >= 0:
        return values[:num_frames]
    pad = np.full((-diff, *values.shape[1:]), np.nan, dtype=values.dtype)
    if counts is not None:
        counts.length_mismatch += -diff
    return np.concatenate([values, pad])


def read_arff(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Attribute names and data rows (strings) of a Weka ARFF file, as AVEC ships gold
    standards. The header's length varies; comments (``%``) and blank lines are skipped,
    keywords are case-insensitive, quoted values lose their quotes."""
    import csv

    names: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            if not in_data:
                low = s.lower()
                if low.startswith("@attribute"):
                    parts = s.split(None, 2)
                    if len(parts) < 3:
                        raise ValueError(f"{path}: malformed attribute line: {s!r}")
                    names.append(parts[1].strip("'\""))
                elif low.startswith("@data"):
                    in_data = True
                continue
            row = next(csv.reader([s], skipinitialspace=True, quotechar="'"))
            if len(row) != len(names):
                raise ValueError(f"{path}: a data row has {len(row)} values, the header names {len(names)}: {s!r}")
            rows.append(row)
    if not in_data:
        raise ValueError(f"{path}: no @data section; is this an ARFF file?")
    return names, rows


@dataclass
class TimedLabels:
    """Annotations as the corpus gives them, in time: per target column its ``(times, values)``
    (seconds; values on [-1, 1], NaN where invalid) and how they were put on frames. Kept on a
    record (``extra["timed_labels"]``) so that the labels can be put on other frame times: the
    face store's, which are each decoded frame's own time."""

    columns: list[tuple[np.ndarray, np.ndarray]]
    method: str = "linear"
    delay: float = 0.0
    tolerance: float | None = None

    def on_frames(self, frame_times: np.ndarray) -> AlignedLabels:
        """The labels of frames at ``frame_times`` (N, D), as the adapter aligned them."""
        counts = LabelCounts(frames=len(frame_times))
        cols = []
        for times, values in self.columns:
            aligned = align_to_frames(times, values, frame_times, self.method, self.delay, self.tolerance)
            cols.append(aligned.values[:, 0])
        values = np.stack(cols, axis=1) if cols else np.zeros((len(frame_times), 0), np.float32)
        counts.not_annotated = int(np.isnan(values).all(axis=1).sum()) if cols else len(frame_times)
        return AlignedLabels(values.astype(np.float32), counts)


def labels_on_store_times(record):
    """A record whose labels came from timed annotations (``extra["timed_labels"]``) and whose
    frames come from a face store with per-frame times (``extra["frame_times"]``): its labels
    put on those times, so a variable-frame-rate source is labelled where each frame really is.
    Other records are returned as they are."""
    import dataclasses

    timed, frame_times = record.extra.get("timed_labels"), record.extra.get("frame_times")
    if timed is None or frame_times is None or len(frame_times) != record.num_frames:
        return record
    aligned = timed.on_frames(np.asarray(frame_times, np.float64))
    extra = dict(record.extra, labels_on="the face store's per-frame times")
    return dataclasses.replace(record, values=aligned.values, extra=extra)


def labels_at_annotation_times(record):
    """A record whose labels came from timed annotations (``extra["timed_labels"]``), labelled
    the way the corpus is scored: each annotation once, with its own value, on the frame
    nearest its time (after the adapter's ``delay``; frame times from the face store where
    there is one, else ``index / fps``), every other frame unlabelled. What evaluation splits
    use, so that a RECOLA recording counts its 40 ms gold standard and a SEWA one its 100 ms
    annotations, whatever the video's frame rate; training keeps the labels resampled onto
    every frame. An annotation more than half a frame outside the video is not scored (it
    describes no frame), and where two fall on one frame the nearer one is kept. Records
    without timed annotations are returned as they are; ``extra["annotations_scored"]``
    counts the annotations kept per target."""
    import dataclasses

    timed = record.extra.get("timed_labels")
    if timed is None or record.values is None or record.num_frames == 0:
        return record
    frame_times = np.asarray(record.extra.get("frame_times", np.arange(record.num_frames) / record.fps), np.float64)
    if len(frame_times) != record.num_frames:
        return record
    half = 0.5 * (float(np.median(np.diff(frame_times))) if len(frame_times) > 1 else 1.0 / record.fps)
    values = np.full((record.num_frames, len(timed.columns)), np.nan, np.float32)
    kept = []
    for d, (times, vals) in enumerate(timed.columns):
        t = np.asarray(times, np.float64) - timed.delay
        right = np.clip(np.searchsorted(frame_times, t), 0, len(frame_times) - 1)
        left = np.clip(right - 1, 0, len(frame_times) - 1)
        frame = np.where(np.abs(t - frame_times[left]) <= np.abs(frame_times[right] - t), left, right)
        gap = np.abs(t - frame_times[frame])
        inside = (t >= frame_times[0] - half - 1e-9) & (t <= frame_times[-1] + half + 1e-9)
        order = np.argsort(gap, kind="stable")[::-1]  # farthest first, so the nearest is written last
        order = order[inside[order]]
        values[frame[order], d] = np.asarray(vals, np.float32)[order]
        kept.append(int(len(np.unique(frame[inside]))))
    extra = dict(record.extra, annotations_scored=kept)
    return dataclasses.replace(record, values=values, extra=extra)
