"""Aff-Wild2, valence-arousal track of the ABAW challenges (see data/README.md for the layout).

One annotation file per video (or per person in two-person videos: ``<video>_left.txt`` and
``<video>_right.txt``) under ``Train_Set/`` and ``Validation_Set/``, header ``valence,arousal``,
one row per video frame, values in [-1, 1], ``-5`` where a frame is not annotated. Videos
(``.mp4`` or ``.avi``) are found by name anywhere under the videos folder.

With ``root`` at the ABAW folder as shipped, both are found by themselves: the annotations
are the folder named ``VA_Estimation_Challenge`` that holds ``Train_Set/`` (editions put it
under ``annotations/``, ``5th_ABAW_Annotations/``, ``6th ABAW Annotations/``...), and the
videos are every ``.mp4``/``.avi`` under ``root`` (``batch1/``, ``batch2/``, ``new_vids/``...). The official test
labels are not public: by default Train_Set is ``train`` and Validation_Set ``val``; with
``val_from_train`` > 0 a subject-disjoint part of Train_Set becomes ``val`` and Validation_Set
becomes ``test``, the usual way to report on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import LabelCounts, LabelLengthError, match_length, scale_to_unit
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import subject_splits
from fer_lightning.corpora.tables import read_table
from fer_lightning.media.video import VideoReadError

INVALID = -5.0
SETS = {"Train_Set": "train", "Validation_Set": "val"}


def _video_for(name: str, videos: dict[str, Path]) -> Path | None:
    base = name[: -len("_left")] if name.endswith("_left") else name[: -len("_right")] if name.endswith("_right") else name
    return videos.get(name) or videos.get(base)


def _find_annotations(root: Path, max_depth: int = 4) -> Path:
    """The ``VA_Estimation_Challenge`` folder (with ``Train_Set/``) under ``root``, whatever the
    ABAW edition calls the folders above it; an error names the option when there is none or
    more than one."""
    hits = sorted(p.parent for p in root.rglob("Train_Set")
                  if p.is_dir() and p.parent.name.lower() == "va_estimation_challenge"
                  and len(p.relative_to(root).parts) <= max_depth + 1)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FileNotFoundError(f"no Aff-Wild2 VA annotations under {root} (a VA_Estimation_Challenge/Train_Set "
                                "folder): set data.root to the ABAW folder, or data.dataset_args.annotations to the "
                                "folder holding Train_Set/ and Validation_Set/")
    raise FileNotFoundError(f"several Aff-Wild2 VA annotation folders under {root}: "
                            + ", ".join(str(h.relative_to(root)) for h in hits)
                            + "; choose one with data.dataset_args.annotations")


@register_dataset("affwild2")
def load_affwild2(
    root: Path,
    context: AdapterContext,
    annotations: str | None = None,
    videos: str | None = None,
    targets: tuple[str, ...] = ("valence", "arousal"),
    length_tolerance: int = 5,
    val_from_train: float = 0.0,
    seed: int = 0,
) -> list[VideoRecord]:
    """One record per annotation file (per person), labels on their frames.

    Args:
        annotations, videos: folders under ``root`` (default: found, see the module docs).
        length_tolerance: a label file up to this many rows longer or shorter than its video
            is truncated or padded (padding masked and counted); beyond it the video is left
            out with both lengths in the reason.
        val_from_train, seed: see the module docs.

    Left out: an annotation file without its video, or beyond the length tolerance. Without
    labels (``context.unlabelled``): each video with no VA annotation file (the test set's, and
    videos of the other ABAW tracks).
    """
    ann_root = root / annotations if annotations else _find_annotations(root)
    if not (ann_root / "Train_Set").is_dir():
        raise FileNotFoundError(f"no Aff-Wild2 annotations at {ann_root} (expected Train_Set/, Validation_Set/): "
                                "set data.dataset_args.annotations to that folder, relative to data.root")
    video_root = root / videos if videos else root
    found = {p.stem: p for p in context.find_videos(video_root, (".mp4", ".avi"), recursive=True)}
    if not found:
        raise FileNotFoundError(f"no .mp4/.avi videos under {video_root}: set data.root to the ABAW folder, or "
                                "data.dataset_args.videos to the folder that holds them")
    annotated = {ann.stem for folder in SETS for ann in (ann_root / folder).glob("*.txt")}
    annotated |= {a[: -len(side)] for a in annotated for side in ("_left", "_right") if a.endswith(side)}
    for vid in sorted(set(found) - annotated):
        context.without_labels(vid, "no VA annotation (the test set, or another ABAW track's video)")
    records = []
    for folder, split in SETS.items():
        for ann in sorted((ann_root / folder).glob("*.txt")):
            vid = ann.stem
            try:
                video = _video_for(vid, found)
                if video is None:
                    raise FileNotFoundError(f"no video named {vid} (.mp4/.avi) under {video_root}")
                fps, n, w, h = context.video_info(video)
                table = read_table(ann)
                absent = [t for t in targets if t not in table.columns]
                if absent:
                    raise ValueError(f"{ann.name}: no column {absent} (header should be valence,arousal)")
                counts = LabelCounts()
                values = scale_to_unit(table[list(targets)].to_numpy(np.float64), -1.0, 1.0, invalid=INVALID,
                                       counts=counts)
                rows, values = values, match_length(values, n, vid, length_tolerance, counts)
            except (FileNotFoundError, ValueError, LabelLengthError, VideoReadError) as err:
                context.skip(vid, str(err))
                continue
            counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
            records.append(whole_frame_record(vid, video, subject=vid, split=split, values=values, fps=fps,
                                              num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                              value_names=list(targets)))
            if len(rows) > n:  # rows past the decoded frames are still annotations the challenge scores
                records[-1].extra["label_rows"] = rows
    if val_from_train > 0:
        train = [r for r in records if r.split == "train"]
        assign = subject_splits([r.subject for r in train], (1 - val_from_train, val_from_train, 0.0), seed)
        for r in records:
            r.split = assign[r.subject] if r.split == "train" else "test"
    return records
