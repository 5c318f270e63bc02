"""Adapter for the corpus written by ``fer-lightning synth`` (see fer_lightning.corpora.synthetic.generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.synthetic.generator import INVALID_VA, SynthConfig, generate_corpus
from fer_lightning.corpora.tables import read_table


def generate_if_missing(root: Path, **synth_args) -> None:
    """Write the synthetic corpus (``SynthConfig(**synth_args)``) into ``root`` unless its
    ``index.csv`` (written last) is there."""
    if not (Path(root) / "index.csv").exists():
        generate_corpus(SynthConfig(**synth_args), root)


@register_dataset("synthetic", prepare=generate_if_missing)
def load_synthetic(root: Path, context: AdapterContext, label_delay: float = 0.0) -> list[VideoRecord]:
    """Read ``index.csv`` and each video's VA, EXPR and face-box files.

    ``label_delay`` (seconds, >= 0) plays a rater who reacts late: the label of frame ``t`` is
    the truth of frame ``t - delay`` (the first ``delay`` seconds have none). It gives
    ``fer-lightning evaluate``'s delay compensation a known delay to find.
    """
    if label_delay < 0:
        raise ValueError(f"label_delay must be >= 0 seconds, got {label_delay}")
    index_path = root / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"no synthetic corpus at {root} (missing index.csv); "
            f"make one with: fer-lightning synth --out {root}"
        )
    index = read_table(index_path, dtype={"video_id": str, "subject": str, "split": str})
    records = []
    for row in index.itertuples(index=False):
        vid = row.video_id
        va = read_table(root / "annotations" / "VA" / f"{vid}.txt")
        values = va[["valence", "arousal"]].to_numpy(np.float32)
        values[(values == INVALID_VA).any(axis=1)] = np.nan
        expr = read_table(root / "annotations" / "EXPR" / f"{vid}.csv")
        labels = expr["label"].to_numpy(np.int64)
        if lag := int(round(label_delay * float(row.fps))):
            values = np.concatenate([np.full((lag, values.shape[1]), np.nan, np.float32), values[:-lag]])[: len(values)]
            labels = np.concatenate([np.full(lag, -1, np.int64), labels[:-lag]])[: len(labels)]
        faces = read_table(root / "faces" / f"{vid}.csv")
        records.append(
            VideoRecord(
                video_id=vid,
                path=root / row.path,
                subject=row.subject,
                split=row.split,
                fps=float(row.fps),
                num_frames=int(row.num_frames),
                has_face=faces["has_face"].to_numpy(bool),
                boxes=faces[["x0", "y0", "x1", "y1"]].to_numpy(np.float32),
                values=values,
                labels=labels,
            )
        )
    return records
