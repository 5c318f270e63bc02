"""AFEW-VA (see data/README.md for the layout): 600 clips as image sequences.

Folders ``001`` .. ``600``, each holding the clip's frames ``00000.png`` ... and ``NNN.json``
whose ``frames`` maps a frame name ("00000") to ``{"valence": int, "arousal": int,
"landmarks": [[x, y], ...]}`` with values in -10..10, and ``actor`` names who is on screen.
Frames missing from the JSON have no label. There is no official split: clips get
subject-disjoint splits by actor, so no actor is in two splits (a clip whose JSON names no
actor is its own subject, and the record says so).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import LabelCounts, scale_to_unit
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import subject_splits
from fer_lightning.media.video import IMAGE_SEQUENCE_FPS, ImageSequence, VideoReadError


@register_dataset("afewva")
def load_afewva(root: Path, context: AdapterContext, targets: tuple[str, ...] = ("valence", "arousal"),
                split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
                fps: float = IMAGE_SEQUENCE_FPS) -> list[VideoRecord]:
    """One record per clip folder; the folder itself is the "video" (an image sequence).

    Args:
        targets: valence and/or arousal, in output order.
        split_fractions, seed: the actor-disjoint split (a clip without an actor: its own subject).
        fps: frame rate of the image sequences.
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not folders:
        raise FileNotFoundError(f"no AFEW-VA clip folders (001 ... 600) at {root}")
    records = []
    for folder in folders:
        cid = folder.name
        try:
            seq = ImageSequence(folder, fps)
            meta_path = folder / f"{cid}.json"
            if not meta_path.is_file():
                raise FileNotFoundError(f"missing annotation file {cid}/{cid}.json")
            meta = json.loads(meta_path.read_text())
            frames = meta.get("frames")
            actor = meta.get("actor")
            if not isinstance(frames, dict):
                raise ValueError(f"{cid}/{cid}.json has no 'frames' mapping")
            n = len(seq)
            raw = np.full((n, len(targets)), np.nan)
            names = {p.stem: i for i, p in enumerate(seq.files)}
            for name, ann in frames.items():
                if name in names:
                    raw[names[name]] = [ann.get(t, np.nan) if ann.get(t) is not None else np.nan for t in targets]
            counts = LabelCounts(not_annotated=int(np.isnan(raw).all(axis=1).sum()))
            values = scale_to_unit(raw, -10.0, 10.0)
            counts.out_of_range = int((np.isnan(values) & ~np.isnan(raw)).any(axis=1).sum())
            h, w = seq.image(0).shape[:2]
        except (FileNotFoundError, ValueError, VideoReadError, json.JSONDecodeError) as err:
            context.skip(cid, str(err))
            continue
        counts.frames, counts.labelled = n, int(np.isfinite(values).all(axis=1).sum())
        subject = f"actor:{actor}" if isinstance(actor, str) and actor.strip() else f"clip:{cid}"
        records.append(whole_frame_record(cid, folder, subject=subject, split="", values=values, fps=fps,
                                          num_frames=n, width=w, height=h, label_counts=counts.as_dict(),
                                          value_names=list(targets)))
        if subject.startswith("clip:"):
            records[-1].extra["subject_note"] = "the JSON names no actor: the clip is its own subject"
    assign = subject_splits([r.subject for r in records], split_fractions, seed)
    for r in records:
        r.split = assign[r.subject]
    return records
