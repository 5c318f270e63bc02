"""Predictions for the frames where no face was found, so that every labelled frame is scored.

The challenges score every labelled frame (ABAW: every frame whose label is not -5; AVEC 2016:
all 7,501 frames of each RECOLA recording), whether or not a face detector found the face in
it. The model only sees a black frame there, so its output on such a frame says nothing. A
frame without a face gets instead, per ``method``:

- ``interpolate`` (the default): the straight line between the predictions of the nearest
  face frames before and after it in the same video, held at the first or last face frame
  at a video's ends;
- ``hold``: the prediction of the last face frame before it (of the first one after it at a
  video's start), what an online system would output;
- ``model``: the model's own output on the black frame, unchanged.

A video without any face frame keeps the model's output. benchmarks/faceless_fill.py
measures the three on the synthetic corpus with its face dropouts (docs/scoring.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FACELESS = ("interpolate", "hold", "model")


def fill_faceless(videos: Tensor, frames: Tensor, preds: Tensor, has_face: Tensor,
                  method: str = "interpolate") -> Tensor:
    """``preds`` (F, D) of frames ``(videos, frames)`` (F,), sorted by video, then by frame,
    with the frames where ``has_face`` is false filled by ``method`` (see the module docs).
    Returns a new tensor; face frames keep their predictions."""
    if method not in FACELESS:
        raise ValueError(f"faceless must be one of {FACELESS}, got {method!r}")
    has_face = has_face.to(torch.bool)
    n = frames.numel()
    if method == "model" or n == 0 or bool(has_face.all()):
        return preds.clone()
    pos = torch.arange(n, device=frames.device)
    prev = torch.cummax(torch.where(has_face, pos, torch.full_like(pos, -1)), 0).values
    nxt = torch.cummin(torch.where(has_face, pos, torch.full_like(pos, n)).flip(0), 0).values.flip(0)
    prev_c, next_c = prev.clamp(min=0), nxt.clamp(max=n - 1)
    has_prev = (prev >= 0) & (videos[prev_c] == videos)  # a face frame earlier in the same video
    has_next = (nxt < n) & (videos[next_c] == videos)
    before, after = preds[prev_c], preds[next_c]
    filled = torch.where(has_prev[:, None], before, torch.where(has_next[:, None], after, preds))
    if method == "interpolate":
        both = has_prev & has_next
        gap = (frames[next_c] - frames[prev_c]).to(preds.dtype)
        w = torch.where(both, (frames - frames[prev_c]).to(preds.dtype) / gap.clamp(min=1), torch.zeros_like(gap))
        filled = torch.where(both[:, None], before + w[:, None] * (after - before), filled)
    return torch.where(has_face[:, None], preds, filled)


def fill_video(frames: np.ndarray, preds: np.ndarray, has_face: np.ndarray, method: str = "interpolate") -> np.ndarray:
    """:func:`fill_faceless` for one video in numpy: ``frames`` (F,) ascending, ``preds`` (F, D)."""
    return fill_faceless(torch.zeros(len(frames), dtype=torch.int64), torch.as_tensor(np.asarray(frames)),
                         torch.as_tensor(np.asarray(preds)), torch.as_tensor(np.asarray(has_face, bool)),
                         method).numpy()


def face_runs(has_face: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive true frames (frames with a face; pass ``~has_face``
    for the runs without one)."""
    padded = np.concatenate([[0], has_face.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
