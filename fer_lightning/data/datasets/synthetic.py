"""Adapter for the corpus written by ``fer-lightning synth`` (see fer_lightning.data.synthetic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer_lightning.data.datasets import register_dataset
from fer_lightning.data.records import VideoRecord
from fer_lightning.data.synthetic import INVALID_VA


@register_dataset("synthetic")
def load_synthetic(root: Path, skipped: list | None = None) -> list[VideoRecord]:
    """Read ``index.csv`` and each video's VA, EXPR and face-box files."""
    index_path = root / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"no synthetic corpus at {root} (missing index.csv); "
            f"make one with: fer-lightning synth --out {root}"
        )
    index = pd.read_csv(index_path, dtype={"video_id": str, "subject": str, "split": str})
    records = []
    for row in index.itertuples(index=False):
        vid = row.video_id
        va = pd.read_csv(root / "annotations" / "VA" / f"{vid}.txt")
        values = va[["valence", "arousal"]].to_numpy(np.float32)
        values[(values == INVALID_VA).any(axis=1)] = np.nan
        expr = pd.read_csv(root / "annotations" / "EXPR" / f"{vid}.csv")
        faces = pd.read_csv(root / "faces" / f"{vid}.csv")
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
                labels=expr["label"].to_numpy(np.int64),
            )
        )
    return records
