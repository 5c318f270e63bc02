"""``fer-lightning data check``: what a corpus adapter makes of a corpus, before training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fer_lightning.corpora.records import VideoRecord


def summarize(records: Sequence[VideoRecord], skipped: Sequence[tuple[str, str]],
              unlabelled: Sequence[tuple[str, str]] = ()) -> dict:
    """Per split: videos, frames, labelled and unlabelled frames, why frames lack labels, and
    the videos whose label file's length differs from their frame count (and by how much);
    then every video left out with its reason, and the videos of a partition the corpus ships
    without labels. ``ok`` is false when any video was left out or none is usable; an
    unlabelled partition is how the corpus ships, not a failure."""
    splits: dict[str, dict] = {}
    for r in records:
        s = splits.setdefault(r.split, {"videos": 0, "frames": 0, "labelled_frames": 0, "unlabelled_frames": 0,
                                        "why_unlabelled": {}, "length_mismatch": {}})
        if r.values is not None:
            labelled = np.isfinite(r.values).all(axis=1) & r.has_face
        else:
            labelled = (r.labels >= 0) & r.has_face
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
    return {"ok": bool(records) and not skipped, "splits": dict(sorted(splits.items())),
            "skipped": [{"video_id": v, "reason": why} for v, why in skipped],
            "unlabelled": [{"video_id": v, "reason": why} for v, why in unlabelled]}
