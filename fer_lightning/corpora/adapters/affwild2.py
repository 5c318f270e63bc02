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

``affwild2_expr`` reads the expression track the same way (``EXPR_Recognition_Challenge`` and
its earlier names), one emotion class per frame, for pretraining.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.classes import class_index_map
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import LabelCounts, LabelLengthError, match_length, scale_to_unit
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import subject_splits
from fer_lightning.corpora.tables import TableRowError, read_table
from fer_lightning.media.video import VideoReadError

INVALID = -5.0
SETS = {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "val"}
TRAIN_SETS = ("Train_Set", "Training_Set")
TRACKS = {"VA": {"va_estimation_challenge", "va_set"},
          "EXPR": {"expr_recognition_challenge", "expr_classification_challenge", "expr_set"}}


def _video_for(name: str, videos: dict[str, Path]) -> Path | None:
    base = name[: -len("_left")] if name.endswith("_left") else name[: -len("_right")] if name.endswith("_right") else name
    return videos.get(name) or videos.get(base)


def _find_annotations(root: Path, track: str = "VA", max_depth: int = 4) -> Path:
    """The annotation folder of ``track`` (``VA``: ``VA_Estimation_Challenge``; ``EXPR``:
    ``EXPR_Recognition_Challenge``, ``EXPR_Classification_Challenge`` or ABAW 2020's
    ``EXPR_Set``) that holds a training set under ``root``, whatever the ABAW edition calls the
    folders above it; an error names the option when there is none or more than one."""
    names = TRACKS[track]
    hits = sorted({p.parent for train in TRAIN_SETS for p in root.rglob(train)
                   if p.is_dir() and p.parent.name.lower() in names and len(p.relative_to(root).parts) <= max_depth + 1})
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FileNotFoundError(f"no Aff-Wild2 {track} annotations under {root} (a {'/'.join(sorted(names))} folder "
                                "with Train_Set/): set data.root to the ABAW folder, or data.dataset_args.annotations "
                                "to the folder holding Train_Set/ and Validation_Set/")
    raise FileNotFoundError(f"several Aff-Wild2 {track} annotation folders under {root}: "
                            + ", ".join(str(h.relative_to(root)) for h in hits)
                            + "; choose one with data.dataset_args.annotations")


def _annotation_sets(ann_root: Path) -> dict[str, str]:
    """The set folders of an annotation folder and their splits (Train_Set or ABAW 2020's
    Training_Set: train; Validation_Set: val)."""
    return {name: split for name, split in SETS.items() if (ann_root / name).is_dir()}


def _corpus_videos(root: Path, videos: str | None, context: AdapterContext) -> tuple[Path, dict[str, Path]]:
    """(videos folder, video name -> file): every .mp4/.avi below it, found by name."""
    video_root = root / videos if videos else root
    found = {p.stem: p for p in context.find_videos(video_root, (".mp4", ".avi"), recursive=True)}
    if not found:
        raise FileNotFoundError(f"no .mp4/.avi videos under {video_root}: set data.root to the ABAW folder, or "
                                "data.dataset_args.videos to the folder that holds them")
    return video_root, found


def _report_unannotated(found: dict[str, Path], ann_root: Path, track: str, context: AdapterContext) -> None:
    annotated = {ann.stem for folder in _annotation_sets(ann_root) for ann in (ann_root / folder).glob("*.txt")}
    annotated |= {a[: -len(side)] for a in annotated for side in ("_left", "_right") if a.endswith(side)}
    for vid in sorted(set(found) - annotated):
        context.without_labels(vid, f"no {track} annotation (the test set, or another ABAW track's video)")


def _annotation_files(root: Path, annotations: str | None, videos: str | None, track: str,
                      context: AdapterContext) -> Iterator[tuple[Path, str, Path, tuple[float, int, int, int]]]:
    """(annotation file, split, its video, the video's fps, frame count, width, height) for every
    annotation file of ``track`` whose video is there and readable; the others are left out with
    the reason, and videos without an annotation file reported as unlabelled."""
    ann_root = root / annotations if annotations else _find_annotations(root, track)
    if not _annotation_sets(ann_root):
        raise FileNotFoundError(f"no Aff-Wild2 {track} annotations at {ann_root} (expected Train_Set/, "
                                "Validation_Set/): set data.dataset_args.annotations to that folder, relative to data.root")
    video_root, found = _corpus_videos(root, videos, context)
    _report_unannotated(found, ann_root, track, context)
    for folder, split in _annotation_sets(ann_root).items():
        for ann in sorted((ann_root / folder).glob("*.txt")):
            video = _video_for(ann.stem, found)
            try:
                if video is None:
                    raise FileNotFoundError(f"no video named {ann.stem} (.mp4/.avi) under {video_root}")
                facts = context.video_info(video)
            except (FileNotFoundError, VideoReadError) as err:
                context.skip(ann.stem, str(err))
                continue
            yield ann, split, video, facts


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
    records = []
    for ann, split, video, (fps, n, w, h) in _annotation_files(root, annotations, videos, "VA", context):
        vid = ann.stem
        try:
            table = read_table(ann)
            absent = [t for t in targets if t not in table.columns]
            if absent:
                raise ValueError(f"{ann.name}: no column {absent} (header should be valence,arousal)")
            counts = LabelCounts()
            values = scale_to_unit(table[list(targets)].to_numpy(np.float64), -1.0, 1.0, invalid=INVALID,
                                   counts=counts)
            rows, values = values, match_length(values, n, vid, length_tolerance, counts)
        except (ValueError, LabelLengthError) as err:
            context.skip(vid, str(err))
            continue
        counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
        records.append(whole_frame_record(vid, video, subject=vid, split=split, values=values, fps=fps,
                                          num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                          value_names=list(targets)))
        if len(rows) > n:  # rows past the decoded frames are still annotations the challenge scores
            records[-1].extra["label_rows"] = rows
    return _val_from_train(records, val_from_train, seed)


def _val_from_train(records: list[VideoRecord], fraction: float, seed: int) -> list[VideoRecord]:
    """With ``fraction`` > 0, a subject-disjoint part of the training set becomes ``val`` and the
    official validation set ``test``; otherwise the splits stay as shipped."""
    if fraction > 0:
        train = [r for r in records if r.split == "train"]
        assign = subject_splits([r.subject for r in train], (1 - fraction, fraction, 0.0), seed)
        for r in records:
            r.split = assign[r.subject] if r.split == "train" else "test"
    return records


def read_expr_file(path: Path) -> tuple[list[str], np.ndarray]:
    """(class names of the header, one class index per row, -1 where not annotated) of an ABAW
    EXPR file: a header ``Neutral,Anger,...`` then one integer per frame. A row that is not one
    integer in -1..classes-1 is an error naming the file and line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise ValueError(f"{path.name}: empty file (expected a header of class names, then one label per frame)")
    header = [name.strip() for name in lines[0].split(",") if name.strip()]
    labels = []
    for k, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            value = int(line.strip())
        except ValueError:
            value = None
        if value is None or not -1 <= value < len(header):
            raise TableRowError(f"{path.name}, line {k}: {line.strip()!r} is not a class index in -1..{len(header) - 1} "
                                f"(the header names {len(header)} classes)")
        labels.append(value)
    return header, np.asarray(labels, np.int64)


@register_dataset("affwild2_expr")
def load_affwild2_expr(
    root: Path,
    context: AdapterContext,
    annotations: str | None = None,
    videos: str | None = None,
    length_tolerance: int = 5,
    val_from_train: float = 0.0,
    seed: int = 0,
    drop: Sequence[str] = ("other",),
    rename: Mapping[str, str] | None = None,
) -> list[VideoRecord]:
    """Aff-Wild2's expression track as a pretraining corpus: one record per annotation file (per
    person), an emotion class on every frame (-1 where the file says -1, or where its class is
    not among the run's).

    The files' header names the classes (``Neutral,Anger,Disgust,Fear,Happiness,Sadness,
    Surprise,Other``); each is mapped by name onto the run's ``data.class_names``
    (:func:`~fer_lightning.corpora.classes.class_index_map`: ``Other`` is dropped by default,
    so ABAW's seven fit; a class neither among them nor in ``drop`` is an error). Folders as for the VA track:
    ``EXPR_Recognition_Challenge``, ``EXPR_Classification_Challenge`` or ABAW 2020's ``EXPR_Set``
    found under ``root``, videos found by name; the same ``length_tolerance``,
    ``val_from_train`` and ``seed``.
    """
    if context.class_names is None:
        raise ValueError("affwild2_expr needs the emotion classes in logit order: set data.class_names, e.g. "
                         "[neutral, anger, disgust, fear, happiness, sadness, surprise]")
    records = []
    for ann, split, video, (fps, n, w, h) in _annotation_files(root, annotations, videos, "EXPR", context):
        vid = ann.stem
        try:
            header, raw = read_expr_file(ann)
        except ValueError as err:
            context.skip(vid, str(err))
            continue
        to_run = class_index_map(header, context.class_names, f"affwild2_expr ({ann.name})", drop, rename)
        try:
            counts = LabelCounts(invalid_marker=int((raw < 0).sum()),
                                 out_of_range=int(((raw >= 0) & (to_run[raw] < 0)).sum()))
            labels = to_run[raw]  # -1 stays -1 (the last entry); an unwanted class becomes -1
            fitted = match_length(labels.astype(np.float64), n, vid, length_tolerance, counts)
            labels = np.where(np.isnan(fitted), -1, fitted).astype(np.int64)
        except (ValueError, LabelLengthError) as err:
            context.skip(vid, str(err))
            continue
        counts.frames, counts.labelled = n, int((labels >= 0).sum())
        records.append(whole_frame_record(vid, video, subject=vid, split=split, values=None, labels=labels,
                                          fps=fps, num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                          class_counts=np.bincount(labels[labels >= 0],
                                                                   minlength=len(context.class_names)).tolist()))
    return _val_from_train(records, val_from_train, seed)
