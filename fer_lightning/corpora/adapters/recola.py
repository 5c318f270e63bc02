"""RECOLA as packaged for AVEC 2016 (see data/README.md for the exact layout).

``recordings_video/{train,dev,test}_N.mp4``; gold standard per dimension in
``ratings_gold_standard/{arousal,valence}/{split}_N.arff`` (attributes ``Instance_name``,
``frameTime`` in seconds, ``GoldStandard`` in [-1, 1]; one row every 40 ms). The official split
is in the file names: train, dev (our ``val``) and test, nine recordings (subjects) each.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import (
    LabelCounts,
    TimedLabels,
    align_to_frames,
    read_arff,
    scale_to_unit,
)
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.media.video import VideoReadError

SPLITS = {"train": "train", "dev": "val", "test": "test"}
NAME = re.compile(r"^(train|dev|test)_(\d+)$")


def read_gold_standard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds, values) of one AVEC gold-standard ARFF file."""
    names, rows = read_arff(path)
    lower = [n.lower() for n in names]
    try:
        t, v = lower.index("frametime"), lower.index("goldstandard")
    except ValueError as err:
        raise ValueError(f"{path}: expected attributes frameTime and GoldStandard, found {names}") from err
    times = np.array([float(r[t]) for r in rows])
    values = np.array([float(r[v]) if r[v] not in ("?", "") else np.nan for r in rows])
    return times, values


@register_dataset("recola")
def load_recola(root: Path, context: AdapterContext, targets: tuple[str, ...] = ("valence", "arousal"),
                method: str = "linear", delay: float = 0.0, tolerance: float | None = None) -> list[VideoRecord]:
    """One record per recording with its gold standard resampled to the video's frames.

    Args:
        targets: gold-standard dimensions, in output order (folders of ratings_gold_standard/).
        method, delay, tolerance: see :func:`fer_lightning.corpora.labels.align_to_frames`.

    Left out: a recording without its gold standard, an unreadable video, a gold standard
    without its video. Without labels (``context.unlabelled``): each test recording without a
    gold standard (the public AVEC 2016 package has none).
    """
    videos = context.find_videos(root / "recordings_video", (".mp4",))
    if not videos:
        raise FileNotFoundError(f"no RECOLA videos at {root / 'recordings_video'} (expected train_1.mp4 ...)")
    have = {p.stem for p in videos}  # a gold standard whose recording is missing is named, not silently dropped
    gold = {f.stem for t in targets for f in (root / "ratings_gold_standard" / t).glob("*.arff")}
    for vid in sorted(gold - have):
        context.skip(vid, f"gold standard without a video: no recordings_video/{vid}.mp4")
    records = []
    for path in videos:
        m = NAME.match(path.stem)
        if not m:
            continue
        vid = path.stem
        try:
            fps, n, w, h = context.video_info(path)
            columns, counts, timed = [], LabelCounts(), []
            for target in targets:
                gold = root / "ratings_gold_standard" / target / f"{vid}.arff"
                if not gold.is_file():
                    raise FileNotFoundError(f"missing gold standard {gold.relative_to(root)}")
                times, raw = read_gold_standard(gold)
                scaled = scale_to_unit(raw, -1.0, 1.0, counts=counts)
                aligned = align_to_frames(times, scaled, np.arange(n) / fps, method, delay, tolerance)
                timed.append((times, scaled))
                counts.not_annotated += aligned.counts.not_annotated
                columns.append(aligned.values[:, 0])
        except (FileNotFoundError, ValueError, VideoReadError) as err:
            public_unlabelled = m.group(1) == "test" and "missing gold standard" in str(err)
            if public_unlabelled:
                context.without_labels(vid, f"test partition: no public gold standard ({err})")
            else:
                context.skip(vid, str(err))
            continue
        values = np.stack(columns, axis=1)
        counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
        records.append(whole_frame_record(vid, path, subject=vid, split=SPLITS[m.group(1)], values=values,
                                          fps=fps, num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                          value_names=list(targets)))
        records[-1].extra["timed_labels"] = TimedLabels(timed, method, delay, tolerance)
    return records
