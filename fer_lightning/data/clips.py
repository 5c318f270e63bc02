"""Cutting videos into fixed-length clips and reading them as model-ready samples."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fer_lightning.corpora.records import VideoRecord, record_frames
from fer_lightning.faces.detect import crop_face
from fer_lightning.media.video import ReaderCache, VideoReadError
from fer_lightning.tasks import TASKS


def clip_starts(num_frames: int, clip_len: int, stride: int, frame_step: int = 1, pad_last: bool = False) -> list[int]:
    """First frame of every window of ``clip_len`` frames taken ``frame_step`` apart.

    Windows start every ``stride`` frames. Without ``pad_last`` every window lies inside the
    video, and the last one is moved back to end on the last frame it can reach, so the tail is
    not dropped (a video shorter than one window still yields one, padded). With ``pad_last``
    windows keep their regular starts and run past the end, where the dataset pads and masks,
    so every frame is covered: once with ``stride`` equal to the window span, several times
    with a shorter stride (evaluation's overlapping windows, stitched by the CCC metric). A
    window ``frame_step`` frames apart sees one phase of the video, so with ``pad_last`` each
    start also gets the windows at the other ``frame_step - 1`` phases (the model runs on the
    video's interleaved streams, as ``predict`` does): every frame is scored whatever the step.
    """
    if clip_len < 1 or stride < 1 or frame_step < 1:
        raise ValueError(f"clip_len, stride and frame_step must be >= 1 (got {clip_len}, {stride}, {frame_step})")
    if num_frames <= 0:
        return []
    span = (clip_len - 1) * frame_step + 1
    if pad_last:
        return [s + p for s in range(0, num_frames, stride) for p in range(frame_step) if s + p < num_frames]
    last = max(0, num_frames - span)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


MAX_NAMED = 20  # unreadable images named one by one in a process; the rest are counted


class ClipDataset(Dataset):
    """Windows of ``clip_len`` frames over a list of videos, read lazily with decord.

    Each item is a dict:

    - ``frames``: uint8 (T, 3, S, S), the face cropped from each frame (zeros without a face);
    - ``targets``: float32 (T, D) for ``finetune`` (columns ``target_names``) or int64 (T,)
      class indices for ``pretrain`` (-1 where invalid; all -1 for ``selfsup``, which has none);
    - ``mask``: bool (T), true where the frame exists, shows a face and has a valid label (what
      the loss counts);
    - ``labelled``: bool (T), true where the frame exists and has a valid label, face or not
      (what evaluation scores), and ``has_face``: bool (T), where it shows a face;
    - ``video_id``: str; ``frame_index``: int64 (T), -1 on padding past the end.

    ``on_read_error``: ``raise`` (default) raises :class:`VideoReadError` naming the file when
    frames cannot be decoded; ``mask`` (what training uses) returns the clip with every frame
    masked, warns once per video (per image, for an image corpus: the first ``MAX_NAMED``, then
    every 1000th with the count) and keeps it in ``unreadable`` (per process: each DataLoader
    worker names its own). Where most of an image corpus's reads fail (at least 50), it raises
    whatever the policy: the images are not where its lists say.

    Decoders are opened on first use inside whichever process reads (DataLoader workers), never
    when the dataset is built.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clip_len: int = 16,
        stride: int | None = None,
        frame_step: int = 1,
        image_size: int = 112,
        face_margin: float = 0.2,
        task: str = "finetune",
        target_names: Sequence[str] = ("valence", "arousal"),
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        pad_last: bool = False,
        max_open_readers: int = 1,
        on_read_error: str = "raise",
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if on_read_error not in ("raise", "mask"):
            raise ValueError(f"on_read_error must be 'raise' or 'mask', got {on_read_error!r}")
        self.on_read_error = on_read_error
        self.unreadable: set[str] = set()  # videos (images: "record: error") that failed to decode in this process
        self._image_reads = [0, 0]  # image corpora's reads in this process: decoded, failed
        self.records = list(records)
        self.clip_len = clip_len
        self.frame_step = frame_step
        span = (clip_len - 1) * frame_step + 1
        self.stride = stride or span
        self.image_size = image_size
        self.face_margin = face_margin
        self.task = task
        self.target_names = tuple(target_names)
        self.transform = transform
        self._columns = [self._value_columns(r) for r in self.records] if task == "finetune" else None
        self.windows: list[tuple[int, int]] = [
            (i, s)
            for i, r in enumerate(self.records)
            for s in clip_starts(r.num_frames, clip_len, self.stride, frame_step, pad_last)
        ]
        self.readers = ReaderCache(max_open=max_open_readers)

    def _value_columns(self, record: VideoRecord) -> list[int]:
        names = list(record.extra.get("value_names", ("valence", "arousal")))
        missing = [t for t in self.target_names if t not in names]
        if record.values is None or missing:
            raise ValueError(f"{record.video_id}: no labels for targets {missing or self.target_names}")
        return [names.index(t) for t in self.target_names]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        rec_i, start = self.windows[i]
        rec = self.records[rec_i]
        return self.make_item(rec_i, start, lambda idx: self.read_frames(rec, idx))

    def read_frames(self, rec: VideoRecord, indices: np.ndarray) -> np.ndarray:
        """Frames ``indices`` of ``rec`` (:func:`record_frames`, with this process's readers)."""
        return record_frames(rec, self.readers, indices)

    def make_item(self, rec_i: int, start: int, decode: Callable[[np.ndarray], np.ndarray]) -> dict:
        """The item for the window of record ``rec_i`` that starts at frame ``start``;
        ``decode(indices)`` returns those frames (RGB uint8, N x H x W x 3) of the video."""
        rec = self.records[rec_i]
        index = start + np.arange(self.clip_len) * self.frame_step
        inside = index < rec.num_frames
        idx = np.where(inside, index, rec.num_frames - 1)
        has_face = rec.has_face[idx] & inside

        size = self.image_size
        frames = np.zeros((self.clip_len, size, size, 3), np.uint8)
        if has_face.any():
            try:
                decoded = decode(idx[has_face])
            except VideoReadError as err:
                if self.on_read_error == "raise":
                    raise
                # a file that opened at setup but fails to decode now: its frames are masked,
                # the epoch goes on, and the video (of an image corpus: the image) is named once
                # per process, with the count so far
                if rec.frames is not None:
                    self._image_reads[1] += 1
                    if self._image_reads[1] >= 50 and self._image_reads[1] > self._image_reads[0]:
                        raise VideoReadError(f"{self._image_reads[1]} of the {sum(self._image_reads)} image reads of "
                                             f"this process failed (the last: {err}): are the images where the "
                                             "corpus's lists say (data.root)?") from err
                key = rec.video_id if rec.frames is None else f"{rec.video_id}: {err}"
                if key not in self.unreadable:
                    self.unreadable.add(key)
                    n = len(self.unreadable)
                    if n <= MAX_NAMED or n % 1000 == 0:  # a few named, then a running count
                        warnings.warn(f"masking unreadable frames of {rec.video_id}: {err} ({n} unreadable so far in "
                                      "this process" + ("; further ones are counted every 1000" if n == MAX_NAMED
                                                        else "") + ")", stacklevel=2)
                has_face = np.zeros_like(has_face)
                decoded = np.zeros((0, 1, 1, 3), np.uint8)
            else:
                self._image_reads[0] += rec.frames is not None
            margin = rec.extra.get("face_margin", self.face_margin)  # whole-frame records: 0
            for k, frame, box in zip(np.flatnonzero(has_face), decoded, rec.boxes[idx[has_face]], strict=True):
                frames[k] = crop_face(frame, box, size, margin)
        if self.transform is not None:
            frames = np.ascontiguousarray(self.transform(frames))

        return {"frames": torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))),
                **self.labels_of(rec_i, index, inside, idx, has_face)}

    def labels_of(self, rec_i: int, index: np.ndarray, inside: np.ndarray, idx: np.ndarray,
                  has_face: np.ndarray) -> dict:
        """``targets``, ``mask``, ``video_id`` and ``frame_index`` of a window (see class docs)."""
        rec = self.records[rec_i]
        if self.task == "finetune":
            values = rec.values[idx][:, self._columns[rec_i]]
            valid = np.isfinite(values).all(axis=1)
            targets = torch.from_numpy(np.nan_to_num(values, nan=0.0).astype(np.float32))
        elif self.task == "selfsup":  # no label: every frame with a face is one to learn from
            valid = np.ones(len(idx), bool)
            targets = torch.full((len(idx),), -1, dtype=torch.int64)
        else:
            labels = rec.labels[idx]
            valid = labels >= 0
            targets = torch.from_numpy(np.where(valid & has_face, labels, -1).astype(np.int64))
        return {
            "targets": targets,
            "mask": torch.from_numpy(has_face & valid),
            "labelled": torch.from_numpy(valid & inside),
            "has_face": torch.from_numpy(has_face.copy()),
            "video_id": rec.video_id,
            "frame_index": torch.from_numpy(np.where(inside, index, -1).astype(np.int64)),
        }
