"""Stitching: overlapping evaluation windows back into one row per frame, the one rule that
validation, test metrics, prediction files and ``evaluate`` share.

A frame is keyed by ``(video, frame index)``. A frame that several overlapping windows cover
gets the mean of their predictions; any other per-frame value (target, mask) comes from the
first window that holds it. A window seen twice (known by its video and first frame: the
copies a DistributedSampler pads the last batch with) counts once, so a copy never outvotes
its neighbour on their shared frames.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _first_of_each(rows: Tensor) -> tuple[Tensor, Tensor]:
    """For (N, K) integer rows: each row's group among the distinct rows (N,), and the position
    of each distinct row's first occurrence (G,), distinct rows in ascending order."""
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((distinct.shape[0],), rows.shape[0], dtype=torch.int64, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    return inverse, first


def stitch_frames(videos: Tensor, windows: Tensor, frames: Tensor, averaged: Tensor, *carried: Tensor
                  ) -> tuple[Tensor, ...]:
    """Rows of (video key, window's first frame, frame) with ``averaged`` (N, D) values and
    ``carried`` (N, ...) values -> ``(rows (F, 2) of (video key, frame) in ascending order,
    mean (F, D) float64, *carried (F, ...))``, each frame once (see the module docs)."""
    videos, windows, frames = (x.reshape(-1).to(torch.int64) for x in (videos, windows, frames))
    if videos.numel() == 0:
        return (torch.empty(0, 2, dtype=torch.int64, device=videos.device),
                averaged.to(torch.float64)[:0], *(c[:0] for c in carried))
    _, first = _first_of_each(torch.stack([videos, windows, frames], 1))  # each (window, frame) once
    videos, frames = videos[first], frames[first]
    averaged, carried = averaged[first].to(torch.float64), [c[first] for c in carried]
    inverse, first = _first_of_each(torch.stack([videos, frames], 1))
    count = torch.zeros(first.numel(), dtype=torch.float64, device=averaged.device).index_add_(
        0, inverse, torch.ones(videos.numel(), dtype=torch.float64, device=averaged.device))
    total = torch.zeros(first.numel(), *averaged.shape[1:], dtype=torch.float64,
                        device=averaged.device).index_add_(0, inverse, averaged)
    mean = total / count.reshape(-1, *([1] * (averaged.ndim - 1)))
    return (torch.stack([videos[first], frames[first]], 1), mean, *(c[first] for c in carried))


def stitch_windows(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """One video's evaluation windows -> one row per frame (numpy, through :func:`stitch_frames`).

    ``parts`` holds per window ``(frame_index (T,), mask (T,), pred (T, D), *others (T, ...))``
    with padding already removed. Returns ``(frame_index, mask, pred, *others)`` over the
    unique frames in ascending order, ``pred`` float64.
    """
    index = np.concatenate([p[0] for p in parts]).astype(np.int64)
    windows = np.concatenate([np.full(len(p[0]), p[0][0] if len(p[0]) else -1, np.int64) for p in parts])
    mask, pred, *others = (np.concatenate(x) for x in list(zip(*parts, strict=True))[1:])
    rows, mean, mask, *others = stitch_frames(
        torch.zeros(len(index), dtype=torch.int64), torch.from_numpy(windows), torch.from_numpy(index),
        torch.from_numpy(np.asarray(pred)), torch.from_numpy(np.asarray(mask)),
        *(torch.from_numpy(np.asarray(o)) for o in others))
    return (rows[:, 1].numpy(), mask.numpy(), mean.numpy(), *(o.numpy() for o in others))
