"""Pretraining corpora labelled per frame with emotion categories (Realeyes-style), from one
manifest table (CSV or Parquet; see data/README.md).

One row per labelled frame: ``video`` (path, relative to the manifest), ``frame`` (0-based
index) or ``time`` (seconds), and either ``label`` (a class name or index) or one column per
class name holding probabilities or intensities (the frame takes the largest; a frame whose
class columns are all empty or zero has no label). Optional ``subject`` and ``split`` columns
(one value per video); without them each video is its own subject and splits are drawn
subject-disjoint. A video's id is its file name without suffix, or its path (folders joined by
``__``) where two videos share a name, as ``fer-lightning preprocess`` names them. The rows are
grouped by video in one sort: a manifest of a million frames loads in seconds.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from fer_lightning.corpora.adapters.common import whole_frame_record
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.splits import SPLIT_NAMES, subject_splits
from fer_lightning.corpora.tables import read_table
from fer_lightning.media.video import VideoReadError
from fer_lightning.store.ids import video_ids

# columns that repeat one value over many rows: read as categories (one string per distinct
# value, a small integer per row), which keeps a million-row manifest at tens of MB
_REPEATED = ("video", "subject", "split")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        return pq.read_table(path, read_dictionary=[c for c in (*_REPEATED, "label") if c in names]).to_pandas()
    names = pd.read_csv(path, nrows=0).columns
    return read_table(path, dtype={c: "category" for c in (*_REPEATED, "label") if c in names})


def _class_indices(table: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    if "label" in table.columns:
        lab = table["label"]
        if isinstance(lab.dtype, pd.CategoricalDtype):  # one lookup per distinct label, not per row
            cats = pd.Series(lab.cat.categories)
            numeric = pd.to_numeric(cats, errors="coerce")
            if numeric.notna().all():
                per_cat = numeric.to_numpy(np.float64)
                per_cat = np.where((per_cat >= 0) & (per_cat < len(class_names)) & (per_cat == np.floor(per_cat)),
                                   per_cat, -1).astype(np.int64)
            else:
                unknown = sorted(set(cats.astype(str)) - set(class_names))
                if unknown:
                    raise ValueError(f"labels {unknown[:5]} are not among the configured classes {class_names}")
                lookup = {c: i for i, c in enumerate(class_names)}
                per_cat = np.array([lookup[str(c)] for c in cats], np.int64)
            codes = lab.cat.codes.to_numpy()
            return np.where(codes >= 0, per_cat[np.maximum(codes, 0)] if len(per_cat) else -1, -1).astype(np.int64)
        if pd.api.types.is_numeric_dtype(lab):
            idx = lab.fillna(-1).to_numpy(np.int64)
            idx[(idx < 0) | (idx >= len(class_names))] = -1
            return idx
        text = lab.astype("string")
        unknown = sorted(set(text.dropna().unique()) - set(class_names))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not among the configured classes {class_names}")
        return pd.Categorical(text, categories=class_names).codes.astype(np.int64)  # -1 where empty
    present = [c for c in class_names if c in table.columns]
    if len(present) != len(class_names):
        missing = [c for c in class_names if c not in table.columns]
        raise ValueError(f"the manifest has neither a label column nor columns for classes {missing}")
    scores = table[class_names].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(np.float64)
    idx = scores.argmax(axis=1)
    idx[scores.max(axis=1) <= 0] = -1
    return idx


@register_dataset("emotion_manifest")
def load_emotion_manifest(
    root: Path,
    context: AdapterContext,
    manifest: str = "labels.csv",
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> list[VideoRecord]:
    """One record per video with a class index on every frame (-1 where unlabelled).

    Args:
        manifest: the table under ``root`` (``.csv`` or ``.parquet``).
        split_fractions, seed: subject-disjoint splits where the table has no ``split``.

    Class names, in logit order, are the run's (``data.class_names``, in ``context``).
    """
    path = root / manifest
    if not path.is_file():
        raise FileNotFoundError(f"no emotion manifest at {path}")
    table = _read_table(path)
    if "video" not in table.columns or not ({"frame", "time"} & set(table.columns)):
        raise ValueError(f"{path}: needs a video column and a frame or time column; has {list(table.columns)}")
    if context.class_names is None:
        raise ValueError("emotion_manifest needs the emotion classes in logit order: set data.class_names")
    class_names = list(context.class_names)
    classes = _class_indices(table, class_names)
    # one pass over the rows: group them by video with one sort, not a pandas group per video
    videos = table["video"] if isinstance(table["video"].dtype, pd.CategoricalDtype) else \
        table["video"].astype(str).astype("category")
    raw_codes, raw_names = videos.cat.codes.to_numpy(), [str(v) for v in videos.cat.categories]
    names = [posixpath.normpath(v) for v in raw_names]  # ./a.mp4 and a.mp4 are one video
    ordered = sorted(set(names))
    position = {name: i for i, name in enumerate(ordered)}
    codes = np.append(np.array([position[name] for name in names], np.int64), -1)[raw_codes]  # -1: no video
    order = np.argsort(codes, kind="stable")
    order = order[codes[order] >= 0]  # a row that names no video labels nothing
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    column = {c: table[c].to_numpy() for c in ("subject", "split") if c in table.columns}
    given = table["frame"].to_numpy(np.float64) if "frame" in table.columns else np.full(len(table), np.nan)
    times = table["time"].to_numpy(np.float64) if "time" in table.columns else np.full(len(table), np.nan)
    ids = video_ids(ordered)  # file names, or paths where two videos share a name
    records = []
    for rows in np.split(order, cuts) if len(order) else []:
        video_rel = ordered[codes[rows[0]]]
        video = root / video_rel
        vid = ids[codes[rows[0]]]
        try:
            fps, n, w, h = context.video_info(video)
            # a row names its frame, or its time (then the frame within half a frame of it)
            t = times[rows]
            by_time = np.rint(np.where(np.isnan(t), -1.0, t) * fps)
            by_time[np.isnan(t) | (np.abs(by_time / fps - t) > 0.5 / fps + 1e-9)] = -1
            frames = np.where(np.isfinite(given[rows]), given[rows], by_time).astype(np.int64)
            if (frames >= n).any():
                raise ValueError(f"labels name frame {int(frames.max())} but the video has {n} frames")
            labels = np.full(n, -1, np.int64)
            ok = frames >= 0
            labels[frames[ok]] = classes[rows][ok]
        except (FileNotFoundError, ValueError, VideoReadError) as err:
            context.skip(vid, str(err))
            continue
        subject = str(column["subject"][rows[0]]) if "subject" in column else vid
        first_split = column["split"][rows[0]] if "split" in column else None
        split = str(first_split) if first_split is not None and pd.notna(first_split) else ""
        if split and split not in SPLIT_NAMES:
            raise ValueError(f"{path}: unknown split {split!r} for {vid}; use {', '.join(SPLIT_NAMES)}")
        histogram = np.bincount(labels[labels >= 0], minlength=len(class_names)).tolist()
        records.append(whole_frame_record(vid, video, subject=subject, split=split, values=None, fps=fps,
                                          num_frames=n, width=w, height=h, labels=labels, class_counts=histogram,
                                          label_counts={"frames": n, "labelled": int((labels >= 0).sum())}))
    undecided = [r for r in records if not r.split]
    if undecided:
        assign = subject_splits([r.subject for r in undecided], split_fractions, seed)
        for r in undecided:
            r.split = assign[r.subject]
    return records
