"""Per-frame predictions of evaluation batches, collected per video and stitched: what the
trace plots of validation/test (``TracePlot``) and ``fer-lightning evaluate`` both read."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_lightning.metrics.stitch import stitch_windows


class FrameCollector:
    """Windows of predictions and targets per video; :meth:`stitched` gives one row per frame
    under the project's stitching rule (:mod:`fer_lightning.metrics.stitch`)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = defaultdict(list)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def add(self, video_ids: list[str], frame_index: np.ndarray, mask: np.ndarray, preds: np.ndarray,
            targets: np.ndarray) -> None:
        """One batch: ``video_ids`` B, ``frame_index`` and ``mask`` (B, T), ``preds`` and
        ``targets`` (B, T, D); padding (frame index -1) is dropped."""
        for b, vid in enumerate(video_ids):
            keep = frame_index[b] >= 0
            self.parts[vid].append((frame_index[b][keep], mask[b][keep], preds[b][keep], targets[b][keep]))

    def merge(self, parts: dict[str, list]) -> None:
        """Add another collector's ``parts`` (another rank's share of the windows)."""
        for vid, windows in parts.items():
            self.parts[vid] += windows

    def stitched(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``video_id -> (frame_index, mask, pred float64, target)`` over each video's frames,
        videos sorted by id."""
        return {vid: stitch_windows(parts) for vid, parts in sorted(self.parts.items())}
