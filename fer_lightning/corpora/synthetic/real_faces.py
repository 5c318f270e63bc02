"""Real people's faces animated by the synthetic corpus's known valence/arousal law: a small
corpus whose identities separate cleanly, for measuring what pretraining carries to faces of
people never seen in fine-tuning.

Each face found in the given photos (or in the first frame with a face of a given video) is one
identity: a square portrait around it, with its five landmarks. A video of an identity moves
that portrait the way the synthetic corpus moves its drawn faces (position, scale and roll
wander, jitter whose energy is arousal's, drifting light, a textured scene behind) and changes
its expression by local warps of the real face driven by the same two signals:

- valence: the mouth corners rise and spread (a smile) or fall (a frown); the inner brows lower
  when it is negative; the lips part a little when it is positive;
- arousal: the eyes and brows open, the mouth opens.

The annotations are the synthetic corpus's (VA per frame, the emotion class of its
circumplex, ground-truth face boxes), so the ``synthetic`` adapter reads the corpus and every
experiment that runs on the synthetic corpus runs on it. Subjects are identities, and splits
are drawn by identity: the test split's people appear in no other split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.corpora.synthetic.generator import (
    INVALID_LABEL,
    INVALID_VA,
    VideoTruth,
    affect_signals,
    assign_splits,
    background,
    faceless_stretch,
    h264_writer,
    smooth_signal,
    write_annotations,
)
from fer_lightning.io import write_text_atomic
from fer_lightning.tasks import EMOTIONS

PORTRAIT = 192  # side of an identity's portrait, pixels


@dataclass(frozen=True)
class RealFacesConfig:
    """Arguments of the real-face corpus; written to ``corpus.json``.

    Args:
        videos_per_identity: videos of each identity (each its own signals and motion).
        seconds, fps, size, seed: as the synthetic corpus's.
        split: fractions of identities in train, val and test.
        faceless_prob: chance that a video holds one stretch without the face.
        min_face: smallest face (box side, source pixels) taken as an identity.
    """

    videos_per_identity: int = 3
    seconds: float = 20.0
    fps: float = 25.0
    seed: int = 0
    size: int = 256
    split: tuple[float, float, float] = (0.6, 0.1, 0.3)
    faceless_prob: float = 0.3
    min_face: int = 60


@dataclass
class Portrait:
    """One identity: a square RGB portrait (float32), its five landmarks and face box in it."""

    name: str
    source: str
    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray


def find_portraits(sources: list[Path], min_face: int = 60) -> list[Portrait]:
    """Every face of at least ``min_face`` px with five landmarks in ``sources`` (images, or
    videos: their first frame with a face), as a portrait 1.9 face boxes wide."""
    from fer_lightning.faces.detect import create_detector
    from fer_lightning.media.images import crop_face, read_rgb
    from fer_lightning.media.video import IMAGE_SUFFIXES, iter_frames

    detector = create_detector("mtcnn")
    out = []
    for src in sources:
        if src.suffix.lower() in IMAGE_SUFFIXES:
            frames = [read_rgb(src)]
        else:
            frames = (f for i, f in enumerate(iter_frames(src)) if i % 10 == 0)
        for frame in frames:
            faces = [d for d in detector.detect(frame) if d.landmarks is not None and d.score >= 0.95
                     and min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_face]
            if not faces:
                continue
            for k, d in enumerate(sorted(faces, key=lambda d: d.box[0])):
                x0, y0, x1, y1 = (float(v) for v in d.box)
                side = 1.9 * max(x1 - x0, y1 - y0)
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                square = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
                image = crop_face(frame, square, PORTRAIT, 0.0).astype(np.float32)
                scale = PORTRAIT / side
                origin = np.array([cx - side / 2, cy - side / 2])
                name = (src.stem if len(faces) == 1 else f"{src.stem}_{k}").replace(" ", "_")
                while name in {p.name for p in out}:  # a.jpg and a.png: two people, two names
                    name += "+"
                out.append(Portrait(name=name, source=src.name, image=image,
                                    landmarks=(np.asarray(d.landmarks, np.float64) - origin) * scale,
                                    box=np.array([(x0 - origin[0]) * scale, (y0 - origin[1]) * scale,
                                                  (x1 - origin[0]) * scale, (y1 - origin[1]) * scale])))
            break  # a video gives its first frame with a face
    return out


class ExpressionWarp:
    """Valence and arousal as local displacements of a portrait's face (backward-mapped with
    ``cv2.remap``): Gaussian bumps at the mouth corners, lips, eyelids and brows, scaled by the
    face's size. Bases are computed once per portrait; a frame's field is their weighted sum."""

    def __init__(self, portrait: Portrait) -> None:
        lm = portrait.landmarks
        left_eye, right_eye, _, mouth_l, mouth_r = lm
        face = float(portrait.box[2] - portrait.box[0])
        eye_gap = float(np.linalg.norm(right_eye - left_eye))
        up = np.array([0.0, -1.0])
        mouth_mid = (mouth_l + mouth_r) / 2
        # (centre, sigma, (dx, dy) per unit valence, (dx, dy) per unit arousal), in face widths
        self.controls = [
            (mouth_l, 0.08, (-0.025, -0.06), (0.0, 0.0)),
            (mouth_r, 0.08, (0.025, -0.06), (0.0, 0.0)),
            (mouth_mid + 0.06 * face * -up, 0.07, (0.0, 0.02), (0.0, 0.045)),  # the lower lip
            (left_eye + 0.05 * face * up, 0.05, (0.0, 0.0), (0.0, -0.025)),  # upper lids
            (right_eye + 0.05 * face * up, 0.05, (0.0, 0.0), (0.0, -0.025)),
            (left_eye + 0.14 * face * up, 0.07, (0.0, 0.0), (0.0, -0.04)),  # brows
            (right_eye + 0.14 * face * up, 0.07, (0.0, 0.0), (0.0, -0.04)),
            ((left_eye + right_eye) / 2 + 0.12 * face * up, 0.06, (0.0, -0.03), (0.0, 0.0)),  # inner brows
        ]
        ys, xs = np.mgrid[0:PORTRAIT, 0:PORTRAIT].astype(np.float32)
        self.grid = (xs, ys)
        self.bases = np.stack([np.exp(-((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / (2 * (s * face) ** 2))
                               for c, s, _, _ in self.controls]).astype(np.float32)
        self.per_valence = np.array([v for _, _, v, _ in self.controls], np.float32) * face
        self.per_arousal = np.array([a for _, _, _, a in self.controls], np.float32) * face
        self.eye_gap = eye_gap

    def __call__(self, image: np.ndarray, valence: float, arousal: float) -> np.ndarray:
        shift = self.per_valence * valence + self.per_arousal * arousal  # (K, 2) in pixels
        dx = np.tensordot(shift[:, 0], self.bases, axes=1)
        dy = np.tensordot(shift[:, 1], self.bases, axes=1)
        xs, ys = self.grid
        return cv2.remap(image, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def face_mask(portrait: Portrait) -> np.ndarray:
    """A feathered ellipse around the face (a little wider than its box): what is pasted."""
    x0, y0, x1, y1 = portrait.box
    mask = np.zeros((PORTRAIT, PORTRAIT), np.float32)
    centre = (int((x0 + x1) / 2), int((y0 + y1) / 2 - 0.05 * (y1 - y0)))
    axes = (int(0.62 * (x1 - x0)), int(0.72 * (y1 - y0)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 0.04 * (x1 - x0) + 1)


def animate_identity(portrait: Portrait, cfg: RealFacesConfig, index: int, path: Path) -> VideoTruth:
    """Write one video of ``portrait`` (atomically); return its per-frame ground truth."""

    cv2.setNumThreads(1)
    rng = np.random.default_rng([cfg.seed, index, 7])
    n, size, fps = int(round(cfg.seconds * cfg.fps)), cfg.size, cfg.fps
    valence, arousal = affect_signals(rng, n, fps)
    bg = background(rng, size)
    warp = ExpressionWarp(portrait)
    alpha = face_mask(portrait)[..., None]
    face_side = float(portrait.box[2] - portrait.box[0])
    # the drawn faces' motion with gentler scale and light (a photo is not redrawn at each size)
    scale = 0.36 * size / face_side * (1.0 + 0.15 * np.tanh(smooth_signal(rng, n, fps, 2.0, 4.0) / 2))
    margin = 0.3 * size
    cx = size / 2 + (size / 2 - margin) * np.tanh(0.8 * smooth_signal(rng, n, fps, 2.0, 5.0))
    cy = size / 2 + (size / 2 - margin) * np.tanh(0.8 * smooth_signal(rng, n, fps, 2.0, 5.0))
    roll = 8.0 * np.tanh(smooth_signal(rng, n, fps, 1.5, 3.0) / 2)
    energy = ((arousal + 1) / 2) ** 2 * 2.5 * size / 256  # jitter whose energy is arousal's
    jx = smooth_signal(rng, n, fps, 0.04, 0.08) * energy
    jy = smooth_signal(rng, n, fps, 0.04, 0.08) * energy
    light = (1.0 + 0.2 * np.tanh(smooth_signal(rng, n, fps, 3.0, 6.0))).astype(np.float32)
    has_face = faceless_stretch(rng, n, fps, cfg.faceless_prob)
    x0, y0, x1, y1 = portrait.box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    boxes = np.full((n, 4), np.nan, np.float32)
    with h264_writer(path, size, fps) as write:
        for t in range(n):
            frame = bg.copy()
            if has_face[t]:
                face = warp(portrait.image, float(valence[t]), float(arousal[t]))
                m = cv2.getRotationMatrix2D((PORTRAIT / 2, PORTRAIT / 2), float(roll[t]), float(scale[t]))
                m[:, 2] += (cx[t] + jx[t] - PORTRAIT / 2, cy[t] + jy[t] - PORTRAIT / 2)
                warped = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR)
                a = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR)[..., None]
                frame += (warped - frame) * a
                land = corners @ m[:, :2].T + m[:, 2]
                boxes[t] = (*land.min(axis=0), *land.max(axis=0))
            frame *= light[t]
            write(np.clip(frame, 0, 255, out=frame).astype(np.uint8))
    np.clip(boxes, 0, size, out=boxes)
    return VideoTruth(valence=valence, arousal=arousal, has_face=has_face, boxes=boxes)


def generate_real_faces(sources: list[Path], out: str | Path, cfg: RealFacesConfig = RealFacesConfig(),  # noqa: B008
                        progress: bool = True) -> Path:
    """The real-face corpus under ``out`` (the synthetic corpus's layout; ``index.csv`` last)."""
    from tqdm.auto import tqdm

    out = Path(out)
    portraits = find_portraits(sources, cfg.min_face)
    if len(portraits) < 3:
        raise ValueError(f"real faces: {len(portraits)} faces found in {len(sources)} sources; at least 3 identities "
                         "are needed (train, validation, test)")
    for sub in ("videos", "annotations/VA", "annotations/EXPR", "faces", "portraits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    faceless = sorted({s.name for s in sources} - {p.source for p in portraits})
    if faceless:
        print(f"real faces: no face of at least {cfg.min_face} px with landmarks in {len(faceless)} sources, left out: "
              + ", ".join(faceless))
    splits = assign_splits(len(portraits), cfg.split, cfg.seed)
    n = int(round(cfg.seconds * cfg.fps))
    rows = []
    bar = tqdm(total=len(portraits) * cfg.videos_per_identity * n, unit="frame", desc="real faces",
               disable=not progress)
    for i, (portrait, split) in enumerate(zip(portraits, splits, strict=True)):
        cv2.imwrite(str(out / "portraits" / f"{portrait.name}.png"),
                    cv2.cvtColor(portrait.image.astype(np.uint8), cv2.COLOR_RGB2BGR))
        for k in range(cfg.videos_per_identity):
            video_id = f"real_{i:02d}_{k}"
            truth = animate_identity(portrait, cfg, i * 100 + k, out / "videos" / f"{video_id}.mp4")
            write_annotations(out, video_id, cfg.fps, truth)
            rows.append(f"{video_id},{portrait.name},{split},videos/{video_id}.mp4,{cfg.fps},{n},{cfg.size},"
                        f"{cfg.size},{int((~truth.has_face).sum())}")
            bar.update(n)
    bar.close()
    meta = asdict(cfg) | {"faces": "real", "classes": list(EMOTIONS), "targets": ["valence", "arousal"],
                          "invalid_va": INVALID_VA, "invalid_label": INVALID_LABEL,
                          "sources_without_a_face": faceless,
                          "identities": {p.name: {"source": p.source, "split": s}
                                         for p, s in zip(portraits, splits, strict=True)}}
    write_text_atomic(out / "corpus.json", json.dumps(meta, indent=2) + "\n")
    header = "video_id,subject,split,path,fps,num_frames,width,height,faceless_frames"
    index = out / "index.csv"
    write_text_atomic(index, "\n".join([header, *rows]) + "\n")
    return index
