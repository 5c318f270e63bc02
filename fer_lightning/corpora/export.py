"""An emotion-labelled video corpus as an image corpus (a folder per class): what the image
pretraining route reads when a user has labelled video but wants the image recipe, and what
``fer-lightning compare-pretraining`` makes of the synthetic corpus for its image route."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_lightning.corpora.records import VideoRecord, record_frames


def export_faces_by_class(records: Sequence[VideoRecord], class_names: Sequence[str], out: str | Path,
                          every: int = 5, size: int = 64, margin: float = 0.2) -> dict[str, int]:
    """Every ``every``-th labelled frame with a face of ``records``, cropped at its face box
    (``size`` px PNG), into ``out/<split>/<class>/<video>_<frame>.png``; written atomically per
    file. Returns the images written per split."""
    import cv2

    from fer_lightning.media.images import crop_face
    from fer_lightning.media.video import ReaderCache

    out = Path(out)
    readers = ReaderCache()
    written: dict[str, int] = {}
    for rec in records:
        if rec.labels is None:
            continue
        frames = np.flatnonzero((rec.labels >= 0) & rec.has_face)[::every]
        if not len(frames):
            continue
        for f, image in zip(frames, record_frames(rec, readers, frames), strict=True):
            folder = out / rec.split / class_names[rec.labels[f]]
            folder.mkdir(parents=True, exist_ok=True)
            crop = crop_face(image, rec.boxes[f], size, rec.extra.get("face_margin", margin))
            target = folder / f"{rec.video_id}_{f:05d}.png"
            tmp = folder / f".{target.name}.tmp.png"
            cv2.imwrite(str(tmp), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            tmp.replace(target)
            written[rec.split] = written.get(rec.split, 0) + 1
    return written
