"""Every face video of a face store, without labels: what self-supervised pretraining
(``data.task: selfsup``) reads when the frames come from no corpus in particular.

``data.root`` is a store written by ``fer-lightning preprocess`` (from any videos: a folder of
interviews, a video platform's dump); each face video is one record, its frames' faces as
preprocessing found them, its source its subject. Splits are drawn by source.
"""

from __future__ import annotations

from pathlib import Path

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import subject_splits
from fer_lightning.store.read import attach_store, is_face_store, load_index


@register_dataset("face_store")
def load_face_store(root: Path, context: AdapterContext,
                    split_fractions: tuple[float, float, float] = (0.9, 0.1, 0.0), seed: int = 0) -> list[VideoRecord]:
    """One unlabelled record per face video of the store at ``root``; ``split_fractions`` of
    the sources (drawn with ``seed``) are train, val and test."""
    index = load_index(root) if is_face_store(root) else None
    if index is None:
        raise FileNotFoundError(f"no face store (index.csv and frames.parquet, from `fer-lightning preprocess`) at "
                                f"{root}")
    records = []
    for face_id in sorted(index.videos):
        source = index.sources_of_videos[face_id]
        fps, n, w, h = index.facts[source]
        records.append(whole_frame_record(face_id, root / "videos" / f"{face_id}.mp4", subject=source, split="",
                                          values=None, fps=fps, num_frames=n, width=w, height=h))
    records, missing = attach_store(records, root)
    for vid, why in missing:
        context.skip(vid, why)
    assign = subject_splits([r.subject for r in records], split_fractions, seed)
    for r in records:
        r.split = assign[r.subject]
    return records
