"""Per-frame backbone features computed once, for frozen-backbone fine-tuning and sweeps.

With the face feature extractor frozen, every epoch and every sweep run would push the same
frames through the same backbone. :func:`build_feature_cache` does it once: for each video it
decodes the frames front to back, crops the faces exactly as training clips do, runs the
pretrained encoder (eval mode) and stores ``(N, F)`` float16 features in
``<cache root>/<key>/<video_id>.npy`` (written to a temporary name, then renamed). The key hashes
the checkpoint file, the backbone, the crop size and margin, so features of another checkpoint
never mix in. :class:`FeatureClipDataset` then serves the same windows, labels and masks as
:class:`~fer_lightning.data.clips.ClipDataset` with ``features`` instead of ``frames``, and only
the LSTM and head train.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fer_lightning.corpora.records import VideoRecord, record_frames
from fer_lightning.data.clips import ClipDataset
from fer_lightning.faces.detect import crop_face
from fer_lightning.io import write_text_atomic
from fer_lightning.media.video import VideoReadError

EncoderLoader = Callable[[Path], tuple[torch.nn.Module, str]]
"""checkpoint -> (the network with its frozen face feature extractor, in eval mode, and its
backbone name); the cache calls its ``forward_features`` and reads its ``num_features``."""


def cache_key(checkpoint: str | Path, backbone: str, image_size: int, margin: float) -> str:
    """16 hex digits naming a feature set: checkpoint bytes, backbone, crop size and margin."""
    h = hashlib.sha256()
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(f"{backbone}|{image_size}|{margin:.4f}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def build_feature_cache(records: Sequence[VideoRecord], checkpoint: str | Path, cache_root: str | Path,
                        image_size: int, margin: float, load_encoder: EncoderLoader, chunk: int = 128,
                        progress: bool = True, device: str | torch.device = "auto") -> Path:
    """Compute (or reuse) the features of every record; returns the key's folder.
    ``load_encoder(checkpoint)`` gives the frozen encoder and its backbone name (the model's
    :func:`~fer_lightning.models.transfer.load_encoder`); it runs on ``device`` (``auto``: the
    GPU when there is one)."""
    from tqdm.auto import tqdm

    from fer_lightning.media.video import ReaderCache

    net, backbone = load_encoder(checkpoint)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    net.to(device)
    key = cache_key(checkpoint, backbone, image_size, margin)
    folder = Path(cache_root) / key
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "cache.json", json.dumps(
        {"checkpoint": str(checkpoint), "backbone": backbone, "image_size": image_size, "margin": margin,
         "dim": net.num_features, "dtype": "float16"}, indent=1) + "\n")
    readers = ReaderCache(max_open=1)
    todo = [r for r in records if not _complete(folder / f"{r.video_id}.npy", r.num_frames)]
    bar = tqdm(total=sum(r.num_frames for r in todo), unit="frame", desc="feature cache", disable=not progress)
    for rec in todo:
        feats = np.zeros((rec.num_frames, net.num_features), np.float16)
        margin_rec = rec.extra.get("face_margin", margin)
        for lo in range(0, rec.num_frames, chunk):
            idx = np.arange(lo, min(lo + chunk, rec.num_frames))
            faces = idx[rec.has_face[idx]]
            if len(faces):
                try:
                    frames = record_frames(rec, readers, faces)
                except VideoReadError as err:  # a cache has no mask to hide a bad frame behind
                    raise VideoReadError(f"feature cache for {rec.video_id}: {err}; fix or remove that file, or "
                                         "train without data.feature_cache (which masks it)") from err
                crops = np.stack([crop_face(f, b, image_size, margin_rec) for f, b in zip(frames, rec.boxes[faces],
                                                                                          strict=True)])
                x = torch.from_numpy(crops).permute(0, 3, 1, 2)[None].to(device)  # (1, n, 3, S, S) uint8
                feats[faces] = net.forward_features(x)[0].float().cpu().numpy().astype(np.float16)
            bar.update(len(idx))
        tmp = folder / f".{rec.video_id}.{os.getpid()}.tmp.npy"
        np.save(tmp, feats)
        os.replace(tmp, folder / f"{rec.video_id}.npy")
    bar.close()
    return folder


def _complete(path: Path, num_frames: int) -> bool:
    if not path.is_file():
        return False
    try:
        return np.load(path, mmap_mode="r").shape[0] == num_frames
    except (ValueError, OSError):
        return False


class FeatureClipDataset(ClipDataset):
    """:class:`ClipDataset` windows, labels and masks over cached features: items carry
    ``features`` float32 (T, F) (zeros where there is no face) instead of ``frames``."""

    def __init__(self, records: Sequence[VideoRecord], folder: str | Path, **kwargs) -> None:
        kwargs.pop("transform", None)  # features are fixed: no image augmentation
        super().__init__(records, **kwargs)
        self.folder = Path(folder)
        self._arrays: dict[str, np.ndarray] = {}

    def _features(self, video_id: str) -> np.ndarray:
        if video_id not in self._arrays:  # memory-mapped, opened lazily in each worker
            self._arrays[video_id] = np.load(self.folder / f"{video_id}.npy", mmap_mode="r")
        return self._arrays[video_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def make_item(self, rec_i: int, start: int, decode=None) -> dict:
        rec = self.records[rec_i]
        index = start + np.arange(self.clip_len) * self.frame_step
        inside = index < rec.num_frames
        idx = np.where(inside, index, rec.num_frames - 1)
        has_face = rec.has_face[idx] & inside
        feats = np.asarray(self._features(rec.video_id)[idx], np.float32)
        feats[~has_face] = 0.0
        return {"features": torch.from_numpy(feats), **self.labels_of(rec_i, index, inside, idx, has_face)}
