"""SEWA as packaged for AVEC 2017 (see data/README.md for the layout).

``labels/{Train,Devel}_NN.csv``: ``;``-separated, no header, columns instance name, time (s),
arousal, valence, liking, one row every 100 ms; videos ``video/{Train,Devel}_N.avi`` (the
number may or may not be zero-padded on either side). Train is ``train``, Devel ``val``; the
test labels are not public.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import LabelCounts, TimedLabels, align_to_frames, scale_to_unit
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.tables import read_table
from fer_lightning.media.video import VideoReadError

COLUMNS = ("instance", "time", "arousal", "valence", "liking")
SPLITS = {"train": "train", "devel": "val"}
NAME = re.compile(r"^(Train|Devel)_0*(\d+)$", re.IGNORECASE)


@register_dataset("sewa")
def load_sewa(root: Path, context: AdapterContext, targets: tuple[str, ...] = ("valence", "arousal"),
              method: str = "linear", delay: float = 0.0, tolerance: float | None = None) -> list[VideoRecord]:
    """One record per labelled recording, labels resampled from 100 ms steps to frames.

    Args:
        targets: any of arousal, valence, liking, in output order.
        method, delay, tolerance: see :func:`fer_lightning.corpora.labels.align_to_frames`.

    Left out: a recording without its label file or video. Without labels
    (``context.unlabelled``): each Test recording (AVEC 2017 never released their labels).
    """
    unknown = [t for t in targets if t not in COLUMNS[2:]]
    if unknown:
        raise ValueError(f"SEWA has no target {unknown}; it has {COLUMNS[2:]}")
    videos = {}
    files = context.find_videos(root / "video", (".avi", ".mp4"))
    for p in files:
        m = NAME.match(p.stem)
        if m:
            videos[(m.group(1).lower(), int(m.group(2)))] = p
    for p in files:
        if p.stem.lower().startswith("test_"):
            context.without_labels(p.stem, "test partition: no public labels")
    label_files = sorted((root / "labels").glob("*.csv"))
    if not label_files:
        raise FileNotFoundError(f"no SEWA label files at {root / 'labels'} (expected Train_01.csv ...)")
    labelled = {(m.group(1).lower(), int(m.group(2))) for m in map(NAME.match, (f.stem for f in label_files)) if m}
    for key, p in sorted(videos.items()):  # a Train/Devel video with no label file beside it is named, not dropped
        if key not in labelled and key[0] != "test":
            context.skip(p.stem, f"no label file for this video under {root / 'labels'}")
    records = []
    for lab in label_files:
        m = NAME.match(lab.stem)
        if not m:
            continue
        key = (m.group(1).lower(), int(m.group(2)))
        vid = f"{m.group(1).capitalize()}_{int(m.group(2)):02d}"
        try:
            video = videos.get(key)
            if video is None:
                raise FileNotFoundError(f"no video for {lab.name} under {root / 'video'} ({vid}.avi)")
            vid = video.stem  # the id preprocess gives its face video
            fps, n, w, h = context.video_info(video)
            table = read_table(lab, sep=";", names=COLUMNS)
            counts = LabelCounts()
            scaled = scale_to_unit(table[list(targets)].to_numpy(np.float64), -1.0, 1.0, counts=counts)
            aligned = align_to_frames(table["time"].to_numpy(float), scaled, np.arange(n) / fps, method, delay, tolerance)
            counts.not_annotated += aligned.counts.not_annotated
        except (FileNotFoundError, ValueError, VideoReadError) as err:
            context.skip(vid, str(err))
            continue
        values = aligned.values
        counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
        records.append(whole_frame_record(vid, video, subject=vid, split=SPLITS[key[0]], values=values, fps=fps,
                                          num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                          value_names=list(targets)))
        times = table["time"].to_numpy(float)
        records[-1].extra["timed_labels"] = TimedLabels([(times, scaled[:, j]) for j in range(scaled.shape[1])],
                                                        method, delay, tolerance)
    return records
