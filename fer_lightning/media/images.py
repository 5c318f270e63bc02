"""Still images read as the frames of a video: what image emotion corpora (AffectNet, RAF-DB,
FER2013, a folder per class) hand to the clip layer.

An image corpus is a list of face images of any size, not a video file. :class:`ImageFrames`
makes such a list look like a video whose frames are all ``size`` x ``size``: frame ``i`` is
image ``i`` cut to its face box (where the corpus gives one), padded to a square around its
centre with black and resized (area averaging when shrinking). The record's face box is then the
whole frame, so clips crop nothing more. The source is small (file names, boxes) and travels
with the dataset into DataLoader workers and DDP ranks; images are decoded on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_lightning.media.video import VideoReadError


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square crop around ``box`` (x0, y0, x1, y1) enlarged by ``margin``, resized to ``size``.

    The square is snapped to whole pixels (at most half a pixel off), sliced out of the frame,
    zero-padded where it leaves the frame, and resized with area averaging when shrinking.
    Only the crop is resampled, never the whole frame.
    """
    import cv2

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(int(round(max(x1 - x0, y1 - y0, 1.0) * (1.0 + margin))), 1)
    left = int(round((x0 + x1) / 2 - side / 2))
    top = int(round((y0 + y1) / 2 - side / 2))
    h, w = frame.shape[:2]
    x_lo, y_lo = max(left, 0), max(top, 0)
    x_hi, y_hi = min(left + side, w), min(top + side, h)
    if x_hi <= x_lo or y_hi <= y_lo:
        return np.zeros((size, size, frame.shape[2]), frame.dtype)
    roi = frame[y_lo:y_hi, x_lo:x_hi]
    pad = (y_lo - top, top + side - y_hi, x_lo - left, left + side - x_hi)  # top, bottom, left, right
    if any(pad):
        roi = cv2.copyMakeBorder(roi, *pad, cv2.BORDER_CONSTANT, value=0)
    if side == size:
        return np.ascontiguousarray(roi)
    return cv2.resize(roi, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` padded with black to a square around its centre, resized to ``size`` x ``size``:
    a face keeps its proportions whatever the image's shape."""
    h, w = image.shape[:2]
    return crop_face(image, np.array([0, 0, w, h], np.float32), size, 0.0)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3), grey images repeated; :class:`VideoReadError`
    naming the file when it cannot be decoded."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey and palette images come as 3 channels
    if image is None:
        raise VideoReadError(f"cannot read image {path} (missing, empty or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ImageFrames:
    """Image files as the frames of a ``size`` x ``size`` video.

    Args:
        files: one image per frame, in frame order.
        size: side of every frame, pixels.
        boxes: optional (N, 4) face boxes (x0, y0, x1, y1) in each image's own pixels, as a corpus
            ships them (AffectNet); a frame is then the box's square, not the whole image. A row
            with a non-finite value means the whole image; a box mostly (over half) outside its
            image is a :class:`VideoReadError`, as an unreadable image is.
        fps: the frame rate it claims (images have none; only durations in reports use it).
    """

    def __init__(self, files: Sequence[str | Path], size: int, boxes: np.ndarray | None = None,
                 fps: float = 25.0) -> None:
        self.files = [str(f) for f in files]
        self.size = int(size)
        self.boxes = None if boxes is None else np.asarray(boxes, np.float32)
        if self.boxes is not None and self.boxes.shape != (len(self.files), 4):
            raise ValueError(f"boxes must be ({len(self.files)}, 4), got {self.boxes.shape}")
        self.fps = fps

    def __len__(self) -> int:
        return len(self.files)

    def get_avg_fps(self) -> float:
        return self.fps

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i``: image ``i`` (its face box, where given) squared and resized."""
        image = read_rgb(self.files[i])
        if self.boxes is not None and np.isfinite(self.boxes[i]).all():
            box = self.boxes[i]
            h, w = image.shape[:2]
            inside = max(0.0, min(box[2], w) - max(box[0], 0)) * max(0.0, min(box[3], h) - max(box[1], 0))
            if inside < 0.5 * (box[2] - box[0]) * (box[3] - box[1]):  # a black square is no face to label
                raise VideoReadError(f"face box {box.round(1).tolist()} of {self.files[i]} lies mostly outside "
                                     f"its {w} x {h} image (a list for other images?)")
            return crop_face(image, box, self.size, 0.0)  # the box's square, black where it leaves the image
        return square_resize(image, self.size)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames ``indices`` as uint8 (N, size, size, 3)."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.files)):
            raise VideoReadError(f"asked for images {indices.min()}..{indices.max()} of a list of {len(self.files)}")
        out = np.zeros((len(indices), self.size, self.size, 3), np.uint8)
        for k, i in enumerate(indices.tolist()):
            out[k] = self.frame(i)
        return out


class PixelFrames:
    """Images held in memory as one array (FER2013 ships its 48 x 48 grey faces as pixel
    strings in a CSV file): frame ``i`` is ``pixels[i]`` as RGB, resized to ``size``."""

    def __init__(self, pixels: np.ndarray, size: int, fps: float = 25.0) -> None:
        if pixels.ndim not in (3, 4) or pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 (N, H, W) or (N, H, W, 3), got {pixels.dtype} {pixels.shape}")
        self.pixels = pixels
        self.size = int(size)
        self.fps = fps

    def __len__(self) -> int:
        return len(self.pixels)

    def get_avg_fps(self) -> float:
        return self.fps

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.pixels)):
            raise VideoReadError(f"asked for images {indices.min()}..{indices.max()} of {len(self.pixels)}")
        images = self.pixels[indices]
        if images.ndim == 3:
            images = np.repeat(images[..., None], 3, axis=-1)
        return np.stack([square_resize(im, self.size) for im in images]) if len(images) else \
            np.zeros((0, self.size, self.size, 3), np.uint8)
