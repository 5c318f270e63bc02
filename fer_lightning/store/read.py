"""Reading the face-clip store (layout: :mod:`fer_lightning.store.write`): a corpus's video
records pointed at their aligned face videos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np


def attach_store(records: list, store: str | Path) -> tuple[list, list[str]]:
    """Point video records at their aligned face videos in ``store``.

    Each record keeps its labels; its path becomes the store's face video, its box every
    frame's whole crop, and ``has_face`` what preprocessing found. Returns the updated records
    and the ids of videos the store lacks (not preprocessed, or failed there), which callers
    report as skipped. A store whose frame count differs from the record's is an error: labels
    would no longer line up with frames.
    """
    import pandas as pd

    store = Path(store)
    out, missing = [], []
    for rec in records:
        meta_path = store / "meta" / f"{rec.video_id}.csv"
        video = store / "videos" / f"{rec.video_id}.mp4"
        if not (meta_path.exists() and video.exists()):
            missing.append(rec.video_id)
            continue
        meta = pd.read_csv(meta_path, usecols=["frame_index", "has_face"])
        if len(meta) != rec.num_frames:
            raise ValueError(
                f"{rec.video_id}: the face store holds {len(meta)} frames but the corpus has {rec.num_frames}; "
                f"was {meta_path} made from another video?"
            )
        side = _store_side(store)
        boxes = np.tile(np.array([[0, 0, side, side]], np.float32), (rec.num_frames, 1))
        out.append(dataclasses.replace(rec, path=video, boxes=boxes, has_face=meta["has_face"].to_numpy(bool)))
    return out, missing


def _store_side(store: Path) -> int:
    report = store / "report.json"
    if report.exists():
        return int(json.loads(report.read_text())["settings"]["size"])
    from fer_lightning.store.write import PreprocessConfig

    return PreprocessConfig().size
