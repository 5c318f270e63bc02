"""``fer-lightning data check``: what a corpus adapter makes of a corpus, before training."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from fer_lightning.corpora.annotations import annotations_of
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.errors import UserInputError


def labelled_mask(record: VideoRecord, task: str = "") -> np.ndarray:
    """The frames of ``record`` that a loss or a score counts: a face, and a valid label of the
    kind ``task`` learns (``pretrain``: an emotion class; ``finetune``: values; unnamed: values
    where the record has them, else classes). A record can hold both (AffectNet's images)."""
    values = record.values if task != "pretrain" else None
    labels = record.labels if task != "finetune" else None
    if values is not None:
        return np.isfinite(values).all(axis=1) & record.has_face
    if labels is not None:
        return (labels >= 0) & record.has_face
    return np.zeros(record.num_frames, bool)


def drop_unlabelled_records(records: Sequence[VideoRecord], task: str,
                            target_names: Sequence[str] = ("valence", "arousal")) -> tuple[list[VideoRecord], list[str]]:
    """Training ``records`` without those that hold no label ``task`` learns on any frame (no
    emotion class for ``pretrain``: AffectNet's images with valence/arousal alone; no finite
    value in any of ``target_names`` for ``finetune``), and their ids: they would be read and
    fully masked. Where no record has a label the list is kept whole, so that
    :func:`check_labelled` explains why."""
    def learns(r: VideoRecord) -> bool:
        if task == "pretrain":
            return r.labels is not None and bool((r.labels >= 0).any())
        if r.values is None:
            return False
        names = list(r.extra.get("value_names", ("valence", "arousal")))
        columns = [names.index(t) for t in target_names if t in names]
        return bool(columns) and bool(np.isfinite(r.values[:, columns]).any())

    if task not in ("pretrain", "finetune"):
        return list(records), []
    keep = [learns(r) for r in records]
    if not any(keep):
        return list(records), []
    return ([r for r, k in zip(records, keep, strict=True) if k],
            [r.video_id for r, k in zip(records, keep, strict=True) if not k])


def has_labels(split: str, records: Sequence[VideoRecord], task: str = "") -> bool:
    """Whether ``split`` has a frame to learn from (``train``: a face and a valid label) or to
    score (evaluation: a valid label; a frame without a face is still scored); for ``selfsup``,
    which needs no label, a frame with a face."""
    if task == "selfsup":
        return any(r.has_face.any() for r in records)
    if split == "train":
        return any(labelled_mask(r, task).any() for r in records)
    return any(labelled_mask(dataclasses.replace(r, has_face=np.ones(r.num_frames, bool)), task).any()
               for r in records)


def check_labelled(split: str, records: Sequence[VideoRecord], name: str = "the corpus", root: object = "",
                   task: str = "") -> None:
    """Raise :class:`~fer_lightning.errors.UserInputError` for a split that has videos but
    nothing to learn from or score: training needs frames with a face and a valid label (else
    its loss is 0 and the run looks fine), evaluation frames with a valid label (a frame without
    a face is still scored; with no label at all the CCC is undefined)."""
    if not records or has_labels(split, records, task):
        return
    if task == "selfsup":
        raise UserInputError(f"the {split!r} split of {name} at {root}: none of the {sum(r.num_frames for r in records)} "
                             f"frames of its {len(records)} videos shows a face; check the face store with "
                             "`fer-lightning data check`")
    train = split == "train"
    why: dict[str, int] = {}
    for r in records:
        for k, v in r.extra.get("label_counts", {}).items():
            if k not in ("frames", "labelled") and v:
                why[k] = why.get(k, 0) + v
        if train and (no_face := int((~r.has_face).sum())):
            why["no_face"] = why.get("no_face", 0) + no_face
    reasons = ", ".join(f"{k} {v}" for k, v in why.items()) or "no label values"
    needs = "has a face and a valid label" if train else "has a valid label"
    raise UserInputError(
        f"the {split!r} split of {name} at {root}: none of the {sum(r.num_frames for r in records)} frames of its "
        f"{len(records)} videos {needs} ({reasons}); check the label files (scale, invalid marker, delay) and the "
        "face store with `fer-lightning data check`")


def class_frames(records: Sequence[VideoRecord], class_names: Sequence[str]) -> dict[str, int]:
    """Labelled frames with a face per emotion class (what pretraining's loss sees), by name."""
    counts = np.zeros(len(class_names), np.int64)
    for r in records:
        if r.labels is not None:
            lab = r.labels[(r.labels >= 0) & r.has_face]
            counts += np.bincount(lab, minlength=len(class_names))[: len(class_names)]
    return dict(zip(class_names, counts.tolist(), strict=True))


def summarize(records: Sequence[VideoRecord], skipped: Sequence[tuple[str, str]],
              unlabelled: Sequence[tuple[str, str]] = (), class_names: Sequence[str] | None = None,
              task: str = "") -> dict:
    """Per split: videos, frames, labelled and unlabelled frames, why frames lack labels, the
    videos whose label file's length differs from their frame count (and by how much), the
    annotations the challenge scores and, per video, those that describe a moment before the
    first or after the last decoded frame (:mod:`fer_lightning.corpora.annotations`), and for
    emotion labels the frames of each class (``class_names``); then every video left out with
    its reason, and the videos of a partition the corpus ships without labels. Labels are the
    kind ``task`` learns (:func:`labelled_mask`). ``ok`` is false
    when any video was left out or none is usable; an unlabelled partition is how the corpus
    ships, not a failure."""
    splits: dict[str, dict] = {}
    for r in records:
        s = splits.setdefault(r.split, {"videos": 0, "frames": 0, "labelled_frames": 0, "unlabelled_frames": 0,
                                        "why_unlabelled": {}, "length_mismatch": {}, "annotations": 0,
                                        "annotations_outside_video": {}})
        labelled = labelled_mask(r, task)
        s["videos"] += 1
        s["frames"] += r.num_frames
        s["labelled_frames"] += int(labelled.sum())
        s["unlabelled_frames"] += int((~labelled).sum())
        counts = r.extra.get("label_counts", {})
        for k in ("invalid_marker", "out_of_range", "not_annotated", "length_mismatch"):
            if counts.get(k):
                s["why_unlabelled"][k] = s["why_unlabelled"].get(k, 0) + counts[k]
        no_face = int((~r.has_face).sum())
        if no_face:
            s["why_unlabelled"]["no_face"] = s["why_unlabelled"].get("no_face", 0) + no_face
        if counts.get("length_mismatch"):
            s["length_mismatch"][r.video_id] = -counts["length_mismatch"]
        if r.values is not None and (ann := annotations_of(r, r.extra.get("value_names", ("valence", "arousal")))):
            s["annotations"] += int(np.isfinite(ann.values).any(axis=1).sum())
            before, after = ann.outside(r.num_frames)
            if before or after:  # scored against the edge frame's prediction: named, so nothing is a surprise
                s["annotations_outside_video"][r.video_id] = {"before_first_frame": before, "after_last_frame": after}
            if not ann.timed and len(ann.values) > r.num_frames:
                s["length_mismatch"][r.video_id] = len(ann.values) - r.num_frames
    if class_names is not None:
        for split, s in splits.items():
            s["class_frames"] = class_frames([r for r in records if r.split == split], class_names)
    empty = sorted(split for split, s in splits.items() if s["labelled_frames"] == 0)
    return {"ok": bool(records) and not skipped and not empty, "splits_without_labels": empty, "splits": dict(sorted(splits.items())),
            "skipped": [{"video_id": v, "reason": why} for v, why in skipped],
            "unlabelled": [{"video_id": v, "reason": why} for v, why in unlabelled]}
