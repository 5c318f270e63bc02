"""Per-frame predictions written in the formats the corpora's challenges take, so that a run
can be submitted or compared with the organisers' tools as it is.

- ABAW valence-arousal (Aff-Wild2): one ``<video>.txt`` per video (per person for
  ``_left``/``_right``), header ``valence,arousal``, one row per video frame, values in [-1, 1].
- AVEC (RECOLA 40 ms, SEWA 100 ms, any corpus annotated in time), at each recording's
  annotation times: ARFF per dimension and recording as AVEC's gold standard is laid out
  (``<dimension>/<recording>.arff``: ``Instance_name,frameTime,GoldStandard``), and one
  ``<recording>.csv`` per recording, ``instance,time_s,<targets>``.

The predictions come as :func:`fer_lightning.evaluation.final.final_predictions` makes them:
one per annotation, already on the label range; nothing here changes a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fer_lightning.io import write_text_atomic


def write_abaw_va(out_dir: str | Path, predictions: Mapping[str, np.ndarray], names: Sequence[str]) -> list[Path]:
    """``predictions``: video id -> (N, D) predictions, one per row of the video's label file
    (per frame). Values are clipped to [-1, 1], the challenge's range; a missing value (NaN)
    is an error, since the challenge scores every row."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vid, pred in sorted(predictions.items()):
        rows = np.clip(np.asarray(pred, np.float64), -1.0, 1.0)
        if not np.isfinite(rows).all():
            raise ValueError(f"{vid}: {int((~np.isfinite(rows)).any(axis=1).sum())} rows have no prediction; "
                             "ABAW scores every row")
        text = ",".join(names) + "\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows)
        write_text_atomic(out_dir / f"{vid}.txt", text)
        written.append(out_dir / f"{vid}.txt")
    return written


def write_label_rate(out_dir: str | Path, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     names: Sequence[str]) -> list[Path]:
    """``predictions``: recording id -> (annotation times (M,) in seconds, (M, D) the final
    prediction of each annotation): one ``<id>.csv`` each, ``instance,time_s,<names>``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vid, (times, pred) in sorted(predictions.items()):
        lines = [f"instance,time_s,{','.join(names)}"]
        lines += [f"{vid},{t:.3f}," + ",".join(f"{v:.6f}" for v in row) for t, row in zip(times, pred, strict=True)]
        write_text_atomic(out_dir / f"{vid}.csv", "\n".join(lines) + "\n")
        written.append(out_dir / f"{vid}.csv")
    return written


def write_avec_arff(out_dir: str | Path, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    names: Sequence[str], rows: Mapping[str, np.ndarray] | None = None) -> list[Path]:
    """``predictions`` as :func:`write_label_rate` takes them, laid out as AVEC's gold standard:
    ``<name>/<id>.arff`` per dimension and recording, attributes ``Instance_name`` (string),
    ``frameTime`` (seconds) and ``GoldStandard``, one row per annotation time. ``rows``: id ->
    (M, D) which rows each dimension's own gold standard lists (None: every row)."""
    out_dir = Path(out_dir)
    written = []
    for d, name in enumerate(names):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for vid, (times, pred) in sorted(predictions.items()):
            keep = np.ones(len(times), bool) if rows is None or rows.get(vid) is None else rows[vid][:, d]
            lines = ["@relation GoldStandard", "", "@attribute Instance_name string", "@attribute frameTime numeric",
                     "@attribute GoldStandard numeric", "", "@data", ""]
            lines += [f"'{vid}',{t:.6f},{row[d]:.6f}" for t, row in zip(times[keep], pred[keep], strict=True)]
            write_text_atomic(out_dir / name / f"{vid}.arff", "\n".join(lines) + "\n")
            written.append(out_dir / name / f"{vid}.arff")
    return written
