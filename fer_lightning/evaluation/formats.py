"""Per-frame predictions written in the formats the corpora's challenges take, so that a run
can be submitted or compared with the organisers' tools as it is.

- ABAW valence-arousal (Aff-Wild2): one ``<video>.txt`` per video (per person for
  ``_left``/``_right``), header ``valence,arousal``, one row per video frame, values in [-1, 1].
- AVEC-style (RECOLA 40 ms, SEWA 100 ms, any corpus annotated in time): one ``<video>.csv`` per
  recording at its annotation times, ``instance,time_s,<targets>``, predictions interpolated
  linearly from the frames' own times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fer_lightning.io import write_text_atomic


def write_abaw_va(out_dir: str | Path, predictions: Mapping[str, np.ndarray], names: Sequence[str]) -> list[Path]:
    """``predictions``: video id -> (N, D) per-frame predictions, every frame of the video.
    Values are clipped to [-1, 1], the challenge's range."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vid, pred in sorted(predictions.items()):
        rows = np.clip(np.asarray(pred, np.float64), -1.0, 1.0)
        text = ",".join(names) + "\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows)
        write_text_atomic(out_dir / f"{vid}.txt", text)
        written.append(out_dir / f"{vid}.txt")
    return written


def write_label_rate(out_dir: str | Path, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     label_times: Mapping[str, np.ndarray], names: Sequence[str]) -> list[Path]:
    """``predictions``: video id -> (frame times (N,) in seconds, (N, D) predictions);
    ``label_times``: video id -> the annotation times to write (videos without are left out).
    Before the first frame and after the last the edge prediction is held."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vid, (frame_times, pred) in sorted(predictions.items()):
        if vid not in label_times:
            continue
        times = np.asarray(label_times[vid], np.float64)
        pred = np.asarray(pred, np.float64)
        cols = [np.interp(times, np.asarray(frame_times, np.float64), pred[:, d]) for d in range(pred.shape[1])]
        lines = [f"instance,time_s,{','.join(names)}"]
        lines += [f"{vid},{t:.3f}," + ",".join(f"{c[i]:.6f}" for c in cols) for i, t in enumerate(times)]
        write_text_atomic(out_dir / f"{vid}.csv", "\n".join(lines) + "\n")
        written.append(out_dir / f"{vid}.csv")
    return written
