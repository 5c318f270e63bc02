"""Reading the face-clip store (layout: :mod:`fer_lightning.store.write`): a corpus's video
records pointed at their aligned face videos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np


def attach_store(records: list, store: str | Path, tolerance: int = 5, strict: bool = False
                 ) -> tuple[list, list[tuple[str, str]]]:
    """Point video records at their aligned face videos in ``store``.

    Each record keeps its labels; its path becomes the store's face video, its box every
    frame's whole crop, and ``has_face`` what preprocessing found. Returns the updated records
    and ``(video_id, reason)`` for each video left out, which callers report as skipped:

    - not in the store (not preprocessed, or failed there);
    - a face video whose frame count differs from the corpus's by more than ``tolerance``
      frames (labels would no longer line up with frames: was the store made from another
      video?). With ``strict`` that is a ValueError instead.

    Within ``tolerance`` (a container that lists a few more frames than FFmpeg decodes, as
    decord's count can), the store's frames are the truth: labels are cut to them, or padded
    without a label (masked), and the record notes the difference in ``extra``. The store's
    per-frame times go into ``extra["frame_times"]`` (labels in time are put on them by
    :func:`fer_lightning.corpora.labels.labels_on_store_times`).
    """
    import pandas as pd

    store = Path(store)
    out, left_out = [], []
    for rec in records:
        meta_path = store / "meta" / f"{rec.video_id}.csv"
        video = store / "videos" / f"{rec.video_id}.mp4"
        if not (meta_path.exists() and video.exists()):
            left_out.append((rec.video_id, f"not in the face store {store}"))
            continue
        meta = pd.read_csv(meta_path, usecols=lambda c: c in ("frame_index", "time_s", "has_face"))
        n = len(meta)
        if abs(n - rec.num_frames) > tolerance:
            reason = (f"the face store holds {n} frames but the corpus has {rec.num_frames} (more than "
                      f"data.store_length_tolerance={tolerance} apart); was {meta_path} made from another video?")
            if strict:
                raise ValueError(f"{rec.video_id}: {reason}")
            left_out.append((rec.video_id, reason))
            continue
        side = _store_side(store)
        boxes = np.tile(np.array([[0, 0, side, side]], np.float32), (n, 1))
        extra = dict(rec.extra)
        if "time_s" in meta.columns:  # each decoded frame's own time (variable frame rates too)
            extra["frame_times"] = meta["time_s"].to_numpy(np.float64)
        if n != rec.num_frames:
            extra["frame_count_note"] = f"corpus {rec.num_frames} frames, face store {n}: labels fitted to the store"
        out.append(dataclasses.replace(rec, path=video, num_frames=n, boxes=boxes,
                                       has_face=meta["has_face"].to_numpy(bool),
                                       values=_fit_rows(rec.values, n, np.nan),
                                       labels=_fit_rows(rec.labels, n, -1), extra=extra))
    return out, left_out


def _fit_rows(array: np.ndarray | None, n: int, fill) -> np.ndarray | None:
    """``array`` cut to ``n`` rows, or padded with ``fill``."""
    if array is None or len(array) == n:
        return array
    if len(array) > n:
        return array[:n]
    pad = np.full((n - len(array), *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, pad])


def _store_side(store: Path) -> int:
    report = store / "report.json"
    if report.exists():
        return int(json.loads(report.read_text())["settings"]["size"])
    from fer_lightning.store.write import PreprocessConfig

    return PreprocessConfig().size
