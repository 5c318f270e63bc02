"""Users' own data: a manifest of videos with one label file each (see data/README.md).

``manifest.csv`` columns: ``video`` (path, relative to the manifest), ``subject``, ``labels``
(path of the label file), optional ``split`` (train/val/test; when the column is missing or
empty, subject-disjoint splits are drawn). A label file is a CSV with a ``time`` column
(seconds) or a ``frame`` column (0-based video frame index) and one column per target.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import LabelCounts, TimedLabels, align_to_frames, scale_to_unit
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import SPLIT_NAMES, subject_splits
from fer_lightning.corpora.tables import read_table
from fer_lightning.media.video import VideoReadError
from fer_lightning.store.ids import video_ids


@register_dataset("manifest")
def load_manifest(
    root: Path,
    context: AdapterContext,
    manifest: str = "manifest.csv",
    targets: tuple[str, ...] = ("valence", "arousal"),
    scale: tuple[float, float] = (-1.0, 1.0),
    invalid: float | None = None,
    method: str = "linear",
    delay: float = 0.0,
    tolerance: float | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[VideoRecord]:
    """One record per manifest row, labels resampled to the video's frames.

    Args:
        targets: label-file columns, in output order.
        scale: the labels' range, mapped onto [-1, 1]; values outside it are masked.
        invalid: a value that marks a missing label (NaN and empty cells always do).
        method, delay, tolerance: see :func:`fer_lightning.corpora.labels.align_to_frames`
            (``time`` label files only; ``frame`` files put each row on its frame).
        split_fractions, seed: for subject-disjoint splits where the manifest gives none.
    """
    path = root / manifest
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    table = read_table(path, dtype=str, keep_default_na=False)
    missing = {"video", "subject", "labels"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (needs video, subject, labels; split optional)")
    given = table["split"] if "split" in table.columns else pd.Series([""] * len(table))
    bad = sorted(set(given) - {"", *SPLIT_NAMES})
    if bad:
        raise ValueError(f"{path}: unknown split values {bad}; use {', '.join(SPLIT_NAMES)} or leave empty")
    drawn = subject_splits(table.loc[given == "", "subject"], split_fractions, seed) if (given == "").any() else {}
    if set(drawn) & set(table.loc[given != "", "subject"]):
        raise ValueError(f"{path}: subjects with and without a split would share splits; give all rows a split or none")
    records = []
    ids = video_ids([PurePosixPath(v).as_posix() for v in table["video"]])  # paths where two share a name
    for row, split, vid in zip(table.itertuples(index=False), given, ids, strict=True):
        video = root / row.video
        try:
            fps, n, w, h = context.video_info(video)
            labels = read_table(root / row.labels)
            absent = [t for t in targets if t not in labels.columns]
            if absent:
                raise ValueError(f"label file {row.labels} lacks columns {absent}")
            counts = LabelCounts()
            raw = labels[list(targets)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            scaled = scale_to_unit(raw, *scale, invalid=invalid, counts=counts)
            timed = None
            if "time" in labels.columns:
                times = labels["time"].to_numpy(float)
                timed = TimedLabels([(times, scaled[:, j]) for j in range(scaled.shape[1])], method, delay, tolerance)
                aligned = align_to_frames(labels["time"].to_numpy(float), scaled, np.arange(n) / fps, method, delay,
                                          tolerance)
                values = aligned.values
                counts.not_annotated += aligned.counts.not_annotated
            elif "frame" in labels.columns:
                frames = labels["frame"].to_numpy(int)
                if frames.min() < 0 or frames.max() >= n:
                    raise ValueError(f"label file {row.labels} names frames {frames.min()}..{frames.max()}, "
                                     f"the video has {n}")
                values = np.full((n, len(targets)), np.nan, np.float32)
                values[frames] = scaled
                counts.not_annotated += n - len(np.unique(frames))
            else:
                raise ValueError(f"label file {row.labels} has neither a time nor a frame column")
        except (FileNotFoundError, ValueError, VideoReadError) as err:
            context.skip(vid, str(err))
            continue
        counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
        records.append(whole_frame_record(vid, video, subject=row.subject, split=split or drawn[row.subject],
                                          values=values, fps=fps, num_frames=n, width=w, height=h,
                                          label_counts=counts.as_dict(), value_names=list(targets)))
        if timed is not None:
            records[-1].extra["timed_labels"] = timed
    return records
